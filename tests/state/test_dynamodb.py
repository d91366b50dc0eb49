"""The DynamoDB state store against moto's DynamoDB over HTTP: versioned conditional writes,
batched reads, and every failure a StateUnavailable that names the table."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from tattletail.aws import AwsClients
from tattletail.json_output import dumps
from tattletail.state.dynamodb import DynamoDBStore
from tattletail.state.store import InMemoryStore, StateStore, StateUnavailable, Versioned
from tests.destinations.http_stand_in import refused_url
from tests.state.state_support import STATE_TABLE, create_state_table
from tests.support import Moto

T = TypeVar("T")


def run(make: Callable[[AwsClients], Awaitable[T]], endpoint: str) -> T:
    async def main() -> T:
        aws = AwsClients(endpoint)
        try:
            return await make(aws)
        finally:
            await aws.close()

    return asyncio.run(main())


@pytest.fixture
def table(moto: Moto) -> Moto:
    create_state_table(moto)
    return moto


async def exercise(store: StateStore) -> list[Any]:
    """The same sequence on any store: the answers must agree."""
    calls: Counter[str] = Counter()
    seen: list[Any] = [await store.get("k", calls)]
    seen.append(await store.put("k", {"n": 1}, 0, 2_000_000_000, calls))
    seen.append(await store.put("k", {"n": 2}, 0, 2_000_000_000, calls))  # lost the race
    seen.append(await store.get("k", calls))
    seen.append(await store.put("k", {"n": 3}, 1, 2_000_000_000, calls))
    seen.append(await store.put("k", {"n": 4}, 1, 2_000_000_000, calls))  # stale version
    seen.append(await store.get_many(["k", "absent"], calls))
    return seen


def test_the_dynamodb_store_behaves_as_the_in_memory_store(table: Moto) -> None:
    expected = asyncio.run(exercise(InMemoryStore()))
    assert run(lambda aws: exercise(DynamoDBStore(STATE_TABLE, aws)), table.endpoint) == expected
    assert expected == [
        Versioned(),
        True,
        False,
        Versioned({"n": 1}, 1),
        True,
        False,
        {"k": Versioned({"n": 3}, 2)},
    ]
    [item] = table.client("dynamodb").scan(TableName=STATE_TABLE)["Items"]
    assert item["expires_at"] == {"N": "2000000000"} and item["v"] == {"N": "2"}


def test_many_keys_are_read_100_at_a_time(table: Moto) -> None:
    async def go(aws: AwsClients) -> tuple[dict[str, Versioned], Counter[str]]:
        store = DynamoDBStore(STATE_TABLE, aws)
        calls: Counter[str] = Counter()
        for n in range(0, 250, 3):
            await store.put(f"k{n}", {"n": n}, 0, 2_000_000_000, Counter())
        found = await store.get_many([f"k{n}" for n in range(250)], calls)
        return found, calls

    found, calls = run(go, table.endpoint)
    assert sorted(found) == sorted(f"k{n}" for n in range(0, 250, 3))
    assert found["k9"] == Versioned({"n": 9}, 1)
    assert calls == {"BatchGetItem": 3}


@pytest.mark.parametrize("operation", ["get", "get_many", "put"])
def test_a_missing_table_is_a_clear_error(moto: Moto, operation: str) -> None:
    async def go(aws: AwsClients) -> Any:
        store = DynamoDBStore("nowhere", aws)
        calls: Counter[str] = Counter()
        if operation == "get":
            return await store.get("k", calls)
        if operation == "get_many":
            return await store.get_many(["k"], calls)
        return await store.put("k", {}, 0, 1, calls)

    with pytest.raises(StateUnavailable) as raised:
        run(go, moto.endpoint)
    message = str(raised.value)
    assert "'nowhere'" in message and "ResourceNotFoundException" in message
    assert "TATTLETAIL_STATE_TABLE" in message


def test_an_unreachable_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    endpoint = refused_url("")

    with pytest.raises(StateUnavailable, match="DynamoDB GetItem on table 'state' failed"):
        run(lambda aws: DynamoDBStore("state", aws).get("k", Counter()), endpoint)


def test_an_item_that_is_not_ours_is_a_clear_error(table: Moto) -> None:
    table.client("dynamodb").put_item(
        TableName=STATE_TABLE, Item={"pk": {"S": "k"}, "v": {"N": "1"}, "s": {"B": b"nope"}}
    )
    with pytest.raises(StateUnavailable, match="'k' is not Tattletail's"):
        run(lambda aws: DynamoDBStore(STATE_TABLE, aws).get("k", Counter()), table.endpoint)


def test_both_stores_keep_values_orjson_cannot_write_or_read(table: Moto) -> None:
    """A rule's annotation nested deeper than orjson reads or writes, and integers beyond 64
    bits, are stored and read back by either store instead of failing the state stage.
    (Integers beyond 64 bits come back as the double libjq computes with.)"""
    deep: Any = "bottom"
    for _ in range(1_500):
        deep = [deep]
    state = {"annotation": deep, "big": 2**70, "negative": -(2**63) - 1}

    async def round_trip(store: StateStore) -> Any:
        assert await store.put("k", state, 0, 2_000_000_000, Counter())
        return (await store.get("k", Counter())).state

    for stored in (
        asyncio.run(round_trip(InMemoryStore())),
        run(lambda aws: round_trip(DynamoDBStore(STATE_TABLE, aws)), table.endpoint),
    ):
        assert dumps(stored["annotation"]) == dumps(deep)
        assert (stored["big"], stored["negative"]) == (float(2**70), float(-(2**63) - 1))
