"""Exactly-once delivery across retries: a DynamoDB claim per alert_id.

Before a send, a conditional PutItem claims the alert's id; it succeeds only when no item exists
or the existing claim has expired (its sender died before marking it sent). After the send, the
item is marked sent and kept for `retention` seconds. The table's TTL attribute (`expires_at`)
lets DynamoDB delete old items by itself. A retried invocation, the same log file delivered
twice, or the same event arriving through two paths then finds the claim and sends nothing.

The table's partition key must be the string attribute KEY and its TTL attribute
TTL_ATTRIBUTE (deploy/template.yaml creates it so; a test checks). The calls are PutItem and
DeleteItem, the only two actions the role needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

KEY = "alert_id"
TTL_ATTRIBUTE = "expires_at"
# What an operator should check, by the error DynamoDB answered with.
_HINTS = {
    "ValidationException": (
        f"the table's partition key must be the string attribute {KEY!r} "
        f"(and its TTL attribute {TTL_ATTRIBUTE!r}), as deploy/template.yaml creates it"
    ),
    "ResourceNotFoundException": "no such table in this account and region",
    "AccessDeniedException": (
        "the function's role needs dynamodb:PutItem and dynamodb:DeleteItem on the table"
    ),
}


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def hint(exc: BaseException) -> str:
    """What to check when the table refused (or DynamoDB did not answer)."""
    code = error_code(exc)
    if isinstance(exc, ClientError) and code not in _HINTS:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = "AccessDeniedException" if status == 403 else code
    return _HINTS.get(code, "DynamoDB did not answer (after the SDK's retries)")


class DedupeTable:
    def __init__(
        self,
        table: str,
        claim_seconds: float,
        retention_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.claim_seconds = claim_seconds
        self.retention_seconds = retention_seconds
        self._clock = clock

    async def claim(self, dynamodb: Any, alert_id: str) -> bool:
        """True when this caller now owns the send; False when it was sent or is being sent."""
        now = int(self._clock())
        try:
            await dynamodb.put_item(
                TableName=self.table,
                Item={
                    KEY: {"S": alert_id},
                    "state": {"S": "claimed"},
                    TTL_ATTRIBUTE: {"N": str(now + int(self.claim_seconds))},
                },
                ConditionExpression=(
                    f"attribute_not_exists({KEY}) OR (#state = :claimed AND {TTL_ATTRIBUTE} < :now)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":claimed": {"S": "claimed"}, ":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def mark_sent(self, dynamodb: Any, alert_id: str) -> None:
        now = int(self._clock())
        await dynamodb.put_item(
            TableName=self.table,
            Item={
                KEY: {"S": alert_id},
                "state": {"S": "sent"},
                "sent_at": {"N": str(now)},
                TTL_ATTRIBUTE: {"N": str(now + int(self.retention_seconds))},
            },
        )

    async def release(self, dynamodb: Any, alert_id: str) -> None:
        """Give a claim back after a failed send, so a retry may send it at once."""
        await dynamodb.delete_item(
            TableName=self.table,
            Key={KEY: {"S": alert_id}},
            ConditionExpression="#state = :claimed",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":claimed": {"S": "claimed"}},
        )
