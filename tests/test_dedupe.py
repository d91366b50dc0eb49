"""Deduplication against a real (moto) DynamoDB over HTTP: the table deploy/template.yaml
creates gives exactly-once delivery; a table that refuses the item (the wrong key schema, no
such table, access denied under moto's IAM) or a role without the template's actions is an
ERROR naming the table and the key it must have, counted in DedupeErrors, and the alert is
still sent (at least once, never silently skipped)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.core.authorization import enable_iam_authentication

from tattletail import dedupe, metrics
from tattletail.aws import AwsClients
from tattletail.dedupe import DedupeTable
from tattletail.destinations import DeliveryContext
from tattletail.destinations.webhook import WebhookDestination
from tattletail.dispatch import DeliveryIncomplete, DeliveryPolicy, Dispatcher
from tattletail.retry import Backoff
from tattletail.summary import RunSummary
from tests.deploy_support import statements, template
from tests.destinations.destination_support import make_alert
from tests.destinations.http_stand_in import HttpStandIn, Reply
from tests.support import Moto

TABLE = "tattletail-dedupe"
POLICY = DeliveryPolicy(
    concurrency=4,
    send_timeout=5.0,
    retries=1,
    retry_budget=5.0,
    backoff=Backoff(0.001, 0.002),
    flood_threshold=100,
)


def template_table(moto: Moto) -> None:
    """The dedupe table exactly as deploy/template.yaml declares it (parameters at their
    defaults)."""
    properties = template()["Resources"]["DedupeTable"]["Properties"]
    parameters = template()["Parameters"]

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return parameters[value["Ref"]].get("Default")
        if isinstance(value, dict):
            return {key: resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    moto.client("dynamodb").create_table(
        TableName=TABLE,
        KeySchema=resolve(properties["KeySchema"]),
        AttributeDefinitions=resolve(properties["AttributeDefinitions"]),
        BillingMode=properties["BillingMode"],
    )


def keyed_table(moto: Moto, key: str) -> None:
    moto.client("dynamodb").create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def deliver(moto: Moto, url: str, times: int = 1) -> RunSummary:
    """One alert to a webhook, `times` times over (a retried invocation), with the dedupe
    table; the summary of all of them."""
    hook = WebhookDestination.from_config("Hook", {"url": url})
    summary = RunSummary()

    async def run() -> None:
        aws = AwsClients(moto.endpoint)
        context = DeliveryContext(aws, POLICY.send_timeout)
        table = DedupeTable(TABLE, claim_seconds=900, retention_seconds=3600)
        try:
            for _ in range(times):
                dispatcher = Dispatcher({"Hook": hook}, context, summary, POLICY, dedupe=table)
                await dispatcher.deliver(make_alert(destinations=("Hook",)))
                with contextlib.suppress(DeliveryIncomplete):  # counted in the summary
                    await dispatcher.finish()
        finally:
            await context.close()
            await aws.close()

    asyncio.run(run())
    return summary


@pytest.fixture
def receiver() -> Iterator[HttpStandIn]:
    with HttpStandIn.running(Reply(200)) as stand_in:
        yield stand_in


@pytest.fixture
def errors() -> Iterator[list[dict[str, Any]]]:
    """Tattletail's `dedupe_failed` records, as their level and fields."""
    found: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "dedupe_failed":
                found.append({"level": record.levelname, **record.fields})  # type: ignore[attr-defined]

    logger = logging.getLogger("tattletail")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield found
    logger.removeHandler(handler)
    logger.setLevel(level)


def dedupe_metric(summary: RunSummary) -> int:
    totals = metrics.documents(summary, "tattletail", timestamp_ms=0)[0]
    return totals["DedupeErrors"]


def test_the_templates_table_delivers_a_retried_alert_once(
    moto: Moto, receiver: HttpStandIn, errors: list[dict[str, Any]]
) -> None:
    template_table(moto)

    summary = deliver(moto, receiver.url(), times=2)

    assert len(receiver.received()) == 1
    assert (summary.alerts_sent, summary.alerts_deduplicated) == (1, 1)
    assert summary.dedupe_errors == 0 and errors == []
    [item] = moto.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert item[dedupe.KEY]["S"] == make_alert().alert_id("Hook")
    assert item["state"]["S"] == "sent" and dedupe.TTL_ATTRIBUTE in item


@pytest.mark.parametrize(
    ("table", "code", "check"),
    [
        ("keyed_id", "ValidationException", "partition key must be the string attribute"),
        ("missing", "ResourceNotFoundException", "no such table"),
    ],
)
def test_a_table_that_refuses_the_item_is_an_error_naming_it_and_the_alert_is_sent(
    moto: Moto,
    receiver: HttpStandIn,
    errors: list[dict[str, Any]],
    table: str,
    code: str,
    check: str,
) -> None:
    if table == "keyed_id":
        keyed_table(moto, "id")  # what deploy/template.yaml used to create

    summary = deliver(moto, receiver.url())

    assert len(receiver.received()) == 1 and summary.alerts_sent == 1
    [error] = errors
    assert error["level"] == "ERROR"
    assert (error["table"], error["key"], error["operation"]) == (TABLE, "alert_id", "claim")
    assert error["error_code"] == code and check in error["check"]
    assert error["consequence"] == "sent without deduplication"
    assert summary.dedupe_errors == 1 and dedupe_metric(summary) == 1


@contextmanager
def function_role(
    moto: Moto, monkeypatch: pytest.MonkeyPatch, actions: list[str]
) -> Iterator[None]:
    """Tattletail's AWS calls made as an IAM user allowed only `actions`, with moto checking
    every request against its policy (moto matches actions, not resources)."""
    iam = moto.client("iam")
    iam.create_user(UserName="tattletail")
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }
    iam.put_user_policy(UserName="tattletail", PolicyName="p", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName="tattletail")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with enable_iam_authentication():
        yield


def template_dedupe_actions() -> list[str]:
    [statement] = [s for s in statements() if s.get("Sid") == "DedupeTable"]
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_the_templates_dedupe_actions_are_all_the_code_needs(
    moto: Moto,
    receiver: HttpStandIn,
    errors: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template_table(moto)
    # A receiver that fails the first send (the claim is released) and takes the second.
    receiver.reply_next(400)

    with function_role(moto, monkeypatch, template_dedupe_actions()):
        failed = deliver(moto, receiver.url())
        sent = deliver(moto, receiver.url(), times=2)

    assert failed.alerts_failed == 1
    assert (sent.alerts_sent, sent.alerts_deduplicated) == (1, 1)
    assert errors == []
    assert [request.status for request in receiver.received()] == [400, 200]


def test_a_role_without_the_templates_actions_is_an_access_denied_error(
    moto: Moto,
    receiver: HttpStandIn,
    errors: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template_table(moto)
    granted = [a for a in template_dedupe_actions() if a != "dynamodb:PutItem"]

    with function_role(moto, monkeypatch, granted):
        summary = deliver(moto, receiver.url())

    assert summary.alerts_sent == 1 and len(receiver.received()) == 1
    [error] = errors
    assert error["operation"] == "claim" and error["table"] == TABLE
    assert "dynamodb:PutItem" in error["error"] and "dynamodb:PutItem" in error["check"]
    assert dedupe_metric(summary) == 1
