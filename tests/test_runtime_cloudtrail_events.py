"""The container's runtime contract for the real-time path: AWS's runtime interface client runs
the Dockerfile's handler against a local Lambda Runtime API, which hands it EventBridge's
CloudTrail event; the alert reaches the Slack stand-in, and no S3 object exists to read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import REPO, Moto, SlackStandIn
from tests.test_runtime_contract import RuntimeApi, dockerfile_handler
from tests.test_runtime_contract import runtime_api as runtime_api  # the fixture

EVENT = REPO / "tests" / "cloudtrail_events" / "api_call_create_user.json"


def test_the_runtime_client_evaluates_an_eventbridge_cloudtrail_event_with_no_s3_read(
    moto: Moto,
    slack: SlackStandIn,
    runtime_api: RuntimeApi,  # noqa: F811
    tmp_path: Path,
) -> None:
    (tmp_path / "tattletail.toml").write_text(
        f"""
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"'
description = "A new IAM user has been created"
destinations = ["Slack"]

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "{slack.url}"
"""
    )
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": runtime_api.address,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "TATTLETAIL_WORKERS": "1",
        "PYTHONPATH": str(REPO),
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "_HANDLER": dockerfile_handler(),
    }
    env.pop("S3_CONFIG_BUCKET", None)
    request_id = str(uuid.uuid4())
    runtime_api.push(request_id, json.loads(EVENT.read_text()))  # type: ignore[attr-defined]
    process = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", dockerfile_handler()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        finished = runtime_api.done.wait(60)
    finally:
        process.kill()
        output = process.communicate(timeout=10)[0].decode(errors="replace")
    assert finished, f"no response from the runtime client; it printed:\n{output}"
    assert runtime_api.errors == {}, output
    response = runtime_api.responses[request_id]
    assert response["events"] == 1 and response["objects"] == 0
    assert response["alerts_sent"] == 1
    assert moto.client("s3").list_buckets()["Buckets"] == []
    [delivered] = slack.received()
    assert "username: user1" in json.dumps(delivered["body"])
    # The EMF line of the real-time path's latency reached the log.
    assert '"Path":"eventbridge"' in output and "AlertLatencySeconds" in output
