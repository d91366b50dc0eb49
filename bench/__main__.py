"""Benchmark tattletail against the decode floor (and the jq CLI) on one generated bundle.

    python -m bench [--files N --records N --seed N] [--bundle DIR] [--keep] [--smoke]
                    [--repeat N]

Generates a CloudTrail bundle (bench/generate.py) into a temporary directory, or into --bundle
DIR where it is reused while its parameters match, byte-compiles the tattletail package, then
runs each measured command as a child process of this one, one after the other, on the same
bundle:

* the decode floor (bench/floor.py): gunzip + orjson.loads of every file, in one process;
* ``tattletail scan --dry-run`` with rules-3.toml and rules-50.toml, with TATTLETAIL_WORKERS=1
  and with the default worker count;
* the ``jq`` CLI, when installed, with each rule set combined into one program.

The floor and the tattletail commands run --repeat times (default 3), interleaved round by
round, so that a slow phase of a shared machine weighs on every one of them alike; the jq CLI
runs once. Each child is reaped with os.wait4, which gives its wall time, user+sys CPU and
ru_maxrss; the process tree's resident memory is also sampled from /proc every 50 ms. The
report is markdown on stdout (and in --markdown FILE): the issue's targets, each met or not on
the median of its per-round ratios, then one table row per command (its median run).
"""

import argparse
import compileall
import contextlib
import datetime
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench import generate

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RULE_SETS = {"3": BENCH_DIR / "rules-3.toml", "50": BENCH_DIR / "rules-50.toml"}
SAMPLE_INTERVAL_S = 0.05
SMOKE_FILES, SMOKE_RECORDS = 4, 2_000
# A CPU-bound single process reading from the page cache gets a whole CPU unless other work
# competes for it: below this share of its wall time the machine counts as busy.
CONTENDED = 0.85
DEFAULT_REPEAT = 3
FLOOR = "floor"  # the floor's key in the runs of a benchmark (see tattletail_key, jq_key)
WORKER_SETTINGS: tuple[str | None, ...] = ("1", None)  # TATTLETAIL_WORKERS=1, then unset
RULE_LABELS = {"3": "README 3 rules", "50": "50-rule pack"}
# tattletail.settings' default for TATTLETAIL_WORKERS, repeated rather than imported: the bench
# must not load the package it measures (nor break when a concurrent edit of it does not load).
DEFAULT_WORKERS = os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Measuring child processes


@dataclass
class Measurement:
    """Resources used by one measured command (one process, or a pipeline of them)."""

    wall: float
    cpu: float
    max_rss_kb: int  # largest ru_maxrss of the children (wait4 includes what they reaped)
    tree_rss_kb: int  # peak of the summed VmRSS of every live descendant, sampled
    exit_codes: list[int]


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc/<pid>/task/*/children."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.extend(int(k) for k in fh.read().split())
        except OSError:
            continue
    return kids


def _status_kb(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Polls the process trees under ``roots`` and keeps the peak of their summed VmRSS.

    ru_maxrss only ever reports one process's peak; a scan with worker processes holds memory
    in all of them at once, which only sampling can see. Samples can miss short spikes.
    """

    def __init__(self, roots: Sequence[int]) -> None:
        super().__init__(daemon=True)
        self.roots = list(roots)
        self.peak_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(SAMPLE_INTERVAL_S)

    def sample(self) -> None:
        seen: set[int] = set()
        pending = list(self.roots)
        while pending:
            pid = pending.pop()
            if pid not in seen:
                seen.add(pid)
                pending.extend(_children(pid))
        self.peak_kb = max(self.peak_kb, sum(_status_kb(pid, "VmRSS:") for pid in seen))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(
    commands: Sequence[Sequence[str]],
    *,
    env: dict[str, str] | None = None,
    stdout: int | IO[bytes] = subprocess.DEVNULL,
    stderr: int | IO[bytes] = subprocess.DEVNULL,
    on_output: Callable[[IO[bytes]], None] | None = None,
) -> Measurement:
    """Run ``commands`` as a pipeline (each feeding the next) and measure it with os.wait4.

    With ``on_output``, the last command's stdout is a pipe handed to that callback on a thread.
    OSError when a command cannot be started (nothing is left running).
    """
    started = time.perf_counter()
    procs: list[subprocess.Popen[bytes]] = []
    previous: IO[bytes] | None = None
    try:
        for i, command in enumerate(commands):
            last = i == len(commands) - 1
            out: int | IO[bytes] = subprocess.PIPE if not last or on_output else stdout
            proc = subprocess.Popen(
                command, stdin=previous, stdout=out, stderr=stderr, env=env, cwd=REPO_ROOT
            )
            if previous is not None:
                previous.close()  # the child holds it now; ours would keep the pipe open
            previous = proc.stdout
            procs.append(proc)
    except OSError:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    sampler = TreeSampler([p.pid for p in procs])
    sampler.start()
    reader = None
    if on_output is not None and previous is not None:
        reader = threading.Thread(target=on_output, args=(previous,), daemon=True)
        reader.start()
    cpu, max_rss, codes = 0.0, 0, []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        cpu += usage.ru_utime + usage.ru_stime
        max_rss = max(max_rss, usage.ru_maxrss)
        codes.append(proc.returncode)
    wall = time.perf_counter() - started
    sampler.stop()
    if reader is not None:
        reader.join()
    return Measurement(wall, cpu, max_rss, max(sampler.peak_kb, max_rss), codes)


# --------------------------------------------------------------------------------------------
# What gets measured


@dataclass
class Row:
    """One line of the report; ``m`` is None when the command failed or was skipped."""

    what: str
    m: Measurement | None
    matches: int | None = None
    note: str = ""
    per_rule: dict[str, int] = field(default_factory=dict)  # rule name -> matches (jq rows)
    partial: bool = False  # jq ran only the first rules of the set (--jq-limit-rules)


@dataclass
class Bundle:
    path: Path
    files: int
    records: int
    raw_bytes: int
    gz_bytes: int
    seed: int
    paths: list[Path] = field(default_factory=list)


def prepare_bundle(path: Path, files: int, records: int, seed: int) -> tuple[Bundle, bool]:
    """Generate the bundle unless ``path`` already holds one with the same parameters."""
    manifest = generate.read_manifest(path)
    wanted = generate.bundle_params(files, records, seed)
    reused = manifest is not None and all(manifest.get(k) == v for k, v in wanted.items())
    if reused:
        reused = all((path / p).is_file() for p in manifest["paths"])
    if not reused:
        print(f"bench: generating {files} files, {records} records into {path}", file=sys.stderr)
        stats = generate.generate(path, files, records, seed)
        print(f"bench: generated {stats.summary()}", file=sys.stderr)
        manifest = generate.read_manifest(path)
    assert manifest is not None
    bundle = Bundle(
        path=path,
        files=manifest["files"],
        records=manifest["records"],
        raw_bytes=manifest["raw_bytes"],
        gz_bytes=manifest["gz_bytes"],
        seed=seed,
        paths=[path / p for p in manifest["paths"]],
    )
    return bundle, reused


def warm_page_cache(bundle: Bundle) -> None:
    """Read every file once so the first measured row does not pay for the disk alone."""
    for path in bundle.paths:
        path.read_bytes()


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " / ".join(text[-lines:]) if text else "(no output)"


def run_floor(bundle: Bundle, scratch: Path) -> Row:
    err = scratch / "floor.stderr"
    out = scratch / "floor.stdout"
    with out.open("wb") as fout, err.open("wb") as ferr:
        m = measure(
            [[sys.executable, "-m", "bench.floor", str(bundle.path)]], stdout=fout, stderr=ferr
        )
    if m.exit_codes != [0]:
        return Row("decode floor", None, note=f"failed (exit {m.exit_codes}): {_tail(err)}")
    return Row(
        "decode floor (gunzip + orjson.loads, 1 process)",
        m,
        note="the floor: every other row is compared to it",
    )


_SUMMARY = re.compile(rb"(\d+) objects, (\d+) records, (\d+) matches")


def run_tattletail(
    bundle: Bundle, rules: str, workers: str | None, command: Sequence[str], scratch: Path
) -> Row:
    label = f"tattletail, {rules} rules, " + (
        f"TATTLETAIL_WORKERS={workers}" if workers else "TATTLETAIL_WORKERS unset"
    )
    env = dict(os.environ)
    env.pop("TATTLETAIL_WORKERS", None)
    if workers:
        env["TATTLETAIL_WORKERS"] = workers
    err = scratch / f"tattletail-{rules}-{workers or 'default'}.stderr"
    argv = [*command, "scan", "--config", str(RULE_SETS[rules]), "--dry-run", str(bundle.path)]
    try:
        with err.open("wb") as ferr:
            m = measure([argv], env=env, stderr=ferr)
    except OSError as exc:
        return Row(label, None, note=f"skipped: cannot run {argv[0]}: {exc.strerror}")
    if m.exit_codes != [0]:
        return Row(label, None, note=f"skipped: exit {m.exit_codes[0]}: {_tail(err)}")
    summary = _SUMMARY.search(err.read_bytes())
    note = ""
    matches = None
    if summary:
        records, matches = int(summary[2]), int(summary[3])
        if records != bundle.records:
            note = f"read {records} records, bundle has {bundle.records}"
    return Row(label, m, matches=matches, note=note)


def load_rules(rules: str) -> list[dict[str, object]]:
    with RULE_SETS[rules].open("rb") as fh:
        return tomllib.load(fh)["rule"]


def jq_program(matches: Sequence[str]) -> str:
    """One jq program evaluating every rule on every record with tattletail's semantics.

    A rule matches when its first output is neither null nor false; no output or an error is
    no match. Each match prints ``[rule index, eventID]``.
    """
    checks = ",\n".join(
        f"(if hit(({src})) then [{i}, .eventID] else empty end)" for i, src in enumerate(matches)
    )
    return (
        "def hit(f): [first(f)?] | length > 0 and .[0] != null and .[0] != false;\n"
        f".Records[] | (\n{checks}\n)"
    )


def run_jq(bundle: Bundle, rules: str, limit: int | None, jq: str, scratch: Path) -> Row:
    every = load_rules(rules)
    loaded = every[:limit]
    sources = [str(r["jq_match"]) for r in loaded]
    counts: Counter[int] = Counter()

    def count(stream: IO[bytes]) -> None:
        for line in stream:
            counts[int(line[1 : line.index(b",")])] += 1

    err = scratch / f"jq-{rules}.stderr"
    label = f"jq CLI, {len(loaded)} rules"
    if len(loaded) < len(every):
        label += f" (the first of {len(every)})"
    try:
        with err.open("wb") as ferr:
            m = measure(
                [["gzip", "-dc", *map(str, bundle.paths)], [jq, "-c", jq_program(sources)]],
                stderr=ferr,
                on_output=count,
            )
    except OSError as exc:
        return Row(label, None, note=f"skipped: {exc.filename}: {exc.strerror}")
    if any(m.exit_codes):
        return Row(label, None, note=f"failed: exit {m.exit_codes}: {_tail(err)}")
    per_rule = {str(rule["name"]): counts[i] for i, rule in enumerate(loaded)}
    return Row(
        label,
        m,
        matches=sum(counts.values()),
        per_rule=per_rule,
        note="gzip -dc piped into jq -c, one combined program; gzip CPU included",
        partial=len(loaded) < len(every),
    )


def tattletail_key(rules: str, workers: str | None) -> str:
    return f"tattletail {rules} rules, workers={workers or 'default'}"


def jq_key(rules: str) -> str:
    return f"jq {rules} rules"


def byte_compile() -> bool:
    """Write the .pyc of every tattletail module; False when some module failed to compile.

    This environment sets PYTHONDONTWRITEBYTECODE=1, so with an editable install every measured
    process (and every worker it starts) would compile each module from source again, a cost
    an installed package, which ships its .pyc, does not pay. Python still reads existing .pyc
    files under that setting, and writes them here because py_compile ignores it.
    """
    # compileall prints its errors on stdout, which carries the report.
    with contextlib.redirect_stdout(sys.stderr):
        return bool(compileall.compile_dir(REPO_ROOT / "tattletail", quiet=1))


def run_rounds(
    bundle: Bundle, rule_sets: Sequence[str], command: Sequence[str], repeat: int, scratch: Path
) -> dict[str, list[Row]]:
    """Run the floor and every tattletail command ``repeat`` times, round by round.

    Interleaving (rather than N runs of one command, then N of the next) spreads the machine's
    slow phases over every command, and gives each round its own floor to divide by.
    """
    runs: dict[str, list[Row]] = {FLOOR: []}
    for rules in rule_sets:
        for workers in WORKER_SETTINGS:
            runs[tattletail_key(rules, workers)] = []
    for round_no in range(1, repeat + 1):
        print(f"bench: round {round_no}/{repeat}: decode floor", file=sys.stderr)
        runs[FLOOR].append(run_floor(bundle, scratch))
        for rules in rule_sets:
            for workers in WORKER_SETTINGS:
                print(
                    f"bench: round {round_no}/{repeat}: tattletail {rules} rules, "
                    f"workers={workers or 'default'}",
                    file=sys.stderr,
                )
                row = run_tattletail(bundle, rules, workers, command, scratch)
                runs[tattletail_key(rules, workers)].append(row)
    return runs


# --------------------------------------------------------------------------------------------
# Statistics over repeated runs


def median_run(runs: Sequence[Row]) -> Row | None:
    """The successful run with the median wall time; None when no run succeeded.

    A real run rather than the median of each column, so that the CPU seconds and RSS shown
    beside a wall time are that run's own. Of an even number of runs, the faster of the two
    middle ones (statistics.median_low), since there is no middle run to take.
    """
    timed = sorted((row.m.wall, i) for i, row in enumerate(runs) if row.m is not None)
    return runs[timed[(len(timed) - 1) // 2][1]] if timed else None


def wall_spread(runs: Sequence[Row]) -> tuple[float, float] | None:
    """The fastest and the slowest wall time of the successful runs."""
    walls = [row.m.wall for row in runs if row.m is not None]
    return (min(walls), max(walls)) if walls else None


def rate_ratios(num: Sequence[Row], den: Sequence[Row]) -> list[float]:
    """records/s of ``num`` over records/s of ``den`` in each round where both succeeded.

    Both read the same bundle, so the ratio of rates is the inverse ratio of wall times.
    """
    # Not strict: a rule set left out with --rules has no runs at all, hence no ratios.
    return [
        d.m.wall / n.m.wall
        for n, d in zip(num, den, strict=False)
        if n.m is not None and d.m is not None
    ]


def median_rate_ratio(num: Sequence[Row], den: Sequence[Row]) -> float | None:
    """The same ratio from the two median runs, i.e. from the main table's numbers."""
    n, d = median_run(num), median_run(den)
    if n is None or d is None or n.m is None or d.m is None:
        return None
    return d.m.wall / n.m.wall


@dataclass
class Target:
    """One of the issue's targets as measured; ``met`` is None when it could not be measured."""

    what: str
    bar: str
    met: bool | None
    value: float | None = None  # the median of per_round, on which ``met`` is decided
    per_round: list[float] = field(default_factory=list)
    of_medians: float | None = None
    measured: str = ""  # the measured value of a target that is not a ratio (match counts)
    percent: bool = False


def at_least(bar: float) -> Callable[[float], bool]:
    return lambda value: value >= bar


def at_most(bar: float) -> Callable[[float], bool]:
    return lambda value: value <= bar


def ratio_target(
    what: str,
    bar: str,
    per_round: list[float],
    of_medians: float | None,
    passes: Callable[[float], bool],
    *,
    percent: bool = False,
) -> Target:
    """A target met when ``passes`` holds for the median of the per-round values.

    The per-round median, not the ratio of the median runs: each round's ratio divides two
    runs made a few seconds apart, which a slow phase of the machine slows alike, while the
    two median runs may come from different rounds.
    """
    value = statistics.median(per_round) if per_round else None
    met = None if value is None else passes(value)
    return Target(what, bar, met, value, per_round, of_medians, percent=percent)


def _rules_label(rules: str) -> str:
    return RULE_LABELS.get(rules, f"{rules} rules")


def match_target(rules: str, tattletail: Sequence[Row], jq: Row | None) -> Target:
    """Whether every successful tattletail run of ``rules`` matched as often as the jq CLI."""
    what = f"{_rules_label(rules)}: tattletail's matches equal the jq CLI's"
    bar = "equal"
    if jq is None or jq.m is None or jq.matches is None:
        why = f" ({jq.note})" if jq is not None and jq.note else ""
        return Target(what, bar, None, measured=f"the jq CLI did not run{why}")
    if jq.partial:
        return Target(
            what, bar, None, measured=f"the jq CLI ran only {len(jq.per_rule)} of the rules"
        )
    counts = sorted({r.matches for r in tattletail if r.m is not None and r.matches is not None})
    if not counts:
        return Target(what, bar, None, measured="no tattletail run reported its matches")
    shown = " / ".join(f"{c:,}" for c in counts)
    if len(counts) > 1:
        shown += " (differ between runs)"
    return Target(
        what, bar, counts == [jq.matches], measured=f"tattletail {shown}; jq CLI {jq.matches:,}"
    )


def build_targets(runs: dict[str, list[Row]], workers: int = DEFAULT_WORKERS) -> list[Target]:
    """The issue's targets, in its order, from the runs of one benchmark (keyed as run_rounds
    and main key them); a target whose rows did not run is there, not measured."""
    floor = runs.get(FLOOR, [])

    def of(rules: str, setting: str | None) -> list[Row]:
        return runs.get(tattletail_key(rules, setting), [])

    default = f"default workers ({workers})"
    targets: list[Target] = []
    for setting, bar in ((None, 1.0), ("1", 0.6)):
        for rules in RULE_SETS:
            who = default if setting is None else "1 worker"
            targets.append(
                ratio_target(
                    f"{_rules_label(rules)}, {who}: records/s ÷ the floor's",
                    f">= {bar:.1f}",
                    rate_ratios(of(rules, setting), floor),
                    median_rate_ratio(of(rules, setting), floor),
                    at_least(bar),
                )
            )
    three, fifty = of("3", None), of("50", None)
    from_medians = median_rate_ratio(fifty, three)
    targets.append(
        ratio_target(
            f"3 -> 50 rules, {default}: cost = 1 - rate50/rate3",
            "<= 25%",
            [1 - ratio for ratio in rate_ratios(fifty, three)],
            None if from_medians is None else 1 - from_medians,
            at_most(0.25),
            percent=True,
        )
    )
    for rules in RULE_SETS:
        targets.append(
            ratio_target(
                f"{_rules_label(rules)}: records/s of {default} ÷ of 1 worker",
                ">= 1.6",
                rate_ratios(of(rules, None), of(rules, "1")),
                median_rate_ratio(of(rules, None), of(rules, "1")),
                at_least(1.6),
            )
        )
    for rules in RULE_SETS:
        jq = runs.get(jq_key(rules))
        targets.append(match_target(rules, of(rules, "1") + of(rules, None), jq[0] if jq else None))
    return targets


# --------------------------------------------------------------------------------------------
# Report


def machine_info() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    jq = shutil.which("jq")
    jq_version = (
        subprocess.run([jq, "--version"], capture_output=True, text=True).stdout.strip()
        if jq
        else "not installed"
    )
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "revision": head.stdout.strip() if head.returncode == 0 else "no commit",
        "nproc": f"{usable or os.cpu_count()} usable of {os.cpu_count()} CPUs",
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "jq": jq_version,
        "kernel": f"{platform.system()} {platform.release()}",
    }


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render_match_counts(rows: list[Row]) -> str:
    """Per-rule match counts from the jq rows: how often each detection fires on the bundle."""
    out = []
    for row in rows:
        if row.per_rule:
            out += ["", f"Matches per rule ({row.what}):", "", "| rule | matches |", "|---|---:|"]
            out += [f"| {name} | {count:,} |" for name, count in row.per_rule.items()]
    return "\n".join(out) + "\n" if out else ""


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _cell(text: str) -> str:
    """Text safe in a markdown table cell (a stderr tail in a note can hold a pipe)."""
    return text.replace("|", "\\|")


def _value(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.2f}"


def render_targets(targets: Sequence[Target]) -> list[str]:
    lines = [
        "### Targets",
        "",
        "Each ratio divides records/s measured in the same round (the cost is 1 minus one), so a "
        "slow phase of the machine weighs on both sides of it. *Met* is decided on the median of "
        "the per-round values, the steadier statistic; *from medians* is the same ratio from the "
        "median runs of the table below, which may come from different rounds.",
        "",
        "| target | bar | median of rounds | per round | from medians | met |",
        "|---|---|---:|---:|---:|---|",
    ]
    for t in targets:
        measured = _cell(t.measured) if t.measured else _value(t.value, t.percent)
        per_round = " / ".join(_value(v, t.percent) for v in t.per_round) or "-"
        met = "not measured" if t.met is None else ("yes" if t.met else "no")
        lines.append(
            f"| {t.what} | {t.bar} | {measured} | {per_round} "
            f"| {_value(t.of_medians, t.percent)} | {met} |"
        )
    return lines


def series_note(runs: Sequence[Row]) -> str:
    """The note of a row's median run, plus what the other runs did differently."""
    median = median_run(runs)
    failed = [row for row in runs if row.m is None]
    if median is None and len(runs) == 1:
        return runs[0].note
    notes = [median.note] if median is not None and median.note else []
    if failed:
        notes.append(f"failed in {len(failed)} of {len(runs)} runs: {failed[0].note}")
    counts = sorted({r.matches for r in runs if r.m is not None and r.matches is not None})
    if len(counts) > 1:
        notes.append("matches differ between runs: " + ", ".join(f"{c:,}" for c in counts))
    return "; ".join(notes)


def busy_note(floor: Sequence[Row]) -> str:
    """Why the wall times may be inflated, from the floor's share of a CPU; "" when idle."""
    shares = [row.m.cpu / row.m.wall for row in floor if row.m is not None and row.m.wall > 0]
    busy = [share for share in shares if share < CONTENDED]
    if not busy:
        return ""
    return (
        f". **The machine was busy**: the single-threaded floor got as little as "
        f"{min(shares):.0%} of a CPU ({len(busy)} of its {len(shares)} runs under "
        f"{CONTENDED:.0%}), so wall times (and the rates derived from them) are inflated; CPU "
        "seconds and the per-round ratios are the steadier comparison"
    )


def render(
    runs: dict[str, list[Row]],
    bundle: Bundle,
    info: dict[str, str],
    reused: bool,
    *,
    compiled: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> str:
    """The report: machine and bundle, the targets, then one row per command (its median run).

    ``runs`` maps each command's key (FLOOR, tattletail_key, jq_key) to its runs, one per
    round (one in all for jq), in the order of the table.
    """
    floor_runs = runs.get(FLOOR, [])
    floor_row = median_run(floor_runs)
    floor = floor_row.m if floor_row is not None else None
    rounds = len(floor_runs)
    mb = bundle.raw_bytes / 1e6
    lines = [
        f"## tattletail benchmark, {info['date']}",
        "",
        f"- Machine: {info['nproc']}, {info['cpu']}, {info['kernel']}",
        f"- Python: {info['python']}; jq: {info['jq']}; tattletail at {info['revision']} "
        "(plus any uncommitted changes)",
        f"- Load average (1/5/15 min): {info['load_before']} before, {info['load_after']} after"
        + busy_note(floor_runs),
        f"- Bundle: {bundle.files} files, {bundle.records:,} records, {mb:.1f} MB of JSON "
        f"({bundle.gz_bytes / 1e6:.1f} MB gzipped), seed {bundle.seed}"
        + (" (reused)" if reused else ""),
        f"- Rounds: {rounds} (the floor and each tattletail row once per round, interleaved); "
        "the jq CLI once",
        "",
        *render_targets(build_targets(runs, workers)),
        "",
        "### Measurements",
        "",
        "| what | runs | records/s | MB/s | wall s | wall s min–max | CPU s | peak RSS MB "
        "| tree RSS MB | matches | × floor wall | × floor CPU | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for series in runs.values():
        if not series:
            continue
        median = median_run(series)
        done = sum(row.m is not None for row in series)
        cells = [
            (median or series[0]).what,
            str(done) if done == len(series) else f"{done} of {len(series)}",
        ]
        m = median.m if median is not None else None
        spread = wall_spread(series)
        if median is None or m is None or spread is None:
            cells += ["-"] * 10
        else:
            cells += [
                f"{bundle.records / m.wall:,.0f}",
                f"{mb / m.wall:.1f}",
                f"{m.wall:.2f}",
                f"{spread[0]:.2f}–{spread[1]:.2f}" if done > 1 else "-",
                f"{m.cpu:.2f}",
                f"{m.max_rss_kb / 1024:.0f}",
                f"{m.tree_rss_kb / 1024:.0f}",
                "-" if median.matches is None else f"{median.matches:,}",
                _num(m.wall / floor.wall if floor else None, ".2f"),
                _num(m.cpu / floor.cpu if floor and floor.cpu else None, ".2f"),
            ]
        cells.append(_cell(series_note(series)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The decode floor and the tattletail rows ran {rounds} times each, interleaved round by "
        "round (the floor, then each tattletail row, then the next round), so that slow phases of "
        "the shared machine hit every row alike; the jq CLI rows ran once, after the rounds. A "
        "row shows its median run: the run with the median wall time (of an even number of runs, "
        "the faster of the two middle ones), and that same run's CPU seconds, RSS and matches, so "
        "that the numbers of a row belong together; *wall s min–max* is the spread of the wall "
        "times over the runs, and *runs* counts the runs that succeeded. *records/s*, *MB/s* and "
        "the *× floor* columns use the median runs. "
        "Each run is one child process (jq: a `gzip -dc | jq` pipeline) reaped with `os.wait4`, "
        "run one after the other after a warm-up read of every file; tattletail runs "
        "`scan --dry-run` with its alerts on stdout going to /dev/null. "
        + (
            "Before the first run the tattletail package was byte-compiled (`compileall`): this "
            "environment sets PYTHONDONTWRITEBYTECODE=1, under which an editable install would "
            "compile every module from source again in every process, which an installed "
            "package, shipped with its .pyc files, does not do (Python still reads existing "
            ".pyc files under that setting). "
            if compiled
            else "Byte-compiling the tattletail package (`compileall`) failed for some module, "
            "which every process therefore compiled from source again (this environment sets "
            "PYTHONDONTWRITEBYTECODE=1): the tattletail rows include that cost. "
        )
        + "*CPU s* is user+sys from `wait4`, which includes any worker processes the child "
        "reaped. *Peak RSS* is the largest `ru_maxrss` that `wait4` reports: one process's peak, "
        "the child's or one of its reaped workers'. *Tree RSS* is the peak of the summed VmRSS of "
        "the child and all its descendants, sampled from /proc every 50 ms. "
        "*MB/s* counts uncompressed JSON. *Matches* is tattletail's own count (from its summary "
        "line) or, for jq, the number of (rule, record) matches it printed. The jq program runs "
        "every rule on every record with tattletail's semantics (first output; null, false, no "
        "output or an error is no match) and prints `[rule, eventID]` per match, without "
        "building alerts.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--files", type=int, default=generate.DEFAULT_FILES)
    parser.add_argument("--records", type=int, default=generate.DEFAULT_RECORDS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bundle", type=Path, help="bundle directory, reused if it matches")
    parser.add_argument("--keep", action="store_true", help="keep the temporary bundle")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny bundle ({SMOKE_FILES} files, {SMOKE_RECORDS} records) for CI",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        metavar="N",
        help="run the floor and the tattletail rows N times, interleaved; the report shows "
        "medians (default: %(default)s); the jq CLI runs once",
    )
    parser.add_argument(
        "--rules", choices=sorted(RULE_SETS), action="append", help="rule sets (default: all)"
    )
    parser.add_argument(
        "--jq-rules",
        choices=["none", *sorted(RULE_SETS)],
        action="append",
        help="rule sets to run the jq CLI with (default: as --rules; 'none' to skip jq)",
    )
    parser.add_argument(
        "--jq-limit-rules", type=int, metavar="N", help="give jq only the first N rules of a set"
    )
    parser.add_argument(
        "--tattletail-cmd",
        default=f"{shlex.quote(sys.executable)} -m tattletail",
        help="command that runs tattletail (default: %(default)s)",
    )
    parser.add_argument(
        "--match-counts", action="store_true", help="add per-rule match counts (from jq rows)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any row failed or was skipped"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.smoke:
        args.files, args.records = SMOKE_FILES, SMOKE_RECORDS
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rule_sets = sorted(set(args.rules or RULE_SETS), key=int)
    jq_sets = sorted(set(args.jq_rules or rule_sets) - {"none"}, key=int)
    temporary = args.bundle is None
    path = Path(tempfile.mkdtemp(prefix="tattletail-bench-")) if temporary else args.bundle
    try:
        try:
            bundle, reused = prepare_bundle(path, args.files, args.records, args.seed)
        except (FileExistsError, ValueError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        compiled = byte_compile()
        if not compiled:
            print("bench: byte-compiling tattletail failed for some module", file=sys.stderr)
        warm_page_cache(bundle)
        load_before = _load()
        with tempfile.TemporaryDirectory(prefix="tattletail-bench-logs-") as scratch_dir:
            scratch = Path(scratch_dir)
            command = shlex.split(args.tattletail_cmd)
            runs = run_rounds(bundle, rule_sets, command, args.repeat, scratch)
            jq = shutil.which("jq")
            for rules in jq_sets:
                if jq is None:
                    row = Row(f"jq CLI, {rules} rules", None, note="jq not installed")
                else:
                    print(f"bench: jq {rules} rules", file=sys.stderr)
                    row = run_jq(bundle, rules, args.jq_limit_rules, jq, scratch)
                runs[jq_key(rules)] = [row]
        info = machine_info()
        info["load_before"], info["load_after"] = load_before, _load()
        report = render(runs, bundle, info, reused, compiled=compiled)
        if args.match_counts:
            report += render_match_counts([row for series in runs.values() for row in series])
    finally:
        if temporary and not args.keep:
            shutil.rmtree(path, ignore_errors=True)
        elif temporary:
            print(f"bench: bundle kept in {path}", file=sys.stderr)
    print(report, end="")
    if args.markdown:
        args.markdown.write_text(report)
    failed = any(row.m is None for series in runs.values() for row in series)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
