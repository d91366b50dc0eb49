"""The container image's runtime contract, proven without Docker.

The Lambda base image runs AWS's runtime interface client (`awslambdaric`) on the handler string
in the Dockerfile's CMD. Here the same client runs that same string against a local
implementation of the Lambda Runtime API (next invocation, response, error) on 127.0.0.1, with
an S3 event for an object in the moto server, and the alert arrives at the Slack stand-in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.lambda_support import (
    BUCKET,
    SEED_KEY,
    RuntimeApi,
    put_seed_log,
    s3_event,
    slack_config,
)
from tests.support import REPO, Moto, SlackStandIn


def dockerfile_handler() -> str:
    text = (REPO / "Dockerfile").read_text()
    commands = re.findall(r'^CMD \["([^"]+)"\]', text, flags=re.MULTILINE)
    assert len(commands) == 1, "the Dockerfile must have exactly one exec-form CMD"
    return commands[0]


def run_in_runtime_client(
    runtime_api: RuntimeApi, moto: Moto, slack: SlackStandIn, task_root: Path, event: Any
) -> tuple[dict[str, Any], str]:
    """The image's CMD, run by AWS's runtime interface client on one event; its response and
    what it printed."""
    # The task root holds the bundled config, as the image's does.
    (task_root / "tattletail.toml").write_text(slack_config(slack.url))
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": runtime_api.address,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "TATTLETAIL_WORKERS": "1",
        "PYTHONPATH": str(REPO),
        "LAMBDA_TASK_ROOT": str(task_root),
        "_HANDLER": dockerfile_handler(),
    }
    env.pop("S3_CONFIG_BUCKET", None)
    request_id = str(uuid.uuid4())
    runtime_api.push(request_id, event)
    process = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", dockerfile_handler()],
        cwd=task_root,
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
    return runtime_api.responses[request_id], output


def test_runtime_interface_client_runs_the_dockerfile_handler(
    moto: Moto, slack: SlackStandIn, runtime_api: RuntimeApi, tmp_path: Path
) -> None:
    put_seed_log(moto)

    response, output = run_in_runtime_client(
        runtime_api, moto, slack, tmp_path, s3_event(BUCKET, SEED_KEY)
    )

    assert response["objects"] == 1 and response["matches"] == 1
    assert response["alerts_sent"] == 1 and response["alerts_failed"] == 0
    [delivered] = slack.received()
    texts = json.dumps(delivered["body"])
    assert "Create User" in texts and "username: user1" in texts
    assert slack.url not in output


def test_the_runtime_client_evaluates_an_eventbridge_cloudtrail_event_with_no_s3_read(
    moto: Moto, slack: SlackStandIn, runtime_api: RuntimeApi, tmp_path: Path
) -> None:
    """The real-time path: EventBridge's CloudTrail event, no S3 object to read anywhere."""
    event = json.loads(
        (REPO / "tests" / "cloudtrail_events" / "api_call_create_user.json").read_text()
    )

    response, output = run_in_runtime_client(runtime_api, moto, slack, tmp_path, event)

    assert response["events"] == 1 and response["objects"] == 0
    assert response["alerts_sent"] == 1
    assert moto.client("s3").list_buckets()["Buckets"] == []
    [delivered] = slack.received()
    assert "username: user1" in json.dumps(delivered["body"])
    # The real-time path's latency went out as an EMF line.
    assert '"Path":"eventbridge"' in output and "AlertLatencySeconds" in output
