"""The attacker's side of the secret tests: encodings a hostile receiver may echo a secret in,
and an outside check that no text holds any of them.

The check shares no code with tattletail/redaction.py: it decodes with the standard library
(urllib.parse, html, base64, codecs) and compares every run of WINDOW characters of every
secret's sensitive part (a URL's path, query and user info; any other secret whole), forwards
and reversed, against every decoding of the text, without case or whitespace.
"""

from __future__ import annotations

import base64
import binascii
import html
import random
import re
import unicodedata
from collections.abc import Callable, Iterable
from urllib.parse import quote, unquote, unquote_plus, urlsplit

WINDOW = 8
SHORTEST = 6

Encoder = Callable[[str, random.Random], str]


def _per_char(encode: Callable[[str, random.Random], str], share: float) -> Encoder:
    def apply(text: str, rng: random.Random) -> str:
        return "".join(encode(char, rng) if rng.random() < share else char for char in text)

    return apply


def _percent(char: str, rng: random.Random) -> str:
    encoded = quote(char, safe="")
    if encoded == char:
        encoded = f"%{ord(char):02X}" if ord(char) < 128 else encoded
    return encoded.lower() if rng.random() < 0.5 else encoded


def _html_numeric(char: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"&#{ord(char)};"
    return f"&#{rng.choice('xX')}{ord(char):x};"


def _json_unicode(char: str, rng: random.Random) -> str:
    if ord(char) > 0xFFFF:
        high, low = divmod(ord(char) - 0x10000, 0x400)
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return f"\\u{ord(char):04{rng.choice('xX')}}"


def _mixed(char: str, rng: random.Random) -> str:
    return rng.choice([_percent, _html_numeric, _json_unicode, lambda c, r: c])(char, rng)


def _fullwidth(text: str, rng: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _wrapped(text: str, rng: random.Random) -> str:
    width = rng.randint(4, 16)
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


ENCODERS: dict[str, Encoder] = {
    "raw": lambda s, r: s,
    "upper": lambda s, r: s.upper(),
    "lower": lambda s, r: s.lower(),
    "swapcase": lambda s, r: s.swapcase(),
    "reversed": lambda s, r: s[::-1],
    "json_slash": lambda s, r: s.replace("\\", "\\\\").replace("/", "\\/").replace('"', '\\"'),
    "json_unicode": _per_char(_json_unicode, 1.0),
    "json_unicode_some": _per_char(_json_unicode, 0.4),
    "html_escape": lambda s, r: html.escape(s, quote=True),
    "html_numeric": _per_char(_html_numeric, 1.0),
    "html_some": _per_char(_html_numeric, 0.4),
    "percent": lambda s, r: quote(s, safe=""),
    "percent_lower": lambda s, r: re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(s)),
    "percent_all": _per_char(_percent, 1.0),
    "percent_some": _per_char(_percent, 0.4),
    "mixed": _per_char(_mixed, 0.7),
    "base64": lambda s, r: base64.b64encode(s.encode()).decode(),
    "base64url": lambda s, r: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "base64_wrapped": lambda s, r: _wrapped(base64.b64encode(s.encode()).decode(), r),
    "hex": lambda s, r: s.encode().hex(),
    "hex_upper": lambda s, r: s.encode().hex().upper(),
    "zero_width": lambda s, r: "\u200b".join(s),
    "fullwidth": _fullwidth,
    "wrapped": _wrapped,
}


def encode(text: str, names: Iterable[str], rng: random.Random) -> str:
    for name in names:
        text = ENCODERS[name](text, rng)
    return text


_ASCII_UNSEEN = {code: None for code in [*range(33), 127]}


def _fold(text: str) -> str:
    """Without case, whitespace, control or format characters; NFKC."""
    if text.isascii():
        return text.lower().translate(_ASCII_UNSEEN)
    text = unicodedata.normalize("NFKC", text)
    return "".join(
        c for c in text.lower() if not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf")
    )


def forbidden(secrets: Iterable[str], hosts: bool = False) -> frozenset[str]:
    """Every folded run of WINDOW characters (or whole short secret) that must never show: of
    a URL, its path, query and user info (with `hosts`, its host too)."""
    runs: set[str] = set()
    for secret in secrets:
        material = [secret]
        if secret.startswith(("http://", "https://")):
            parts = urlsplit(secret)
            after = secret.split("://", 1)[1]
            rest = after[len(parts.netloc) :]
            material = [rest if len(rest) >= WINDOW and not hosts else after]
            if "@" in parts.netloc:
                material.append(parts.netloc.rsplit("@", 1)[0])
        for text in material:
            for form in {text, unquote(text)}:
                folded = _fold(form).replace("+", "")
                for each in (folded, folded[::-1]):
                    if len(each) < WINDOW:
                        if len(each) >= SHORTEST:
                            runs.add(each)
                        continue
                    runs.update(each[i : i + WINDOW] for i in range(len(each) - WINDOW + 1))
    return frozenset(runs)


def _json_unescape(text: str) -> str:
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    text = re.sub(
        r"\\([\\/\"'bfnrt])", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), text
    )
    # Surrogate pairs (JSON's way of writing characters beyond the BMP) joined.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


_DECODERS: tuple[Callable[[str], str], ...] = (unquote, unquote_plus, html.unescape, _json_unescape)


def decodings(text: str, passes: int = 3) -> set[str]:
    """`text` and what each decoder, applied up to `passes` times in any order, makes of it."""
    seen = {text}
    frontier = [text]
    for _ in range(passes):
        fresh = []
        for current in frontier:
            for decode in _DECODERS:
                decoded = decode(current)
                if decoded not in seen:
                    seen.add(decoded)
                    fresh.append(decoded)
        frontier = fresh
    return seen


_PRINTABLE_RUN = re.compile(r"[^\x00-\x1f\x7f-\x9f\ufffd]{" + str(WINDOW) + ",}")


def _blobs(text: str) -> Iterable[str]:
    """What the base64 and hex runs in `text` decode to, at every alignment (only decodings
    with WINDOW printable characters in a row: random bytes have none)."""
    compact = (
        text.translate(_ASCII_UNSEEN)
        if text.isascii()
        else "".join(c for c in text if not c.isspace() and unicodedata.category(c) != "Cf")
    )
    decoded: list[bytes] = []
    for run in re.findall(r"[A-Za-z0-9+/_-]{12,}", compact):
        for offset in range(4):
            chunk = run[offset:].replace("-", "+").replace("_", "/")
            try:
                decoded.append(base64.b64decode(chunk[: len(chunk) // 4 * 4]))
            except (binascii.Error, ValueError):
                continue
    for run in re.findall(r"[0-9A-Fa-f]{16,}", compact):
        for offset in range(2):
            chunk = run[offset:]
            decoded.append(bytes.fromhex(chunk[: len(chunk) // 2 * 2]))
    for blob in decoded:
        for text in {blob.decode("utf-8", "replace"), blob.decode("utf-16", "replace")}:
            if _PRINTABLE_RUN.search(text):
                yield text


def leaks(text: str, runs: frozenset[str], depth: int = 3) -> list[str]:
    """The forbidden runs found in any decoding of `text`, and of the base64 or hex in it
    (`depth` levels deep)."""
    short = [run for run in runs if len(run) < WINDOW]
    found: set[str] = set()

    def scan(text: str, passes: int, depth: int) -> None:
        for decoded in decodings(text, passes):
            folded = _fold(decoded).replace("+", "")
            found.update({folded[i : i + WINDOW] for i in range(len(folded) - WINDOW + 1)} & runs)
            found.update(run for run in short if run in folded)
            if depth:
                for blob in _blobs(decoded):
                    scan(blob, 2, depth - 1)

    scan(text, 3, depth)
    return sorted(found)
