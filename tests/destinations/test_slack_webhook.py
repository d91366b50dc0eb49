"""`slack_webhook`: the Block Kit rendering within Slack's limits, and real POSTs to the local
stand-in that answers like Slack's incoming webhooks. The webhook URL is a credential: no error
message or repr may carry it."""

from __future__ import annotations

import json
import socket
from typing import Any

import orjson
import pytest

from tattletail.destinations import DeliveryError, DestinationConfigError
from tattletail.destinations.slack_webhook import (
    RECORD_SECTIONS,
    SEVERITY_MARKERS,
    SlackWebhookDestination,
    escape,
    render,
)
from tattletail.secret import Secret
from tests.destinations.destination_support import (
    CREATE_USER,
    assert_is_marker,
    delivery,
    json_size,
    largest_real_records,
    make_alert,
    synthetic_record,
)
from tests.support import SlackStandIn

# Slack's documented limits: a section's text 3,000 characters, a field's 2,000, a header's 150,
# 50 blocks per message.
SECTION_TEXT_LIMIT = 3000
FIELD_TEXT_LIMIT = 2000
HEADER_TEXT_LIMIT = 150
MAX_BLOCKS = 50


def section_texts(body: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in body["blocks"] if b["type"] == "section" and "text" in b]


def field_texts(body: dict[str, Any]) -> list[str]:
    return [f["text"] for b in body["blocks"] for f in b.get("fields", [])]


def context_texts(body: dict[str, Any]) -> list[str]:
    return [e["text"] for b in body["blocks"] if b["type"] == "context" for e in b["elements"]]


def header_text(body: dict[str, Any]) -> str:
    [header] = [b["text"]["text"] for b in body["blocks"] if b["type"] == "header"]
    return header


def utf16_length(text: str) -> int:
    # Slack counts characters as JavaScript does: an emoji is two.
    return len(text.encode("utf-16-le")) // 2


def assert_within_slack_limits(body: dict[str, Any]) -> None:
    assert len(body["blocks"]) <= MAX_BLOCKS
    assert 0 < utf16_length(header_text(body)) <= HEADER_TEXT_LIMIT
    assert all(0 < utf16_length(text) <= SECTION_TEXT_LIMIT for text in section_texts(body))
    assert all(0 < utf16_length(text) <= FIELD_TEXT_LIMIT for text in field_texts(body))
    assert all(0 < utf16_length(text) <= FIELD_TEXT_LIMIT for text in context_texts(body))


def code_of(text: str) -> str:
    """The code inside a section's ``` fences."""
    return text[text.index("```") + 3 : text.rindex("```")]


def record_code(body: dict[str, Any]) -> str:
    """The record as shown: the code of the record sections, joined back together."""
    texts = section_texts(body)
    first = next(i for i, t in enumerate(texts) if t.startswith("*CloudTrail Record*"))
    return "\n".join(code_of(t) for t in texts[first:])


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_blocks_carry_name_description_match_and_the_whole_small_record() -> None:
    body = render(make_alert())

    assert body["text"] == "Tattletail: Create User"
    assert header_text(body) == f"{SEVERITY_MARKERS['medium']} Create User"
    assert field_texts(body) == [
        "*Alert Name*\nCreate User",
        f"*Event*\nCreateUser {CREATE_USER['eventID']}",
    ]
    assert "*Description*\nA new IAM user has been created" in section_texts(body)
    assert '*Match*\n```"username: user1"```' in section_texts(body)
    pretty = orjson.dumps(CREATE_USER, option=orjson.OPT_INDENT_2).decode()
    assert section_texts(body)[-1] == f"*CloudTrail Record*\n```{pretty}```"
    assert "truncated" not in json.dumps(body)
    assert_within_slack_limits(body)


@pytest.mark.parametrize(
    ("severity", "marker"),
    [
        ("critical", "\N{LARGE RED CIRCLE}"),
        ("high", "\N{LARGE ORANGE CIRCLE}"),
        ("medium", "\N{LARGE YELLOW CIRCLE}"),
        ("low", "\N{LARGE BLUE CIRCLE}"),
        ("info", "\N{MEDIUM WHITE CIRCLE}"),
    ],
)
def test_severity_colours_the_header_and_is_named_in_the_context(
    severity: str, marker: str
) -> None:
    body = render(make_alert(severity=severity))

    assert header_text(body).startswith(marker + " ")
    assert f"*Severity:* {marker} {severity}" in context_texts(body)


def test_title_tags_and_runbook_are_shown_beside_the_rule_name() -> None:
    body = render(
        make_alert(
            title="user1 created by admin",
            tags=("iam", "persistence"),
            runbook="https://wiki.example.com/runbooks/create-user",
        )
    )

    # The header shows the rule's title; the fallback text too; the name stays a field.
    assert header_text(body).endswith(" user1 created by admin")
    assert body["text"] == "Tattletail: user1 created by admin"
    assert field_texts(body)[0] == "*Alert Name*\nCreate User"
    assert context_texts(body) == [
        f"*Severity:* {SEVERITY_MARKERS['medium']} medium",
        "*Tags:* `iam` `persistence`",
        "*Runbook:* <https://wiki.example.com/runbooks/create-user|"
        "https://wiki.example.com/runbooks/create-user>",
        "*Source:* s3://trail-bucket/AWSLogs/1.json.gz",
    ]


def test_mrkdwn_control_characters_are_escaped_and_fences_cannot_be_closed_early() -> None:
    record = {**CREATE_USER, "userAgent": "<script>alert(1)</script> & ```oops```"}

    body = render(make_alert(record=record, description="a <b>bold</b> & claim"))

    assert "*Description*\na &lt;b&gt;bold&lt;/b&gt; &amp; claim" in section_texts(body)
    code = record_code(body)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; ``\u200b`oops``\u200b`" in code
    assert "<script>" not in json.dumps(body)
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


@pytest.mark.parametrize("record", largest_real_records(), ids=lambda r: r["eventName"])
def test_the_largest_real_records_are_shown_whole_split_over_sections(
    record: dict[str, Any],
) -> None:
    body = render(make_alert(record=record))

    pretty = orjson.dumps(record, option=orjson.OPT_INDENT_2).decode()
    assert unescape(record_code(body)) == pretty
    assert "truncated" not in json.dumps(body)
    assert_within_slack_limits(body)


def test_record_is_whole_up_to_what_the_sections_hold_and_marked_one_line_past_it() -> None:
    def record(lines: int) -> dict[str, Any]:
        return {**CREATE_USER, "requestParameters": {f"k{n:05}": "v" * 40 for n in range(lines)}}

    def whole(lines: int) -> bool:
        return "truncated" not in json.dumps(render(make_alert(record=record(lines))))

    # The largest record (in lines of ~55 characters) that is still shown whole.
    low, high = 1, 1000
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if whole(middle) else (low, middle - 1)

    fits, over = render(make_alert(record=record(low))), render(make_alert(record=record(low + 1)))
    pretty = orjson.dumps(record(low), option=orjson.OPT_INDENT_2).decode()
    assert unescape(record_code(fits)) == pretty
    assert len(pretty) > (RECORD_SECTIONS - 1) * SECTION_TEXT_LIMIT  # every section was used
    assert any(t.startswith("*CloudTrail Record* (truncated") for t in section_texts(over))
    assert_within_slack_limits(fits)
    assert_within_slack_limits(over)


@pytest.mark.parametrize("size", [50_000, 1_000_000])
def test_record_too_large_for_slack_becomes_the_marker_then_an_excerpt(size: int) -> None:
    record = synthetic_record(size)

    body = render(make_alert(record=record))

    texts = section_texts(body)
    [head] = [t for t in texts if t.startswith("*CloudTrail Record*")]
    assert head.startswith(f"*CloudTrail Record* (truncated: {json_size(record):,} bytes")
    assert_is_marker(orjson.loads(unescape(code_of(head))), record)
    excerpt = [t for t in texts if t.startswith("*Record excerpt*")]
    assert len(excerpt) == 1
    last = texts[-1]
    assert last.endswith("… (truncated)```")
    assert len(texts) - texts.index(head) == RECORD_SECTIONS
    # Name, description, match and eventID are untouched.
    assert field_texts(body) == [
        "*Alert Name*\nCreate User",
        f"*Event*\nCreateUser {CREATE_USER['eventID']}",
    ]
    assert "*Description*\nA new IAM user has been created" in texts
    assert '*Match*\n```"username: user1"```' in texts
    assert_within_slack_limits(body)
    # Deterministic: the same alert renders the same bytes.
    assert orjson.dumps(render(make_alert(record=record))) == orjson.dumps(body)


def test_big_annotation_is_split_then_cut_with_a_marker() -> None:
    body = render(make_alert(match={"policy": "B" * 10_000}))

    texts = section_texts(body)
    first = next(i for i, t in enumerate(texts) if t.startswith("*Match*"))
    record = next(i for i, t in enumerate(texts) if t.startswith("*CloudTrail Record*"))
    matches = texts[first:record]
    assert matches[0].startswith('*Match*\n```{\n  "policy": "BBBB')
    assert len(matches) == 2
    assert matches[-1].endswith("… (truncated)```")
    assert_within_slack_limits(body)


def test_plain_select_rule_has_no_match_block() -> None:
    body = render(make_alert(match=None))

    assert not any(t.startswith("*Match*") for t in section_texts(body))
    assert section_texts(body)[-1].startswith("*CloudTrail Record*")


def test_empty_description_huge_name_and_long_description_still_make_a_valid_message() -> None:
    body = render(make_alert(name="N" * 5000, description=""))

    assert_within_slack_limits(body)
    assert field_texts(body)[0].startswith("*Alert Name*\nNNNN")
    assert field_texts(body)[0].endswith("… (truncated)")
    assert "*Description*\n_(none)_" in section_texts(body)

    long = render(make_alert(description="word " * 1000))
    description = [t for t in section_texts(long) if "word word" in t]
    assert len(description) == 2
    assert "".join(description).count("word") == 1000
    assert_within_slack_limits(long)


def test_repr_and_str_of_the_destination_hide_the_url() -> None:
    url = "https://hooks.slack.com/services/T000/B000/s3cr3tt0k3n"
    destination = SlackWebhookDestination.from_config("Slack Warnings", {"webhook_url": url})

    assert "s3cr3tt0k3n" not in repr(destination)
    assert "s3cr3tt0k3n" not in str(destination)
    assert destination.webhook_url.reveal() == url


def test_webhook_url_may_be_a_reference_shown_by_name_only() -> None:
    destination = SlackWebhookDestination.from_config(
        "Slack Warnings", {"webhook_url": "ssm:/tattletail/slack"}
    )

    assert destination.webhook_url.reference == "ssm:/tattletail/slack"
    assert "ssm:/tattletail/slack" in repr(destination)


def test_default_rate_is_slacks_one_message_a_second_and_can_be_overridden() -> None:
    url = {"webhook_url": "https://hooks.slack.com/services/T/B/X"}

    assert SlackWebhookDestination.build("S", url).rate() == (1.0, 3)
    assert SlackWebhookDestination.build("S", {**url, "rate_limit": 5, "rate_burst": 1}).rate() == (
        5.0,
        1,
    )


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "destination.webhook_url must be set"),
        ({"webhook_url": "hooks.slack.com/services/T/B/X"}, "must be an http(s) URL"),
        ({"webhook_url": "env:"}, "`env:` must be followed by a name"),
        ({"webhook_url": "env:NOT A NAME"}, "is not an environment variable name"),
    ],
)
def test_config_without_an_http_url_is_rejected(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(DestinationConfigError) as raised:
        SlackWebhookDestination.from_config("Slack Warnings", settings)

    assert problem in str(raised.value)


def destination_for(url: str) -> SlackWebhookDestination:
    return SlackWebhookDestination(id="Slack Warnings", webhook_url=Secret(url))


def assert_url_absent(message: str, url: str) -> None:
    token = url.rsplit("/", 1)[1]
    assert url not in message
    assert token not in message
    assert "/services/" not in message
    assert "127.0.0.1" not in message


async def test_send_posts_the_rendered_message(slack: SlackStandIn) -> None:
    alert = make_alert()

    async with delivery() as context:
        await destination_for(slack.url).send(alert, context)

    assert slack.received() == [{"body": render(alert), "status": 200}]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (403, False), (404, False), (410, False), (429, True), (500, True), (503, True)],
)
async def test_error_status_raises_delivery_error_without_the_url(
    slack: SlackStandIn, status: int, retryable: bool
) -> None:
    slack.fail_next(status)

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination_for(slack.url).send(make_alert(), context)

    message = str(raised.value)
    assert f"HTTP {status}" in message
    assert_url_absent(message, slack.url)
    assert raised.value.__cause__ is None
    # Rate limiting and server errors are worth retrying; other client errors never succeed.
    assert raised.value.retryable is retryable
    assert raised.value.retry_after is None


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("soon", None)])
async def test_rate_limited_answer_carries_slacks_retry_after(
    slack: SlackStandIn, header: str, seconds: float | None
) -> None:
    slack.fail_next(429, headers={"Retry-After": header})

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination_for(slack.url).send(make_alert(), context)

    assert raised.value.retryable
    assert raised.value.retry_after == seconds


async def test_connection_refused_raises_delivery_error_without_the_url() -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T0000/B0000/c0nn3ct10nr3fus3d"

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination_for(url).send(make_alert(), context)

    message = str(raised.value)
    assert message.startswith("slack webhook request failed")
    assert_url_absent(message, url)
    # Not even kept out of sight: the error holds no reference to aiohttp's, which has the URL.
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert raised.value.retryable  # a refused connection may be a blip


async def test_webhook_url_from_the_environment_is_resolved_once_and_never_shown(
    slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TATTLETAIL_TEST_SLACK_URL", slack.url)
    destination = SlackWebhookDestination.from_config(
        "Slack Warnings", {"webhook_url": "env:TATTLETAIL_TEST_SLACK_URL"}
    )

    async with delivery() as context:
        await destination.send(make_alert(), context)
        # Changed after the first send: the container keeps the value it resolved.
        monkeypatch.setenv("TATTLETAIL_TEST_SLACK_URL", "http://127.0.0.1:9/elsewhere")
        await destination.send(make_alert(), context)

    assert [request["status"] for request in slack.received()] == [200, 200]
    assert slack.url not in repr(destination)


async def test_a_refused_webhook_url_is_looked_up_again_at_the_next_send(
    slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first URL was deleted in Slack (404 no_service); the variable now holds a new one.
    monkeypatch.setenv("TATTLETAIL_TEST_SLACK_URL", slack.url + "/gone")
    destination = SlackWebhookDestination.from_config(
        "Slack Warnings", {"webhook_url": "env:TATTLETAIL_TEST_SLACK_URL"}
    )

    async with delivery() as context:
        with pytest.raises(DeliveryError, match="HTTP 404") as raised:
            await destination.send(make_alert(), context)
        assert raised.value.retryable is False
        monkeypatch.setenv("TATTLETAIL_TEST_SLACK_URL", slack.url)
        await destination.send(make_alert(), context)

    assert [request["status"] for request in slack.received()] == [200]


async def test_unresolvable_webhook_url_is_a_permanent_error_naming_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TATTLETAIL_TEST_SLACK_URL", raising=False)
    destination = SlackWebhookDestination.from_config(
        "Slack Warnings", {"webhook_url": "env:TATTLETAIL_TEST_SLACK_URL"}
    )

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination.send(make_alert(), context)

    assert str(raised.value) == (
        "secret env:TATTLETAIL_TEST_SLACK_URL could not be resolved: the variable is not set"
    )
    assert raised.value.retryable is False
