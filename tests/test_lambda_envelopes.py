"""Every trigger shape, end to end: each sample event in tests/lambda_events/ (the shapes AWS
documents) goes through the real handler, which reads the same real log file from the moto
server and delivers the same alert."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tattletail import lambda_handler
from tattletail.envelope import open_envelope
from tests.lambda_support import LambdaContext, stdout_config
from tests.support import SEED_LOG, Moto, gzipped

EVENTS = Path(__file__).resolve().parent / "lambda_events"
CREATE_USER = 'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"'
ENVELOPES = {
    "s3_object_created.json": "s3",
    "sns_s3_notification.json": "sns",
    "sqs_s3_notification.json": "sqs",
    "sqs_sns_s3_notification.json": "sqs",
    "sqs_sns_raw_s3_notification.json": "sqs",
    "eventbridge_object_created.json": "eventbridge",
    "sns_cloudtrail_notification.json": "sns",
    "sqs_sns_cloudtrail_notification.json": "sqs",
    "manual_objects.json": "manual",
}


@pytest.fixture
def bundled_config(moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Moto]:
    (tmp_path / "tattletail.toml").write_text(stdout_config(CREATE_USER))
    monkeypatch.setenv("TATTLETAIL_CONFIG", str(tmp_path / "tattletail.toml"))
    monkeypatch.setenv("TATTLETAIL_WORKERS", "1")
    monkeypatch.setenv("TATTLETAIL_METRICS", "false")
    monkeypatch.delenv("S3_CONFIG_BUCKET", raising=False)
    lambda_handler.shutdown()
    yield moto
    lambda_handler.shutdown()


@pytest.mark.parametrize("sample", sorted(ENVELOPES))
def test_every_envelope_delivers_the_alerts_of_the_objects_it_names(
    sample: str, bundled_config: Moto, capfd: pytest.CaptureFixture[str]
) -> None:
    event = orjson.loads((EVENTS / sample).read_bytes())
    envelope = open_envelope(event)
    assert envelope.kind == ENVELOPES[sample]
    assert envelope.refs, f"{sample} names no object"
    s3 = bundled_config.client("s3")
    body = gzipped(SEED_LOG.read_bytes())
    for bucket in {ref.bucket for ref in envelope.refs}:
        s3.create_bucket(Bucket=bucket)
    for ref in envelope.refs:
        s3.put_object(Bucket=ref.bucket, Key=ref.key, Body=body)

    capfd.readouterr()
    response = lambda_handler.handler(event, LambdaContext())
    alerts = [orjson.loads(line) for line in capfd.readouterr().out.splitlines()]

    # The seed log holds one CreateUser: one alert per object the event names.
    assert len(alerts) == len(envelope.refs)
    assert {a["name"] for a in alerts} == {"Create User"}
    assert {a["match"] for a in alerts} == {"username: user1"}
    assert sorted(a["source"] for a in alerts) == sorted(ref.uri for ref in envelope.refs)
    if envelope.kind == "sqs":
        assert response == {"batchItemFailures": []}
    else:
        assert response["objects"] == len(envelope.refs)
        assert response["alerts_sent"] == len(envelope.refs)
