"""A converted condition as jq: `Expr`, how conditions combine, and the program a rule becomes.

Each condition node of a Sigma rule becomes an `Expr`: a jq boolean on the record that never
raises a jq error (so AND and OR may be reordered), with the record paths it reads. A rule's
program puts what can be decided on the index's fields (eventSource, eventName, errorCode,
userIdentity.type, ...; tattletail.rule_index.INDEX_PATHS) first, in a `select` of its own, so
that the engine decides it once per index key and runs the rest only on records that get
through:

    select(<eventSource / eventName part>) | select(<the rest>)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tattletail.rule_index import INDEX_PATHS
from tattletail.sigma import jqtext
from tattletail.sigma.fields import walks_arrays

Path = tuple[str, ...]


@dataclass(frozen=True)
class Expr:
    """A jq boolean on the record, error-free, and what it reads (None: the whole record)."""

    jq: str
    reads: frozenset[Path] | None
    op: str = "atom"  # "and", "or", "not" or "atom"
    args: tuple[Expr, ...] = field(default=(), compare=False)

    @property
    def on_index(self) -> bool:
        return self.reads is not None and all(path in INDEX_PATHS for path in self.reads)


def field_reads(path: Path) -> frozenset[Path]:
    """What `values_of(path)` reads: the whole top-level value when it walks arrays."""
    return frozenset({path if not walks_arrays(path) else path[:1]})


def conjunction(exprs: Sequence[Expr]) -> Expr:
    if len(exprs) == 1:
        return exprs[0]
    return Expr(jqtext.conjunction([e.jq for e in exprs]), _union(exprs), "and", tuple(exprs))


def disjunction(exprs: Sequence[Expr]) -> Expr:
    if len(exprs) == 1:
        return exprs[0]
    return Expr(jqtext.disjunction([e.jq for e in exprs]), _union(exprs), "or", tuple(exprs))


def negation(expr: Expr) -> Expr:
    return Expr(jqtext.negation(expr.jq), expr.reads, "not", (expr,))


def _union(exprs: Sequence[Expr]) -> frozenset[Path] | None:
    reads: set[Path] = set()
    for expr in exprs:
        if expr.reads is None:
            return None
        reads |= expr.reads
    return frozenset(reads)


def _flatten(expr: Expr, op: str) -> list[Expr]:
    return [leaf for arg in expr.args for leaf in _flatten(arg, op)] if expr.op == op else [expr]


def necessary_on_index(expr: Expr) -> Expr | None:
    """A condition on indexed fields only that holds whenever `expr` does (None: none found)."""
    if expr.on_index:
        return expr
    if expr.op == "and":
        parts = [p for p in map(necessary_on_index, _flatten(expr, "and")) if p is not None]
        return conjunction(parts) if parts else None
    if expr.op == "or":
        parts = [necessary_on_index(arg) for arg in _flatten(expr, "or")]
        if any(p is None for p in parts):
            return None
        return disjunction([p for p in parts if p is not None])
    return None


def gated_program(expr: Expr) -> str:
    """`select(gate) | select(rest)`: the gate on indexed fields first (see the module doc),
    laid out one condition per line."""
    gate = necessary_on_index(expr)
    if gate is None or gate is expr:
        return _select(expr)
    rest = expr
    if expr.op == "and":
        rest = conjunction([arg for arg in _flatten(expr, "and") if not arg.on_index])
    return f"{_select(gate)}\n| {_select(rest)}"


def _select(expr: Expr) -> str:
    if expr.op == "atom":
        return f"select({expr.jq})"
    return f"select(\n  {layout(expr, '  ')}\n)"


def layout(expr: Expr, indent: str = "") -> str:
    """The expression's jq over several lines, each operand of and/or on its own line at
    `indent` (the first continues the current line)."""
    if expr.op in ("and", "or"):
        parts = [_operand(arg, indent) for arg in _flatten(expr, expr.op)]
        return f"\n{indent}{expr.op} ".join(parts)
    if expr.op == "not":
        (inner,) = expr.args
        if inner.op in ("and", "or"):
            return f"({_operand(inner, indent)} | not)"
        return f"({layout(inner, indent)} | not)"
    return expr.jq


def _operand(expr: Expr, indent: str) -> str:
    if expr.op not in ("and", "or"):
        return layout(expr, indent)
    inner = indent + "  "
    return f"(\n{inner}{layout(expr, inner)}\n{indent})"
