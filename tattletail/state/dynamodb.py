"""The state store in Lambda: one DynamoDB table (TATTLETAIL_STATE_TABLE).

An item is one unit of state: `pk` (string partition key), `v` (its version), `s` (the state as
zlib-compressed JSON) and `expires_at` (epoch seconds, the table's TTL attribute, so DynamoDB
deletes old state by itself). Reads are consistent (BatchGetItem, up to 100 keys a call, for
every item a log file touches; GetItem after a conflict); a write is a PutItem conditional on
the version read, so two invocations updating one group are serialised and neither update is
lost. Every request is bounded in time; an error or time-out becomes StateUnavailable, with
the table and the AWS error code, so the objects that needed it fail and come back.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from tattletail import json_input
from tattletail.aws import AwsClients
from tattletail.json_output import dumps
from tattletail.state.store import StateStore, StateUnavailable, Versioned

KEY = "pk"
VERSION = "v"
STATE = "s"
TTL_ATTRIBUTE = "expires_at"
# BatchGetItem's limit.
BATCH_KEYS = 100
# A request that takes longer is failed (the object comes back) rather than waited for.
CALL_TIMEOUT = 10.0
# Rounds of BatchGetItem for keys DynamoDB left unprocessed (throttling) before giving up.
UNPROCESSED_ROUNDS = 5

T = TypeVar("T")


class DynamoDBStore(StateStore):
    name = "dynamodb"

    def __init__(self, table: str, aws: AwsClients, timeout: float = CALL_TIMEOUT) -> None:
        self.table = table
        self._aws = aws
        self._timeout = timeout

    async def get_many(self, keys: Sequence[str], calls: Counter[str]) -> dict[str, Versioned]:
        found: dict[str, Versioned] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BATCH_KEYS):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [{KEY: {"S": key}} for key in unique[start : start + BATCH_KEYS]],
                    "ConsistentRead": True,
                }
            }
            for round_number in range(UNPROCESSED_ROUNDS):
                dynamodb = await self._client()
                reply = await self._call(
                    "BatchGetItem", calls, dynamodb.batch_get_item(RequestItems=pending)
                )
                for item in reply.get("Responses", {}).get(self.table, []):
                    found[item[KEY]["S"]] = _decode(item)
                pending = reply.get("UnprocessedKeys") or {}
                if not pending:
                    break
                await asyncio.sleep(0.05 * 2**round_number)
            else:
                raise StateUnavailable(
                    f"DynamoDB table {self.table!r} left keys unprocessed after "
                    f"{UNPROCESSED_ROUNDS} BatchGetItem rounds (throttled)"
                )
        return found

    async def get(self, key: str, calls: Counter[str]) -> Versioned:
        dynamodb = await self._client()
        reply = await self._call(
            "GetItem",
            calls,
            dynamodb.get_item(TableName=self.table, Key={KEY: {"S": key}}, ConsistentRead=True),
        )
        item = reply.get("Item")
        return _decode(item) if item else Versioned()

    async def put(
        self,
        key: str,
        state: dict[str, Any],
        version: int,
        expires_at: int,
        calls: Counter[str],
    ) -> bool:
        dynamodb = await self._client()
        condition: dict[str, Any] = (
            {"ConditionExpression": f"attribute_not_exists({KEY})"}
            if version == 0
            else {
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeNames": {"#v": VERSION},
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
        )
        item = {
            KEY: {"S": key},
            VERSION: {"N": str(version + 1)},
            STATE: {"B": zlib.compress(dumps(state))},
            TTL_ATTRIBUTE: {"N": str(expires_at)},
        }
        try:
            await self._call(
                "PutItem", calls, dynamodb.put_item(TableName=self.table, Item=item, **condition)
            )
        except _Conflict:
            return False
        return True

    async def _client(self) -> Any:
        try:
            return await self._aws.client("dynamodb")
        except (BotoCoreError, ClientError) as exc:
            raise StateUnavailable(f"DynamoDB client for {self.table!r}: {exc}") from None

    async def _call(self, operation: str, calls: Counter[str], request: Awaitable[T]) -> T:
        calls[operation] += 1
        try:
            return await asyncio.wait_for(request, self._timeout)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            if code == "ConditionalCheckFailedException":
                raise _Conflict from None
            hint = {
                "ResourceNotFoundException": " (does the table exist in this region? "
                "TATTLETAIL_STATE_TABLE names it)",
                "AccessDeniedException": " (the function's role needs dynamodb:GetItem, "
                "BatchGetItem and PutItem on it)",
            }.get(code, "")
            raise StateUnavailable(
                f"DynamoDB {operation} on table {self.table!r} failed: {code}: "
                f"{error.get('Message', '')}{hint}"
            ) from None
        except BotoCoreError as exc:
            raise StateUnavailable(
                f"DynamoDB {operation} on table {self.table!r} failed: {exc}"
            ) from None
        except TimeoutError:
            raise StateUnavailable(
                f"DynamoDB {operation} on table {self.table!r} timed out after {self._timeout:g} s"
            ) from None


class _Conflict(Exception):
    pass


def _decode(item: dict[str, Any]) -> Versioned:
    try:
        state = json_input.loads(zlib.decompress(item[STATE]["B"]))
        return Versioned(state, int(item[VERSION]["N"]))
    except (KeyError, ValueError, zlib.error) as exc:
        raise StateUnavailable(
            f"state item {item.get(KEY, {}).get('S')!r} is not Tattletail's ({exc})"
        ) from None
