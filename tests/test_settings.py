"""Settings: defaults, every variable parsed, and bad values named, all of them at once."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from typing import Any

import pytest

from tattletail.settings import Settings, SettingsError, documented_variables
from tests.support import REPO

# variable -> (a raw value as a user would write it, the value it must give)
VALID = {
    "TATTLETAIL_WORKERS": (" 3 ", 3),
    "TATTLETAIL_OBJECT_CONCURRENCY": ("16", 16),
    "TATTLETAIL_DESTINATION_CONCURRENCY": ("2", 2),
    "TATTLETAIL_SEND_TIMEOUT": ("2.5", 2.5),
    "TATTLETAIL_MAX_OBJECT_BYTES": ("1048576", 1048576),
    "TATTLETAIL_BATCH_SIZE": ("100", 100),
    "TATTLETAIL_BATCH_TIMEOUT": ("30", 30.0),
    "TATTLETAIL_DEADLINE_MARGIN": ("10", 10.0),
    "TATTLETAIL_WORKER_MEMORY_BYTES": ("268435456", 268435456),
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": ("1769", 1769),
    "TATTLETAIL_CONFIG_TTL": ("0.5", 0.5),
    "TATTLETAIL_CONFIG": ("/var/task/rules.toml", "/var/task/rules.toml"),
    "S3_CONFIG_BUCKET": ("config-bucket", "config-bucket"),
    "S3_CONFIG_PATH": ("tattletail/prod.toml", "tattletail/prod.toml"),
    "AWS_ENDPOINT_URL": ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    "TATTLETAIL_METRICS": ("false", False),
    "TATTLETAIL_LOG_LEVEL": ("debug", "DEBUG"),
}

# variable -> values that must be refused
INVALID = {
    "TATTLETAIL_WORKERS": ["0", "-2", "two", "1.5"],
    "TATTLETAIL_OBJECT_CONCURRENCY": ["0", "many"],
    "TATTLETAIL_DESTINATION_CONCURRENCY": ["-1"],
    "TATTLETAIL_SEND_TIMEOUT": ["0", "-1", "soon", "nan", "inf", "1e12"],
    "TATTLETAIL_MAX_OBJECT_BYTES": ["0", "512MB"],
    "TATTLETAIL_BATCH_SIZE": ["0", "1e3"],
    "TATTLETAIL_BATCH_TIMEOUT": ["0", "nan", "inf", "-inf", "1e9"],
    "TATTLETAIL_DEADLINE_MARGIN": ["0", "nan", "-5"],
    "TATTLETAIL_WORKER_MEMORY_BYTES": ["-1", "1GB"],
    "TATTLETAIL_CONFIG_TTL": ["0", "nan", "inf"],
    "TATTLETAIL_METRICS": ["maybe"],
    "TATTLETAIL_LOG_LEVEL": ["verbose", "TRACE"],
}


def variable_names() -> dict[str, str]:
    """Environment variable -> Settings field name."""
    return {spec.metadata["var"].name: spec.name for spec in fields(Settings)}


def readme_defaults() -> dict[str, str]:
    """The README's environment table: variable -> default as documented."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+?) \|", section, flags=re.M))


def test_the_variables_tested_here_exist() -> None:
    assert set(VALID) <= set(variable_names())
    assert set(INVALID) <= set(variable_names())


def written(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize(
    "spec",
    [spec for spec in fields(Settings) if spec.default != ""],
    ids=lambda spec: spec.metadata["var"].name,
)
def test_every_variable_accepts_its_own_default_written_out(spec: Any) -> None:
    # Covers variables added after this file was written, as well as those in VALID.
    variable = spec.metadata["var"].name
    settings = Settings.from_env({variable: written(spec.default)})
    assert getattr(settings, spec.name) == spec.default


@pytest.mark.parametrize(
    "spec",
    [spec for spec in fields(Settings) if spec.type in ("int", "float", "bool")],
    ids=lambda spec: spec.metadata["var"].name,
)
def test_every_numeric_or_boolean_variable_refuses_text(spec: Any) -> None:
    variable = spec.metadata["var"].name
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: "plenty"})
    assert variable in str(caught.value)


def test_no_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})
    names = variable_names()
    documented = readme_defaults()
    assert len(documented) >= 10

    for variable, default in documented.items():
        value = getattr(settings, names[variable])
        if default == "number of CPUs":
            assert value == (os.cpu_count() or 1)
        elif default == "empty":
            assert value == ""
        else:
            literal = default.strip("`")
            assert str(value) == literal or value == type(value)(literal), variable
    assert settings.config_from_s3 is False


def test_defaults_equal_a_plain_settings_object() -> None:
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("variable", sorted(VALID))
def test_each_variable_is_parsed_into_its_setting(variable: str) -> None:
    raw, expected = VALID[variable]
    settings = Settings.from_env({variable: raw})

    value = getattr(settings, variable_names()[variable])
    assert value == expected
    assert type(value) is type(expected)
    # No other setting moved from its default.
    defaults = Settings()
    changed = {
        spec.name
        for spec in fields(Settings)
        if getattr(settings, spec.name) != getattr(defaults, spec.name)
    }
    assert changed <= {variable_names()[variable]}


def test_every_variable_set_at_once_is_parsed() -> None:
    environ = {variable: raw for variable, (raw, _) in VALID.items()}
    settings = Settings.from_env(environ)
    for variable, (_, expected) in VALID.items():
        assert getattr(settings, variable_names()[variable]) == expected


def test_empty_or_blank_value_means_the_default() -> None:
    environ = {variable: "  " for variable in variable_names()}
    assert Settings.from_env(environ) == Settings()


@pytest.mark.parametrize(
    ("variable", "raw"),
    [(variable, raw) for variable, values in INVALID.items() for raw in values],
)
def test_bad_value_is_an_error_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    message = str(caught.value)
    assert variable in message
    assert repr(raw) in message


def test_all_bad_values_are_reported_at_once() -> None:
    environ: dict[str, Any] = {variable: values[0] for variable, values in INVALID.items()}
    environ["TATTLETAIL_CONFIG"] = "fine.toml"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    message = str(caught.value)

    for variable in INVALID:
        assert f"{variable}=" in message
    assert "TATTLETAIL_CONFIG=" not in message
    assert "\n" not in message


def test_config_comes_from_s3_only_when_bucket_and_path_are_both_set() -> None:
    assert Settings.from_env({"S3_CONFIG_BUCKET": "b"}).config_from_s3 is False
    assert Settings.from_env({"S3_CONFIG_PATH": "k"}).config_from_s3 is False
    assert Settings.from_env({"S3_CONFIG_BUCKET": "b", "S3_CONFIG_PATH": "k"}).config_from_s3


def test_from_env_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TATTLETAIL_OBJECT_CONCURRENCY", "7")
    assert Settings.from_env().object_concurrency == 7


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().workers = 5  # type: ignore[misc]


def test_every_variable_is_documented_with_a_description() -> None:
    rows = documented_variables()
    assert {name for name, _, _ in rows} == set(variable_names())
    assert all(description.strip() for _, _, description in rows)


def test_a_workers_memory_bound_follows_the_largest_object_and_the_lambdas_memory() -> None:
    mib = 1024 * 1024
    # 3 x the largest object + 64 MiB, unless set.
    assert Settings(max_object_bytes=100 * mib).worker_memory == 364 * mib
    assert Settings(worker_memory_bytes=200 * mib).worker_memory == 200 * mib
    # In Lambda, no more than the workers' share of the function's memory: 1024 MB less
    # 256 MB for the main process, in 2 workers, less 64 MB each once started.
    in_lambda = Settings(workers=2, function_memory_mb=1024)
    assert in_lambda.worker_memory == 320 * mib
    assert Settings(workers=2, function_memory_mb=10240, max_object_bytes=mib).worker_memory == (
        67 * mib
    )
    # Never so little that a worker cannot read a small file.
    assert Settings(workers=64, function_memory_mb=512).worker_memory == 64 * mib
