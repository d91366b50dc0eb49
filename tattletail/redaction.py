"""Finding secrets in text, in whatever encoding they came back, and cutting them out.

A receiver's error page may quote what it was sent: the webhook URL, its path, a token on its
own, the routing key; JSON-escaped (`\\/`, `\\u002f`), HTML-escaped (`&amp;`, `&#x2F;`),
percent-encoded (in either case, once or twice), in base64 or hex, upper-cased, reversed, or
only in part. Listing every encoding of every secret cannot keep up with mixes (`%2F` beside
`\\/`), so the text is decoded instead, each character of a decoding remembering which
characters of the original it came from: a pass undoes one kind of escape (percent, HTML
entities, backslash escapes) or all of them at once, and passes follow each other in every
order, up to MAX_PASSES deep (double encodings, HTML around JSON around percent). Every
decoding, the original included, is compared with the secrets without case, whitespace, `+` or
invisible characters, forwards and reversed; base64 and hex runs are decoded at every alignment
(MAX_BLOB_DEPTH levels deep) and searched the same way. What matches is cut out of the original.

Two strengths:

- `partial=True`, for error texts: any WINDOW consecutive characters of a secret's sensitive
  part (a URL's user info, path, query and fragment; all of any other secret) count, so a
  token on its own, a path segment or query value of WINDOW or more characters, or a secret
  cut short are all found. Over-redaction of a few ordinary words (a Slack URL's `services`)
  is the accepted cost. With `hosts=True`, for the text a receiver sent, a URL's host counts
  too (it may quote itself; error texts of our own name AWS endpoints, which must stay).
- `partial=False`, the safety net for log lines: only whole secrets, a URL without its scheme,
  and a URL's path and query, so ordinary values (rule names, object keys) are never touched;
  escapes are undone but base64 is not looked into (no log line encodes a secret: the texts
  they quote from outside were cut in partial mode first), which keeps it cheap enough for
  every record of every library.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

REDACTED = "[redacted]"
# What stands for a cut when a secret shares characters with REDACTED (the marker must not
# itself show part of a secret): one character no secret is expected to hold.
_FALLBACK_MARKERS = ("\u2588", "\ufffc")
# A run of this many characters of a secret is a leak (a token, a path segment, a query value).
WINDOW = 8
# A secret shorter than WINDOW is searched whole, down to this length; shorter ones would blank
# out ordinary words.
MIN_CHARS = 6
# Decoding passes: a double percent-encoding needs two, HTML around JSON around percent three.
MAX_PASSES = 4
# Decodings kept of one text (each pass may undo any one kind of escape, or all at once).
MAX_LAYERS = 48
# base64 inside base64 (or hex inside base64) is decoded this many levels deep.
MAX_BLOB_DEPTH = 3

_PERCENT = r"%[0-9A-Fa-f]{2}"
_HTML = r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?"
# A backslash escape is decoded only when complete and known (JSON's, JavaScript's, Python's):
# `\u00` followed by `&#51;` is left for a later pass to finish once the HTML is undone.
_BACKSLASHED = (
    r"\\(?:u\{[0-9A-Fa-f]{1,6}\}|u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|[0-3][0-7]{2}|[bfnrtv\\/\"'`])"
)
# Which kinds of escape one pass undoes: each alone (the order of nested encodings matters
# when one decodes into the other's escape character), or all together (mixes).
_PASSES = (
    ("%", re.compile(_PERCENT)),
    ("&", re.compile(_HTML)),
    ("\\", re.compile(_BACKSLASHED)),
    # What a naive reader does: `\uXXXX` undone wherever it is, even after an escaped `\`.
    ("\\", re.compile(r"\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2})")),
    ("%&\\", re.compile(f"{_PERCENT}|{_HTML}|{_BACKSLASHED}")),
)
_BACKSLASH = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v"}
# Runs may continue over whitespace (base64 wrapped at some width).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-](?:\s*[A-Za-z0-9+/_-]){11,}(?:\s*=){0,2}")
_HEX_RUN = re.compile(r"[0-9A-Fa-f](?:\s*[0-9A-Fa-f]){15,}")
_URLSAFE = str.maketrans("-_", "+/")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ASCII_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# What the comparison leaves out of ASCII text: whitespace, `+`, control characters.
_ASCII_DROPPED = frozenset([*map(chr, range(33)), "+", "\x7f"])
# Needles of one length searched one by one up to this many; beyond, a window slides.
_FEW_NEEDLES = 16

Span = tuple[int, int]


class _Layer:
    """A decoding of the original text: `text[i]` came from `original[spans[i][0]:spans[i][1]]`.
    Invisible characters (NULs of UTF-16 read as UTF-8, zero-width spaces) are left out: they
    only break matches up. Whitespace is kept until the comparison: it separates escapes."""

    __slots__ = ("spans", "text")

    def __init__(self, text: str, spans: list[Span]) -> None:
        self.text = text
        self.spans = spans

    @classmethod
    def of(cls, text: str) -> _Layer:
        if text.isascii() and not _ASCII_INVISIBLE.search(text):
            return cls(text, [(index, index + 1) for index in range(len(text))])
        chars, spans = [], []
        for index, char in enumerate(text):
            if not _invisible(char):
                chars.append(char)
                spans.append((index, index + 1))
        return cls("".join(chars), spans)

    def decoded(self, escapes: re.Pattern[str]) -> _Layer | None:
        """One pass of these escapes undone, or None when there was none."""
        text, spans = self.text, self.spans
        chars: list[str] = []
        out: list[Span] = []
        position = 0
        found = False
        for match in escapes.finditer(text):
            start, end = match.span()
            if start < position:
                continue
            decoded = _unescape(text, match)
            if decoded is None:
                continue
            found = True
            _copy(text, spans, position, start, chars, out)
            value, end = decoded
            span = (spans[start][0], spans[end - 1][1])
            for char in value:
                if not _invisible(char):
                    chars.append(char)
                    out.append(span)
            position = end
        if not found:
            return None
        _copy(text, spans, position, len(text), chars, out)
        return _Layer("".join(chars), out)


def _copy(
    text: str, spans: list[Span], start: int, end: int, chars: list[str], out: list[Span]
) -> None:
    chars.append(text[start:end])
    out.extend(spans[start:end])


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf") and not char.isspace()


def _unescape(text: str, match: re.Match[str]) -> tuple[str, int] | None:
    """The character(s) an escape stands for and where the escape ends; a run of `%XX` is
    decoded as UTF-8 together."""
    token = match.group()
    if token[0] == "%":
        end = match.start()
        raw = bytearray()
        while end + 3 <= len(text) and text[end] == "%" and _is_hex(text[end + 1 : end + 3]):
            raw.append(int(text[end + 1 : end + 3], 16))
            end += 3
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        return decoder.decode(bytes(raw), final=True), end
    if token[0] == "&":
        value = html.unescape(token)
        return (value, match.end()) if value != token else None
    kind = token[1]
    if kind == "u" and len(token) > 2:
        code = int(token[3:-1] if token[2] == "{" else token[2:], 16)
        end = match.end()
        # A UTF-16 surrogate pair, as JSON writes characters beyond the BMP.
        if 0xD800 <= code < 0xDC00 and text[end : end + 2] == "\\u":
            low = text[end + 2 : end + 6]
            if _is_hex(low) and 0xDC00 <= int(low, 16) < 0xE000:
                code = 0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                end += 6
        return (chr(code) if code < 0x110000 else "\ufffd"), end
    if kind == "x":
        return chr(int(token[2:], 16)), match.end()
    if kind.isdigit() and len(token) == 4:
        return chr(int(token[1:], 8)), match.end()
    return _BACKSLASH.get(kind, kind), match.end()


def _is_hex(text: str) -> bool:
    return bool(text) and all(char in _HEX_DIGITS for char in text)


def _canonical(layer: _Layer) -> tuple[str, list[int]]:
    """The layer without case or `+` (a space in a form), each character's index in the layer;
    NFKC folds full-width and compatibility forms."""
    text = layer.text
    if text.isascii():
        lowered = text.lower()
        kept = [i for i, char in enumerate(lowered) if char not in _ASCII_DROPPED]
        return "".join([lowered[i] for i in kept]), kept
    chars: list[str] = []
    index: list[int] = []
    for position, char in enumerate(text):
        folded = char.lower() if char.isascii() else unicodedata.normalize("NFKC", char).lower()
        for each in folded:
            if each != "+" and not each.isspace() and not _invisible(each):
                chars.append(each)
                index.append(position)
    return "".join(chars), index


def canonical(text: str) -> str:
    """`text` as the matcher compares it."""
    return _canonical(_Layer.of(text))[0]


def _layers(text: str) -> list[_Layer]:
    """The text and its decodings: up to MAX_PASSES passes, in every order (see _PASSES)."""
    layers = [_Layer.of(text)]
    seen = {layers[0].text}
    frontier = layers[:]
    for _ in range(MAX_PASSES):
        fresh = []
        for layer in frontier:
            for triggers, escapes in _PASSES:
                if not any(char in layer.text for char in triggers):
                    continue
                decoded = layer.decoded(escapes)
                if decoded is None or decoded.text in seen or len(layers) >= MAX_LAYERS:
                    continue
                seen.add(decoded.text)
                layers.append(decoded)
                fresh.append(decoded)
        frontier = fresh
    return layers


class Redactor:
    """Finds and cuts out a fixed set of secrets (see the module's docstring)."""

    def __init__(
        self, secrets: Iterable[str], *, partial: bool = True, hosts: bool = False
    ) -> None:
        self.partial = partial
        needles: set[str] = set()
        for secret in secrets:
            for form in {secret, _fully_decoded(secret)}:
                for part in _sensitive_parts(form, partial, hosts):
                    needles.update(_needles(canonical(part), partial))
        by_length: dict[int, set[str]] = {}
        for needle in needles:
            by_length.setdefault(len(needle), set()).add(needle)
        self._by_length = {length: frozenset(group) for length, group in by_length.items()}
        self.marker = _marker(needles)

    def __bool__(self) -> bool:
        return bool(self._by_length)

    def spans(self, text: str) -> list[Span]:
        """Where in `text` a secret was found (merged, in order)."""
        if not self._by_length or not text:
            return []
        return _merge(self._find(text, MAX_BLOB_DEPTH if self.partial else 0))

    def found_in(self, text: str) -> bool:
        return bool(self.spans(text))

    def redact(self, text: str, keep: int | None = None) -> str:
        """`text` with every secret found replaced by the marker; with `keep`, only its first
        `keep` characters (searched with what follows them, so a secret cut there is found)."""
        keep = len(text) if keep is None else keep
        pieces = []
        position = 0
        for start, end in self.spans(text):
            if start >= keep:
                break
            pieces.append(text[position:start])
            pieces.append(self.marker)
            position = end
        pieces.append(text[position:keep])
        return "".join(pieces)

    def _find(self, text: str, depth: int) -> list[Span]:
        found: list[Span] = []
        for layer in _layers(text):
            folded, index = _canonical(layer)
            for start, end in self._matches(folded):
                found.append((layer.spans[index[start]][0], layer.spans[index[end - 1]][1]))
            if depth > 0:
                found.extend(self._blobs(layer, depth))
        return found

    def _matches(self, folded: str) -> Iterable[Span]:
        for length, needles in self._by_length.items():
            if len(needles) <= _FEW_NEEDLES:
                for needle in needles:
                    start = folded.find(needle)
                    while start != -1:
                        yield start, start + length
                        start = folded.find(needle, start + 1)
                continue
            for start in range(len(folded) - length + 1):
                if folded[start : start + length] in needles:
                    yield start, start + length

    def _blobs(self, layer: _Layer, depth: int) -> list[Span]:
        """Runs of base64 or hex in the layer that decode (at some alignment) to text holding a
        secret: the whole run is cut. A run continues over whitespace (wrapped base64), so words
        glued to it by spaces alone go with it: a few words lost, rather than part of a secret
        left behind."""
        found: list[Span] = []
        text = layer.text
        for pattern, decode, alignments in (
            (_BASE64_RUN, _from_base64, 4),
            (_HEX_RUN, _from_hex, 2),
        ):
            for match in pattern.finditer(text):
                run = "".join(match.group().split())
                for offset in range(alignments):
                    blob = decode(run[offset:])
                    if blob and self._find(blob.decode("utf-8", "replace"), depth - 1):
                        start, end = match.span()
                        found.append((layer.spans[start][0], layer.spans[end - 1][1]))
                        break
        return found


def _from_base64(run: str) -> bytes:
    run = run.rstrip("=").translate(_URLSAFE)
    run = run[: len(run) - len(run) % 4] if len(run) % 4 == 1 else run + "=" * (-len(run) % 4)
    try:
        return base64.b64decode(run)
    except (binascii.Error, ValueError):
        return b""


def _from_hex(run: str) -> bytes:
    return bytes.fromhex(run[: len(run) - len(run) % 2])


def _fully_decoded(text: str) -> str:
    """`text` with every escape undone, pass after pass, until none is left."""
    layer = _Layer.of(text)
    for _ in range(MAX_PASSES):
        decoded = layer.decoded(_PASSES[-1][1])
        if decoded is None:
            break
        layer = decoded
    return layer.text


def _sensitive_parts(secret: str, partial: bool, hosts: bool = False) -> list[str]:
    """What of a secret must not be shown. A URL: its user info, and its path, query and
    fragment, or, when those are too short to hold the credential (a Lambda function URL) or
    with `hosts`, all but the scheme; in exact mode also the URL whole and without its scheme.
    Any other secret: all of it."""
    scheme, separator, after = secret.partition("://")
    if not separator or not scheme.isalpha():
        return [secret]
    netloc = re.split(r"[/?#]", after, maxsplit=1)[0]
    rest = after[len(netloc) :]
    user_info = netloc.rpartition("@")[0]
    parts = [user_info] if user_info else []
    parts.append(rest if len(canonical(rest)) >= WINDOW and not hosts else after)
    return parts if partial else [secret, after, *parts]


def _needles(folded: str, partial: bool) -> set[str]:
    if len(folded) < MIN_CHARS:
        return set()
    if not partial or len(folded) <= WINDOW:
        return {folded, folded[::-1]} if partial else {folded}
    reverse = folded[::-1]
    return {
        text[start : start + WINDOW]
        for text in (folded, reverse)
        for start in range(len(text) - WINDOW + 1)
    }


def _marker(needles: set[str]) -> str:
    """REDACTED, unless a secret could show through it: a window across its edge holds `[` or
    `]`, one inside it is a piece of it."""
    folded = canonical(REDACTED)
    if not any("[" in needle or "]" in needle or needle in folded for needle in needles):
        return REDACTED
    for marker in _FALLBACK_MARKERS:
        if not any(marker in needle for needle in needles):
            return marker
    return _FALLBACK_MARKERS[0]


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@lru_cache(maxsize=64)
def redactor(secrets: frozenset[str], partial: bool = True, hosts: bool = False) -> Redactor:
    """A Redactor for these secrets (built once per set: the needles take a moment)."""
    return Redactor(secrets, partial=partial, hosts=hosts)


# Every secret value this process has used, for the safety net on log lines.
_remembered: frozenset[str] = frozenset()


def remember(value: str) -> None:
    """Note a secret value the process now holds (SecretResolver calls this)."""
    global _remembered
    if value and value not in _remembered:
        _remembered = _remembered | {value}


def remembered() -> frozenset[str]:
    return _remembered
