"""What a worker process does with one log file, run in this process through a socket pair."""

from __future__ import annotations

import gc
import gzip
from multiprocessing import Pipe
from typing import Any

import orjson
import pytest

from tattletail.rules import RuleSet, RuleSource
from tattletail.worker_process import Job, cyclic_gc_paused, handle, serve


@pytest.mark.parametrize("enabled_before", [True, False])
def test_the_cyclic_collector_is_paused_for_a_file_and_left_as_it_was(
    enabled_before: bool,
) -> None:
    (gc.enable if enabled_before else gc.disable)()
    try:
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled_before
        with pytest.raises(RuntimeError), cyclic_gc_paused():
            raise RuntimeError("a bad file")
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()


def test_serve_replies_per_batch_with_the_collector_paused_while_it_works() -> None:
    seen: list[bool] = []

    class Watching(RuleSet):
        def evaluate(
            self, records: Any, skip: frozenset[int] = frozenset(), texts: Any = None
        ) -> Any:
            seen.append(gc.isenabled())
            return super().evaluate(records, skip, texts)

    records = [{"eventName": "CreateUser", "eventID": str(n)} for n in range(5)]
    payload = gzip.compress(orjson.dumps({"Records": records}))
    parent, child = Pipe()
    serve(
        child,
        Watching([RuleSource("r", 'select(.eventName == "CreateUser")')]),
        Job(payload, 1 << 20, 2),
    )

    replies = [parent.recv() for _ in range(4)]
    assert [reply[0] for reply in replies] == ["batch", "batch", "batch", "done"]
    assert [len(reply[3].matches) for reply in replies[:3]] == [2, 2, 1]
    assert seen == [False, False, False] and gc.isenabled()


def test_an_unforeseen_error_is_the_objects_reply_and_the_worker_serves_on() -> None:
    class Broken(RuleSet):
        def evaluate(
            self, records: Any, skip: frozenset[int] = frozenset(), texts: Any = None
        ) -> Any:
            raise RuntimeError("a bug")

        evaluate_each = evaluate

    payload = gzip.compress(orjson.dumps({"Records": [{"eventName": "CreateUser"}]}))
    parent, child = Pipe()
    rules = Broken([RuleSource("r", 'select(.eventName == "CreateUser")')])

    handle(child, rules, Job(payload, 1 << 20, 2))

    assert parent.recv() == ("object_error", "internal_RuntimeError", "RuntimeError: a bug")
    # The next job is served as usual.
    handle(
        child,
        RuleSet([RuleSource("r", 'select(.eventName == "CreateUser")')]),
        Job(payload, 1 << 20, 2),
    )
    assert [parent.recv()[0] for _ in range(2)] == ["batch", "done"]
