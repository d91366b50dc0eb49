"""Hostile log files, generated: no input may crash a worker, print a traceback, cross the
worker's memory bound, or cost any other record its alerts (issue 10, "find the rest").

Each file mixes real-looking records with hostile ones: nesting at and past every limit
(orjson's 255 and 1,024 levels, libjq's 10,000), numbers no double holds, NaN, lone
surrogates, bytes that are not UTF-8, objects nested inside a record that look like records,
`{}` amplification, long strings, entries that are not objects, entries that are not JSON, a
file cut short; laid out as CloudTrail writes files, indented, as a JSON array or as JSON
Lines, gzipped or not. The oracle is libjq: every record it reads must give exactly the alerts
libjq gives for it, every other entry must be counted (skipped or failed, by eventID).

CI runs a fixed, seeded amount; TATTLETAIL_FUZZ_SCALE multiplies it and TATTLETAIL_FUZZ_SEED
picks the seed (`random` for a new one, shown on failure), as the other fuzz tests do.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import jq
import pytest

from tattletail.alerts import Alert
from tattletail.destinations import stdout
from tattletail.rules import RuleSource
from tattletail.workers import WorkerPool

FILES_IN_CI = 40
MIB = 1024 * 1024
MEMORY_ALLOWANCE = 128 * MIB

RULES = [
    RuleSource("Create User", 'select(.eventName == "CreateUser") | "user: \\(.eventID)"'),
    # libjq reads the record's whole text and walks all of it.
    RuleSource("Nodes", 'select(.eventName == "CreateUser") | [..] | length'),
    RuleSource("Payload type", 'select(.eventName == "CreateUser") | .payload | type'),
    RuleSource("Everything else", 'select(.eventName != "CreateUser") | .eventID'),
]
PROGRAMS = [jq.compile(rule.jq_match) for rule in RULES]


def fuzz_scale() -> int:
    return max(1, int(os.environ.get("TATTLETAIL_FUZZ_SCALE", "1")))


def fuzz_seed() -> int:
    seed = os.environ.get("TATTLETAIL_FUZZ_SEED", "")
    if seed == "random":
        return random.SystemRandom().randrange(2**32)
    return int(seed) if seed else 20260110


@dataclass
class Entry:
    """One entry of a file's Records: its text, and what must come of it."""

    text: bytes
    kind: str  # record, invalid, failed
    event_id: str = ""
    # The text libjq is given as the oracle (a lone surrogate escape, which libjq refuses,
    # reads as U+FFFD in Tattletail).
    oracle: bytes | None = None


@dataclass
class HostileFile:
    entries: list[Entry] = field(default_factory=list)
    layout: str = "compact"
    truncated: bool = False
    payload: bytes = b""


# libjq reads 10,000 levels, an object counting as two (its parser stacks the key too).
LIBJQ_DEPTH = 10_000


def nested(rng: random.Random, depth: int, leaf: str = "null") -> tuple[str, int]:
    """`depth` arrays and objects around a leaf, and how deep libjq counts that."""
    opening, closing, levels = [], [], 0
    for _ in range(depth):
        if rng.random() < 0.5:
            opening.append("[")
            closing.append("]")
            levels += 1
        else:
            opening.append('{"k":')
            closing.append("}")
            levels += 2
    return "".join(opening) + leaf + "".join(reversed(closing)), levels


HOSTILE_NUMBERS = [
    "18446744073709551616",
    "-1180591620717411303424",
    "123456789012345678901234567890",
    "1e400",
    "-1e400",
    "1.5e308",
    "-0.0",
    "NaN",
    "Infinity",
    "-Infinity",
    "9007199254740993",
    "1E+2",
]
HOSTILE_STRINGS = [
    '"a\\ud800b"',
    '"\\udc00"',
    '"\\ud83d\\ude00"',
    '"stra\\u00dfe \\u0130 \\u0131 \\u212a \\uff21"',
    '"\\"quoted\\" \\\\ \\/ \\n"',
    '"' + "x" * 70_000 + '"',
]


def payload_of(rng: random.Random, name: str) -> tuple[str, bool, int]:
    """A hostile payload's JSON text for a record, whether it holds a lone surrogate, and how
    deep libjq counts it."""
    choice = rng.choice(
        ["deep", "deep", "numbers", "strings", "fake records", "amplify", "plain", "bytes"]
    )
    if choice == "deep":
        depth = rng.choice([254, 255, 256, 300, 1023, 1024, 1025, 2000, 4999, 9_998])
        text, levels = nested(rng, depth, rng.choice(["null", "1", '"x"', "1e400"]))
        return text, False, levels
    if choice == "numbers":
        return "[" + ",".join(rng.sample(HOSTILE_NUMBERS, 4)) + "]", False, 1
    if choice == "strings":
        text = rng.choice(HOSTILE_STRINGS)
        return text, "\\ud800" in text or text == '"\\udc00"', 0
    if choice == "fake records":
        # Objects a record nests that look like records: never alerted on as such.
        fakes = [
            f'{{"eventVersion":"1.08","eventName":"CreateUser","eventID":"fake-{name}-{n}"}}'
            for n in range(rng.randint(1, 3))
        ]
        return "[" + ",".join(fakes) + "]", False, 3
    if choice == "amplify":
        return "[" + ",".join(["{}"] * rng.randint(1, 50_000)) + "]", False, 3
    if choice == "bytes":
        return '"caf\xe9 \xff\xfe"', False, 0  # latin-1 bytes below: not UTF-8
    return json.dumps({"policy": {"Statement": [{"Effect": "Allow"}]}}), False, 5


def record(rng: random.Random, name: str, hostile: bool) -> Entry:
    event = rng.choice(["CreateUser", "CreateUser", "ListUsers", "DeleteTrail"])
    head = f'{{"eventVersion":"1.08","eventName":"{event}","eventID":"{name}"'
    if hostile and rng.random() < 0.1:
        # A key twice: the last one counts, for libjq as for orjson.
        other = "CreateUser" if event != "CreateUser" else "ListUsers"
        head = (
            f'{{"eventVersion":"1.08","eventName":"{other}","eventID":"{name}",'
            f'"eventName":"{event}"'
        )
    if not hostile:
        return Entry(f'{head},"payload":{{"n":1}}}}'.encode(), "record", name)
    payload, surrogate, levels = payload_of(rng, name)
    text = f'{head},"payload":{payload}}}'.encode("latin-1" if "\xff" in payload else "utf-8")
    if levels + 2 > LIBJQ_DEPTH:
        # Deeper than libjq reads (the record is an object): nobody evaluates it.
        return Entry(text, "failed", name)
    oracle = None
    if surrogate:
        # Lone surrogates are U+FFFD to Tattletail; libjq would refuse the record.
        oracle = re.sub(
            rb"\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])|(?<![0-9a-f]{2})\\ud[c-f][0-9a-f]{2}",
            rb"\\ufffd",
            text,
        )
    return Entry(text, "record", name, oracle)


def broken(rng: random.Random, name: str) -> Entry:
    head = f'{{"eventVersion":"1.08","eventName":"CreateUser","eventID":"{name}"'
    tail = rng.choice(
        [
            ',"payload":[1,}',
            ',"payload":tru}',
            ',"payload":"\x01"}',
            ',"payload":01x}',
            ',"payload":' + "[" * 10_001 + "]" * 10_001 + "}",
        ]
    )
    return Entry((head + tail).encode(), "failed", name)


def bomb(name: str) -> Entry:
    """12 MiB of `{}` (a few KB gzipped), about 290 MB decoded: past the worker's bound."""
    text = f'{{"eventVersion":"1.08","eventName":"ListUsers","eventID":"{name}","junk":['
    return Entry(text.encode() + b"{}," * (4 << 20) + b"{}]}", "failed", name)


def not_a_record(rng: random.Random) -> Entry:
    return Entry(rng.choice([b"5", b'"text"', b"null", b"true", b"[1,2]", b"-0.0"]), "invalid")


def generate(rng: random.Random, number: int) -> HostileFile:
    hostile_file = HostileFile(layout=rng.choice(["compact", "indented", "array", "lines"]))
    entries = hostile_file.entries
    # JSON Lines are recognised by a first line that is a JSON object.
    entries.append(record(rng, f"f{number}-first", hostile=False))
    for n in range(rng.randint(1, 12)):
        name = f"f{number}-{n}"
        roll = rng.random()
        if roll < 0.55:
            entries.append(record(rng, name, hostile=True))
        elif roll < 0.75:
            entries.append(not_a_record(rng))
        elif roll < 0.88:
            entries.append(broken(rng, name))
            # What follows a record that does not read is found at the next record boundary.
            entries.append(record(rng, name + "-after", hostile=False))
        elif roll < 0.9:
            entries.append(bomb(name))
            # What follows a record that does not read is found at the next record boundary.
            entries.append(record(rng, name + "-after", hostile=False))
        else:
            entries.append(record(rng, name, hostile=False))
    entries.append(record(rng, f"f{number}-last", hostile=False))
    hostile_file.truncated = rng.random() < 0.1
    hostile_file.payload = layout(hostile_file)
    if rng.random() < 0.5:
        hostile_file.payload = gzip.compress(hostile_file.payload, mtime=0)
    return hostile_file


def layout(hostile_file: HostileFile) -> bytes:
    texts = [entry.text for entry in hostile_file.entries]
    if hostile_file.layout == "compact":
        data = b'{"Records":[' + b",".join(texts) + b"]}"
    elif hostile_file.layout == "indented":
        data = b'{\n  "Records": [\n    ' + b",\n    ".join(texts) + b"\n  ]\n}\n"
    elif hostile_file.layout == "array":
        data = b"[ " + b" ,\n".join(texts) + b" ]"
    else:
        data = b"\n".join(texts) + b"\n"
    if hostile_file.truncated:
        last = hostile_file.entries[-1]
        data = data[: data.rindex(last.text) + len(last.text) // 2]
        last.kind = "cut"
    return data


def expected_alerts(hostile_file: HostileFile) -> set[tuple[int, str, str]]:
    """(rule, eventID, annotation as JSON) for every record, as libjq gives them."""
    alerts = set()
    for entry in hostile_file.entries:
        if entry.kind != "record":
            continue
        text = (entry.oracle or entry.text).decode("utf-8", "replace")
        for index, program in enumerate(PROGRAMS):
            try:
                output = program.input_text(text).first()
            except (StopIteration, ValueError):
                continue
            if output is not None and output is not False:
                alerts.add((index, entry.event_id, json.dumps(output)))
    return alerts


def memory_of(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field_name))


def files() -> Iterator[tuple[int, HostileFile]]:
    seed = fuzz_seed()
    for number in range(FILES_IN_CI * fuzz_scale()):
        yield seed, generate(random.Random(f"{seed}-{number}"), number)


def test_no_hostile_file_crashes_a_worker_crosses_its_bound_or_costs_a_record_its_alerts(
    capfd: pytest.CaptureFixture[str],
) -> None:
    pool = WorkerPool(RULES, 1, 7, 60.0, MEMORY_ALLOWANCE)
    pool.start()
    try:
        asyncio.run(_evaluate_all(pool))
    finally:
        pool.close()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


async def _evaluate_all(pool: WorkerPool) -> None:
    pid = pool._workers[0].process.pid
    started = memory_of(pid, "VmRSS")
    for seed, hostile_file in files():
        where = f"seed {seed}, layout {hostile_file.layout}: {hostile_file.payload[:300]!r}"
        evaluation = await pool.evaluate(hostile_file.payload, 64 * MIB)

        got = {
            (m.rule_index, m.record["eventID"], json.dumps(m.annotation))
            for m in evaluation.matches
        }
        assert got == expected_alerts(hostile_file), where
        entries = hostile_file.entries
        assert evaluation.records == sum(e.kind == "record" for e in entries), where
        assert evaluation.records_invalid == sum(e.kind == "invalid" for e in entries), where
        failed = {sample.event_id for sample in evaluation.failure_samples}
        assert {e.event_id for e in entries if e.kind == "failed"} <= failed, where
        assert evaluation.quarantined == [], where
        # Every alert can be written out.
        for match in evaluation.matches:
            alert = Alert(RULES[match.rule_index].name, "", match.record, match.annotation, "", ())
            assert stdout.render(alert).endswith(b"\n")
        # No worker died, and none went past its bound.
        assert pool._workers[0].process.pid == pid, where
        assert memory_of(pid, "VmHWM") <= started + MEMORY_ALLOWANCE + 16 * MIB, where
