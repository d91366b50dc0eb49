"""The benchmark's statistics over repeated runs and its report, on hand-built measurements."""

import re
from pathlib import Path

import pytest

from bench.__main__ import (
    FLOOR,
    Bundle,
    Measurement,
    Row,
    Target,
    build_targets,
    jq_key,
    match_target,
    median_rate_ratio,
    median_run,
    parse_args,
    rate_ratios,
    render,
    series_note,
    tattletail_key,
    wall_spread,
)

BUNDLE = Bundle(
    path=Path("/nonexistent"),
    files=4,
    records=10_000,
    raw_bytes=20_000_000,
    gz_bytes=4_000_000,
    seed=1,
)
INFO = {
    "date": "2026-11-27 14:22 UTC",
    "revision": "abc1234",
    "nproc": "2 usable of 2 CPUs",
    "cpu": "Test CPU",
    "python": "CPython 3.11.7",
    "jq": "jq-1.6",
    "kernel": "Linux 6.0",
    "load_before": "0.10 / 0.20 / 0.30",
    "load_after": "0.40 / 0.50 / 0.60",
}


def run(
    wall: float, *, cpu: float | None = None, matches: int | None = None, note: str = ""
) -> Row:
    """A successful run; its CPU defaults to its wall (a process that had a whole CPU)."""
    m = Measurement(wall, wall if cpu is None else cpu, 100 * 1024, 200 * 1024, [0])
    return Row(f"run of {wall}", m, matches=matches, note=note)


def failed(note: str = "skipped: exit 1: boom") -> Row:
    return Row("a failed run", None, note=note)


def tattletail(walls: list[float], rules: str, workers: str | None, matches: int) -> list[Row]:
    label = f"tattletail, {rules} rules, " + (
        f"TATTLETAIL_WORKERS={workers}" if workers else "TATTLETAIL_WORKERS unset"
    )
    return [Row(label, run(w).m, matches=matches) for w in walls]


def benchmark(
    floor: list[float],
    t3w1: list[float],
    t3def: list[float],
    t50w1: list[float],
    t50def: list[float],
    *,
    matches3: int = 100,
    matches50: int = 500,
    jq3: Row | None = None,
    jq50: Row | None = None,
) -> dict[str, list[Row]]:
    """Runs keyed as main keys them; each list holds one wall time per round."""
    runs = {
        FLOOR: [Row("decode floor (gunzip + orjson.loads, 1 process)", run(w).m) for w in floor],
        tattletail_key("3", "1"): tattletail(t3w1, "3", "1", matches3),
        tattletail_key("3", None): tattletail(t3def, "3", None, matches3),
        tattletail_key("50", "1"): tattletail(t50w1, "50", "1", matches50),
        tattletail_key("50", None): tattletail(t50def, "50", None, matches50),
    }
    if jq3 is not None:
        runs[jq_key("3")] = [jq3]
    if jq50 is not None:
        runs[jq_key("50")] = [jq50]
    return runs


def jq_row(matches: int, *, partial: bool = False) -> Row:
    per_rule = {"only": matches} if partial else {}
    return Row("jq CLI", run(30.0).m, matches=matches, per_rule=per_rule, partial=partial)


def by_what(targets: list[Target]) -> dict[str, Target]:
    return {t.what: t for t in targets}


def tables(report: str) -> list[list[list[str]]]:
    """Every markdown table of ``report``: its lines, each split into cells at unescaped pipes."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in report.splitlines() + [""]:
        if line.startswith("|"):
            assert line.endswith("|"), line
            current.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif current:
            found.append(current)
            current = []
    return found


# --------------------------------------------------------------------------------------------
# Median runs and per-round ratios


def test_median_run_is_the_run_with_the_middle_wall_and_keeps_its_own_cpu() -> None:
    runs = [run(9.0, cpu=1.0), run(7.0, cpu=2.0), run(8.0, cpu=30.0)]
    median = median_run(runs)
    assert median is runs[2]
    # The CPU shown is that run's, not the median of the CPU column (2.0).
    assert median.m is not None and median.m.cpu == 30.0


def test_median_run_of_an_even_number_is_the_faster_middle_run() -> None:
    runs = [run(4.0), run(1.0), run(3.0), run(2.0)]
    assert median_run(runs) is runs[3]


def test_median_run_skips_failed_runs_and_is_none_when_all_failed() -> None:
    runs = [failed(), run(5.0), failed(), run(3.0), run(4.0)]
    assert median_run(runs) is runs[4]
    assert median_run([failed(), failed()]) is None
    assert median_run([]) is None


def test_wall_spread_ignores_failed_runs() -> None:
    assert wall_spread([run(8.5), failed(), run(9.25), run(8.0)]) == (8.0, 9.25)
    assert wall_spread([failed()]) is None


def test_rate_ratios_pair_the_runs_of_each_round() -> None:
    floor = [run(10.0), run(20.0), run(10.0)]
    scan = [run(20.0), run(20.0), run(5.0)]
    # records/s of the scan over the floor's is the floor's wall over the scan's, round by round.
    assert rate_ratios(scan, floor) == [0.5, 1.0, 2.0]
    # The median runs (10 s and 20 s) come from different rounds, hence another ratio.
    assert median_rate_ratio(scan, floor) == 0.5


def test_rate_ratios_skip_a_round_where_either_side_failed() -> None:
    floor = [run(10.0), failed(), run(10.0)]
    scan = [failed(), run(5.0), run(20.0)]
    assert rate_ratios(scan, floor) == [0.5]
    assert rate_ratios(scan, []) == []
    assert median_rate_ratio(scan, []) is None


# --------------------------------------------------------------------------------------------
# Targets


def test_targets_met_and_not_met() -> None:
    runs = benchmark(
        floor=[10.0] * 3,
        t3w1=[15.0] * 3,  # 0.67 x floor
        t3def=[9.0] * 3,  # 1.11 x floor; 15/9 = 1.67 x 1 worker
        t50w1=[17.0] * 3,  # 0.59 x floor
        t50def=[11.0] * 3,  # 0.91 x floor; 17/11 = 1.55 x 1 worker; cost 1 - 9/11 = 18 %
        jq3=jq_row(100),
        jq50=jq_row(499),
    )
    targets = build_targets(runs, workers=2)
    met = {t.what: t.met for t in targets}
    assert met == {
        "README 3 rules, default workers (2): records/s ÷ the floor's": True,
        "50-rule pack, default workers (2): records/s ÷ the floor's": False,
        "README 3 rules, 1 worker: records/s ÷ the floor's": True,
        "50-rule pack, 1 worker: records/s ÷ the floor's": False,
        "3 -> 50 rules, default workers (2): cost = 1 - rate50/rate3": True,
        "README 3 rules: records/s of default workers (2) ÷ of 1 worker": True,
        "50-rule pack: records/s of default workers (2) ÷ of 1 worker": False,
        "README 3 rules: tattletail's matches equal the jq CLI's": True,
        "50-rule pack: tattletail's matches equal the jq CLI's": False,
    }
    cost = by_what(targets)["3 -> 50 rules, default workers (2): cost = 1 - rate50/rate3"]
    assert cost.value == pytest.approx(1 - 9 / 11)
    assert cost.percent


def test_met_is_decided_on_the_median_of_per_round_ratios() -> None:
    # Per round, 3 rules with default workers reach 0.5, 1.0 and 1.11 x the floor: median 1.0,
    # met. The median runs (floor 10 s, scan 20 s) would say 0.5.
    runs = benchmark(
        floor=[10.0, 20.0, 10.0],
        t3w1=[20.0] * 3,
        t3def=[20.0, 20.0, 9.0],
        t50w1=[20.0] * 3,
        t50def=[20.0] * 3,
    )
    target = by_what(build_targets(runs, workers=2))[
        "README 3 rules, default workers (2): records/s ÷ the floor's"
    ]
    assert target.per_round == pytest.approx([0.5, 1.0, 10 / 9])
    assert target.value == pytest.approx(1.0)
    assert target.of_medians == pytest.approx(0.5)
    assert target.met is True


def test_cost_above_a_quarter_is_not_met() -> None:
    runs = benchmark(
        floor=[10.0] * 2,
        t3w1=[10.0] * 2,
        t3def=[8.0, 8.0],
        t50w1=[10.0] * 2,
        t50def=[12.0, 9.0],  # cost 1 - 8/12 = 33 % and 1 - 8/9 = 11 %: median 22 %
    )
    cost = by_what(build_targets(runs, workers=2))[
        "3 -> 50 rules, default workers (2): cost = 1 - rate50/rate3"
    ]
    assert cost.per_round == pytest.approx([1 - 8 / 12, 1 - 8 / 9])
    assert cost.value == pytest.approx(((1 - 8 / 12) + (1 - 8 / 9)) / 2)
    assert cost.met is True
    runs[tattletail_key("50", None)] = tattletail([12.0, 12.0], "50", None, 500)
    cost = by_what(build_targets(runs, workers=2))[
        "3 -> 50 rules, default workers (2): cost = 1 - rate50/rate3"
    ]
    assert cost.met is False


def test_targets_whose_rows_did_not_run_are_not_measured() -> None:
    runs = benchmark(
        floor=[10.0] * 3, t3w1=[15.0] * 3, t3def=[9.0] * 3, t50w1=[], t50def=[], jq3=jq_row(100)
    )
    targets = by_what(build_targets(runs, workers=2))
    assert targets["README 3 rules, default workers (2): records/s ÷ the floor's"].met is True
    for what in (
        "50-rule pack, default workers (2): records/s ÷ the floor's",
        "50-rule pack, 1 worker: records/s ÷ the floor's",
        "3 -> 50 rules, default workers (2): cost = 1 - rate50/rate3",
        "50-rule pack: records/s of default workers (2) ÷ of 1 worker",
        "50-rule pack: tattletail's matches equal the jq CLI's",
    ):
        assert targets[what].met is None, what
        assert targets[what].value is None


def test_a_floor_that_always_failed_leaves_the_floor_targets_unmeasured() -> None:
    runs = benchmark(
        floor=[10.0] * 2, t3w1=[15.0] * 2, t3def=[9.0] * 2, t50w1=[15.0] * 2, t50def=[9.0] * 2
    )
    runs[FLOOR] = [failed(), failed()]
    targets = build_targets(runs, workers=2)
    floor_targets = [t for t in targets if "the floor's" in t.what]
    assert len(floor_targets) == 4
    assert all(t.met is None for t in floor_targets)
    # The targets between tattletail rows stand without the floor.
    assert by_what(targets)["README 3 rules: records/s of default workers (2) ÷ of 1 worker"].met


# --------------------------------------------------------------------------------------------
# Match counts against the jq CLI


def test_match_target_equal_and_different() -> None:
    rows = tattletail([1.0, 1.0], "3", "1", 100) + tattletail([1.0], "3", None, 100)
    equal = match_target("3", rows, jq_row(100))
    assert equal.met is True
    assert equal.measured == "tattletail 100; jq CLI 100"
    assert match_target("3", rows, jq_row(101)).met is False


def test_match_target_not_met_when_tattletail_runs_disagree() -> None:
    rows = tattletail([1.0], "3", "1", 100) + tattletail([1.0], "3", None, 101)
    target = match_target("3", rows, jq_row(100))
    assert target.met is False
    assert "100 / 101 (differ between runs)" in target.measured


def test_match_target_ignores_failed_tattletail_runs() -> None:
    rows = [failed(), *tattletail([1.0], "50", None, 7)]
    assert match_target("50", rows, jq_row(7)).met is True


def test_match_target_not_measured_without_a_comparable_jq_run() -> None:
    rows = tattletail([1.0], "3", None, 100)
    assert match_target("3", rows, None).met is None
    not_installed = match_target("3", rows, Row("jq CLI, 3 rules", None, note="jq not installed"))
    assert not_installed.met is None
    assert "jq not installed" in not_installed.measured
    # jq given the first rules only (--jq-limit-rules) counts fewer matches, not a mismatch.
    assert match_target("3", rows, jq_row(3, partial=True)).met is None
    no_summary = [Row("tattletail", run(1.0).m, matches=None)]
    assert match_target("3", no_summary, jq_row(100)).met is None


# --------------------------------------------------------------------------------------------
# The report


def sample_report(*, compiled: bool = True) -> str:
    runs = benchmark(
        floor=[10.0, 11.0, 10.5],
        t3w1=[15.0, 16.0, 15.5],
        t3def=[9.0, 11.0, 10.0],
        t50w1=[17.0, 18.0, 17.5],
        t50def=[11.0, 12.0, 11.5],
        jq3=jq_row(100),
        jq50=jq_row(500),
    )
    return render(runs, BUNDLE, INFO, False, compiled=compiled, workers=2)


def test_report_is_valid_markdown_with_the_targets_above_the_rows() -> None:
    report = sample_report()
    found = tables(report)
    assert len(found) == 2
    targets, rows = found
    for table in found:
        width = len(table[0])
        assert all(len(line) == width for line in table), table
        assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in table[1])
    assert targets[0][0] == "target" and len(targets) == 2 + 9
    assert rows[0][0] == "what" and len(rows) == 2 + 7
    assert report.index("### Targets") < report.index("### Measurements")
    assert "*Met* is decided on the median of the per-round values" in report


def test_report_rows_show_the_median_run_and_the_spread() -> None:
    rows = tables(sample_report())[1]
    header = rows[0]
    by_label = {line[0]: dict(zip(header, line, strict=True)) for line in rows[2:]}
    floor = by_label["decode floor (gunzip + orjson.loads, 1 process)"]
    assert floor["runs"] == "3"
    assert floor["wall s"] == "10.50"
    assert floor["wall s min–max"] == "10.00–11.00"
    assert floor["records/s"] == f"{10_000 / 10.5:,.0f}"
    t3 = by_label["tattletail, 3 rules, TATTLETAIL_WORKERS unset"]
    assert t3["wall s"] == "10.00"
    assert t3["wall s min–max"] == "9.00–11.00"
    assert t3["× floor wall"] == f"{10.0 / 10.5:.2f}"
    assert t3["matches"] == "100"
    jq = by_label["jq CLI"]
    assert jq["runs"] == "1"
    assert jq["wall s min–max"] == "-"


def test_report_targets_table_says_met_or_not() -> None:
    targets = tables(sample_report())[0]
    met = {line[0]: line[-1] for line in targets[2:]}
    # Floor 10/11/10.5 s against 9/11/10 s: 1.11, 1.00, 1.05 per round.
    assert met["README 3 rules, default workers (2): records/s ÷ the floor's"] == "yes"
    assert met["50-rule pack, default workers (2): records/s ÷ the floor's"] == "no"
    assert met["README 3 rules: tattletail's matches equal the jq CLI's"] == "yes"
    line = next(x for x in targets if x[0].startswith("README 3 rules, default workers"))
    assert line[2:5] == ["1.05", "1.11 / 1.00 / 1.05", f"{10.5 / 10.0:.2f}"]


def test_report_counts_failed_runs_and_escapes_pipes_in_notes() -> None:
    runs = benchmark(floor=[10.0] * 3, t3w1=[], t3def=[], t50w1=[], t50def=[])
    runs[tattletail_key("3", None)] = [
        failed("skipped: exit 2: a | b"),
        *tattletail([9.0, 9.5], "3", None, 100),
    ]
    rows = tables(render(runs, BUNDLE, INFO, False, workers=2))[1]
    line = next(x for x in rows if x[0] == "tattletail, 3 rules, TATTLETAIL_WORKERS unset")
    assert line[1] == "2 of 3"
    assert line[-1] == r"failed in 1 of 3 runs: skipped: exit 2: a \| b"


def test_report_says_when_the_machine_was_busy() -> None:
    quiet = sample_report()
    assert "The machine was busy" not in quiet
    runs = benchmark(floor=[10.0, 10.0, 10.0], t3w1=[1.0], t3def=[1.0], t50w1=[1.0], t50def=[1.0])
    runs[FLOOR][1] = Row("decode floor", run(10.0, cpu=6.0).m)
    busy = render(runs, BUNDLE, INFO, False, workers=2)
    assert "**The machine was busy**" in busy
    assert "as little as 60% of a CPU (1 of its 3 runs under 85%)" in busy


def test_report_footnote_tells_the_rounds_and_the_byte_compilation() -> None:
    compiled = sample_report()
    assert "ran 3 times each, interleaved round by round" in compiled
    assert "the jq CLI rows ran once" in compiled
    assert "byte-compiled (`compileall`)" in compiled
    assert "PYTHONDONTWRITEBYTECODE=1" in compiled
    not_compiled = sample_report(compiled=False)
    assert "byte-compiled (`compileall`)" not in not_compiled
    assert "failed for some module" in not_compiled


def test_series_note_reports_matches_that_differ_between_runs() -> None:
    runs = [run(1.0, matches=5), run(2.0, matches=6, note="read 9 records"), run(3.0, matches=5)]
    assert series_note(runs) == "read 9 records; matches differ between runs: 5, 6"
    assert series_note([failed("jq not installed")]) == "jq not installed"


def test_repeat_defaults_to_three_and_must_be_positive() -> None:
    assert parse_args([]).repeat == 3
    assert parse_args(["--smoke", "--repeat", "2"]).repeat == 2
    with pytest.raises(SystemExit):
        parse_args(["--repeat", "0"])
