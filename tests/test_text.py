"""Text for people: plurals, "did you mean", terminal-safe values, and cutting to a width."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from tattletail.text import ELLIPSIS, did_you_mean, escape_char, fit, one_line, plural, shorten
from tests.support import HOSTILE


def test_plural_says_1_rule_and_2_rules() -> None:
    assert plural(1, "rule") == "1 rule"
    assert plural(0, "rule") == "0 rules"
    assert plural(2, "match", "matches") == "2 matches"
    assert plural(1, "match", "matches") == "1 match"


def test_did_you_mean_suggests_the_closest_choice_or_nothing() -> None:
    keys = ["name", "jq_match", "destinations", "description"]
    assert did_you_mean("destination", keys) == " (did you mean 'destinations'?)"
    assert did_you_mean("JQ_MATCH", keys) == " (did you mean 'jq_match'?)"
    assert did_you_mean("frobnicate", keys) == ""
    assert did_you_mean(3, keys) == ""


def test_one_line_shows_every_hostile_character_as_an_escape() -> None:
    for hostile in HOSTILE:
        shown = one_line(f"alice{hostile}bob")
        assert shown.isprintable() and shown.startswith("alice") and shown.endswith("bob")
        assert "\x1b" not in shown and "\n" not in shown
    assert one_line("a\nb\x1b[31mc\u202ed") == "a\\nb\\x1b[31mc\\u202ed"
    assert escape_char("\U000e0041") == "\\U000e0041"
    assert one_line("lone \ud800 surrogate") == "lone \\ud800 surrogate"


def test_one_line_leaves_printable_text_alone() -> None:
    text = "arn:aws:iam::123456789012:user/Zoë 用户 (x) \\d"
    assert one_line(text) is text


@given(st.text())
def test_one_line_output_is_always_printable_and_keeps_printable_characters(text: str) -> None:
    shown = one_line(text)
    assert shown.isprintable()
    kept = "".join(c for c in text if c.isprintable())
    # The printable characters survive, in order.
    iterator = iter(shown)
    assert all(c in iterator for c in kept)
    assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in shown)


@given(st.text(), st.integers(0, 300), st.booleans())
def test_shorten_never_exceeds_the_width_and_marks_every_cut(
    text: str, width: int, middle: bool
) -> None:
    cut = shorten(text, width, middle)
    assert len(cut) <= max(width, 0)
    if len(text) <= width:
        assert cut == text
    elif width > 0:
        assert ELLIPSIS in cut


def test_shorten_in_the_middle_keeps_both_ends_of_an_arn() -> None:
    arn = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_AdministratorAccess/alice"
    cut = shorten(arn, 40, middle=True)
    assert len(cut) == 40 and cut.startswith("arn:aws:sts::") and cut.endswith("/alice")


@given(st.lists(st.integers(0, 500), max_size=8), st.integers(0, 400))
def test_fit_stays_within_the_budget_and_cuts_the_longest_first(
    lengths: list[int], budget: int
) -> None:
    widths = fit(lengths, budget)
    assert len(widths) == len(lengths)
    assert all(0 <= w <= n for w, n in zip(widths, lengths, strict=True))
    if sum(lengths) <= budget:
        assert widths == lengths
        return
    # Everything fits, nothing is wasted, and no piece is cut while a longer one stays whole.
    assert sum(widths) == budget
    for a, b in zip(widths, lengths, strict=True):
        if a < b:
            assert all(w <= a + 1 for w in widths)
