"""`tattletail scan --summary`: how noisy each rule is over a replay, and who makes the noise.

As text: one row per enabled rule that matched or failed, noisiest first
(`--all`: every enabled rule); then, for the noisiest rules, their most frequent principals and
source IPs, which is what a `suppress` is written from; then the records' time range. Every
line fits in 100 columns and every value from a record passes through `text.one_line`. As JSON
(`--format json`): the same, whole, for programs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tattletail.alerts import Alert
from tattletail.config import Config
from tattletail.scan_output import principal
from tattletail.summary import RunSummary
from tattletail.text import one_line, plural, shorten

WIDTH = 100
# How many of the noisiest rules get a breakdown, and how many values each list shows.
TOP_RULES = 5
TOP_VALUES = 3
COLUMNS = ("matches", "alerts", "suppressed", "errors", "%", "severity")
NONE = "(none)"


@dataclass
class RuleNoise:
    principals: Counter[str] = field(default_factory=Counter)
    source_ips: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class RuleRow:
    name: str
    severity: str
    # Records the rule matched, suppressed or not.
    matches: int
    alerts: int
    suppressed: int
    errors: int
    # Matches (alerted or suppressed) over the records scanned, in percent.
    share: float
    noise: RuleNoise

    @property
    def active(self) -> bool:
        return bool(self.matches or self.alerts or self.errors)


@dataclass
class NoiseReport:
    """Collects what the alerts of a scan say about who and where (the sink of --summary)."""

    by_rule: defaultdict[str, RuleNoise] = field(default_factory=lambda: defaultdict(RuleNoise))

    async def collect(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            noise = self.by_rule[alert.rule_name]
            noise.principals[principal(alert.record) or NONE] += 1
            address = alert.record.get("sourceIPAddress")
            noise.source_ips[address if isinstance(address, str) and address else NONE] += 1

    def rows(self, config: Config, summary: RunSummary) -> list[RuleRow]:
        """Every enabled rule, noisiest first (config order among equals)."""
        rows = []
        for rule in config.rules:
            if not rule.enabled:
                continue
            suppressed = summary.suppressed_by_rule[rule.name]
            matches = summary.matches_by_rule[rule.name] + suppressed
            # A rule with memory alerts on what it counted; a sequence's step with alert =
            # false never alerts on its own.
            alerts = (
                summary.stateful_alerts_by_rule[rule.name]
                if rule.stateful is not None
                else summary.matches_by_rule[rule.name]
                if rule.alert
                else 0
            )
            share = 100 * matches / summary.records if summary.records else 0.0
            errors = summary.rule_errors_by_rule[rule.name]
            noise = self.by_rule.get(rule.name, RuleNoise())
            rows.append(
                RuleRow(rule.name, rule.severity, matches, alerts, suppressed, errors, share, noise)
            )
        rows.sort(key=lambda row: (-row.alerts, -row.matches, -row.errors))
        return rows

    def render(self, config: Config, summary: RunSummary, show_all: bool = False) -> str:
        rows = self.rows(config, summary)
        shown = rows if show_all else [row for row in rows if row.active]
        lines = _table(shown) if shown else ["no rule alerted, was suppressed or failed"]
        lines.extend(_breakdown(shown))
        lines.append("")
        lines.extend(_footer(summary, rows, hidden=len(rows) - len(shown)))
        return "\n".join(shorten(line, WIDTH) for line in lines)

    def as_json(self, config: Config, summary: RunSummary, show_all: bool = False) -> dict:
        rows = self.rows(config, summary)
        return {
            "records": summary.records,
            "records_out_of_range": summary.records_out_of_range,
            "objects": summary.objects,
            "first_event_time": summary.first_event_time,
            "last_event_time": summary.last_event_time,
            "rules": [
                {
                    "name": row.name,
                    "severity": row.severity,
                    "matches": row.matches,
                    "alerts": row.alerts,
                    "suppressed": row.suppressed,
                    "errors": row.errors,
                    "percent_of_records": round(row.share, 4),
                    "principals": _counts(row.noise.principals),
                    "source_ips": _counts(row.noise.source_ips),
                }
                for row in rows
                if show_all or row.active
            ],
        }


def _counts(counter: Counter[str]) -> list[dict[str, Any]]:
    return [{"value": value, "alerts": count} for value, count in counter.most_common()]


def _table(rows: list[RuleRow]) -> list[str]:
    cells = [
        (
            str(row.matches),
            str(row.alerts),
            str(row.suppressed),
            str(row.errors),
            f"{row.share:.2f}",
            row.severity,
        )
        for row in rows
    ]
    widths = [max(len(c[n]) for c in [COLUMNS, *cells]) for n in range(len(COLUMNS))]
    numbers = len(COLUMNS) - 1

    def line(values: Sequence[str], rule: str) -> str:
        # One space between right-aligned numbers leaves the rule's name the most room.
        counts = " ".join(v.rjust(w) for v, w in zip(values[:numbers], widths, strict=False))
        left = f"{counts}  {values[numbers].ljust(widths[numbers])}  "
        return (left + shorten(one_line(rule), WIDTH - len(left))).rstrip()

    return [line(COLUMNS, "rule"), *(line(c, row.name) for c, row in zip(cells, rows, strict=True))]


def _breakdown(rows: list[RuleRow]) -> list[str]:
    noisiest = [row for row in rows if row.alerts][:TOP_RULES]
    if not noisiest:
        return []
    lines = ["", "Who and where, for the noisiest rules (what a `suppress` is written from):"]
    for row in noisiest:
        principals, addresses = row.noise.principals, row.noise.source_ips
        counts = (
            f" ({plural(row.alerts, 'alert')}, {plural(len(principals), 'principal')}, "
            f"{plural(len(addresses), 'source IP')})"
        )
        lines.extend(["", shorten(one_line(row.name), WIDTH - len(counts)) + counts])
        for label, counter in (("principal", principals), ("source IP", addresses)):
            top = counter.most_common(TOP_VALUES)
            digits = len(str(top[0][1])) if top else 1
            for n, (value, count) in enumerate(top):
                head = f"  {label if n == 0 else '':<10}  {count:>{digits}}  "
                lines.append(head + shorten(one_line(value), WIDTH - len(head), middle=True))
            if len(counter) > TOP_VALUES:
                others = sum(counter.values()) - sum(count for _, count in top)
                more = plural(len(counter) - TOP_VALUES, "other")
                lines.append(f"  {'':<10}  {others:>{digits}}  ({more})")
    return lines


def _footer(summary: RunSummary, rows: list[RuleRow], hidden: int) -> list[str]:
    scanned = f"{plural(summary.records, 'record')} in {plural(summary.objects, 'object')}"
    if summary.first_event_time and summary.last_event_time:
        first = shorten(one_line(summary.first_event_time), 25)
        last = shorten(one_line(summary.last_event_time), 25)
        scanned += f", from {first} to {last}"
    active = sum(1 for row in rows if row.active)
    rules = f"{plural(len(rows), 'enabled rule')}, {active} with matches or errors"
    if hidden:
        rules += f"; {hidden} others not shown (--all shows them)"
    outside = summary.records_out_of_range
    left_out = [f"{plural(outside, 'record')} outside --since/--until left out"] if outside else []
    return [scanned, *left_out, rules]
