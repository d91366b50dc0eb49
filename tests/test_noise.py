"""`scan --summary`'s report, straight from its counters: 100 columns and printable, whatever
the rule names and record values."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from tattletail.config import Config, Rule
from tattletail.noise import WIDTH, NoiseReport
from tattletail.summary import RunSummary
from tests.destinations.destination_support import make_alert
from tests.support import HOSTILE

hostile_text = st.lists(st.one_of(st.text(), st.sampled_from(HOSTILE)), max_size=6).map("".join)


@settings(max_examples=100, deadline=None)
@given(
    rules=st.lists(
        st.tuples(
            hostile_text.filter(bool),
            st.lists(st.tuples(hostile_text, hostile_text), max_size=6),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=7,
        unique_by=lambda rule: rule[0],
    ),
    first=hostile_text,
    show_all=st.booleans(),
)
def test_report_lines_fit_100_columns_and_are_printable(
    rules: list[tuple[str, list[tuple[str, str]], int]], first: str, show_all: bool
) -> None:
    # Built directly: a rule's name may hold anything a TOML escape can write.
    loaded = Config(
        rules=tuple(
            Rule(index=n, name=name, jq_match=".", description="", destinations=())
            for n, (name, _, _) in enumerate(rules)
        ),
        destinations={},
        source="test",
    )
    summary = RunSummary(records=100, objects=2, first_event_time=first, last_event_time=first)
    report = NoiseReport()
    alerts = []
    for name, sources, suppressed in rules:
        summary.suppressed_by_rule[name] += suppressed
        summary.matches_by_rule[name] += len(sources)
        alerts += [
            make_alert({"userIdentity": {"arn": arn}, "sourceIPAddress": ip}, name=name)
            for arn, ip in sources
        ]
    asyncio.run(report.collect(alerts))
    text = report.render(loaded, summary, show_all=show_all)
    for line in text.splitlines():
        assert len(line) <= WIDTH and line.isprintable(), repr(line)
    shown = [row for row in report.rows(loaded, summary) if show_all or row.active]
    assert len(report.as_json(loaded, summary, show_all)["rules"]) == len(shown)
