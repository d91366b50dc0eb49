"""Every tunable, read once from the environment into one frozen object.

A bad value is an error that names the variable, so a typo in a Lambda's environment fails the
cold start loudly instead of running with a surprising default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class SettingsError(ValueError):
    """One or more environment variables hold values Tattletail cannot use."""


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be a whole number of at least 0")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    # `inf` is not a duration: it would crash the first wait that uses it.
    if not 0 < value < math.inf:
        raise ValueError("must be a finite number greater than 0")
    return value


MIB = 1024 * 1024
# What the main process (event loop, AWS and HTTP clients, files in flight) and a worker once
# started (interpreter, orjson, libjq, the rules) hold, about: the rest of a Lambda's memory is
# shared by the workers.
MAIN_PROCESS_MEMORY = 256 * MIB
WORKER_BASE_MEMORY = 64 * MIB

# The longest wait a worker pipe's poll() accepts is about 24 days; no timeout needs a day.
MAX_TIMEOUT_SECONDS = 86400.0


def _timeout(raw: str) -> float:
    value = _positive_float(raw)
    if value > MAX_TIMEOUT_SECONDS:
        raise ValueError(f"must be at most {MAX_TIMEOUT_SECONDS:g} seconds")
    return value


def _text(raw: str) -> str:
    return raw


def _boolean(raw: str) -> bool:
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if raw.lower() not in words:
        raise ValueError("must be true or false")
    return words[raw.lower()]


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


@dataclass(frozen=True)
class _Var:
    name: str
    parse: Callable[[str], Any]
    doc: str


def _var(name: str, parse: Callable[[str], Any], doc: str, default: Any) -> Any:
    return field(default=default, metadata={"var": _Var(name, parse, doc)})


@dataclass(frozen=True)
class Settings:
    """The process's tunables. Field metadata names the environment variable of each."""

    workers: int = _var(
        "TATTLETAIL_WORKERS",
        _positive_int,
        "Rule-evaluation worker processes (default: the number of CPUs).",
        os.cpu_count() or 1,
    )
    object_concurrency: int = _var(
        "TATTLETAIL_OBJECT_CONCURRENCY",
        _positive_int,
        "Log files fetched and evaluated at the same time.",
        4,
    )
    destination_concurrency: int = _var(
        "TATTLETAIL_DESTINATION_CONCURRENCY",
        _positive_int,
        "Sends in flight at once to any one destination.",
        8,
    )
    send_timeout: float = _var(
        "TATTLETAIL_SEND_TIMEOUT",
        _timeout,
        "Seconds one send to a destination may take before it counts as failed.",
        10.0,
    )
    send_retries: int = _var(
        "TATTLETAIL_SEND_RETRIES",
        _non_negative_int,
        "Retries of a send after a transient failure (5xx, 429, throttling, timeouts).",
        4,
    )
    retry_budget: float = _var(
        "TATTLETAIL_RETRY_BUDGET",
        _positive_float,
        "Seconds one alert may spend on retries to one destination (never past the Lambda's "
        "remaining time).",
        60.0,
    )
    retry_base: float = _var(
        "TATTLETAIL_RETRY_BASE",
        _positive_float,
        "First backoff ceiling in seconds; doubled per retry, with full jitter.",
        0.5,
    )
    retry_cap: float = _var(
        "TATTLETAIL_RETRY_CAP", _positive_float, "Largest backoff between two tries, seconds.", 20.0
    )
    flood_threshold: int = _var(
        "TATTLETAIL_FLOOD_THRESHOLD",
        _positive_int,
        "Alerts one rule may send per invocation before the rest are collapsed into a summary.",
        20,
    )
    dedupe_table: str = _var(
        "TATTLETAIL_DEDUPE_TABLE",
        _text,
        "DynamoDB table (partition key alert_id, TTL attribute expires_at) for exactly-once "
        "delivery; empty means at-least-once.",
        "",
    )
    dedupe_claim_seconds: float = _var(
        "TATTLETAIL_DEDUPE_CLAIM_SECONDS",
        _positive_float,
        "How long a claim blocks other senders before it expires (a sender that died).",
        900.0,
    )
    dedupe_retention_seconds: float = _var(
        "TATTLETAIL_DEDUPE_RETENTION_SECONDS",
        _positive_float,
        "How long a sent alert's id is remembered.",
        7 * 24 * 3600.0,
    )
    state_table: str = _var(
        "TATTLETAIL_STATE_TABLE",
        _text,
        "DynamoDB table (partition key pk, TTL attribute expires_at) holding the state of rules "
        "with memory (threshold, distinct, dedup, sequence); required in Lambda when the config "
        "has such rules. The CLI always keeps state in memory.",
        "",
    )
    state_retention: float = _var(
        "TATTLETAIL_STATE_RETENTION",
        _positive_float,
        "Seconds state is kept after its window, period or sequence ends (the TTL): longer than "
        "any redelivery of a log file, so a retried file counts nothing twice.",
        86400.0,
    )
    state_lateness: float = _var(
        "TATTLETAIL_STATE_LATENESS",
        _positive_float,
        "Seconds a record may arrive after a newer one of its sequence and still complete it "
        "(CloudTrail delivers most files within 15 minutes).",
        3600.0,
    )
    max_object_bytes: int = _var(
        "TATTLETAIL_MAX_OBJECT_BYTES",
        _positive_int,
        "Largest log file accepted, in bytes, compressed or not (a larger one is an error).",
        512 * 1024 * 1024,
    )
    batch_size: int = _var(
        "TATTLETAIL_BATCH_SIZE",
        _positive_int,
        "Records a worker evaluates between two reports; the unit of the time limit.",
        5000,
    )
    batch_timeout: float = _var(
        "TATTLETAIL_BATCH_TIMEOUT",
        _timeout,
        "Seconds a worker may spend on one batch (decoding included) before it is replaced "
        "and the rules that took the time are quarantined.",
        60.0,
    )
    deadline_margin: float = _var(
        "TATTLETAIL_DEADLINE_MARGIN",
        _timeout,
        "Seconds before the Lambda's deadline when no log file is started and evaluation "
        "stops (those files are reported failed, to come back); kept for delivering the "
        "alerts of the files already evaluated.",
        30.0,
    )
    worker_memory_bytes: int = _var(
        "TATTLETAIL_WORKER_MEMORY_BYTES",
        _non_negative_int,
        "Bytes a rule worker may allocate beyond what it holds once started (its data "
        "segment is capped: RLIMIT_DATA); a record or file that needs more fails as "
        "too_large, a rule that does is quarantined. 0: 3 x TATTLETAIL_MAX_OBJECT_BYTES + 64 "
        "MiB, and in Lambda at most the workers' share of the function's memory.",
        0,
    )
    function_memory_mb: int = _var(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        _non_negative_int,
        "Set by Lambda: the function's memory in MB, which bounds the workers' by default.",
        0,
    )
    config_ttl: float = _var(
        "TATTLETAIL_CONFIG_TTL",
        _positive_float,
        "Seconds between two checks of the S3 config's ETag (a conditional GET).",
        60.0,
    )
    config_file: str = _var(
        "TATTLETAIL_CONFIG",
        _text,
        "Path of the bundled config, used when S3_CONFIG_BUCKET/S3_CONFIG_PATH are not set.",
        "tattletail.toml",
    )
    s3_config_bucket: str = _var(
        "S3_CONFIG_BUCKET", _text, "Bucket of the config object (with S3_CONFIG_PATH).", ""
    )
    s3_config_path: str = _var(
        "S3_CONFIG_PATH", _text, "Key of the config object (with S3_CONFIG_BUCKET).", ""
    )
    aws_endpoint_url: str = _var(
        "AWS_ENDPOINT_URL",
        _text,
        "Endpoint for every AWS call (a local moto server in tests); empty means AWS itself.",
        "",
    )
    emit_metrics: bool = _var(
        "TATTLETAIL_METRICS",
        _boolean,
        "Write CloudWatch Embedded Metric Format lines to stdout after each invocation.",
        True,
    )
    log_level: str = _var("TATTLETAIL_LOG_LEVEL", _log_level, "Log level.", "INFO")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable; raise SettingsError listing every bad one at once."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        errors: list[str] = []
        for spec in fields(cls):
            var: _Var = spec.metadata["var"]
            raw = environ.get(var.name)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[spec.name] = var.parse(raw.strip())
            except ValueError as exc:
                errors.append(f"{var.name}={raw!r}: {exc}")
        if errors:
            raise SettingsError("invalid environment: " + "; ".join(errors))
        return cls(**values)

    @property
    def config_from_s3(self) -> bool:
        return bool(self.s3_config_bucket and self.s3_config_path)

    @property
    def worker_memory(self) -> int:
        """What each worker may allocate once started: TATTLETAIL_WORKER_MEMORY_BYTES, else
        room for a file's text, its matched records as text and the batch that carries them
        (3 x the largest object) and a slice of records decoded; in Lambda, no more than the
        workers' share of the function's memory once the main process has its part."""
        if self.worker_memory_bytes:
            return self.worker_memory_bytes
        allowance = 3 * self.max_object_bytes + 64 * MIB
        if self.function_memory_mb:
            share = (self.function_memory_mb * MIB - MAIN_PROCESS_MEMORY) // self.workers
            allowance = min(allowance, share - WORKER_BASE_MEMORY)
        return max(allowance, 64 * MIB)


def documented_variables() -> list[tuple[str, str, str]]:
    """(name, default, description) for every variable: the README table is checked against it."""
    rows = []
    for spec in fields(Settings):
        var: _Var = spec.metadata["var"]
        default = "number of CPUs" if spec.name == "workers" else repr(spec.default)
        rows.append((var.name, default, var.doc))
    return rows
