"""`include`: rules and destinations from more files, routed by `default_destinations`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tattletail import config
from tattletail.cli import main
from tattletail.config import ConfigError

SNS = """
[[destination]]
id = "{id}"
type = "sns"
sns_arn = "arn:aws:sns:us-east-1:123456789012:{id}"
"""


def rule(name: str, extra: str = "") -> str:
    return f"""
[[rule]]
name = "{name}"
jq_match = 'select(.eventName == "{name}")'
{extra}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load_file(path)
    return caught.value.problems


def test_included_rules_and_destinations_join_the_config_in_include_order(
    tmp_path: Path,
) -> None:
    write(tmp_path / "rules" / "b.toml", rule("B1") + rule("B2"))
    write(tmp_path / "rules" / "a.toml", rule("A1", 'destinations = ["Pager"]'))
    write(tmp_path / "dest" / "pager.toml", SNS.format(id="Pager"))
    top = write(
        tmp_path / "top.toml",
        'include = ["dest/pager.toml", "rules/*.toml"]\n' + rule("Top"),
    )

    loaded = config.load_file(top)

    assert [r.name for r in loaded.rules] == ["Top", "A1", "B1", "B2"]
    assert [r.index for r in loaded.rules] == [0, 1, 2, 3]
    assert set(loaded.destinations) == {"Pager"}
    assert loaded.rules[1].destinations == ("Pager",)
    assert loaded.files == (
        str(top),
        str(tmp_path / "dest" / "pager.toml"),
        str(tmp_path / "rules" / "a.toml"),
        str(tmp_path / "rules" / "b.toml"),
    )


def test_every_rule_keeps_the_file_it_came_from_and_its_position_there(tmp_path: Path) -> None:
    write(tmp_path / "rules" / "x.toml", rule("X0") + rule("X1"))
    top = write(tmp_path / "top.toml", 'include = ["rules/x.toml"]\n' + rule("Top"))

    loaded = config.load_file(top)

    assert [(r.origin, r.position) for r in loaded.rules] == [
        (str(top), 0),
        (str(tmp_path / "rules" / "x.toml"), 0),
        (str(tmp_path / "rules" / "x.toml"), 1),
    ]
    assert loaded.rules[2].where == f"{tmp_path / 'rules' / 'x.toml'}: rule #1 'X1'"


def test_paths_are_relative_to_the_including_file_and_included_files_include_others(
    tmp_path: Path,
) -> None:
    write(tmp_path / "pack" / "deep" / "leaf.toml", rule("Leaf"))
    write(tmp_path / "pack" / "mid.toml", 'include = ["deep/*.toml"]\n' + rule("Mid"))
    top = write(tmp_path / "conf" / "top.toml", 'include = ["../pack/mid.toml"]\n')

    assert [r.name for r in config.load_file(top).rules] == ["Mid", "Leaf"]


def test_a_file_reached_twice_is_read_once(tmp_path: Path) -> None:
    write(tmp_path / "rules" / "a.toml", rule("A"))
    top = write(tmp_path / "top.toml", 'include = ["rules/*.toml", "rules/a.toml"]\n')

    assert [r.name for r in config.load_file(top).rules] == ["A"]


def test_error_in_an_included_file_names_that_file_and_the_rule(tmp_path: Path) -> None:
    write(tmp_path / "rules" / "x.toml", rule("Fine") + rule("Foo", "severity = 'urgent'"))
    top = write(tmp_path / "top.toml", 'include = ["rules/x.toml"]\n')

    problems = problems_of(top)

    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'rules' / 'x.toml'}: rule #1 'Foo': 'severity'")


def test_invalid_toml_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path / "bad.toml", "[[rule]\n")
    top = write(tmp_path / "top.toml", 'include = ["bad.toml"]\n')

    [problem] = problems_of(top)
    assert problem.startswith(f"{tmp_path / 'bad.toml'}: invalid TOML")


def test_missing_included_file_is_a_clear_error(tmp_path: Path) -> None:
    top = write(tmp_path / "top.toml", 'include = ["rules/nope.toml"]\n' + rule("Top"))

    [problem] = problems_of(top)
    assert problem == (
        f"include 'rules/nope.toml': no such file ({tmp_path / 'rules' / 'nope.toml'})"
    )


def test_glob_matching_no_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    top = write(tmp_path / "top.toml", 'include = ["rules/*.toml"]\n')

    assert problems_of(top) == ["include 'rules/*.toml': the pattern matches no file"]


def test_include_cycle_is_a_clear_error_showing_the_cycle(tmp_path: Path) -> None:
    a = write(tmp_path / "a.toml", 'include = ["b.toml"]\n' + rule("A"))
    b = write(tmp_path / "b.toml", 'include = ["a.toml"]\n' + rule("B"))

    [problem] = problems_of(a)
    assert problem == f"{b}: include 'a.toml': include cycle: {a} -> {b} -> {a}"


def test_a_file_including_itself_is_a_cycle(tmp_path: Path) -> None:
    a = write(tmp_path / "a.toml", 'include = ["*.toml"]\n' + rule("A"))

    [problem] = problems_of(a)
    assert problem == f"include '*.toml': include cycle: {a} -> {a}"


def test_cli_reports_a_missing_include_in_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = write(tmp_path / "top.toml", 'include = ["missing.toml"]\n')

    assert main(["validate", "--config", str(top)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"tattletail: {top}: include 'missing.toml': no such file ({tmp_path}/missing.toml)"
    )


def test_include_in_a_config_not_read_from_a_file_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse('include = ["rules/*.toml"]\n', source="s3://bucket/tattletail.toml")
    assert caught.value.problems == [
        "include needs a config read from a file: patterns are relative to the file that "
        "includes them"
    ]


@pytest.mark.parametrize("key", ["dead_letter = 'x'", "default_destinations = ['x']"])
def test_routing_keys_are_only_allowed_in_the_top_file(tmp_path: Path, key: str) -> None:
    write(tmp_path / "inc.toml", key + "\n" + rule("R"))
    top = write(tmp_path / "top.toml", 'include = ["inc.toml"]\n')

    [problem] = problems_of(top)
    assert problem.startswith(f"{tmp_path / 'inc.toml'}: unknown top-level key")
    assert "only the top config file may set it" in problem


def test_duplicate_destination_id_across_files_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "inc.toml", SNS.format(id="Pager"))
    top = write(tmp_path / "top.toml", 'include = ["inc.toml"]\n' + SNS.format(id="Pager"))

    [problem] = problems_of(top)
    assert problem == (
        f"{tmp_path / 'inc.toml'}: destination #0 'Pager': duplicate destinations "
        "with same id 'Pager'"
    )


# -- default_destinations -------------------------------------------------------------------


def test_default_destinations_route_rules_without_a_destinations_key_only(tmp_path: Path) -> None:
    write(
        tmp_path / "rules.toml",
        rule("Default")
        + rule("Own", 'destinations = ["Pager"]')
        + rule("None", "destinations = []"),
    )
    top = write(
        tmp_path / "top.toml",
        'include = ["rules.toml"]\ndefault_destinations = ["SNS"]\n'
        + SNS.format(id="SNS")
        + SNS.format(id="Pager"),
    )

    loaded = config.load_file(top)

    routes = {r.name: (r.destinations, r.default_routed) for r in loaded.rules}
    assert routes == {
        "Default": (("SNS",), True),
        "Own": (("Pager",), False),
        "None": ((), False),
    }


def test_default_destinations_must_name_declared_destinations() -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse('default_destinations = ["Nowhere"]\n' + rule("R"))
    assert caught.value.problems == ["default_destinations: unknown destination 'Nowhere'"]


def test_rule_with_no_destinations_is_valid_and_validate_warns_about_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "rules.toml", rule("Routed", 'destinations = ["SNS"]') + rule("Unrouted"))
    top = write(tmp_path / "top.toml", 'include = ["rules.toml"]\n' + SNS.format(id="SNS"))

    assert main(["validate", "--config", str(top)]) == 0
    captured = capsys.readouterr()

    assert "2 rules, 1 destination, 2 files" in captured.out
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert warnings == [
        f"tattletail: warning: {tmp_path / 'rules.toml'}: rule #1 'Unrouted': no destinations "
        "and no default_destinations, so its alerts go nowhere"
    ]
