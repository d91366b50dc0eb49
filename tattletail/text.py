"""Text for people: counts with their nouns, "did you mean", and values made safe to print.

CloudTrail records are written by whoever calls AWS: a user name, a user agent or a request
parameter may hold a newline, a terminal escape sequence (`\\x1b[2J`, an OSC 8 link, a title
change) or a bidi override that reorders what a reader sees. Anything printed for a person goes
through `one_line`, which shows such characters as escapes instead of letting them act.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

ELLIPSIS = "…"
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """`1 rule`, `0 rules`, `2 matches` (give the plural when it is not noun + "s")."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """` (did you mean 'destinations'?)` when one choice is close to `word`, else ''."""
    if not isinstance(word, str):
        return ""
    options = list(choices)
    folded = {choice.casefold(): choice for choice in options}
    close = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def escape_char(char: str) -> str:
    """A character as the escape that shows it: `\\n`, `\\x1b`, `\\u202e`, `\\U000e0041`."""
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def one_line(text: str) -> str:
    """`text` with every character a terminal could act on or hide shown as an escape: control
    characters (C0, DEL, C1), format characters (bidi overrides and isolates, zero-width
    characters), line and paragraph separators, unusual spaces, private-use, surrogate and
    unassigned code points. The result is one line of printable characters."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else escape_char(char) for char in text)


def shorten(text: str, width: int, middle: bool = False) -> str:
    """`text` cut to at most `width` characters, an ellipsis marking the cut (at the end, or in
    the middle so both ends of an ARN stay readable)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    if not middle:
        return text[: width - 1] + ELLIPSIS
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def fit(lengths: list[int], budget: int) -> list[int]:
    """Widths for pieces of these lengths that sum to at most `budget`: the longest are cut
    first, down to a common level, so no piece is cut while a longer one stays whole."""
    budget = max(0, budget)
    if sum(lengths) <= budget:
        return list(lengths)
    low, high = 0, max(lengths)
    while low < high:  # the highest level at which the pieces fit
        level = (low + high + 1) // 2
        if sum(min(length, level) for length in lengths) <= budget:
            low = level
        else:
            high = level - 1
    widths = [min(length, low) for length in lengths]
    spare = budget - sum(widths)
    for index in sorted(range(len(lengths)), key=lambda n: -lengths[n]):
        if spare <= 0:
            break
        if lengths[index] > widths[index]:
            widths[index] += 1
            spare -= 1
    return widths
