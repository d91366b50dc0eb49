"""A value that must never be printed: webhook URLs, tokens, signing secrets."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Secret:
    """Holds a secret string; repr and str show only that something is there."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**redacted**')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)
