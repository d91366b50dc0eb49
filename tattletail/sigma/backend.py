"""JqBackend: pySigma's TextQueryBackend writing jq that Tattletail runs on its native path.

Each condition node becomes an `Expr` (tattletail.sigma.expr): a jq boolean on the record that
never raises a jq error, with the record paths it reads. `jq_program` joins a rule's conditions
into its `jq_match`, the part on indexed fields first. Correlation rules become rules with
memory: the correlation methods give a `Memory` (tattletail.sigma.memory) per rule.

What each modifier and value means is documented in docs/sigma.md and in tattletail.sigma.jqtext.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from sigma.correlations import SigmaCorrelationRule
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

from tattletail.sigma import jqtext, memory
from tattletail.sigma.cidr import network_regex
from tattletail.sigma.expr import (
    Expr,
    conjunction,
    disjunction,
    field_reads,
    gated_program,
    negation,
)
from tattletail.sigma.fields import split_field
from tattletail.sigma.memory import Memory
from tattletail.sigma.pipeline import cloudtrail_pipeline


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
        return gated_program(self.rule_expr(rule))

    def rule_expr(self, rule: SigmaRule) -> Expr:
        """The rule's conditions, ORed. The conversion stays with the rule, for the
        correlations that refer to it (whether or not it generates a rule of its own)."""
        self.convert_rule(rule)
        exprs = rule.get_conversion_result()
        if not exprs:
            raise SigmaFeatureNotSupportedByBackendError("the rule converts to no condition")
        return disjunction(exprs)

    def rule_memory(self, rule: SigmaCorrelationRule) -> Memory:
        """The correlation rule as a rule with memory (its referenced rules converted first)."""
        if getattr(self, "last_processing_pipeline", None) is None:
            self.init_processing_pipeline()
        self.convert_correlation_rule(rule)
        (converted,) = rule.get_conversion_result()
        return converted

    def finish_query(self, rule: Any, query: Any, state: ConversionState) -> Any:
        return query  # an Expr: the text template of TextQueryBackend does not apply

    def finalize_query_default(
        self, rule: SigmaRule, query: Expr, index: int, state: ConversionState
    ) -> Expr:
        return query

    # -- correlation rules: rules with memory (tattletail.sigma.memory) ------------------------

    correlation_methods: ClassVar[dict[str, str]] = {
        "default": "a rule with memory: threshold, distinct or sequence"
    }

    def convert_correlation_event_count_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "default"
    ) -> list[Memory]:
        return [memory.event_count(rule)]

    def convert_correlation_value_count_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "default"
    ) -> list[Memory]:
        return [memory.value_count(rule)]

    def convert_correlation_temporal_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "default"
    ) -> list[Memory]:
        return [memory.temporal(rule, ordered=False)]

    def convert_correlation_temporal_ordered_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "default"
    ) -> list[Memory]:
        return [memory.temporal(rule, ordered=True)]

    # An extended condition (`a and b`) is checked by memory.temporal.
    convert_correlation_extended_temporal_rule = convert_correlation_temporal_rule
    convert_correlation_extended_temporal_ordered_rule = convert_correlation_temporal_ordered_rule

    def _metric(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "default"
    ) -> list[Memory]:
        raise SigmaFeatureNotSupportedByBackendError(
            f"correlation type {rule.type.name.lower()} (a statistic of a field's values): rules "
            "with memory count matches and distinct values"
        )

    convert_correlation_value_sum_rule = _metric
    convert_correlation_value_avg_rule = _metric
    convert_correlation_value_percentile_rule = _metric
    convert_correlation_value_median_rule = _metric

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
