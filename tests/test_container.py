"""The Lambda container image itself, built from the Dockerfile and run the way Lambda runs it.

`.ci/run` builds the images (`.ci/container.sh`) on a local stand-in for AWS's base image, then
names them in TATTLETAIL_CI_IMAGE_BUNDLED (the rule pack bundled as tattletail.toml) and
TATTLETAIL_CI_IMAGE_S3 (no bundled config). Each container runs with host networking against a
local Lambda Runtime API, the moto server and the Slack stand-in, as Lambda runs a function: a
read-only file system but /tmp, no /dev/shm, a user that is not root. Under CI (CI=true) these
tests fail when the images or Docker are missing; elsewhere they skip, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lambda_support import (
    BUCKET,
    CONFIG_BUCKET,
    SEED_KEY,
    RuntimeApi,
    put_seed_log,
    s3_event,
    slack_config,
)
from tests.support import CLOUDTRAIL, REGION, REPO, Moto, SlackStandIn, gzipped

IMAGE_VARIABLES = (
    "TATTLETAIL_CI_BASE_IMAGE",
    "TATTLETAIL_CI_IMAGE_BUNDLED",
    "TATTLETAIL_CI_IMAGE_S3",
)
STRATUS_STOP = CLOUDTRAIL / "stratus-red-team" / "aws.defense-evasion.cloudtrail-stop.json"
STOP_KEY = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/stratus-cloudtrail-stop.json.gz"
# The rule pack's one destination (config/tattletail-pack.toml), in moto's default account.
PACK_TOPIC = "tattletail-alerts"
# Lambda's sandbox user is not root; any uid without a home will do.
LAMBDA_USER = "993:990"


@dataclass(frozen=True)
class Images:
    base: str
    bundled: str
    s3: str


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the container test cannot run: {reason}", pytrace=False)
    pytest.skip(f"{reason} (.ci/run builds the images when CI=true)")


@pytest.fixture(scope="module")
def images() -> Images:
    missing = [name for name in IMAGE_VARIABLES if not os.environ.get(name)]
    if missing:
        _unavailable(f"no image built: {', '.join(missing)} not set")
    if shutil.which("docker") is None:
        _unavailable("no docker command")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        _unavailable(f"no Docker daemon answers: {info.stderr.strip()[:200]}")
    found = Images(*(os.environ[name] for name in IMAGE_VARIABLES))
    for image in (found.bundled, found.s3):
        inspect = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
        if inspect.returncode != 0:
            _unavailable(f"image {image} does not exist")
    return found


@dataclass
class Invocation:
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    output: str


@pytest.fixture
def invoke(runtime_api: RuntimeApi, moto: Moto) -> Iterator[Any]:
    """Run an image against the Runtime API for one event; return what came back."""
    names: list[str] = []

    def run(image: str, event: dict[str, Any], env: dict[str, str]) -> Invocation:
        name = f"tattletail-test-{uuid.uuid4().hex[:12]}"
        names.append(name)
        environment = {
            "AWS_LAMBDA_RUNTIME_API": runtime_api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "tattletail",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_ENDPOINT_URL": moto.endpoint,
            **env,
        }
        command = ["docker", "run", "--rm", "--name", name, "--network", "host"]
        command += ["--read-only", "--tmpfs", "/tmp", "--ipc", "none", "--user", LAMBDA_USER]
        for key, value in environment.items():
            command += ["--env", f"{key}={value}"]
        request_id = str(uuid.uuid4())
        runtime_api.push(request_id, event)
        process = subprocess.Popen(
            [*command, image], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            # Until the runtime answers, or the container exits without answering.
            finished = False
            for _ in range(180):
                finished = runtime_api.done.wait(1)
                if finished or process.poll() is not None:
                    break
        finally:
            subprocess.run(["docker", "kill", name], capture_output=True, timeout=60)
            output = process.communicate(timeout=60)[0].decode(errors="replace")
        assert finished, f"the container never answered; it printed:\n{output}"
        return Invocation(
            runtime_api.responses.get(request_id),
            runtime_api.errors.get(request_id) or runtime_api.errors.get("init"),
            output,
        )

    yield run
    for name in names:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def test_image_with_the_bundled_rule_pack_publishes_the_alert_to_sns(
    images: Images, invoke: Any, moto: Moto
) -> None:
    s3, sqs = moto.client("s3"), moto.client("sqs")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=STOP_KEY, Body=gzipped(STRATUS_STOP.read_bytes()))
    _, queue = moto.topic_with_queue(PACK_TOPIC, "alerts")

    result = invoke(images.bundled, s3_event(BUCKET, STOP_KEY), {})

    assert result.error is None, result.output
    assert result.response is not None
    assert result.response["objects"] == 1 and result.response["alerts_failed"] == 0
    assert result.response["alerts_sent"] >= 1
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    alerts = [json.loads(message["Body"]) for message in messages]
    stopped = [a for a in alerts if a["name"] == "CloudTrail logging stopped or trail deleted"]
    assert stopped and stopped[0]["record"]["eventName"] == "StopLogging"
    assert stopped[0]["severity"] == "critical"


def test_image_without_a_bundled_config_reads_it_from_s3_and_alerts_slack(
    images: Images, invoke: Any, moto: Moto, slack: SlackStandIn
) -> None:
    put_seed_log(moto)
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=CONFIG_BUCKET)
    # The webhook URL is a secret reference, resolved from the function's environment.
    body = slack_config("env:SLACK_WEBHOOK_URL").encode()
    s3.put_object(Bucket=CONFIG_BUCKET, Key="tattletail.toml", Body=body)
    env = {
        "S3_CONFIG_BUCKET": CONFIG_BUCKET,
        "S3_CONFIG_PATH": "tattletail.toml",
        "SLACK_WEBHOOK_URL": slack.url,
    }

    result = invoke(images.s3, s3_event(BUCKET, SEED_KEY), env)

    assert result.error is None, result.output
    assert result.response is not None
    assert result.response["matches"] == 1 and result.response["alerts_sent"] == 1
    [delivered] = slack.received()
    text = json.dumps(delivered["body"])
    assert "Create User" in text and "username: user1" in text
    assert slack.url not in result.output and "s3cr3t" not in result.output


def test_image_built_without_any_config_fails_the_build_saying_what_to_do(
    images: Images, tmp_path: Path
) -> None:
    if (REPO / "tattletail.toml").exists():
        pytest.skip("this checkout bundles a tattletail.toml of its own")
    completed = subprocess.run(
        ["docker", "build", "--build-arg", f"BASE_IMAGE={images.base}", "-q", str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    assert completed.returncode != 0, "an image without any config was built"
    said = completed.stdout + completed.stderr
    assert "no tattletail.toml" in said
    assert "CONFIG_SOURCE=s3" in said and "S3_CONFIG_BUCKET" in said
