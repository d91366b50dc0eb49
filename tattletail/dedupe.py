"""Exactly-once delivery across retries: a DynamoDB claim per alert_id.

Before a send, a conditional PutItem claims the alert's id; it succeeds only when no item exists
or the existing claim has expired (its sender died before marking it sent). After the send, the
item is marked sent and kept for `retention` seconds. The table's TTL attribute (`expires_at`)
lets DynamoDB delete old items by itself. A retried invocation, the same log file delivered
twice, or the same event arriving through two paths then finds the claim and sends nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

KEY = "alert_id"
TTL_ATTRIBUTE = "expires_at"


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
