"""JqBackend: pySigma's TextQueryBackend writing jq that Tattletail runs on its native path.

Each condition node becomes an `Expr`: a jq boolean on the record that never raises a jq error
(so AND and OR may be reordered), with the record paths it reads. `jq_program` joins a rule's
conditions and puts what can be decided on the index's fields (eventSource, eventName,
errorCode, userIdentity.type, ...; tattletail.rule_index.INDEX_PATHS) first, in a `select` of
its own, so that the engine decides it once per index key and runs the rest only on records
that get through:

    select(<eventSource / eventName part>) | select(<the rest>)

What each modifier and value means is documented in docs/sigma.md and in tattletail.sigma.jqtext.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jq
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaFieldReference,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
)

from tattletail.rule_index import INDEX_PATHS
from tattletail.sigma import jqtext
from tattletail.sigma.cidr import network_regex
from tattletail.sigma.fields import split_field, walks_arrays
from tattletail.sigma.pipeline import cloudtrail_pipeline

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


class JqBackend(TextQueryBackend):
    """Sigma to Tattletail jq. Queries are `Expr`s; `jq_program` gives a rule's jq_match."""

    name: ClassVar[str] = "Tattletail jq"
    formats: ClassVar[dict[str, str]] = {"default": "jq conditions (Expr), one per condition"}
    requires_pipeline: ClassVar[bool] = False
    backend_processing_pipeline: ClassVar[ProcessingPipeline] = cloudtrail_pipeline()

    precedence: ClassVar[tuple[type[ConditionItem], type[ConditionItem], type[ConditionItem]]] = (
        ConditionNOT,
        ConditionAND,
        ConditionOR,
    )
    group_expression: ClassVar[str] = "({expr})"
    or_token: ClassVar[str] = "or"
    and_token: ClassVar[str] = "and"
    not_token: ClassVar[str] = "not"
    eq_token: ClassVar[str] = " == "
    # One field, several values: one any() over its values (see convert_condition_as_in_expression).
    convert_or_as_in: ClassVar[bool] = True
    in_expressions_allow_wildcards: ClassVar[bool] = True

    # -- rules -----------------------------------------------------------------------------

    def jq_program(self, rule: SigmaRule) -> str:
        """The rule's jq_match: its conditions (Sigma ORs a list of them), gated."""
        exprs = self.convert_rule(rule)
        if not exprs:
            raise SigmaFeatureNotSupportedByBackendError("the rule converts to no condition")
        return gated_program(disjunction(exprs))

    def finish_query(self, rule: Any, query: Any, state: ConversionState) -> Any:
        return query  # an Expr: the text template of TextQueryBackend does not apply

    def finalize_query_default(
        self, rule: SigmaRule, query: Expr, index: int, state: ConversionState
    ) -> Expr:
        return query

    # -- boolean structure -------------------------------------------------------------------

    def convert_condition_and(self, cond: ConditionAND, state: ConversionState) -> Expr:
        return conjunction([self.convert_condition(arg, state) for arg in cond.args])

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState) -> Expr:
        return disjunction([self.convert_condition(arg, state) for arg in cond.args])

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState) -> Expr:
        return negation(self.convert_condition(cond.args[0], state))

    def convert_condition_group(self, cond: Any, state: ConversionState) -> Expr:
        return self.convert_condition(cond, state)

    def decide_convert_condition_as_in_expression(
        self, cond: ConditionOR | ConditionAND, state: ConversionState
    ) -> bool:
        return (
            isinstance(cond, ConditionOR)
            and len({getattr(arg, "field", None) for arg in cond.args}) == 1
            and all(
                isinstance(arg, ConditionFieldEqualsValueExpression)
                and isinstance(arg.value, SigmaString | SigmaNumber | SigmaBool)
                and not isinstance(arg.value, SigmaTimestampPart)
                for arg in cond.args
            )
        )

    def convert_condition_as_in_expression(
        self, cond: ConditionOR | ConditionAND, state: ConversionState
    ) -> Expr:
        """Several values of one field (a Sigma list): one pass over the field's values, the
        plain ones looked up with IN."""
        args = [arg for arg in cond.args if isinstance(arg, ConditionFieldEqualsValueExpression)]
        return self._field_test(args[0].field, [arg.value for arg in args])

    # -- field = value -------------------------------------------------------------------------

    def convert_condition_field_eq_val_str(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        return self._field_test(cond.field, [cond.value])

    # Cased strings, numbers and booleans are patterns too (see _pattern).
    convert_condition_field_eq_val_str_case_sensitive = convert_condition_field_eq_val_str
    convert_condition_field_eq_val_num = convert_condition_field_eq_val_str
    convert_condition_field_eq_val_bool = convert_condition_field_eq_val_str

    def _field_test(self, name: str, values: Sequence[Any]) -> Expr:
        """Some value of the field matches one of `values` (strings, numbers, booleans)."""
        by_case: dict[bool, list[list[jqtext.Token]]] = {}
        for value in values:
            cased = isinstance(value, SigmaCasedString)
            by_case.setdefault(cased, []).append(_pattern(value, fold=not cased))
        tests = [_text_test(cased, patterns) for cased, patterns in sorted(by_case.items())]
        return _some_value(name, tests[0] if len(tests) == 1 else jqtext.disjunction(tests))

    def convert_condition_field_eq_val_re(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        return _some_value(cond.field, f"{jqtext.text(cased=True)} | {_regex_test(cond.value)}")

    def convert_condition_field_eq_val_cidr(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        value = cond.value
        assert isinstance(value, SigmaCIDRExpression)
        test = jqtext.full_match(network_regex(value.network))
        return _some_value(cond.field, f"{jqtext.text(cased=True)} | {test}")

    def convert_condition_field_compare_op_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        value = cond.value
        assert isinstance(value, SigmaCompareExpression)
        if isinstance(value.number, SigmaTimestampPart):
            raise _time_modifiers()
        number = _number(value.number.number)
        return _some_value(cond.field, f'type == "number" and . {_COMPARE[value.op]} {number}')

    def convert_condition_field_eq_field(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        """`a|fieldref: b`: some value of a, as text, equals (starts, ends, contains) some
        value of b, both folded to lower case."""
        value = cond.value
        assert isinstance(value, SigmaFieldReference)
        left, right = split_field(cond.field), split_field(value.field)
        text = jqtext.text(cased=False)
        if value.starts_with and value.ends_with:
            test = "$v | contains($w)"
        elif value.starts_with:
            test = "$v | startswith($w)"
        elif value.ends_with:
            test = "$v | endswith($w)"
        else:
            test = None
        others = f"[{jqtext.values_of(right)} | {text}] as $others"
        mine = f"{jqtext.values_of(left)} | {text}"
        if test is None:
            body = f"any({mine}; IN($others[]))"
        else:
            body = f"any({mine}; . as $v | any($others[]; . as $w | {test}))"
        return Expr(f"({others} | {body})", field_reads(left) | field_reads(right))

    def convert_condition_field_eq_val_null(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        path = split_field(cond.field)
        return Expr(jqtext.no_value(path), field_reads(path))

    def convert_condition_field_exists(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        path = split_field(cond.field)
        # has() reads the object it is given: the record, or the field's parent objects.
        reads = None if len(path) == 1 else field_reads(path[:-1])
        return Expr(jqtext.exists(path), reads)

    def convert_condition_field_not_exists(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        return negation(self.convert_condition_field_exists(cond, state))

    def convert_condition_field_eq_val_exists(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        value = cond.value
        assert isinstance(value, SigmaExists)
        exists = self.convert_condition_field_exists(cond, state)
        return exists if value.exists else negation(exists)

    def convert_condition_field_eq_val_timestamp_part(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        raise _time_modifiers()

    def convert_condition_field_eq_query_expr(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Expr:
        raise SigmaFeatureNotSupportedByBackendError(
            "placeholder (|expand %...%) with no value list: Tattletail has no placeholder source"
        )

    # -- keywords (values bound to no field) ------------------------------------------------------

    def convert_condition_val_str(
        self, cond: ConditionValueExpression, state: ConversionState
    ) -> Expr:
        return self._keyword(cond.value)

    def convert_condition_val_num(
        self, cond: ConditionValueExpression, state: ConversionState
    ) -> Expr:
        return self._keyword(cond.value)

    def convert_condition_val_re(
        self, cond: ConditionValueExpression, state: ConversionState
    ) -> Expr:
        return Expr(f"(tojson | {_regex_test(cond.value)})", None)

    def convert_condition_query_expr(
        self, cond: ConditionValueExpression, state: ConversionState
    ) -> Expr:
        raise SigmaFeatureNotSupportedByBackendError("query expression placeholders")

    def _keyword(self, value: Any) -> Expr:
        """A keyword matches anywhere in the record's JSON text (as `*keyword*`)."""
        cased = isinstance(value, SigmaCasedString)
        pattern = _pattern(value, fold=not cased)
        if not pattern or pattern[0][0] != jqtext.ANY:
            pattern = [(jqtext.ANY, ""), *pattern]
        if pattern[-1][0] != jqtext.ANY:
            pattern = [*pattern, (jqtext.ANY, "")]
        text = "tojson" if cased else "tojson | ascii_downcase"
        return Expr(f"({text} | {jqtext.glob_test(pattern)})", None)


def _some_value(field: str, test: str) -> Expr:
    """Some value of the field satisfies `test`."""
    path = split_field(field)
    return Expr(jqtext.any_value(path, test), field_reads(path))


_COMPARE = {
    CompareOperators.LT: "<",
    CompareOperators.LTE: "<=",
    CompareOperators.GT: ">",
    CompareOperators.GTE: ">=",
    CompareOperators.NEQ: "!=",
}


def _time_modifiers() -> SigmaFeatureNotSupportedByBackendError:
    return SigmaFeatureNotSupportedByBackendError(
        "time modifiers (|minute, |hour, |day, |week, |month, |year)"
    )


def _number(number: int | float) -> str:
    return repr(number) if isinstance(number, float) else str(number)


def _pattern(value: Any, fold: bool) -> list[jqtext.Token]:
    """A value's wildcard pattern: strings keep their wildcards; numbers and booleans are the
    plain text of the JSON value they stand for (`42`, `true`)."""
    if isinstance(value, SigmaString):
        if value.contains_placeholder():
            raise SigmaFeatureNotSupportedByBackendError(
                f"placeholder in {value.original!r} (|expand): Tattletail has no value lists"
            )
        return jqtext.tokens(value.s, fold)
    if isinstance(value, SigmaBool):
        return jqtext.tokens(["true" if value.boolean else "false"], fold)
    if isinstance(value, SigmaNumber):
        return jqtext.tokens([_number(value.number)], fold)
    raise TypeError(f"not a string, number or boolean: {value!r}")


def _text_test(cased: bool, patterns: Sequence[list[jqtext.Token]]) -> str:
    """A jq boolean on one value: its text matches one of the patterns.

    Folded equality tests the length first (`length == 10 and ascii_downcase == "createuser"`):
    the same answer, and libjq, whose ascii_downcase is slow, is spared it for most values."""
    if [(jqtext.ANY, "")] in patterns:
        return "true"  # `*` matches any text: the field has a value
    plain = [p for p in patterns if all(kind == "lit" for kind, _ in p)]
    words = sorted({"".join(c for _, c in p) for p in plain})
    globs = [jqtext.glob_test(p) for p in patterns if p not in plain]
    tests = []
    if words:
        listed = ", ".join(jqtext.literal(w) for w in words)
        if cased:
            tests.append(f". == {listed}" if len(words) == 1 else f"IN({listed})")
        else:
            lengths = sorted({len(w) for w in words})
            length = (
                f"length == {lengths[0]}"
                if len(lengths) == 1
                else f"(length | {' or '.join(f'. == {n}' for n in lengths)})"
            )
            match = (
                f"ascii_downcase == {listed}"
                if len(words) == 1
                else f"(ascii_downcase | IN({listed}))"
            )
            tests.append(f"{length} and {match}")
    if globs:
        either = globs[0] if len(globs) == 1 else f"({jqtext.disjunction(globs)})"
        tests.append(either if cased else f"ascii_downcase | {either}")
    if len(tests) == 1:
        return f"{jqtext.text(cased=True)} | {tests[0]}"
    return f"{jqtext.text(cased=True)} | {jqtext.disjunction(tests)}"


_INLINE_FLAGS = {SigmaRegularExpressionFlag.MULTILINE: "m", SigmaRegularExpressionFlag.DOTALL: "s"}


def _regex_test(value: Any) -> str:
    """`test(...)` on a string `.` for a Sigma regex: `i` as jq's flag, `m` and `s` inline."""
    assert isinstance(value, SigmaRegularExpression)
    inline = "".join(sorted(_INLINE_FLAGS[f] for f in value.flags if f in _INLINE_FLAGS))
    regex = (f"(?{inline})" if inline else "") + str(value.regexp)
    if SigmaRegularExpressionFlag.IGNORECASE in value.flags:
        test = f'test({jqtext.literal(regex)}; "i")'
    else:
        test = f"test({jqtext.literal(regex)})"
    # pySigma checks the regex with Python's re; jq compiles it with Oniguruma, on every record,
    # and one it rejects would be a runtime error on each.
    try:
        jq.compile(f'"" | {test}').input_value(None).first()
    except ValueError as exc:
        message = " ".join(str(exc).split())
        raise SigmaFeatureNotSupportedByBackendError(
            f"regex {str(value.regexp)!r} that jq (Oniguruma) rejects: {message}"
        ) from None
    return test
