"""The jq the Sigma backend writes: one small function per shape, each its own documented form.

Every form here is built from what the native evaluator (tattletail.native) runs exactly and
without libjq (`any`, `flatten`, `values`, `//`, `tojson`, `ascii_downcase`, `==`, `IN`,
`startswith`, `endswith`, `contains`, `length`, `has`, literal-pattern `test`), and none can
raise a jq error on any record, so conditions may be reordered (see JqBackend.finalize_query).

What a field's values are, and what it means for one of them to match (docs/sigma.md):

- `values_of(path)`: the field's values, a jq stream. A dotted name walks objects; an array met
  on the way is walked too (each element), except inside userIdentity and tlsDetails; an array
  at the end gives its elements (nested arrays flattened); nulls and missing keys give nothing.
- `text()`: the text of one value: a string is itself, anything else its JSON text (`true`,
  `42`, `{"a":1}`), so `'true'` in a rule matches a JSON `true` and `|contains` on an object
  matches within its JSON text.
- Case-insensitive matching folds ASCII letters only (`ascii_downcase` of both sides): `É` and
  `é` are different characters to it, as to jq.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Final

from tattletail.sigma.fields import walks_arrays

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASCII_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}

# The pieces of a wildcard pattern: a literal character, `*` or `?`.
ANY: Final = "*"
ONE: Final = "?"
Token = tuple[str, str]  # ("lit", character) | (ANY, "") | (ONE, "")


def ascii_lower(text: str) -> str:
    """jq's ascii_downcase: A-Z only."""
    return text.translate(_ASCII_LOWER)


def literal(text: str) -> str:
    """A jq string literal for `text` (JSON's escapes are jq's)."""
    if any("\ud800" <= c <= "\udfff" for c in text):
        raise ValueError("a lone UTF-16 surrogate cannot be written in jq")
    return json.dumps(text, ensure_ascii=False)


def key_access(key: str, optional: bool) -> str:
    """`.key`, or `."odd key"` when the key is not an identifier; `?` when `optional`."""
    access = f".{key}" if _IDENTIFIER.fullmatch(key) else f".{literal(key)}"
    return access + ("?" if optional else "")


def values_of(path: Sequence[str]) -> str:
    """The field's non-null values, arrays expanded (see the module docstring)."""
    walk = _walk(path)
    return f"{walk if walks_arrays(tuple(path)) else f'[{walk}]'} | flatten[] | values"


def parents_of(path: Sequence[str]) -> str:
    """The objects that would hold the field's last key, a jq stream (for `|exists`)."""
    walk = _walk(path[:-1])
    if walks_arrays(tuple(path)):
        return f"{walk} | flatten[] | objects"
    return f"{walk} | objects"


def _walk(keys: Sequence[str]) -> str:
    """`.a.b?.c?` (a missing or non-object value on the way gives nothing), or, where a name
    walks arrays, `[.a] | flatten[] | [.b?] | flatten[] | [.c?]`."""
    if not walks_arrays(tuple(keys)):
        return key_access(keys[0], False) + "".join(key_access(k, True) for k in keys[1:])
    steps = [f"[{key_access(keys[0], False)}]"] + [f"[{key_access(k, True)}]" for k in keys[1:]]
    return " | flatten[] | ".join(steps)


def exists(path: Sequence[str]) -> str:
    """Whether the field is present, even with a null value (Sigma's `|exists: true`)."""
    if len(path) == 1:
        return f"has({literal(path[0])})"
    return f"any({parents_of(path)}; has({literal(path[-1])}))"


def any_value(path: Sequence[str], condition: str) -> str:
    """Some value of the field satisfies `condition` (a jq boolean on one value)."""
    return f"any({values_of(path)}; {condition})"


def no_value(path: Sequence[str]) -> str:
    """The field has no non-null value: Sigma's `field: null` (missing, null, [] or [null])."""
    return f"isempty({values_of(path)})"


def text(cased: bool) -> str:
    """The text of the value `.`, folded to lower case unless `cased`."""
    return "strings // tojson" if cased else "strings // tojson | ascii_downcase"


def tokens(parts: Sequence[object], fold: bool) -> list[Token]:
    """A pySigma SigmaString's parts (plain strings and wildcard markers) as tokens; runs of
    `*` collapse into one (they match the same strings)."""
    from sigma.types import SpecialChars  # the one pySigma type this module reads

    out: list[Token] = []
    for part in parts:
        if part is SpecialChars.WILDCARD_MULTI:
            if not out or out[-1][0] != ANY:
                out.append((ANY, ""))
        elif part is SpecialChars.WILDCARD_SINGLE:
            out.append((ONE, ""))
        elif isinstance(part, str):
            out.extend(("lit", c) for c in (ascii_lower(part) if fold else part))
        else:
            raise TypeError(f"unexpected part of a Sigma string: {part!r}")
    return out


def glob_test(pattern: Sequence[Token]) -> str:
    """A jq boolean on a string `.`: the whole string matches the wildcard pattern.

    The shapes rules use are string methods (`==`, `startswith`, `endswith`, `contains`, and
    `startswith(a) and endswith(b) and length >= n` for `a*b`); anything else (`?`, several inner
    `*`) is a regex on the string with a sentinel appended, so that `$` can only match at its
    very end (in both Oniguruma and Python, `$` also matches before a final newline)."""
    if all(kind == "lit" for kind, _ in pattern):
        return f". == {literal(_chars(pattern))}"
    if not any(kind == ONE for kind, _ in pattern):
        segments = _split_stars(pattern)
        if len(segments) == 2:
            head, tail = segments
            if not head and not tail:
                return "true"
            if not tail:
                return f"startswith({literal(head)})"
            if not head:
                return f"endswith({literal(tail)})"
            return (
                f"(startswith({literal(head)}) and endswith({literal(tail)})"
                f" and length >= {len(head) + len(tail)})"
            )
        if len(segments) == 3 and not segments[0] and not segments[2]:
            return f"contains({literal(segments[1])})"
    return full_match(_glob_regex(pattern))


def full_match(regex: str) -> str:
    """A jq boolean on a string `.`: `regex` matches all of it (see glob_test)."""
    anchored = literal("\\A(?:" + regex + ")#$")
    return f'. + "#" | test({anchored})'


def regex_escape(text: str) -> str:
    """`text` as literal regex characters, escaped alike for Oniguruma and Python."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else _control(c) for c in text)


_REGEX_SPECIAL: Final = frozenset(".^$*+?()[]{}|\\")


def _control(c: str) -> str:
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c, c)


def _chars(pattern: Sequence[Token]) -> str:
    return "".join(c for _, c in pattern)


def _split_stars(pattern: Sequence[Token]) -> list[str]:
    segments = [""]
    for kind, c in pattern:
        if kind == ANY:
            segments.append("")
        else:
            segments[-1] += c
    return segments


def _glob_regex(pattern: Sequence[Token]) -> str:
    # `.` matches any character but a newline in both engines; `(?:.|\n)` matches any.
    out = []
    for kind, c in pattern:
        if kind == ANY:
            out.append("(?:.|\\n)*")
        elif kind == ONE:
            out.append("(?:.|\\n)")
        else:
            out.append(regex_escape(c))
    return "".join(out)


def conjunction(terms: Sequence[str]) -> str:
    return " and ".join(_group(t) for t in terms) if terms else "true"


def disjunction(terms: Sequence[str]) -> str:
    return " or ".join(_group(t) for t in terms) if terms else "false"


def negation(term: str) -> str:
    return f"({_group(term)} | not)"


def _group(term: str) -> str:
    """Parenthesise a term unless it is one call, one comparison-free word or already grouped."""
    if _is_atom(term):
        return term
    return f"({term})"


def _is_atom(term: str) -> bool:
    if term in ("true", "false"):
        return True
    if term.startswith("(") and _closing(term, 0) == len(term) - 1:
        return True
    head = re.match(r"[A-Za-z_][A-Za-z0-9_]*\(", term)
    return head is not None and _closing(term, head.end() - 1) == len(term) - 1


def _closing(term: str, opening: int) -> int:
    """Index of the parenthesis closing the one at `opening` (strings skipped), or -1."""
    depth = 0
    i = opening
    in_string = False
    while i < len(term):
        c = term[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
