"""Redaction: secrets cut out of text whatever encoding they came back in, checked by an outside
decoder (tests/leak_check.py) over every encoding a hostile receiver might use, alone, chained
and mixed character by character; and ordinary text left alone."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tattletail.redaction import REDACTED, Redactor
from tests.leak_check import ENCODERS, encode, forbidden, leaks

URL = "https://hooks.example.com/services/T0HOOKS/B0HOOKS/t0k3nV4lu3abcdef?sig=QueryS1gnature&x=1"
TOKEN = "Zq8w3kT0kenAbcdEfgh"
SIGNING = "s1gn1ng-s3cr3t-v4lue"
SECRETS = (URL, TOKEN, SIGNING, "Bearer h34d3r-t0k3n-xyz")


def redact(text: str, secrets: tuple[str, ...] = SECRETS) -> str:
    return Redactor(secrets).redact(text)


def test_a_url_its_path_a_token_and_a_query_value_are_cut_but_short_words_are_not() -> None:
    text = (
        f"POST {URL} failed; path /services/T0HOOKS/B0HOOKS/t0k3nV4lu3abcdef; "
        "sig=QueryS1gnature; invalid token t0k3nV4lu3abcdef; key Zq8w3kT0kenAbcdEfgh; a b"
    )

    redacted = redact(text)

    assert redacted == (
        f"POST https://hooks.example.com{REDACTED} failed; path {REDACTED}; {REDACTED}; "
        f"invalid token {REDACTED}; key {REDACTED}; a b"
    )


@pytest.mark.parametrize("name", sorted(ENCODERS))
@pytest.mark.parametrize("secret", SECRETS)
def test_every_encoding_of_every_secret_is_cut(name: str, secret: str) -> None:
    echoed = encode(secret, [name], random.Random(name))
    text = f"upstream says: bad request <{echoed}> (see docs)"

    redacted = redact(text)

    assert leaks(redacted, forbidden(SECRETS)) == []
    assert redacted.startswith("upstream says: bad request <")


@pytest.mark.parametrize(
    "echoed",
    [
        URL.replace("/", "\\/"),
        URL.replace("/", "\\u002f").replace("&", "\\u0026"),
        URL.replace("&", "&amp;"),
        URL.replace("/", "&#x2F;"),
        URL.replace("/", "%2F").replace("?", "%3F"),
        URL.replace("/", "%2f"),
        URL.replace("/", "%252F"),
        TOKEN.swapcase(),
        # A token split over two lines, and one after zero-width spaces.
        TOKEN[:9] + "\r\n" + TOKEN[9:],
        "\u200b".join(TOKEN),
        # UTF-16, as a receiver that answers in it (each ASCII byte followed by NUL).
        TOKEN.encode("utf-16-le").decode("latin-1"),
        # Only part of a secret (a receiver that cuts it), and a query value alone.
        "t0k3nV4lu3a",
        "QueryS1gnature",
        "h34d3r-t0k3n",
    ],
)
def test_the_issues_examples_are_cut(echoed: str) -> None:
    redacted = redact(f"error: {echoed}!")

    assert REDACTED in redacted
    assert leaks(redacted, forbidden(SECRETS)) == []


def test_base64_of_a_larger_text_holding_a_secret_is_cut_at_any_alignment() -> None:
    import base64

    for prefix in ("", "x", "xy", "xyz"):
        body = base64.b64encode(f'{prefix}{{"routing_key": "{TOKEN}"}}'.encode()).decode()
        redacted = redact(f"request: {body}; end")
        assert redacted == f"request: {REDACTED}; end"


def test_exact_mode_cuts_whole_values_only() -> None:
    exact = Redactor(SECRETS, partial=False)

    assert exact.redact(f"url={URL}") == f"url={REDACTED}"
    assert exact.redact(f"url={URL.removeprefix('https://')}") == f"url={REDACTED}"
    assert exact.redact(f"path {URL.removeprefix('https://hooks.example.com')}") == (
        f"path {REDACTED}"
    )
    # Ordinary values that share a few characters with a secret stay as they are.
    for text in ("rule AWS services off", "s3://bucket/AWSLogs/us-east-1/x.json.gz", TOKEN[:7]):
        assert exact.redact(text) == text


def test_text_without_secrets_is_unchanged() -> None:
    text = 'channel_not_found {"errors": ["Length of \'routing_key\' is incorrect"]} &amp; 100%'

    assert redact(text) == text


def test_short_secrets_are_not_searched() -> None:
    assert Redactor(["abc", "x"]).redact("abc x") == "abc x"
    assert not Redactor(["abc"])


_TOKEN_CHARS = st.characters(min_codepoint=33, max_codepoint=126)
_UNRESERVED = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@st.composite
def secrets(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        segments = draw(
            st.lists(st.text(_UNRESERVED, min_size=1, max_size=24), min_size=1, max_size=4)
        )
        query = draw(st.text(_UNRESERVED, min_size=0, max_size=24))
        return f"https://hooks.example.com/{'/'.join(segments)}" + (f"?k={query}" if query else "")
    if draw(st.booleans()):
        return draw(st.text(_TOKEN_CHARS, min_size=8, max_size=40))
    # Anything at all: spaces, escapes' own characters, non-ASCII.
    return draw(st.text(st.characters(exclude_categories=["Cs"]), min_size=8, max_size=30))


@settings(
    # A fixed set in CI; TATTLETAIL_FUZZ_EXAMPLES=20000 for a longer, random run.
    max_examples=int(os.environ.get("TATTLETAIL_FUZZ_EXAMPLES", 300)),
    derandomize="TATTLETAIL_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    secret=secrets(),
    chain=st.lists(st.sampled_from(sorted(ENCODERS)), min_size=1, max_size=3),
    seed=st.integers(0, 2**32),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
@example(secret=TOKEN, chain=["mixed", "base64"], seed=1, before="", after="")
@example(
    secret=URL,
    chain=["html_some", "percent_some", "json_unicode_some"],
    seed=2,
    before="",
    after="",
)
def test_property_no_encoding_chain_of_a_secret_survives(
    secret: str, chain: list[str], seed: int, before: str, after: str
) -> None:
    echoed = encode(secret, chain, random.Random(seed))
    text = f"{before} {echoed} {after}"

    redacted = Redactor([secret]).redact(text)

    assert leaks(redacted, forbidden([secret])) == [], (chain, echoed, redacted)
