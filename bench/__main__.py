"""Benchmark tattletail against the decode floor (and the jq CLI) on one generated bundle.

    python -m bench [--files N --records N --seed N] [--bundle DIR] [--keep] [--smoke]

Generates a CloudTrail bundle (bench/generate.py) into a temporary directory, or into --bundle
DIR where it is reused while its parameters match, then runs each measured command as a child
process of this one, one after the other, on the same bundle:

* the decode floor (bench/floor.py): gunzip + orjson.loads of every file, in one process;
* ``tattletail scan --dry-run`` with rules-3.toml and rules-50.toml, with TATTLETAIL_WORKERS=1
  and with the default worker count;
* the ``jq`` CLI, when installed, with each rule set combined into one program.

Each child is reaped with os.wait4, which gives its wall time, user+sys CPU and ru_maxrss; the
process tree's resident memory is also sampled from /proc every 50 ms. The report is a markdown
table on stdout (and in --markdown FILE).
"""

import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
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
    )


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


def render(rows: list[Row], bundle: Bundle, info: dict[str, str], reused: bool) -> str:
    floor = next((r.m for r in rows if r.what.startswith("decode floor") and r.m), None)
    mb = bundle.raw_bytes / 1e6
    lines = [
        f"## tattletail benchmark, {info['date']}",
        "",
        f"- Machine: {info['nproc']}, {info['cpu']}, {info['kernel']}",
        f"- Python: {info['python']}; jq: {info['jq']}; tattletail at {info['revision']} "
        "(plus any uncommitted changes)",
        f"- Load average (1/5/15 min): {info['load_before']} before, {info['load_after']} after"
        + (
            f". **The machine was busy**: the single-threaded floor got "
            f"{floor.cpu / floor.wall:.0%} of a CPU, so wall times (and the rates derived from "
            "them) are inflated; CPU seconds are the steadier comparison"
            if floor and floor.cpu < CONTENDED * floor.wall
            else ""
        ),
        f"- Bundle: {bundle.files} files, {bundle.records:,} records, {mb:.1f} MB of JSON "
        f"({bundle.gz_bytes / 1e6:.1f} MB gzipped), seed {bundle.seed}"
        + (" (reused)" if reused else ""),
        "",
        "| what | records/s | MB/s | wall s | CPU s | peak RSS MB | tree RSS MB | matches "
        "| × floor wall | × floor CPU | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        m = row.m
        cells = [row.what]
        if m is None:
            cells += ["-"] * 9
        else:
            cells += [
                f"{bundle.records / m.wall:,.0f}",
                f"{mb / m.wall:.1f}",
                f"{m.wall:.2f}",
                f"{m.cpu:.2f}",
                f"{m.max_rss_kb / 1024:.0f}",
                f"{m.tree_rss_kb / 1024:.0f}",
                "-" if row.matches is None else f"{row.matches:,}",
                _num(m.wall / floor.wall if floor else None, ".2f"),
                _num(m.cpu / floor.cpu if floor and floor.cpu else None, ".2f"),
            ]
        cells.append(row.note)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each row is one child process (jq: a `gzip -dc | jq` pipeline) reaped with `os.wait4`, "
        "run one after the other after a warm-up read of every file; tattletail runs "
        "`scan --dry-run` with its alerts on stdout going to /dev/null. "
        "*CPU s* is user+sys from `wait4`, which includes any worker processes the child reaped. "
        "*Peak RSS* is the largest `ru_maxrss` that `wait4` reports: one process's peak, the "
        "child's or one of its reaped workers'. *Tree RSS* is the peak of the summed VmRSS of the "
        "child and all its descendants, sampled from /proc every 50 ms. "
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
        warm_page_cache(bundle)
        load_before = _load()
        with tempfile.TemporaryDirectory(prefix="tattletail-bench-logs-") as scratch_dir:
            scratch = Path(scratch_dir)
            rows = [run_floor(bundle, scratch)]
            command = shlex.split(args.tattletail_cmd)
            for rules in rule_sets:
                for workers in ("1", None):
                    print(
                        f"bench: tattletail {rules} rules, workers={workers or 'default'}",
                        file=sys.stderr,
                    )
                    rows.append(run_tattletail(bundle, rules, workers, command, scratch))
            jq = shutil.which("jq")
            for rules in jq_sets:
                if jq is None:
                    rows.append(Row(f"jq CLI, {rules} rules", None, note="jq not installed"))
                    continue
                print(f"bench: jq {rules} rules", file=sys.stderr)
                rows.append(run_jq(bundle, rules, args.jq_limit_rules, jq, scratch))
        info = machine_info()
        info["load_before"], info["load_after"] = load_before, _load()
        report = render(rows, bundle, info, reused)
        if args.match_counts:
            report += render_match_counts(rows)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(path, ignore_errors=True)
        elif temporary:
            print(f"bench: bundle kept in {path}", file=sys.stderr)
    print(report, end="")
    if args.markdown:
        args.markdown.write_text(report)
    failed = any(row.m is None for row in rows)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
