"""Rules with memory: thresholds, distinct counts, dedup periods and sequences, across log
files and invocations.

- `plan`: which rules feed which stateful rule, and the key expressions workers evaluate;
- `windows`: the window logic, pure functions (the semantics, and why, are in its doc);
- `store`: the store interface (versioned items, conditional writes) and the in-memory store;
- `dynamodb`: the store in Lambda (TATTLETAIL_STATE_TABLE);
- `stage`: the pipeline stage between the rules and the alerts.

docs/stateful-rules.md describes the fields, the semantics and the guarantees for users.
"""

from tattletail.state.plan import StatePlan
from tattletail.state.stage import StateSink, StateStage
from tattletail.state.store import InMemoryStore, StateError, StateStore, StateUnavailable

__all__ = [
    "InMemoryStore",
    "StateError",
    "StatePlan",
    "StateSink",
    "StateStage",
    "StateStore",
    "StateUnavailable",
]
