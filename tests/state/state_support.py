"""What the state tests share: the state table in moto, as deploy/template.yaml creates it."""

from __future__ import annotations

from tests.support import Moto

STATE_TABLE = "tattletail-state"


def create_state_table(moto: Moto, name: str = STATE_TABLE) -> None:
    moto.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
