"""Native fast path for jq rules: common rule shapes evaluated in pure Python.

Why this exists
---------------
Every rule is run against every CloudTrail record, and a libjq call costs tens of microseconds
(the record has to be serialised and re-parsed by jq), while the typical rule,
``select(.eventName == "CreateUser")``, only needs one dict lookup.  This module compiles the
rule text into nested Python closures that compute the same thing for the shapes real rules use.

The contract
------------
libjq is the definition of what a rule means.  For a record, the engine only needs *the first
output of the program, or the fact that there is none* (it then decides match / no match /
annotation itself).  :meth:`NativeProgram.first_output` returns exactly that, or raises
:class:`Fallback`.

``Fallback`` is how the fast path stays exact without modelling all of jq: whenever the answer
depends on something not modelled exactly -- a jq runtime error (the engine must see and count
the real error), a float or an integer beyond 2**53 in a comparison (jq compares number
*literals* with arbitrary precision, and the text libjq sees may hold more digits than the
double orjson decoded), a regex feature whose Oniguruma and Python meanings differ for the
input at hand (``\\d`` or case folding on non-ASCII text), formatting a float -- the evaluator
gives up for that record only and the engine asks libjq.  Being unsure is always allowed; being
wrong never is.

Evaluation is lazy like jq's: multi-output expressions are Python generators and only what is
needed for the first output is evaluated, so an error jq raises after the first output does not
change the result, while an error before it (or an empty result) does.

Values are the Python values the ``jq`` binding would return: numbers are reported as the
binding reports them (it goes through a double and makes integral values ``int``).  One
exception, for speed: an output that *is* the input record (``select(...)`` rules) is returned
as the record object itself.  The binding would return an equal copy, except that it rounds
integers beyond 2**53 through a double.

The record handed to :meth:`~NativeProgram.first_output` must be what orjson (or, where orjson
refuses, ``tattletail.json_input``) decoded from the text libjq is given, the file's own text
(``dict``/``list``/``str``/``int``/``float``/``bool``/``None``).  That text may write a number
otherwise than its value says (``-0``, ``1.00``, ``1e400``): jq prints and compares the literal,
so the fast path never prints a float or a 0, never compares floats, and defers the largest
double (1e400 and Infinity read as it) to libjq.

Prefilter
---------
:attr:`NativeProgram.required` maps record paths (one key deep) to the string values that path
must hold for the program to possibly match.  It is derived from the program's structure
(``select(.eventName == "A")``, ``.eventSource == "x" and ...``, ``IN(.eventName; "A", "B")``, ...)
and only where the check provably runs before anything that could fail: for any record that
violates it, the program produces no output or only null/false outputs, and raises no error.

Rules whose body uses something the evaluator does not support can still have a prefilter:
``compile_native`` then returns a program with ``evaluable=False`` whose ``first_output`` always
raises ``Fallback``.  It returns ``None`` only when neither evaluation nor a prefilter is
available.  This includes programs that do not even parse natively past their first stages
(``select(...) | reduce ...``, ``select(...) | def f: ...; ...``, ``try``, ``label``,
destructuring): at the top level everything after a ``|`` is that pipe's right operand, so the
leading stages that do parse keep their meaning and the rest is treated as opaque.

Memoisation
-----------
For an evaluable program, :attr:`NativeProgram.reads` is the set of record paths (object keys
from the root) whose values determine the first output, or None when the program may look at
more than that (iterating, indexing arrays, ``has``/``keys``/``length`` of the record, ...).
:attr:`NativeProgram.identity_output` says that the only output the program can have is the
record itself (``select(...)`` programs).  The contract: for two records on which
:meth:`NativeProgram.memo_key` returns equal keys, libjq's first output (or error, message
included) is the same -- except that, when ``identity_output``, each record's output is that
record itself.  ``memo_key`` is the reference for "equal values at ``reads``": it walks each path
as jq does (through objects and nulls; a missing key and null read the same in every use the
analysis allows), keeps JSON types apart (``true`` and ``1`` differ), records where the walk
stops at a non-object (jq raises an error there), and is None (do not memoise) when a value read
is an array, an object, a float or 0 (equal values, maybe different literals: see above).  A
plain ``.get`` chain is *not* enough: ``{"userIdentity": "x"}`` and ``{}`` give null for
``.userIdentity.type`` that way, but jq raises an error on the first.

Gate
----
A program ``select(c) | more`` has no output, and raises no error, on every record where its
leading stage ``select(c)`` has none.  When that stage is evaluable with known ``reads``,
:attr:`NativeProgram.gate` is it, compiled as a program of its own (even when ``more`` is not
evaluable).  The engine decides the gate once per distinct value of the fields it reads --
once per index key when those are indexed fields, else through a memo -- and runs the whole
program only on the records the gate lets through.

Supported subset
----------------
``.``, ``.a.b``, ``."a"``, ``.["a"]``, ``.[N]`` and ``.[-N]``, ``.[]``, each with an optional
``?``; ``(e)?``; ``|``, ``,``, ``//``, ``and``, ``or``, ``== != < <= > >=``, ``+``; literals
``true false null``, integers, strings with escapes and interpolation ``"\\(e)"``;
``if c then a elif ... else b end``; ``Term as $name | body`` where the term starts its
expression, and ``$name``; ``[]``, ``[e]``, ``{}``, ``{k: term, "k": term | term, k, "k", $v}``
(literal keys, values with at most one output); ``select not empty length type tostring
ascii_downcase ascii_upcase startswith endswith ltrimstr rtrimstr contains has test split/1
join tojson fromjson flatten first last first(f) last(f) map IN any all isempty values nulls
booleans numbers strings arrays objects iterables scalars`` (string/regex arguments must be
literals, except ``contains(e)``, ``startswith(e)`` and ``endswith(e)`` on strings; ``tojson``
defers to libjq on a float, a 0 or an integer beyond 2**53 anywhere in its input; ``fromjson``
defers to libjq on any number or on text orjson rejects; ``flatten`` on arrays only).  ``test``
accepts a conservative regex subset (literals, ``.``, anchors ``^ $ \\A \\b \\B``, groups,
alternation, classes, ``\\d \\w \\s`` and negations, greedy/lazy quantifiers; flags ``i``, ``g``
and a no-op ``x``), and answers for an input only where Oniguruma's answer is certain (ASCII
input where the meaning depends on it, within Oniguruma's backtracking limit: see "Regexes").
Everything else makes the body unsupported; ``def``, ``reduce``, ``foreach``,
``try``, ``label``, destructuring, assignments and unary minus make the program unsupported
from the stage where they appear (see Prefilter).  The semantics modelled are those of the jq
bundled with the ``jq`` binding (jq 1.8).
"""

from __future__ import annotations

import math
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, NamedTuple

import orjson

__all__ = [
    "NO_OUTPUT",
    "UNKEYED",
    "Fallback",
    "NativeProgram",
    "compile_native",
    "equal_to_record",
    "required_values",
]


class Fallback(Exception):
    """The native evaluator is not sure for this record; ask libjq."""


class _JqRuntimeError(Fallback):
    """libjq certainly raises a runtime error at this point.

    It subclasses Fallback so that, when nothing catches it, the engine runs libjq and gets the
    real error (with its message, for its counters).  jq's ``?`` catches exactly this class:
    a plain Fallback means "unsure" and must never be swallowed.
    """


class _NoOutput:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_OUTPUT"


NO_OUTPUT: Final[object] = _NoOutput()

# Largest magnitude where a Python int, a double and a jq number literal all agree.
_EXACT: Final = 2**53

_Fn = Callable[[Any], Any]


# ---------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True, slots=True)
class NativeProgram:
    """A jq program compiled for native evaluation (see the module docstring)."""

    source: str
    required: Mapping[tuple[str, ...], frozenset[str]] | None
    evaluable: bool
    _run: _Fn = field(repr=False, compare=False)
    reads: tuple[tuple[str, ...], ...] | None = None
    identity_output: bool = False
    _key: Callable[[Any], tuple[Any, ...] | None] = field(
        default=lambda record: None, repr=False, compare=False
    )
    gate: NativeProgram | None = None
    # The cheap form of memo_key, for the hot loop: see `_memo_value_function`.
    memo_value: Callable[[Any], Any] | None = field(default=None, repr=False, compare=False)

    def first_output(self, record: Any) -> Any:
        """First output of the program on ``record``, or ``NO_OUTPUT``; raises ``Fallback``."""
        try:
            return self._run(record)
        except RecursionError:
            # Values nested deeper than Python's stack allows (orjson reads 1,024 levels, and
            # `fromjson` makes more of a string): libjq decides, and nothing else escapes.
            raise Fallback from None

    def memo_key(self, record: Any) -> tuple[Any, ...] | None:
        """A hashable key such that records with equal keys have the same first output (or the
        same error) -- each record itself when ``identity_output``; None when ``reads`` is None
        or a value read is an array or object (not worth keying).  See "Memoisation"."""
        return self._key(record)


def compile_native(source: str) -> NativeProgram | None:
    """Compile ``source``; ``None`` when there is neither a native evaluator nor a prefilter."""
    try:
        return _compile_source(source)
    except RecursionError:
        return None  # a program nested or chained deeper than the analyses' recursion: libjq's


def _compile_source(source: str) -> NativeProgram | None:
    ast = _parse(source)
    if ast is None:
        return None
    program = _compile_node(source, ast)
    gate = _leading_select(ast)
    if gate is not None:
        compiled_gate = _compile_node(f"{source} (its leading select)", gate)
        if compiled_gate is not None and compiled_gate.reads is not None:
            if program is None:
                return NativeProgram(
                    source, None, evaluable=False, _run=_always_fallback, gate=compiled_gate
                )
            return replace(program, gate=compiled_gate)
    return program


def _compile_node(source: str, ast: _Node) -> NativeProgram | None:
    required = _required(ast)
    try:
        run = _compile_program(ast)
    except _Unsupported:
        if required is None:
            return None
        return NativeProgram(source, required, evaluable=False, _run=_always_fallback)
    reads_and_identity = _reads(ast)
    if reads_and_identity is None:
        return NativeProgram(source, required, evaluable=True, _run=run)
    reads, identity_output = reads_and_identity
    return NativeProgram(
        source,
        required,
        evaluable=True,
        _run=run,
        reads=reads,
        identity_output=identity_output,
        _key=_memo_key_function(reads),
        memo_value=_memo_value_function(reads),
    )


def _leading_select(ast: _Node) -> _Node | None:
    """``select(c)`` when the program is ``select(c) | more``: where that stage has no output
    (and raises no error), neither has the program, whatever ``more`` is."""
    if isinstance(ast, _Pipe) and isinstance(ast.left, _Call) and ast.left.name == "select":
        return ast.left
    return None


def required_values(source: str) -> Mapping[tuple[str, ...], frozenset[str]] | None:
    """The prefilter of ``source`` (see ``NativeProgram.required``), even if it is not evaluable."""
    try:
        ast = _parse(source)
        return None if ast is None else _required(ast)
    except RecursionError:
        return None


def _always_fallback(record: Any) -> Any:
    raise Fallback


# ---------------------------------------------------------------------------------------------
# AST


class _Unsupported(Exception):
    """Outside the subset; at parse time the whole program, at compile time the body."""


class _Node:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Identity(_Node):
    pass


@dataclass(frozen=True, slots=True)
class _Index(_Node):
    target: _Node
    key: str | int
    optional: bool


@dataclass(frozen=True, slots=True)
class _Iterate(_Node):
    target: _Node
    optional: bool


@dataclass(frozen=True, slots=True)
class _Const(_Node):
    value: Any


@dataclass(frozen=True, slots=True)
class _Interp(_Node):
    parts: tuple[str | _Node, ...]


@dataclass(frozen=True, slots=True)
class _Pipe(_Node):
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Comma(_Node):
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Alt(_Node):
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _And(_Node):
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Or(_Node):
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Compare(_Node):
    op: str
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Add(_Node):
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _If(_Node):
    cond: _Node
    then: _Node
    otherwise: _Node


@dataclass(frozen=True, slots=True)
class _Try(_Node):
    body: _Node


class _Cell:
    """Where a variable's current value lives while its binding's body runs."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None


@dataclass(frozen=True, slots=True)
class _Var(_Node):
    """``$name``, resolved at parse time to the cell of the binding in scope."""

    name: str
    cell: _Cell


@dataclass(frozen=True, slots=True)
class _Bind(_Node):
    """``source as $name | body``: body runs on the same input once per output of source."""

    source: _Node
    cell: _Cell
    body: _Node


@dataclass(frozen=True, slots=True)
class _Collect(_Node):
    """``[body]`` (every output of body, in order), or ``[]`` when body is None."""

    body: _Node | None


@dataclass(frozen=True, slots=True)
class _Object(_Node):
    """``{k1: v1, ...}`` with literal keys."""

    entries: tuple[tuple[str, _Node], ...]


@dataclass(frozen=True, slots=True)
class _Opaque(_Node):
    """Parsed only far enough to know where it ends; never evaluated natively."""

    what: str


# ---------------------------------------------------------------------------------------------
# Lexer and parser (jq 1.8 grammar, for the part of it that rules use)


class _Tok(NamedTuple):
    kind: str  # field str num ident kw var format op eof
    value: Any
    end: int


_KEYWORDS: Final = frozenset(
    [
        "__loc__",
        "and",
        "as",
        "break",
        "catch",
        "def",
        "elif",
        "else",
        "end",
        "foreach",
        "if",
        "import",
        "include",
        "label",
        "module",
        "or",
        "reduce",
        "then",
        "try",
    ]
)
# Keywords that change scoping or control flow in ways this module does not model at all.
_REJECTED_KEYWORDS: Final = frozenset(
    [
        "as",
        "break",
        "catch",
        "def",
        "foreach",
        "import",
        "include",
        "label",
        "module",
        "reduce",
        "try",
        "__loc__",
    ]
)
# Keywords jq accepts as object keys (`{if: 1}`, `{end}`).
_KEYWORD_KEYS: Final = _KEYWORDS - {"__loc__"}
_OPERATORS: Final = (
    "?//",
    "//=",
    "|=",
    "+=",
    "-=",
    "*=",
    "/=",
    "%=",
    "==",
    "!=",
    "<=",
    ">=",
    "//",
    "..",
)
_SINGLE_OPS: Final = frozenset(".?=;,:|+-*/%<>[]{}()")
_COMPARISONS: Final = frozenset(("==", "!=", "<", "<=", ">", ">="))
_ASSIGNMENTS: Final = frozenset(("=", "|=", "+=", "-=", "*=", "/=", "%=", "//=", "?//"))
_IDENT_RE: Final = re.compile(r"(?:[a-zA-Z_][a-zA-Z_0-9]*::)*[a-zA-Z_][a-zA-Z_0-9]*")
_FIELD_RE: Final = re.compile(r"\.([a-zA-Z_][a-zA-Z_0-9]*)")
_NUMBER_RE: Final = re.compile(r"[0-9.]+(?:[eE][+-]?[0-9]+)?")
_VAR_RE: Final = re.compile(r"\$[a-zA-Z_][a-zA-Z_0-9]*")
_FORMAT_RE: Final = re.compile(r"@[a-zA-Z0-9_]+")
_STRING_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _parse(source: str) -> _Node | None:
    """The program's AST; None if even its leading pipe stages are outside the grammar subset.

    When the whole program does not parse, its leading ``|`` stages may still: the first stage
    that does not parse stands, with everything after it, as one ``_Opaque`` -- at the top level
    the right operand of ``|`` (and the body of ``Term as $x |``) runs to the end of the text, so
    whatever it holds cannot change what the stages before it mean.  That is enough for the
    prefilter of ``select(...) | <anything>``.  The source must be a valid jq program (the engine
    compiles it with libjq first).
    """
    for lenient in (False, True):
        try:
            parser = _Parser(source, 0)
            node = parser.parse_lenient_pipe() if lenient else parser.parse_pipe()
            if parser.peek().kind == "eof":
                return node
        except (_Unsupported, RecursionError):
            pass
    return None


class _Parser:
    def __init__(self, src: str, pos: int, scope: Mapping[str, _Cell] | None = None) -> None:
        self.src = src
        self.pos = pos
        self._peeked: _Tok | None = None
        self.scope: Mapping[str, _Cell] = scope or {}
        # The first token of the innermost expression being parsed: `Term as $x | ...` is only
        # accepted where the term starts it (jq 1.8 binds e.g. `1 + 2 as $x` as `(1 + 2) as $x`).
        self._exp_first: _Tok | None = None

    def mark(self) -> tuple[int, _Tok | None, Mapping[str, _Cell], _Tok | None]:
        return self.pos, self._peeked, self.scope, self._exp_first

    def reset(self, mark: tuple[int, _Tok | None, Mapping[str, _Cell], _Tok | None]) -> None:
        self.pos, self._peeked, self.scope, self._exp_first = mark

    # -- tokens

    def peek(self) -> _Tok:
        if self._peeked is None:
            self._peeked = self._scan()
        return self._peeked

    def next(self) -> _Tok:
        tok = self.peek()
        self._peeked = None
        return tok

    def at_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.value in ops

    def accept_op(self, op: str) -> bool:
        if self.at_op(op):
            self.next()
            return True
        return False

    def expect_op(self, op: str) -> None:
        if not self.accept_op(op):
            raise _Unsupported(f"expected {op!r}")

    def accept_kw(self, kw: str) -> bool:
        tok = self.peek()
        if tok.kind == "kw" and tok.value == kw:
            self.next()
            return True
        return False

    def _scan(self) -> _Tok:
        src, n = self.src, len(self.src)
        i = self.pos
        while i < n:
            c = src[i]
            if c in " \t\n\r":
                i += 1
            elif c == "#":
                j = src.find("\n", i)
                j = n if j < 0 else j
                # jq 1.8 lets a backslash continue a comment onto the next line; do not guess.
                if "\\" in src[i:j]:
                    raise _Unsupported("backslash in comment")
                i = j
            else:
                break
        if i >= n:
            self.pos = n
            return _Tok("eof", None, n)
        c = src[i]
        tok: _Tok
        if c == '"':
            value, end = self._scan_string(i + 1)
            tok = _Tok("str", value, end)
        elif c == "." and (m := _FIELD_RE.match(src, i)):
            tok = _Tok("field", m.group(1), m.end())
        elif c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = _NUMBER_RE.match(src, i)
            assert m is not None
            tok = _Tok("num", m.group(), m.end())
        elif c.isascii() and (c.isalpha() or c == "_"):
            m = _IDENT_RE.match(src, i)
            assert m is not None
            word = m.group()
            tok = _Tok("kw" if word in _KEYWORDS else "ident", word, m.end())
        elif c == "$":
            m = _VAR_RE.match(src, i)
            if m is None:
                raise _Unsupported("bad variable")
            tok = _Tok("var", m.group(), m.end())
        elif c == "@":
            m = _FORMAT_RE.match(src, i)
            if m is None:
                raise _Unsupported("bad format")
            tok = _Tok("format", m.group(), m.end())
        else:
            for op in _OPERATORS:
                if src.startswith(op, i):
                    tok = _Tok("op", op, i + len(op))
                    break
            else:
                if c not in _SINGLE_OPS:
                    raise _Unsupported(f"unexpected character {c!r}")
                tok = _Tok("op", c, i + 1)
        self.pos = tok.end
        return tok

    def _scan_string(self, i: int) -> tuple[tuple[str | _Node, ...], int]:
        src, n = self.src, len(self.src)
        parts: list[str | _Node] = []
        buf: list[str] = []
        while True:
            if i >= n:
                raise _Unsupported("unterminated string")
            c = src[i]
            if c == '"':
                i += 1
                break
            if c != "\\":
                buf.append(c)
                i += 1
                continue
            d = src[i + 1 : i + 2]
            if d == "(":
                sub = _Parser(src, i + 2, self.scope)
                expr = sub.parse_pipe()
                close = sub.next()
                if close.kind != "op" or close.value != ")":
                    raise _Unsupported("bad interpolation")
                parts.append("".join(buf))
                buf = []
                parts.append(expr)
                i = close.end
            elif d in _STRING_ESCAPES:
                buf.append(_STRING_ESCAPES[d])
                i += 2
            elif d == "u":
                code, i = self._scan_unicode_escape(i)
                buf.append(chr(code))
            else:
                raise _Unsupported("bad string escape")
        parts.append("".join(buf))
        return tuple(p for p in parts if p != ""), i

    def _scan_unicode_escape(self, i: int) -> tuple[int, int]:
        src = self.src
        hex4 = src[i + 2 : i + 6]
        if len(hex4) != 4 or not all(h in "0123456789abcdefABCDEF" for h in hex4):
            raise _Unsupported("bad \\u escape")
        code = int(hex4, 16)
        i += 6
        if 0xDC00 <= code <= 0xDFFF:
            raise _Unsupported("lone low surrogate")
        if 0xD800 <= code <= 0xDBFF:
            low = src[i + 2 : i + 6] if src.startswith("\\u", i) else ""
            if len(low) != 4 or not all(h in "0123456789abcdefABCDEF" for h in low):
                raise _Unsupported("lone high surrogate")
            low_code = int(low, 16)
            if not 0xDC00 <= low_code <= 0xDFFF:
                raise _Unsupported("lone high surrogate")
            code = 0x10000 + ((code - 0xD800) << 10) + (low_code - 0xDC00)
            i += 6
        return code, i

    # -- grammar, lowest precedence first

    def parse_pipe(self) -> _Node:
        outer = self._exp_first
        self._exp_first = tok = self.peek()
        try:
            if tok.kind == "kw" and tok.value in _REJECTED_KEYWORDS:
                raise _Unsupported(tok.value)
            left = self.parse_comma()
            if self.accept_op("|"):
                return _Pipe(left, self.parse_pipe())
            return left
        finally:
            self._exp_first = outer

    def parse_lenient_pipe(self) -> _Node:
        """The top-level pipe, where the first stage that does not parse ends the parse."""
        mark = self.mark()
        self._exp_first = tok = self.peek()
        try:
            if tok.kind == "kw" and tok.value in _REJECTED_KEYWORDS:
                raise _Unsupported(tok.value)
            stage = self.parse_comma()
        except (_Unsupported, RecursionError):
            self.reset(mark)
            return self._lenient_binding() or self._rest()
        if self.accept_op("|"):
            return _Pipe(stage, self.parse_lenient_pipe())
        return stage

    def _lenient_binding(self) -> _Node | None:
        """``Term as $x | rest`` at the top level, with a lenient ``rest``."""
        mark = self.mark()
        try:
            self._exp_first = self.peek()
            source = self.parse_postfix(bind=False)
            head = self._binding_head()
        except (_Unsupported, RecursionError):
            self.reset(mark)
            return None
        if head is None:
            self.reset(mark)
            return None
        name, cell = head
        self.scope = {**self.scope, name: cell}
        return _Bind(source, cell, self.parse_lenient_pipe())

    def _rest(self) -> _Node:
        self.pos, self._peeked = len(self.src), None
        return _Opaque("rest of the program")

    def _binding_head(self) -> tuple[str, _Cell] | None:
        """After a term: ``as $name |`` consumed and a fresh cell, or None if no ``as`` follows."""
        tok = self.peek()
        if tok.kind != "kw" or tok.value != "as":
            return None
        self.next()
        var = self.next()
        if var.kind != "var" or var.value == "$__loc__":
            raise _Unsupported("destructuring")
        if not self.accept_op("|"):
            raise _Unsupported("destructuring alternatives")
        return var.value[1:], _Cell()

    def parse_comma(self) -> _Node:
        left = self.parse_alt()
        while self.accept_op(","):
            left = _Comma(left, self.parse_alt())
        return left

    def parse_alt(self) -> _Node:
        left = self.parse_or()
        if self.accept_op("//"):
            return _Alt(left, self.parse_alt())
        tok = self.peek()
        if tok.kind == "op" and tok.value in _ASSIGNMENTS:
            raise _Unsupported("assignment")
        return left

    def parse_or(self) -> _Node:
        left = self.parse_and()
        while self.accept_kw("or"):
            left = _Or(left, self.parse_and())
        return left

    def parse_and(self) -> _Node:
        left = self.parse_compare()
        while self.accept_kw("and"):
            left = _And(left, self.parse_compare())
        return left

    def parse_compare(self) -> _Node:
        left = self.parse_additive()
        tok = self.peek()
        if tok.kind == "op" and tok.value in _COMPARISONS:
            self.next()
            node = _Compare(tok.value, left, self.parse_additive())
            after = self.peek()
            if after.kind == "op" and after.value in _COMPARISONS:
                raise _Unsupported("comparisons do not chain")
            return node
        return left

    def parse_additive(self) -> _Node:
        left = self.parse_multiplicative()
        while self.at_op("+", "-"):
            op = self.next().value
            right = self.parse_multiplicative()
            left = _Add(left, right) if op == "+" else _Opaque("-")
        return left

    def parse_multiplicative(self) -> _Node:
        left = self.parse_postfix()
        while self.at_op("*", "/", "%"):
            self.next()
            self.parse_postfix()
            left = _Opaque("arithmetic")
        return left

    def parse_postfix(self, bind: bool = True) -> _Node:
        first = self.peek()
        node = self.parse_primary()
        while True:
            tok = self.peek()
            if tok.kind == "field":
                self.next()
                node = _Index(node, tok.value, self.accept_op("?"))
            elif tok.kind == "op" and tok.value == ".":
                # After a term, a lone "." can only start `."key"` or `.[...]`.
                self.next()
                nxt = self.peek()
                if nxt.kind == "str":
                    self.next()
                    node = self._string_index(node, nxt.value)
                elif self.accept_op("["):
                    node = self._bracket_suffix(node)
                else:
                    raise _Unsupported("stray '.'")
            elif tok.kind == "op" and tok.value == "[":
                self.next()
                node = self._bracket_suffix(node)
            elif tok.kind == "op" and tok.value == "?":
                self.next()
                node = _Try(node)
            else:
                break
        if not bind:
            return node
        tok = self.peek()
        if tok.kind == "kw" and tok.value == "as":
            if first is not self._exp_first:
                raise _Unsupported("`as` after an operator")
            head = self._binding_head()
            assert head is not None
            name, cell = head
            outer = self.scope
            self.scope = {**outer, name: cell}
            try:
                body = self.parse_pipe()
            finally:
                self.scope = outer
            return _Bind(node, cell, body)
        return node

    def _string_index(self, target: _Node, parts: tuple[str | _Node, ...]) -> _Node:
        optional = self.accept_op("?")
        if all(isinstance(p, str) for p in parts):
            return _Index(target, "".join(parts), optional)  # type: ignore[arg-type]
        return _Opaque("computed key")

    def _bracket_suffix(self, target: _Node) -> _Node:
        if self.accept_op("]"):
            return _Iterate(target, self.accept_op("?"))
        if self.at_op("-"):
            # `.[-N]`, the one place a negative number is common; anything else with `-` is not.
            mark = self.mark()
            self.next()
            num = self.next()
            digits = num.value
            if (
                num.kind == "num"
                and digits.isdigit()
                and (digits == "0" or digits[0] != "0")
                and self.accept_op("]")
            ):
                index = -int(num.value)
                if index > -(2**31):
                    return _Index(target, index, self.accept_op("?"))
            self.reset(mark)
        if self.accept_op(":"):
            self.parse_pipe()
            self.expect_op("]")
            self.accept_op("?")
            return _Opaque("slice")
        key = self.parse_pipe()
        if self.accept_op(":"):
            if not self.at_op("]"):
                self.parse_pipe()
            self.expect_op("]")
            self.accept_op("?")
            return _Opaque("slice")
        self.expect_op("]")
        optional = self.accept_op("?")
        if isinstance(key, _Const) and (
            type(key.value) is str or (type(key.value) is int and abs(key.value) < 2**31)
        ):
            return _Index(target, key.value, optional)
        return _Opaque("computed index")

    def parse_primary(self) -> _Node:
        tok = self.next()
        kind, value = tok.kind, tok.value
        if kind == "field":
            # Re-handled by the postfix loop so that `.a?` and `.a.b` share one code path.
            self._peeked = tok
            return _Identity()
        if kind == "op":
            if value == ".":
                nxt = self.peek()
                if nxt.kind == "str":
                    self.next()
                    return self._string_index(_Identity(), nxt.value)
                return _Identity()
            if value == "..":
                return _Opaque("..")
            if value == "(":
                node = self.parse_pipe()
                self.expect_op(")")
                return node
            if value == "[":
                if self.accept_op("]"):
                    return _Collect(None)
                body = self.parse_pipe()
                self.expect_op("]")
                return _Collect(body)
            if value == "{":
                mark = self.mark()
                try:
                    return self._object()
                except _Unsupported:
                    self.reset(mark)
                self._skip_balanced()
                return _Opaque("object construction")
            raise _Unsupported(f"unexpected {value!r}")
        if kind == "str":
            if all(isinstance(p, str) for p in value):
                return _Const("".join(value))
            return _Interp(value)
        if kind == "num":
            if value.isdigit() and (value == "0" or value[0] != "0") and int(value) <= _EXACT:
                return _Const(int(value))
            return _Opaque("number literal")
        if kind == "var":
            cell = self.scope.get(value[1:])
            return _Opaque(value) if cell is None else _Var(value[1:], cell)
        if kind == "format":
            if self.peek().kind == "str":
                self.next()
            return _Opaque(value)
        if kind == "kw":
            if value == "if":
                return self._parse_if()
            raise _Unsupported(value)
        if kind == "ident":
            args: list[_Node] = []
            if self.accept_op("("):
                args.append(self.parse_pipe())
                while self.accept_op(";"):
                    args.append(self.parse_pipe())
                self.expect_op(")")
            if not args and value in ("true", "false", "null"):
                return _Const({"true": True, "false": False, "null": None}[value])
            if "::" in value:
                raise _Unsupported("module reference")
            return _Call(value, tuple(args))
        raise _Unsupported("unexpected end")

    def _parse_if(self) -> _Node:
        branches: list[tuple[_Node, _Node]] = []
        cond = self.parse_pipe()
        if not self.accept_kw("then"):
            raise _Unsupported("if without then")
        branches.append((cond, self.parse_pipe()))
        otherwise: _Node = _Identity()
        while True:
            if self.accept_kw("elif"):
                cond = self.parse_pipe()
                if not self.accept_kw("then"):
                    raise _Unsupported("elif without then")
                branches.append((cond, self.parse_pipe()))
            elif self.accept_kw("else"):
                otherwise = self.parse_pipe()
                if not self.accept_kw("end"):
                    raise _Unsupported("else without end")
                break
            elif self.accept_kw("end"):
                break
            else:
                raise _Unsupported("unterminated if")
        for cond, then in reversed(branches):
            otherwise = _If(cond, then, otherwise)
        return otherwise

    def _object(self) -> _Node:
        """``{...}`` after its ``{``: literal keys (``k: v``, ``"k": v``, ``k``, ``"k"``, ``$v``),
        each value a term or ``term | term ...``.  Anything else raises _Unsupported."""
        entries: list[tuple[str, _Node]] = []
        while not self.accept_op("}"):
            tok = self.next()
            if tok.kind == "var":
                cell = self.scope.get(tok.value[1:])
                if cell is None or self.at_op(":"):
                    raise _Unsupported("object key from a variable")
                entries.append((tok.value[1:], _Var(tok.value[1:], cell)))
            else:
                if tok.kind == "str" and all(isinstance(p, str) for p in tok.value):
                    key = "".join(tok.value)
                elif (tok.kind == "ident" and "::" not in tok.value) or (
                    tok.kind == "kw" and tok.value in _KEYWORD_KEYS
                ):
                    key = tok.value
                else:
                    raise _Unsupported("object key")
                if self.accept_op(":"):
                    value = self.parse_postfix(bind=False)
                    while self.accept_op("|"):
                        value = _Pipe(value, self.parse_postfix(bind=False))
                else:
                    value = _Index(_Identity(), key, False)
                entries.append((key, value))
            if not self.accept_op(","):
                self.expect_op("}")
                break
        return _Object(tuple(entries))

    def _skip_balanced(self) -> None:
        depth = 1
        while depth:
            tok = self.next()
            if tok.kind == "eof":
                raise _Unsupported("unbalanced")
            if tok.kind == "op":
                if tok.value in "([{":
                    depth += 1
                elif tok.value in ")]}":
                    depth -= 1


# ---------------------------------------------------------------------------------------------
# jq value semantics


def _truthy(v: Any) -> bool:
    return v is not None and v is not False


_KIND_RANK: Final[dict[type, int]] = {
    type(None): 0,
    bool: 1,
    int: 3,
    float: 3,
    str: 4,
    list: 5,
    dict: 6,
}
_TYPE_NAMES: Final[dict[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _rank(v: Any) -> int:
    rank = _KIND_RANK.get(v.__class__)
    if rank is None:
        raise Fallback  # not a JSON value as orjson would decode it
    if rank == 1 and v:
        return 2  # jq orders false < true as distinct kinds
    return rank


def _exact_number(v: Any) -> None:
    # jq compares number literals with arbitrary precision; the double we hold may have lost
    # digits of the literal libjq sees, so only small integers are compared here.
    if v.__class__ is not int or not -_EXACT <= v <= _EXACT:
        raise Fallback


def _jq_cmp(a: Any, b: Any) -> int:
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 3:
        _exact_number(a)
        _exact_number(b)
    elif ra == 5:
        for x, y in zip(a, b, strict=False):
            c = _jq_cmp(x, y)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    elif ra == 6:
        keys_a, keys_b = sorted(a), sorted(b)
        c = _jq_cmp(keys_a, keys_b)
        if c:
            return c
        for k in keys_a:
            c = _jq_cmp(a[k], b[k])
            if c:
                return c
        return 0
    elif ra != 4:
        return 0  # null, false, true: one value each
    return (a > b) - (a < b)


def _jq_eq(a: Any, b: Any) -> bool:
    if a.__class__ is str or b.__class__ is str:
        return a == b  # a str never equals a non-str in Python either
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return False
    if ra == 3:
        _exact_number(a)
        _exact_number(b)
        return a == b
    if ra == 5:
        return len(a) == len(b) and all(_jq_eq(x, y) for x, y in zip(a, b, strict=True))
    if ra == 6:
        return a.keys() == b.keys() and all(_jq_eq(v, b[k]) for k, v in a.items())
    return True


def equal_to_record(output: Any, record: Any) -> bool | None:
    """jq's ``output == record``, for a first output as the jq binding returns it (numbers
    through a double) and a record as orjson decoded it; None where the answer depends on what
    the binding does not show.

    Kinds are kept apart (``true`` is not ``1``).  Numbers with different doubles differ in jq
    too; numbers with the same double are None: jq compares two number literals exactly (the
    record's ``9007199254740993`` and a rule's ``9007199254740992``, or ``5`` and
    ``5.00000000000000001``) and the binding rounds both alike.  A loop, not recursion: records
    nest as deep as orjson reads.
    """
    unsure = False
    pending = [(output, record)]
    while pending:
        a, b = pending.pop()
        kind = a.__class__
        if a is None and b.__class__ is float and b != b:
            unsure = True  # the binding shows NaN as null; jq may find it equal (the same value)
        elif kind is str or kind is bool or a is None:
            if a is not b and (kind is not b.__class__ or a != b):
                return False
        elif kind is dict:
            if b.__class__ is not dict or len(a) != len(b):
                return False
            for key, value in a.items():
                other = b.get(key, _ABSENT)
                if other is _ABSENT:
                    return False
                pending.append((value, other))
        elif kind is list:
            if b.__class__ is not list or len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif kind is int or kind is float:
            if b.__class__ is not int and b.__class__ is not float:
                return False
            try:
                if float(a) != float(b):
                    return False
            except OverflowError:
                return None
            unsure = True
        else:
            return None
    return None if unsure else True


_ABSENT: Final = object()

_COMPARE_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": _jq_eq,
    "!=": lambda a, b: not _jq_eq(a, b),
    "<": lambda a, b: _jq_cmp(a, b) < 0,
    "<=": lambda a, b: _jq_cmp(a, b) <= 0,
    ">": lambda a, b: _jq_cmp(a, b) > 0,
    ">=": lambda a, b: _jq_cmp(a, b) >= 0,
}


def _jq_add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    ta, tb = a.__class__, b.__class__
    if ta is str and tb is str:
        return a + b
    if ta is list and tb is list:
        return a + b
    if ta is int and tb is int:
        # A double sum is exact (and prints like an int) only well inside 2**53.
        if -(2**52) <= a <= 2**52 and -(2**52) <= b <= 2**52:
            return a + b
        raise Fallback
    if _rank(a) != _rank(b) or ta is bool:
        raise _JqRuntimeError  # "cannot be added"
    raise Fallback  # float arithmetic, object merge


def _format(v: Any) -> str:
    """``tostring``/interpolation of ``v``, where it is certain to match jq's text."""
    t = v.__class__
    if t is str:
        return v
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    if t is int and -_EXACT <= v <= _EXACT and v:
        return str(v)
    # Floats (jq prints the literal it read), containers (jq's own tojson), and 0: the record's
    # text may say -0, which jq prints as written and orjson reads as 0.
    raise Fallback


_LARGEST_DOUBLE: Final = sys.float_info.max


def _binding_value(v: Any) -> Any:
    """``v`` as the jq binding returns it: numbers go through a double, integral ones to int,
    NaN to null."""
    t = v.__class__
    if t is float:
        if v != v:
            return None
        if abs(v) >= _LARGEST_DOUBLE:
            # Read from 1e400 or Infinity (jq: infinite, the binding: the largest double, a
            # float) or from that double written out (jq and the binding: an integer): which
            # one, the value does not say.
            raise Fallback
        return int(v) if v.is_integer() else v
    if t is int:
        return v if -_EXACT <= v <= _EXACT else int(float(v))
    if t is list:
        return [_binding_value(x) for x in v]
    if t is dict:
        return {k: _binding_value(x) for k, x in v.items()}
    return v


_ASCII_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_ASCII_UPPER: Final = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


# ---------------------------------------------------------------------------------------------
# Regexes: only patterns whose Oniguruma (jq) and Python meanings provably coincide.
#
# A pattern of the subset is parsed into a small tree (_RAtom, _RAnchor, _RSeq, _RAlt,
# _RGroup, _RRepeat), which gives: the same pattern for Python's re, translated where the two
# engines differ in a way re can express (`\B`); whether that meaning holds on ASCII input
# only (\d \w \s \b, or "i"); and the inputs Oniguruma certainly answers (see _input_guard):
# past 10,000,000 backtracks in one match attempt Oniguruma gives up, and jq raises "Regex
# failure: retry-limit-in-match over" where Python would go on (see _pushes).
# tests/test_native_regex_fuzz.py checks all of it against Oniguruma on generated patterns.

_REGEX_PUNCT: Final = frozenset(".^$*+?()[]{}|\\/-_ #~'\";:,=!@%&")
_REGEX_CLASS_SHORTHANDS: Final = frozenset("dDwWsS")
_REGEX_CONTROL: Final = {"n": "\n", "t": "\t", "r": "\r"}
_REGEX_INTERVAL: Final = re.compile(r"\{([0-9]{1,4})(,([0-9]{1,4})?)?\}")
# Oniguruma's `\B` also matches in the empty string; Python's does not.
_NOT_A_WORD_BOUNDARY: Final = r"(?!\b)"
# With "i", Oniguruma lets a positive character class that holds a character whose full case
# folding is several characters (ß -> ss, ﬃ -> ffi) match that sequence too: `[\w]{1,8}` matches
# "password1" ("ss" counts once).  `\w` on its own and `[^...]` do not.  On ASCII input only the
# foldings made of ASCII letters can matter: ss, st, ff, fi, fl, ffi, ffl (from ß ẞ ﬅ ﬆ ﬀ ﬁ ﬂ ﬃ
# ﬄ, all letters: \w, \S and \D hold them, no other part of the subset does under "i", whose
# patterns are ASCII).  Such a class is evaluated as the plain class, on input holding none of
# these sequences (any case); other input is left to libjq.
_FOLDING_SHORTHANDS: Final = frozenset("wSD")
_FOLD_SEQUENCES: Final = re.compile(r"s[st]|f[fil]", re.IGNORECASE | re.ASCII)
# Backtracking entries Oniguruma may push on one visit of: a literal under "i" (its case
# variants, ONIGENC_GET_CASE_FOLD_CODES_MAX_NUM), a folding class (one per multi-character
# case folding in Unicode, 104 of them).
_LITERAL_FOLD_PUSHES: Final = 13
_CLASS_FOLD_PUSHES: Final = 128
# Oniguruma fails a match attempt at its 10,000,000th backtrack (DEFAULT_RETRY_LIMIT_IN_MATCH);
# the fast path answers only where the bound below stays ten times under that.
_BACKTRACK_BUDGET: Final = 1_000_000


class _Regex(NamedTuple):
    matches: Callable[[str], bool]  # the pattern matches somewhere in the string
    # Whether an input string is answered natively (else Fallback); None: every string.
    guard: Callable[[str], bool] | None


# A set of characters: (negated, chars) is every character in chars, or every one not in it.
_Chars = tuple[bool, frozenset[str]]
_NO_CHARS: Final[_Chars] = (False, frozenset())
_ASCII_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_ASCII_SPACE: Final = frozenset(" \t\n\r\f\v")
_DIGITS: Final = frozenset("0123456789")
# The class escapes on ASCII input, the only input answered where they are used.
_SHORTHAND_CHARS: Final[dict[str, _Chars]] = {
    "d": (False, _DIGITS),
    "D": (True, _DIGITS),
    "w": (False, _ASCII_WORD),
    "W": (True, _ASCII_WORD),
    "s": (False, _ASCII_SPACE),
    "S": (True, _ASCII_SPACE),
}


def _chars_union(a: _Chars, b: _Chars) -> _Chars:
    (neg_a, set_a), (neg_b, set_b) = a, b
    if not neg_a and not neg_b:
        return False, set_a | set_b
    if neg_a and neg_b:
        return True, set_a & set_b
    return (True, set_b - set_a) if neg_b else (True, set_a - set_b)


def _chars_disjoint(a: _Chars, b: _Chars) -> bool:
    (neg_a, set_a), (neg_b, set_b) = a, b
    if neg_a and neg_b:
        return False
    if neg_a:
        return set_b <= set_a
    if neg_b:
        return set_a <= set_b
    return not set_a & set_b


def _case_closed(chars: frozenset[str]) -> frozenset[str]:
    """With "i" (ASCII patterns and input): each letter in both cases."""
    return chars | {c.swapcase() for c in chars if c.isascii()}


@dataclass(frozen=True, slots=True)
class _RAtom:
    """One character: a literal, an escape, `.`, a shorthand or a class."""

    python: str
    pushes: int = 0  # backtracking entries Oniguruma may push on one visit
    # The characters it matches in the inputs answered natively (see _Chars), if known.
    chars: _Chars | None = None


@dataclass(frozen=True, slots=True)
class _RAnchor:
    python: str


@dataclass(frozen=True, slots=True)
class _RSeq:
    items: tuple[_RNode, ...]


@dataclass(frozen=True, slots=True)
class _RAlt:
    branches: tuple[_RNode, ...]


@dataclass(frozen=True, slots=True)
class _RGroup:
    body: _RNode
    capturing: bool


@dataclass(frozen=True, slots=True)
class _RRepeat:
    body: _RNode
    low: int
    high: int | None  # None: unbounded
    quantifier: str  # as written, with its lazy `?`


_RNode = _RAtom | _RAnchor | _RSeq | _RAlt | _RGroup | _RRepeat


class _RegexParser:
    """The subset: literals, escaped punctuation, \\n \\t \\r, `.`, \\d \\w \\s and negations,
    classes of those and of ranges, anchors ^ $ \\A \\b \\B, groups ( ) and (?: ), alternation,
    greedy and lazy quantifiers (not on anchors, nor on groups holding one: Oniguruma refuses
    some of those, "target of repeat operator is invalid"; nor unbounded on what can match
    empty).  Anything else raises _Unsupported."""

    def __init__(self, pattern: str, icase: bool) -> None:
        self.p = pattern
        self.i = 0
        self.icase = icase
        self.sensitive = False  # uses \d \w \s \b or a negation: agreement on ASCII only
        self.folds = False  # holds a folding class (see _FOLDING_SHORTHANDS)

    def parse(self) -> _RNode:
        node = self.alternation()
        if self.i != len(self.p):
            raise _Unsupported("unbalanced )")
        return node

    def alternation(self) -> _RNode:
        branches = [self.sequence()]
        while self.p.startswith("|", self.i):
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else _RAlt(tuple(branches))

    def sequence(self) -> _RNode:
        items: list[_RNode] = []
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            items.append(self.quantified(self.atom()))
        return items[0] if len(items) == 1 else _RSeq(tuple(items))

    def quantified(self, body: _RNode) -> _RNode:
        p, start = self.p, self.i
        c = p[start : start + 1]
        if c == "" or c not in "*+?{":
            return body
        if c == "{":
            m = _REGEX_INTERVAL.match(p, start)
            if m is None:
                raise _Unsupported("brace")  # Oniguruma reads `{,n}` and bad braces literally
            low, high_text = int(m.group(1)), m.group(3)
            high = None if m.group(2) and high_text is None else int(high_text or low)
            if low > 1000 or (high is not None and not low <= high <= 1000):
                raise _Unsupported("interval")
            self.i = m.end()
        else:
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            self.i += 1
        if p.startswith("?", self.i):
            self.i += 1  # lazy: same match/no-match answer
        if self.i < len(p) and p[self.i] in "*+?{":
            raise _Unsupported("possessive or stacked quantifier")
        if _holds_anchor(body):
            raise _Unsupported("quantified anchor")
        if high is None and _nullable(body):
            raise _Unsupported("unbounded repeat of what can match empty")
        return _RRepeat(body, low, high, p[start : self.i])

    def atom(self) -> _RNode:  # noqa: C901 - one branch per kind of atom
        p, i = self.p, self.i
        c = p[i]
        literal_pushes = _LITERAL_FOLD_PUSHES if self.icase else 0
        if c == "\\":
            d = p[i + 1 : i + 2]
            self.i += 2
            if d in _REGEX_CLASS_SHORTHANDS:
                self.sensitive = True
                return _RAtom(p[i : i + 2], chars=_SHORTHAND_CHARS[d])
            if d in ("b", "B"):
                self.sensitive = True
                return _RAnchor(r"\b" if d == "b" else _NOT_A_WORD_BOUNDARY)
            if d == "A":
                return _RAnchor(r"\A")
            if d in _REGEX_CONTROL or (d and d in _REGEX_PUNCT):
                return _RAtom(p[i : i + 2], literal_pushes, self.literal(_REGEX_CONTROL.get(d, d)))
            raise _Unsupported("escape")
        if c == "[":
            return self.char_class()
        if c == "(":
            capturing = not p.startswith("(?", i)
            if not capturing and not p.startswith("(?:", i):
                raise _Unsupported("group")  # lookarounds, named groups, inline flags, comments
            self.i += 1 if capturing else 3
            body = self.alternation()
            if not p.startswith(")", self.i):
                raise _Unsupported("unclosed group")
            self.i += 1
            return _RGroup(body, capturing)
        self.i += 1
        if c in "^$":
            return _RAnchor(c)
        if c == ".":
            return _RAtom(".", chars=(True, frozenset("\n")))
        if c in "*+?{}]":
            raise _Unsupported("stray metacharacter")
        return _RAtom(c, literal_pushes, self.literal(c))

    def literal(self, c: str) -> _Chars:
        return False, _case_closed(frozenset(c)) if self.icase else frozenset(c)

    def char_class(self) -> _RAtom:
        """A class without nesting or set operations; ranges only between plain characters."""
        p, i = self.p, self.i
        j = i + 1
        negated = p.startswith("^", j)
        j += negated
        start, n = j, len(p)
        folds = False
        chars: _Chars | None = _NO_CHARS  # None: too many to list
        while j < n and p[j] != "]":
            c = p[j]
            if c == "[" or p[j : j + 2] in ("&&", "||", "~~", "--"):
                raise _Unsupported("nested class or set operation")
            item: _Chars | None
            if c == "\\":
                d = p[j + 1 : j + 2]
                if d in _REGEX_CLASS_SHORTHANDS:
                    self.sensitive = True
                    folds = folds or (self.icase and not negated and d in _FOLDING_SHORTHANDS)
                    item = _SHORTHAND_CHARS[d]
                elif d in _REGEX_CONTROL or (d and d in _REGEX_PUNCT):
                    item = self.literal(_REGEX_CONTROL.get(d, d))
                else:
                    raise _Unsupported("escape in class")
                if p[j + 2 : j + 3] == "-" and p[j + 3 : j + 4] != "]":
                    raise _Unsupported("range from an escape")
                j += 2
            elif c == "-":
                if j != start and p[j + 1 : j + 2] != "]":
                    raise _Unsupported("range")
                item = self.literal(c)
                j += 1
            elif p[j + 1 : j + 2] == "-" and p[j + 2 : j + 3] not in ("", "]"):
                high = p[j + 2]
                if high in "\\[]^-" or ord(high) < ord(c):
                    raise _Unsupported("range")
                if self.icase and not _same_case_range(c, high):
                    raise _Unsupported("mixed-case range")  # how each engine folds it: unproven
                size = ord(high) - ord(c) + 1
                span = frozenset(map(chr, range(ord(c), ord(high) + 1)))
                item = (False, _case_closed(span) if self.icase else span) if size <= 256 else None
                j += 3
            else:
                item = self.literal(c)
                j += 1
            chars = None if chars is None or item is None else _chars_union(chars, item)
        if j >= n or j == start:
            raise _Unsupported("class")
        self.i = j + 1
        self.folds = self.folds or folds
        if chars is not None and negated:
            chars = (not chars[0], chars[1])
        return _RAtom(p[i : j + 1], _CLASS_FOLD_PUSHES if folds else 0, chars)


def _same_case_range(low: str, high: str) -> bool:
    return any(
        low.isascii() and high.isascii() and test(low) and test(high)
        for test in (str.islower, str.isupper, str.isdigit)
    )


def _holds_anchor(node: _RNode) -> bool:
    match node:
        case _RAnchor():
            return True
        case _RSeq(items) | _RAlt(items):
            return any(_holds_anchor(item) for item in items)
        case _RGroup(body, _) | _RRepeat(body, _, _, _):
            return _holds_anchor(body)
    return False


# Anchors that hold at some positions of a line and not at its start.
_POSITIONAL_ANCHORS: Final = frozenset([r"\b", _NOT_A_WORD_BOUNDARY, "$"])


def _head_skips_start_positions(node: _RNode, asserted: bool) -> tuple[bool, bool]:
    """(skips, zero-width): whether Oniguruma's search misses matches of the pattern.

    A pattern that begins (after anything of zero width) with a greedy unbounded repeat of
    `.` is tried only at the start of each line: a match that starts later in a line would
    start at the line's start as well, the repeat taking the difference.  Not when what comes
    first is an anchor that holds later in a line but not at its start: `\\b.+'` does not
    match " T/a''" in jq (its \\b holds before T only), as it does in Python.
    """
    match node:
        case _RAnchor():
            return False, True
        case _RAtom():
            return False, False
        case _RGroup(body, _):
            return _head_skips_start_positions(body, asserted)
        case _RRepeat(body, _, high, quantifier):
            if high == 0:
                return False, True
            if isinstance(body, _RGroup) and not body.capturing:
                body = body.body
            dot = isinstance(body, _RAtom) and body.python == "."
            greedy = not quantifier.endswith("?")
            return asserted and dot and high is None and greedy, False
        case _RAlt(branches):
            results = [_head_skips_start_positions(b, asserted) for b in branches]
            return any(r[0] for r in results), all(r[1] for r in results)
        case _RSeq(items):
            for item in items:
                skips, zero_width = _head_skips_start_positions(item, asserted)
                if skips or not zero_width:
                    return skips, False
                asserted = asserted or _holds_positional_anchor(item)
            return False, True
    raise AssertionError(node)


def _holds_positional_anchor(node: _RNode) -> bool:
    match node:
        case _RAnchor(python):
            return python in _POSITIONAL_ANCHORS
        case _RSeq(items) | _RAlt(items):
            return any(_holds_positional_anchor(item) for item in items)
        case _RGroup(body, _) | _RRepeat(body, _, _, _):
            return _holds_positional_anchor(body)
    return False


def _nullable(node: _RNode) -> bool:
    """Whether it can match the empty string."""
    match node:
        case _RAnchor():
            return True
        case _RSeq(items):
            return all(_nullable(item) for item in items)
        case _RAlt(branches):
            return any(_nullable(branch) for branch in branches)
        case _RGroup(body, _):
            return _nullable(body)
        case _RRepeat(body, low, _, _):
            return low == 0 or _nullable(body)
    return False


def _python_text(node: _RNode) -> str:
    match node:
        case _RAtom(python) | _RAnchor(python):
            return python
        case _RSeq(items):
            return "".join(_python_text(item) for item in items)
        case _RAlt(branches):
            return "|".join(_python_text(branch) for branch in branches)
        case _RGroup(body, capturing):
            return ("(" if capturing else "(?:") + _python_text(body) + ")"
        case _RRepeat(body, _, _, quantifier):
            return _python_text(body) + quantifier
    raise AssertionError(node)


def _pushes(node: _RNode, n: int) -> float:
    """An upper bound on the backtracking entries Oniguruma pushes in one match attempt on an
    input of ``n`` characters: it fails an attempt at the 10,000,000th pop, and pops never
    outnumber pushes (plus the bottom entry).

    Per node, from the end of what follows it: ``(v, p)``, at most ``v`` ways to match from one
    position (each continuing into the rest of the pattern) after at most ``p`` pushes.  A
    sequence enters each item once per way through the items before it; an alternation pushes
    one entry per extra branch; a repeat one per iteration (the way out), its body entered once
    per way through the iterations before, each of which consumes a character unless the repeat
    is bounded.  At the end of the pattern, a run of items that can be skipped (`*`, `?`,
    `{0,k}`) is entered once: the attempt succeeds there.
    """
    if isinstance(node, _RAlt):
        return len(node.branches) - 1 + sum(_top_branch_pushes(b, n) for b in node.branches)
    return _top_branch_pushes(node, n)


def _top_branch_pushes(node: _RNode, n: int) -> float:
    items = node.items if isinstance(node, _RSeq) else (node,)
    cut = len(items)
    while cut and isinstance(items[cut - 1], _RRepeat) and items[cut - 1].low == 0:
        cut -= 1
    _, head = _cost(_RSeq(items[:cut]), n)
    _, tail = _cost(_RSeq(items[cut:]), n)
    return head + tail


def _cost(node: _RNode, n: int) -> tuple[float, float]:
    match node:
        case _RAtom(_, pushes):
            return 1.0, float(pushes)
        case _RAnchor():
            return 1.0, 0.0
        case _RGroup(body, _):
            return _cost(body, n)
        case _RSeq(items):
            ways, pushes = 1.0, 0.0
            through: float | None = None  # the ways the next item lets through (see below)
            for index, item in enumerate(items):
                v, p = _cost(item, n)
                if p:
                    pushes += ways * p
                ways *= v
                if through is not None:
                    ways, through = through * v, None
                if 1.0 < v < math.inf and index + 1 < len(items):
                    cut = _ways_before(item, items[index + 1])
                    if cut < v:
                        through = ways / v * cut
            return ways, pushes
        case _RAlt(branches):
            costs = [_cost(branch, n) for branch in branches]
            # Branches that cannot begin at the same character: one at most matches.
            exclusive = _first_characters_apart(branches)
            ways = max(v for v, _ in costs) if exclusive else sum(v for v, _ in costs)
            return ways, len(branches) - 1 + sum(p for _, p in costs)
        case _RRepeat(body, low, high, _):
            v, p = _cost(body, n)
            # Unbounded: each iteration consumes a character (see quantified()).
            iterations = n if high is None else high if _nullable(body) else min(high, n)
            # Fewer iterations than the least required: every way is tried, none goes on.
            if v <= 1.0:
                return float(max(0, iterations - low + 1)), iterations * (1.0 + p)
            # v**k ways into iteration k: geometric sums, infinite where they overflow
            if iterations == 0:
                return 1.0, 0.0
            if math.isinf(v):
                return math.inf, math.inf
            try:
                pushes = (v**iterations - 1) / (v - 1) * (1.0 + p)
                if iterations < low:
                    return 0.0, pushes
                return (v ** (iterations + 1) - v**low) / (v - 1), pushes
            except OverflowError:
                return math.inf, math.inf
    raise AssertionError(node)


def _first_characters_apart(branches: tuple[_RNode, ...]) -> bool:
    firsts = []
    for branch in branches:
        chars, nullable = _first(branch)
        if chars is None or nullable:
            return False
        firsts.append(chars)
    return all(_chars_disjoint(a, b) for n, a in enumerate(firsts) for b in firsts[n + 1 :])


def _first(node: _RNode) -> tuple[_Chars | None, bool]:
    """The characters a match can begin with (None: unknown), and whether it can be empty."""
    match node:
        case _RAtom(_, _, chars):
            return chars, False
        case _RAnchor():
            return _NO_CHARS, True
        case _RGroup(body, _):
            return _first(body)
        case _RRepeat(body, low, _, _):
            chars, nullable = _first(body)
            return chars, nullable or low == 0
        case _RAlt(branches):
            union: _Chars | None = _NO_CHARS
            empty = False
            for branch in branches:
                chars, nullable = _first(branch)
                union = None if union is None or chars is None else _chars_union(union, chars)
                empty = empty or nullable
            return union, empty
        case _RSeq(items):
            union = _NO_CHARS
            for item in items:
                chars, nullable = _first(item)
                union = None if union is None or chars is None else _chars_union(union, chars)
                if not nullable:
                    return union, False
            return union, True
    raise AssertionError(node)


_PATHS_LIMIT: Final = 64


def _ways_before(item: _RNode, following: _RNode) -> float:
    """How many of ``item``'s ways out (from one position) a following one-character item
    can continue, at most: ``(?:0000|000|00|0):`` has four ways out of its group, one of which
    ``:`` continues.  Where the following characters appear in none of item's, a way that ends
    sooner than another meets one of the other's characters where it needs a following one:
    only ways of one length go on, and of those only ways that can read the same text."""
    if not isinstance(following, _RAtom) or following.chars is None:
        return math.inf
    paths = _paths(item)
    if paths is None:
        return math.inf
    after = following.chars
    if not all(_chars_disjoint(chars, after) for path in paths for chars in path):
        return math.inf
    by_length: dict[int, list[tuple[_Chars, ...]]] = {}
    for path in paths:
        by_length.setdefault(len(path), []).append(path)
    return float(max(_overlapping(same) for same in by_length.values()))


def _overlapping(paths: list[tuple[_Chars, ...]]) -> int:
    """1 when no two of these equally long paths can read the same text, else their number."""
    for n, a in enumerate(paths):
        for b in paths[n + 1 :]:
            if not any(_chars_disjoint(x, y) for x, y in zip(a, b, strict=True)):
                return len(paths)
    return 1


def _paths(node: _RNode) -> list[tuple[_Chars, ...]] | None:
    """Every way through ``node`` as the characters it reads (anchors left out), when there
    are few and each character is known; else None."""
    match node:
        case _RAtom(_, _, chars):
            return None if chars is None else [(chars,)]
        case _RAnchor():
            return [()]
        case _RGroup(body, _):
            return _paths(body)
        case _RAlt(branches):
            found: list[tuple[_Chars, ...]] = []
            for branch in branches:
                more = _paths(branch)
                if more is None or len(found) + len(more) > _PATHS_LIMIT:
                    return None
                found += more
            return found
        case _RSeq(items):
            ways: list[tuple[_Chars, ...]] = [()]
            for item in items:
                more = _paths(item)
                if more is None or len(ways) * len(more) > _PATHS_LIMIT:
                    return None
                ways = [a + b for a in ways for b in more]
            return ways
        case _RRepeat(body, low, high, _):
            once = _paths(body)
            if once is None or high is None:
                return None
            ways, found = [()], []
            for count in range(high + 1):
                if count >= low:
                    found += ways
                if count < high:
                    ways = [a + b for a in ways for b in once]
                if len(found) + len(ways) > _PATHS_LIMIT:
                    return None
            return found
    raise AssertionError(node)


_UNBOUNDED_INPUT: Final = 1 << 40


def _longest_input(tree: _RNode) -> int | None:
    """The longest input on which the bound stays within budget: None for any, -1 for none."""
    if _pushes(tree, _UNBOUNDED_INPUT) <= _BACKTRACK_BUDGET:
        return None
    low, high = -1, _UNBOUNDED_INPUT
    while high - low > 1:
        middle = (low + high) // 2
        if _pushes(tree, middle) <= _BACKTRACK_BUDGET:
            low = middle
        else:
            high = middle
    return low


def _input_guard(
    ascii_only: bool, longest: int | None, folds: bool
) -> Callable[[str], bool] | None:
    """Which inputs the native answer is certain for (see the section's comment); None: all."""
    limit = _UNBOUNDED_INPUT if longest is None else longest
    if folds:  # only under "i", hence ascii_only
        search = _FOLD_SEQUENCES.search
        return lambda s: s.isascii() and len(s) <= limit and search(s) is None
    if ascii_only:
        if longest is None:
            return str.isascii
        return lambda s: s.isascii() and len(s) <= limit
    if longest is None:
        return None
    return lambda s: len(s) <= limit


_LITERAL: Final = r"[^.^$*+?()\[\]{}|\\]*"
_LITERAL_RE: Final = re.compile(_LITERAL)
_PREFIX_RE: Final = re.compile(rf"\^({_LITERAL})")
_PREFIXES_RE: Final = re.compile(rf"\^\((?:\?:)?({_LITERAL}(?:\|{_LITERAL})*)\)")


def _literal_search(pattern: str) -> Callable[[str], bool] | None:
    """`lit`, `^lit` and `^(a|b|c)` as plain string methods, several times faster than re."""
    if _LITERAL_RE.fullmatch(pattern):
        return lambda s: pattern in s
    if m := _PREFIX_RE.fullmatch(pattern):
        prefix = m.group(1)
        return lambda s: s.startswith(prefix)
    if m := _PREFIXES_RE.fullmatch(pattern):
        prefixes = tuple(m.group(1).split("|"))
        return lambda s: s.startswith(prefixes)
    return None


_FINITE_MAX: Final = 256
_ALTERNATIVES_RE: Final = re.compile(rf"{_LITERAL}(?:\|{_LITERAL})*")
_ESCAPED_LITERALS: Final = frozenset(".^$*+?()[]{}|\\/-")


def _finite_language(p: str) -> list[str] | None:
    """The strings matched by a pattern of literal characters, groups of literal alternatives
    and ``?``, when there are few of them (without anchors: the caller strips those)."""
    words = [""]
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == "(":
            j = i + 3 if p.startswith("(?:", i) else i + 1
            end = p.find(")", j)
            if end < 0 or not _ALTERNATIVES_RE.fullmatch(p, j, end):
                return None
            alternatives = p[j:end].split("|")
            i = end + 1
        elif c == "\\":
            d = p[i + 1 : i + 2]
            if d not in _ESCAPED_LITERALS or d == "":
                return None
            alternatives = [d]
            i += 2
        elif c in ".^$*+?[]{}|)":
            return None
        else:
            alternatives = [c]
            i += 1
        if p[i : i + 1] == "?":
            alternatives = [*alternatives, ""]
            i += 1
        if p[i : i + 1] in ("*", "+", "?", "{"):
            return None  # other quantifiers, lazy or stacked ones
        words = [w + a for w in words for a in alternatives]
        if len(words) > _FINITE_MAX:
            return None
    return words


def _finite_search(pattern: str, icase: bool) -> Callable[[str], bool] | None:
    """Set and string-method tests for the patterns above, with ``^``/``$`` anchors (``$`` also
    matches before a final newline, in Oniguruma as in Python), or a top-level alternation of
    literals.  With ``icase``, the input must be ASCII (the caller's ascii_only)."""
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    body = pattern[int(start) : len(pattern) - int(end)]
    if not start and not end and _ALTERNATIVES_RE.fullmatch(body):
        words = body.split("|")
    else:
        words = _finite_language(body)  # type: ignore[assignment]
        if words is None:
            return None
    fold: Callable[[str], str] = str.lower if icase else str  # ASCII input: lower() is ASCII
    if icase:
        words = [w.lower() for w in words]
    if start and end:
        full = frozenset(words)
        return lambda s: (t := fold(s)) in full or (t[-1:] == "\n" and t[:-1] in full)
    if start:
        prefixes = tuple(words)
        return lambda s: fold(s).startswith(prefixes)
    if end:
        suffixes = tuple(words) + tuple(w + "\n" for w in words)
        return lambda s: fold(s).endswith(suffixes)
    infixes = tuple(words)
    return lambda s: any(w in t for t in (fold(s),) for w in infixes)


def _compile_regex(pattern: str, flags: str) -> _Regex | None:
    icase = False
    for flag in flags:
        if flag == "i":
            icase = True
        elif flag not in "gx":  # g: test stops at the first match anyway
            return None
    # x only ignores whitespace and #-comments; without either it changes nothing.
    if "x" in flags and any(c.isspace() or c == "#" for c in pattern):
        return None
    if pattern.startswith("(?i)"):
        icase, pattern = True, pattern[4:]
    if icase and not pattern.isascii():
        return None  # Unicode case folding differs (Oniguruma folds "ss" and "ß")
    parser = _RegexParser(pattern, icase)
    try:
        tree = parser.parse()
    except _Unsupported:
        return None
    if _head_skips_start_positions(tree, False)[0]:
        return None
    longest = _longest_input(tree)
    if longest == -1:
        return None
    guard = _input_guard(parser.sensitive or icase, longest, parser.folds)
    if not icase and (literal := _literal_search(pattern)) is not None:
        return _Regex(literal, guard)
    if not parser.sensitive and (finite := _finite_search(pattern, icase)) is not None:
        return _Regex(finite, guard)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            compiled = re.compile(_python_text(tree), re.ASCII | (re.IGNORECASE if icase else 0))
        except (re.error, Warning):
            return None
    search = compiled.search
    return _Regex(lambda s: search(s) is not None, guard)


# ---------------------------------------------------------------------------------------------
# Compiler: AST -> closures.  Each node compiles to one of three calling conventions, so that
# the common single-valued shapes never pay for a generator.

_ONE: Final = 0  # fn(x) -> the single output (or raises)
_OPT: Final = 1  # fn(x) -> the single output or NO_OUTPUT
_MANY: Final = 2  # fn(x) -> iterable of outputs, lazily evaluated


@dataclass(frozen=True, slots=True)
class _Code:
    kind: int
    fn: _Fn
    is_bool: bool = False  # _ONE and always a Python bool
    # Shapes kept apart so that callers can fuse them instead of stacking closure calls:
    steps: tuple[_Fn, ...] = ()  # _ONE: fn is these applied in turn
    negation_of: _Fn | None = None  # fn is `not negation_of(x)`, a bool
    field_test: tuple[str, str, bool] | None = None  # fn is `(.key == "literal") is bool`


def _compile_program(ast: _Node) -> _Fn:
    code = _compile(ast)
    run: _Fn
    if code.kind == _MANY:
        many = code.fn

        def run(x: Any) -> Any:
            return next(iter(many(x)), NO_OUTPUT)

    else:
        run = code.fn
    if not _plain_output(ast, input_is_record=True):
        unconverted = run

        def run(x: Any) -> Any:
            v = unconverted(x)
            return v if v is x or v is NO_OUTPUT else _binding_value(v)

    if _has_bindings(ast):
        # Variables live in cells shared by every call of the program: one call at a time.
        lock = threading.Lock()
        unlocked = run

        def run(x: Any) -> Any:
            with lock:
                return unlocked(x)

    return run


def _has_bindings(node: Any) -> bool:
    if isinstance(node, _Bind):
        return True
    if isinstance(node, _Node):
        return any(_has_bindings(getattr(node, f.name)) for f in fields(node))
    if isinstance(node, tuple):
        return any(_has_bindings(item) for item in node)
    return False


def _plain_output(node: _Node, input_is_record: bool) -> bool:
    """Outputs are only str/bool/null or the input record itself: no number conversion needed."""
    match node:
        case _Identity() | _Call("select", _):
            return input_is_record
        case _Pipe(left, right):
            return _plain_output(right, input_is_record and _preserves_input(left))
        case _Alt(a, b) | _Comma(a, b) | _If(_, a, b):
            return _plain_output(a, input_is_record) and _plain_output(b, input_is_record)
        case _Try(body) | _Bind(_, _, body):
            return _plain_output(body, input_is_record)
        case _Const(value):
            return value is None or value.__class__ in (str, bool)
        case _Compare() | _And() | _Or() | _Interp():
            return True
        case _Call(name, _):
            return name in _PLAIN_BUILTINS
    return False


_PLAIN_BUILTINS: Final = frozenset(
    [
        "not",
        "empty",
        "type",
        "tostring",
        "ascii_downcase",
        "ascii_upcase",
        "startswith",
        "endswith",
        "ltrimstr",
        "rtrimstr",
        "contains",
        "has",
        "test",
        "IN",
        "any",
        "all",
        "isempty",
        "split",
        "join",
        "tojson",
    ]
)


def _preserves_input(node: _Node) -> bool:
    """Every output of ``node`` is its input."""
    match node:
        case _Identity() | _Call("select" | "empty", _):
            return True
        case _Call(name, ()):
            return name in _TYPE_SELECTORS
        case _Pipe(a, b) | _If(_, a, b):
            return _preserves_input(a) and _preserves_input(b)
        case _Try(body) | _Bind(_, _, body):
            return _preserves_input(body)
    return False


def _iterable(code: _Code) -> Callable[[Any], Iterable[Any]]:
    fn = code.fn
    if code.kind == _MANY:
        return fn
    if code.kind == _ONE:
        return lambda x: (fn(x),)

    def opt(x: Any) -> Iterable[Any]:
        v = fn(x)
        return () if v is NO_OUTPUT else (v,)

    return opt


def _compile(node: _Node) -> _Code:
    match node:
        case _Identity():
            return _Code(_ONE, lambda x: x)
        case _Const(value):
            return _Code(_ONE, lambda x: value, is_bool=value.__class__ is bool)
        case _Index(target, key, optional):
            path = _static_path(node)
            if path is not None:
                return _Code(_ONE, _path_getter(path))
            step = _index_step(key, optional)
            return _pipe(_compile(target), step)
        case _Iterate(target, optional):
            return _pipe(_compile(target), _Code(_MANY, _each_opt if optional else _each))
        case _Interp(parts):
            return _compile_interp(parts)
        case _Pipe(left, right):
            return _compile_pipe(left, right)
        case _Comma(left, right):
            return _compile_comma(_compile(left), _compile(right))
        case _Alt(left, right):
            return _compile_alt(_compile(left), _compile(right))
        case _And(left, right):
            return _compile_and_or(_compile(left), _compile(right), is_and=True)
        case _Or(left, right):
            return _compile_and_or(_compile(left), _compile(right), is_and=False)
        case _Compare(op, left, right):
            return _compile_compare(op, left, right)
        case _Add(left, right):
            return _binary(_compile(left), _compile(right), _jq_add)
        case _If(cond, then, otherwise):
            return _compile_if(_compile(cond), _compile(then), _compile(otherwise))
        case _Try(body):
            return _compile_try(_compile(body))
        case _Call(name, args):
            builtin = _BUILTINS.get((name, len(args)))
            if builtin is None:
                raise _Unsupported(f"{name}/{len(args)}")
            return builtin(*args)
        case _Var(_, cell):
            return _Code(_ONE, lambda x: cell.value)
        case _Bind(source, cell, body):
            return _compile_bind(_compile(source), cell, _compile(body))
        case _Collect(None):
            return _Code(_ONE, lambda x: [])
        case _Collect(body):
            return _compile_collect(_compile(body))
        case _Object(entries):
            return _compile_object(entries)
    raise _Unsupported(type(node).__name__)


def _compile_bind(source: _Code, cell: _Cell, body: _Code) -> _Code:
    """`source as $x | body`: body on the same input, once per output of source.

    The variable lives in its binding's cell.  A binding is never active twice at once (there is
    no recursion in the subset), but a lazy body is re-pointed at its own value before every
    resumption anyway, so no interleaving of generators could make it read another's.
    """
    sf, bf = source.fn, body.fn
    if body.kind != _MANY:
        if source.kind == _ONE:

            def one(x: Any) -> Any:
                cell.value = sf(x)
                return bf(x)

            return _Code(body.kind, one, is_bool=body.is_bool)
        if source.kind == _OPT:

            def opt(x: Any) -> Any:
                v = sf(x)
                if v is NO_OUTPUT:
                    return NO_OUTPUT
                cell.value = v
                return bf(x)

            return _Code(_OPT, opt)
    s_iter, b_iter = _iterable(source), _iterable(body)

    def many(x: Any) -> Iterator[Any]:
        for v in s_iter(x):
            cell.value = v
            outputs = iter(b_iter(x))
            while True:
                cell.value = v
                try:
                    out = next(outputs)
                except StopIteration:
                    break
                yield out

    return _Code(_MANY, many)


def _compile_collect(body: _Code) -> _Code:
    """`[f]`: all of f's outputs; an error anywhere in f is the error of the whole."""
    if body.kind == _ONE:
        f = body.fn
        return _Code(_ONE, lambda x: [f(x)])
    b_iter = _iterable(body)
    return _Code(_ONE, lambda x: list(b_iter(x)))


def _compile_object(entries: tuple[tuple[str, _Node], ...]) -> _Code:
    """`{k: v, ...}`, values evaluated in order.  A value with several outputs would make a
    cartesian product of objects; that is left to libjq."""
    pairs = [(key, _compile(value)) for key, value in entries]
    if any(code.kind == _MANY for _, code in pairs):
        raise _Unsupported("object value with several outputs")
    fns = tuple((key, code.fn) for key, code in pairs)
    if all(code.kind == _ONE for _, code in pairs):
        return _Code(_ONE, lambda x: {key: f(x) for key, f in fns})

    def opt(x: Any) -> Any:
        out = {}
        for key, f in fns:
            v = f(x)
            if v is NO_OUTPUT:
                return NO_OUTPUT
            out[key] = v
        return out

    return _Code(_OPT, opt)


def _static_path(node: _Node) -> tuple[str, ...] | None:
    keys: list[str] = []
    while isinstance(node, _Index):
        if node.optional or not isinstance(node.key, str):
            return None
        keys.append(node.key)
        node = node.target
    return tuple(reversed(keys)) if isinstance(node, _Identity) else None


def _path_getter(keys: tuple[str, ...]) -> _Fn:
    """`.k1.k2...`: null propagates, anything else but an object is a jq error."""
    if len(keys) == 1:
        (k,) = keys

        def get1(x: Any) -> Any:
            if x.__class__ is dict:
                return x.get(k)
            if x is None:
                return None
            raise _JqRuntimeError

        return get1
    if len(keys) == 2:
        k1, k2 = keys

        def get2(x: Any) -> Any:
            if x.__class__ is dict:
                x = x.get(k1)
            elif x is not None:
                raise _JqRuntimeError
            if x.__class__ is dict:
                return x.get(k2)
            if x is None:
                return None
            raise _JqRuntimeError

        return get2

    def get_n(x: Any) -> Any:
        for k in keys:
            if x.__class__ is dict:
                x = x.get(k)
            elif x is not None:
                raise _JqRuntimeError
        return x

    return get_n


def _index_step(key: str | int, optional: bool) -> _Code:
    """One `.[key]` applied to its input; with `?` a failing index just has no output."""
    if isinstance(key, str):
        if not optional:
            return _Code(_ONE, _path_getter((key,)))

        def field_opt(x: Any) -> Any:
            if x.__class__ is dict:
                return x.get(key)
            if x is None:
                return None
            return NO_OUTPUT

        return _Code(_OPT, field_opt)

    def element(x: Any) -> Any:
        if x.__class__ is list:
            return x[key] if -len(x) <= key < len(x) else None
        if x is None:
            return None
        if optional:
            return NO_OUTPUT
        raise _JqRuntimeError

    return _Code(_OPT if optional else _ONE, element)


def _each(x: Any) -> Iterable[Any]:
    if x.__class__ is list:
        return x
    if x.__class__ is dict:
        return x.values()
    raise _JqRuntimeError  # including "Cannot iterate over null"


def _each_opt(x: Any) -> Iterable[Any]:
    if x.__class__ is list:
        return x
    if x.__class__ is dict:
        return x.values()
    return ()


def _pipe(a: _Code, b: _Code) -> _Code:
    af, bf = a.fn, b.fn
    if a.kind == _ONE and b.kind == _ONE:
        if bf is _not and a.is_bool:
            return _Code(_ONE, lambda x: not af(x), is_bool=True, negation_of=af)
        if b.negation_of is not None:  # keep `not` outermost, where select() can absorb it
            return _pipe(_pipe(a, _Code(_ONE, b.negation_of, is_bool=True)), _Code(_ONE, _not))
        steps = (a.steps or (af,)) + (b.steps or (bf,))
        return _Code(_ONE, _compose(steps), is_bool=b.is_bool, steps=steps)
    if a.kind == _ONE and b.kind == _OPT:
        return _Code(_OPT, lambda x: bf(af(x)))
    if a.kind == _OPT and b.kind != _MANY:

        def opt_then(x: Any) -> Any:
            v = af(x)
            return v if v is NO_OUTPUT else bf(v)

        return _Code(_OPT, opt_then)
    a_iter, b_iter = _iterable(a), _iterable(b)

    def many(x: Any) -> Iterator[Any]:
        for v in a_iter(x):
            yield from b_iter(v)

    return _Code(_MANY, many)


def _compose(steps: tuple[_Fn, ...]) -> _Fn:
    if len(steps) == 2:
        f, g = steps
        return lambda x: g(f(x))
    if len(steps) == 3:
        f, g, h = steps
        return lambda x: h(g(f(x)))

    def composed(x: Any) -> Any:
        for step in steps:
            x = step(x)
        return x

    return composed


def _compile_pipe(left: _Node, right: _Node) -> _Code:
    if isinstance(left, _Call) and left.name == "select" and len(left.args) == 1:
        cond, body = _compile(left.args[0]), _compile(right)
        if cond.kind == _ONE and body.kind != _MANY:
            return _select_then(cond, body.fn)
        return _pipe(_select(cond), body)
    return _pipe(_compile(left), _compile(right))


def _select_then(cond: _Code, body: _Fn | None) -> _Code:
    """`select(cond) | body` (body None: just the select) for a single-valued cond.

    The commonest rule shapes, so built as one closure around the condition's parts.
    """
    if cond.field_test is not None:
        key, literal, equal = cond.field_test
        if body is None:

            def select_field(x: Any) -> Any:
                if x.__class__ is dict:
                    return x if (x.get(key) == literal) is equal else NO_OUTPUT
                if x is None:  # null.key is null, never equal to a string
                    return NO_OUTPUT if equal else x
                raise _JqRuntimeError

            return _Code(_OPT, select_field)
        then = body

        def select_field_then(x: Any) -> Any:
            if x.__class__ is dict:
                return then(x) if (x.get(key) == literal) is equal else NO_OUTPUT
            if x is None:
                return NO_OUTPUT if equal else then(x)
            raise _JqRuntimeError

        return _Code(_OPT, select_field_then)
    cf = cond.fn
    if cond.negation_of is not None:
        held = cond.negation_of
        if body is None:
            return _Code(_OPT, lambda x: NO_OUTPUT if held(x) else x)
        return _Code(_OPT, lambda x: NO_OUTPUT if held(x) else body(x))
    test = cf if cond.is_bool else (lambda x: _truthy(cf(x)))
    if body is None:
        return _Code(_OPT, lambda x: x if test(x) else NO_OUTPUT)
    return _Code(_OPT, lambda x: body(x) if test(x) else NO_OUTPUT)


def _compile_comma(a: _Code, b: _Code) -> _Code:
    a_iter, b_iter = _iterable(a), _iterable(b)

    def both(x: Any) -> Iterator[Any]:
        yield from a_iter(x)
        yield from b_iter(x)

    return _Code(_MANY, both)


def _compile_alt(a: _Code, b: _Code) -> _Code:
    """`a // b`: the truthy outputs of a, or if there are none the outputs of b."""
    af, bf = a.fn, b.fn
    if a.kind != _MANY and b.kind != _MANY:

        def alt(x: Any) -> Any:
            v = af(x)
            if v is not None and v is not False and v is not NO_OUTPUT:
                return v
            return bf(x)

        return _Code(b.kind, alt)
    a_iter, b_iter = _iterable(a), _iterable(b)

    def alt_many(x: Any) -> Iterator[Any]:
        found = False
        for v in a_iter(x):
            if v is not None and v is not False:
                found = True
                yield v
        if not found:
            yield from b_iter(x)

    return _Code(_MANY, alt_many)


def _compile_and_or(a: _Code, b: _Code, is_and: bool) -> _Code:
    """jq's `and`/`or`: the left side first, the right only when it decides."""
    af, bf = a.fn, b.fn
    if a.kind == _ONE and b.kind == _ONE:
        if a.is_bool and b.is_bool:
            if is_and:
                return _Code(_ONE, lambda x: af(x) and bf(x), is_bool=True)
            return _Code(_ONE, lambda x: af(x) or bf(x), is_bool=True)

        def one(x: Any) -> bool:
            if _truthy(af(x)) is not is_and:
                return not is_and
            return _truthy(bf(x))

        return _Code(_ONE, one, is_bool=True)
    a_iter, b_iter = _iterable(a), _iterable(b)

    def many(x: Any) -> Iterator[bool]:
        for v in a_iter(x):
            if _truthy(v) is not is_and:
                yield not is_and
            else:
                for w in b_iter(x):
                    yield _truthy(w)

    return _Code(_MANY, many)


def _compile_compare(op: str, left: _Node, right: _Node) -> _Code:
    # A literal on either side of ==/!= (nearly every rule) needs no type dispatch: Python's ==
    # with a str, None or bool literal already has jq's meaning.
    if op in ("==", "!=") and (isinstance(left, _Const) or isinstance(right, _Const)):
        const, other = (right, left) if isinstance(right, _Const) else (left, right)
        c = const.value
        if c.__class__ is str or c is None or c.__class__ is bool:
            return _compare_literal(op == "==", c, other)
    return _binary(_compile(left), _compile(right), _COMPARE_OPS[op], is_bool=True)


def _compare_literal(equal: bool, c: Any, other: _Node) -> _Code:
    path = _static_path(other)
    if path is not None and len(path) == 1 and c.__class__ is str:
        (k,) = path

        def field_eq(x: Any) -> bool:
            if x.__class__ is dict:
                return (x.get(k) == c) is equal
            if x is None:
                return not equal
            raise _JqRuntimeError

        return _Code(_ONE, field_eq, is_bool=True, field_test=(k, c, equal))
    code = _compile(other)
    f = code.fn
    # None, True and False are singletons with no equal value of another kind.
    by_identity = c.__class__ is not str
    test: _Fn
    if code.kind == _ONE:
        if by_identity:
            test = (lambda x: f(x) is c) if equal else (lambda x: f(x) is not c)
        else:
            test = (lambda x: f(x) == c) if equal else (lambda x: f(x) != c)
        return _Code(_ONE, test, is_bool=True)
    if by_identity:
        test = (lambda v: v is c) if equal else (lambda v: v is not c)
    else:
        test = (lambda v: v == c) if equal else (lambda v: v != c)
    return _pipe(code, _Code(_ONE, test, is_bool=True))


def _binary(a: _Code, b: _Code, op: Callable[[Any, Any], Any], is_bool: bool = False) -> _Code:
    """A jq binary operator: for each output of the right side, each output of the left."""
    af, bf = a.fn, b.fn
    if a.kind == _ONE and b.kind == _ONE:

        def one(x: Any) -> Any:
            r = bf(x)
            return op(af(x), r)

        return _Code(_ONE, one, is_bool=is_bool)
    a_iter, b_iter = _iterable(a), _iterable(b)

    def many(x: Any) -> Iterator[Any]:
        for r in b_iter(x):
            for v in a_iter(x):
                yield op(v, r)

    return _Code(_MANY, many)


def _compile_if(c: _Code, a: _Code, b: _Code) -> _Code:
    cf, af, bf = c.fn, a.fn, b.fn
    if c.kind == _ONE and a.kind != _MANY and b.kind != _MANY:

        def branch(x: Any) -> Any:
            return af(x) if _truthy(cf(x)) else bf(x)

        return _Code(max(a.kind, b.kind), branch, is_bool=a.is_bool and b.is_bool)
    c_iter, a_iter, b_iter = _iterable(c), _iterable(a), _iterable(b)

    def many(x: Any) -> Iterator[Any]:
        for v in c_iter(x):
            yield from (a_iter if _truthy(v) else b_iter)(x)

    return _Code(_MANY, many)


def _compile_try(body: _Code) -> _Code:
    """`e?`: a jq error ends e's outputs silently; an unsure Fallback still propagates."""
    f = body.fn
    if body.kind != _MANY:

        def opt(x: Any) -> Any:
            try:
                return f(x)
            except _JqRuntimeError:
                return NO_OUTPUT

        return _Code(_OPT, opt)

    def many(x: Any) -> Iterator[Any]:
        try:
            yield from f(x)
        except _JqRuntimeError:
            return

    return _Code(_MANY, many)


def _compile_interp(parts: tuple[str | _Node, ...]) -> _Code:
    texts: list[str] = [""]
    codes: list[_Code] = []
    for part in parts:
        if isinstance(part, str):
            texts[-1] += part
        else:
            codes.append(_compile(part))
            texts.append("")
    head, tails = texts[0], texts[1:]
    if all(c.kind == _ONE for c in codes):
        fns = [c.fn for c in codes]
        if len(fns) == 1:
            (f,) = fns
            (tail,) = tails
            return _Code(_ONE, lambda x: head + _format(f(x)) + tail)
        pairs = list(zip(fns, tails, strict=True))

        def interp(x: Any) -> str:
            out = [head]
            for fn, text in pairs:
                out.append(_format(fn(x)))
                out.append(text)
            return "".join(out)

        return _Code(_ONE, interp)
    iters = [_iterable(c) for c in codes]

    # jq builds "a\(e1)b\(e2)" as nested `+`, so the last interpolation is the outermost loop.
    def combos(x: Any, j: int) -> Iterator[tuple[str, ...]]:
        if j < 0:
            yield ()
            return
        for v in iters[j](x):
            s = _format(v)
            for prefix in combos(x, j - 1):
                yield (*prefix, s)

    def interp_many(x: Any) -> Iterator[str]:
        for values in combos(x, len(iters) - 1):
            yield head + "".join(v + t for v, t in zip(values, tails, strict=True))

    return _Code(_MANY, interp_many)


# -- builtins


def _literal_str(node: _Node) -> str:
    if isinstance(node, _Const) and node.value.__class__ is str:
        return node.value
    raise _Unsupported("argument must be a string literal")


def _string_literals(node: _Node) -> frozenset[str] | None:
    """The values of `"a", "b", ...` if ``node`` is only that."""
    if isinstance(node, _Comma):
        a, b = _string_literals(node.left), _string_literals(node.right)
        return None if a is None or b is None else a | b
    if isinstance(node, _Const) and node.value.__class__ is str:
        return frozenset((node.value,))
    return None


def _select(cond: _Code) -> _Code:
    if cond.kind == _ONE:
        return _select_then(cond, None)
    c_iter = _iterable(cond)

    def many(x: Any) -> Iterator[Any]:
        for v in c_iter(x):
            if _truthy(v):
                yield x

    return _Code(_MANY, many)


def _string_op(op: Callable[[str], Any], is_bool: bool) -> _Code:
    """A builtin defined on strings only; jq raises an error for any other input."""

    def fn(x: Any) -> Any:
        if x.__class__ is str:
            return op(x)
        raise _JqRuntimeError

    return _Code(_ONE, fn, is_bool=is_bool)


def _b_select(cond: _Node) -> _Code:
    return _select(_compile(cond))


def _not(x: Any) -> bool:
    return x is None or x is False


def _b_not() -> _Code:
    return _Code(_ONE, _not, is_bool=True)


def _b_empty() -> _Code:
    return _Code(_OPT, lambda x: NO_OUTPUT)


def _length(x: Any) -> Any:
    t = x.__class__
    if t is str or t is list or t is dict:
        return len(x)  # str: code points, as jq counts
    if x is None:
        return 0
    if t is float:
        return abs(x)
    if t is int:
        if -_EXACT <= x <= _EXACT:
            return abs(x)
        raise Fallback  # jq takes fabs of the double
    raise _JqRuntimeError  # boolean has no length


def _b_length() -> _Code:
    return _Code(_ONE, _length)


def _type_name(x: Any) -> str:
    name = _TYPE_NAMES.get(x.__class__)
    if name is None:
        raise Fallback
    return name


def _b_type() -> _Code:
    return _Code(_ONE, _type_name)


def _b_tostring() -> _Code:
    return _Code(_ONE, _format)


def _b_ascii_downcase() -> _Code:
    return _string_op(lambda s: s.lower() if s.isascii() else s.translate(_ASCII_LOWER), False)


def _b_ascii_upcase() -> _Code:
    return _string_op(lambda s: s.upper() if s.isascii() else s.translate(_ASCII_UPPER), False)


def _b_startswith(arg: _Node) -> _Code:
    if not isinstance(arg, _Const):
        return _string_pair_test(arg, str.startswith)
    prefix = _literal_str(arg)
    return _string_op(lambda s: s.startswith(prefix), True)


def _b_endswith(arg: _Node) -> _Code:
    if not isinstance(arg, _Const):
        return _string_pair_test(arg, str.endswith)
    suffix = _literal_str(arg)
    return _string_op(lambda s: s.endswith(suffix), True)


def _string_pair_test(
    arg: _Node, test: Callable[[str, str], bool], containers_unsure: bool = False
) -> _Code:
    """``startswith(e)``, ``endswith(e)``, ``contains(e)`` with ``e`` computed (Sigma's field
    references compare one field's text with another's), on strings: jq 1.8 raises an error for
    anything else, except that ``contains`` of two non-strings is jq's recursive containment,
    not modelled (``containers_unsure``)."""
    code = _compile(arg)
    if code.kind != _ONE:
        raise _Unsupported("a string test of an expression with several outputs")
    of = code.fn

    def pair_test(x: Any) -> bool:
        value = of(x)
        if x.__class__ is str and value.__class__ is str:
            return test(x, value)
        if containers_unsure and x.__class__ is not str and value.__class__ is not str:
            raise Fallback
        raise _JqRuntimeError  # "... requires string inputs", "cannot have their containment ..."

    return _Code(_ONE, pair_test, is_bool=True)


def _b_ltrimstr(arg: _Node) -> _Code:
    # jq 1.8: `if startswith($left) then .[$left|length:] end`, so a non-string is an error.
    prefix = _literal_str(arg)
    return _string_op(lambda s: s[len(prefix) :] if s.startswith(prefix) else s, False)


def _b_rtrimstr(arg: _Node) -> _Code:
    suffix = _literal_str(arg)
    return _string_op(lambda s: s[: len(s) - len(suffix)] if s.endswith(suffix) else s, False)


def _b_contains(arg: _Node) -> _Code:
    # Only strings: jq's containment on arrays/objects is recursive and not modelled.
    if isinstance(arg, _Const):
        needle = _literal_str(arg)
        return _string_op(lambda s: needle in s, True)
    return _string_pair_test(arg, lambda s, needle: needle in s, containers_unsure=True)


def _fromjson(x: Any) -> Any:
    """jq's fromjson where orjson surely reads the text as jq does: valid JSON without numbers
    (jq keeps a number's literal text; orjson does not).  Anything orjson rejects may still
    parse in jq (``nan``), so it is left to libjq."""
    if x.__class__ is not str:
        raise _JqRuntimeError  # "only strings can be parsed"
    try:
        value = orjson.loads(x)
    except orjson.JSONDecodeError:
        raise Fallback from None
    if _holds_number(value):
        raise Fallback
    return value


def _holds_number(value: Any) -> bool:
    return any(leaf.__class__ is int or leaf.__class__ is float for leaf in _leaves(value))


def _leaves(value: Any) -> Iterator[Any]:
    """The values in arrays and objects, all the way down, that are neither: a loop, not a
    recursion (a record or a `fromjson` value may nest deeper than Python's stack)."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = item.__class__
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        else:
            yield item


def _b_fromjson() -> _Code:
    return _Code(_ONE, _fromjson)


def _flatten(x: Any) -> list[Any]:
    """``flatten``: jq reduces over ``.[]``, so an object's values would be flattened too (in
    an order not modelled here), and anything else cannot be iterated."""
    if x.__class__ is list:
        flat: list[Any] = []
        for item in x:
            if item.__class__ is list:
                flat.extend(_flatten(item))
            else:
                flat.append(item)
        return flat
    if x.__class__ is dict:
        raise Fallback
    raise _JqRuntimeError  # "Cannot iterate over ..."


def _b_flatten() -> _Code:
    return _Code(_ONE, _flatten)


def _b_has(arg: _Node) -> _Code:
    key = _literal_str(arg)

    def has(x: Any) -> bool:
        if x.__class__ is dict:
            return key in x
        if x is None:
            return False
        raise _JqRuntimeError

    return _Code(_ONE, has, is_bool=True)


def _b_test(regex: _Node, flags: _Node | None = None) -> _Code:
    if flags is None or (isinstance(flags, _Const) and flags.value is None):
        flag_text = ""
    else:
        flag_text = _literal_str(flags)
    compiled = _compile_regex(_literal_str(regex), flag_text)
    if compiled is None:
        raise _Unsupported("regex")
    matches, guard = compiled
    if guard is not None:

        def test_guarded(x: Any) -> bool:
            if x.__class__ is str:
                if guard(x):
                    return matches(x)
                raise Fallback
            raise _JqRuntimeError

        return _Code(_ONE, test_guarded, is_bool=True)

    def test(x: Any) -> bool:
        if x.__class__ is str:
            return matches(x)
        raise _JqRuntimeError

    return _Code(_ONE, test, is_bool=True)


def _any_all(gen: _Code, cond: _Code, is_any: bool) -> _Code:
    """jq 1.8: any = isempty(gen | cond or empty) | not; all = isempty(gen | cond and empty)."""
    g_iter = _iterable(gen)
    cf = cond.fn
    if cond.kind == _ONE:

        def one(x: Any) -> bool:
            for v in g_iter(x):
                if _truthy(cf(v)) is is_any:
                    return is_any
            return not is_any

        return _Code(_ONE, one, is_bool=True)
    c_iter = _iterable(cond)

    def many(x: Any) -> bool:
        for v in g_iter(x):
            for c in c_iter(v):
                if _truthy(c) is is_any:
                    return is_any
        return not is_any

    return _Code(_ONE, many, is_bool=True)


_EACH: Final = _Code(_MANY, _each)
_IDENTITY: Final = _Code(_ONE, lambda x: x)


def _b_any(*args: _Node) -> _Code:
    gen, cond = _generator_and_condition(args)
    return _any_all(gen, cond, is_any=True)


def _b_all(*args: _Node) -> _Code:
    gen, cond = _generator_and_condition(args)
    return _any_all(gen, cond, is_any=False)


def _generator_and_condition(args: tuple[_Node, ...]) -> tuple[_Code, _Code]:
    if len(args) == 2:
        return _compile(args[0]), _compile(args[1])
    if len(args) == 1:
        return _EACH, _compile(args[0])
    return _EACH, _IDENTITY


def _b_isempty(gen: _Node) -> _Code:
    g_iter = _iterable(_compile(gen))

    def isempty(x: Any) -> bool:
        for _ in g_iter(x):
            return False
        return True

    return _Code(_ONE, isempty, is_bool=True)


def _b_in(*args: _Node) -> _Code:
    """IN(s) is any(s == .; .) and IN(src; s) is any(src == s; .)."""
    if len(args) == 1:
        (source,) = args
        literals = _string_literals(source)
        if literals is not None:
            return _Code(_ONE, lambda x: x.__class__ is str and x in literals, is_bool=True)
        s_iter = _iterable(_compile(source))

        def in_source(x: Any) -> bool:
            return any(_jq_eq(v, x) for v in s_iter(x))

        return _Code(_ONE, in_source, is_bool=True)
    source, candidates = args
    src = _compile(source)
    literals = _string_literals(candidates)
    if literals is not None and src.kind == _ONE:
        sf = src.fn

        def in_literals(x: Any) -> bool:
            v = sf(x)
            return v.__class__ is str and v in literals

        return _Code(_ONE, in_literals, is_bool=True)
    src_iter, cand_iter = _iterable(src), _iterable(_compile(candidates))

    def in_generic(x: Any) -> bool:
        for c in cand_iter(x):  # `src == s`: the right side is the outer loop
            for v in src_iter(x):
                if _jq_eq(v, c):
                    return True
        return False

    return _Code(_ONE, in_generic, is_bool=True)


def _b_split(arg: _Node) -> _Code:
    """jq 1.8's split/1 (C, not the regex split/2): "" splits into nothing."""
    sep = _literal_str(arg)
    if sep == "":
        return _string_op(list, False)
    return _string_op(lambda s: s.split(sep) if s else [], False)


def _join_part(v: Any) -> str:
    t = v.__class__
    if t is str:
        return v
    if v is None:
        return ""
    if t is bool or t is int:
        return _format(v)  # Fallback beyond 2**53
    if t is list or t is dict:
        raise _JqRuntimeError  # "string and array cannot be added"
    raise Fallback  # floats: jq prints the literal it read


def _b_join(arg: _Node) -> _Code:
    """jq 1.8: reduce .[] as $i (null; (if .==null then "" else .+$x end) + ($i | if type ==
    "boolean" or type == "number" then tostring else .//"" end)) // "" -- on arrays here."""
    sep = _literal_str(arg)

    def join(x: Any) -> str:
        if x.__class__ is list:
            return sep.join([_join_part(v) for v in x])
        if x.__class__ is dict:
            raise Fallback
        raise _JqRuntimeError  # cannot iterate over it

    return _Code(_ONE, join)


def _b_first() -> _Code:
    return _index_step(0, False)


def _b_last() -> _Code:
    return _index_step(-1, False)


def _b_first_of(gen: _Node) -> _Code:
    """first(f): f's first output, or none."""
    code = _compile(gen)
    if code.kind != _MANY:
        return code
    g_iter = code.fn
    return _Code(_OPT, lambda x: next(iter(g_iter(x)), NO_OUTPUT))


def _b_last_of(gen: _Node) -> _Code:
    """last(f): f's last output, or none (jq 1.8; not the null of the old `reduce` definition).
    An error anywhere in f is an error."""
    g_iter = _iterable(_compile(gen))

    def last(x: Any) -> Any:
        out = NO_OUTPUT
        for v in g_iter(x):
            out = v
        return out

    return _Code(_OPT, last)


def _b_map(f: _Node) -> _Code:
    """map(f) = [.[] | f]."""
    return _compile_collect(_pipe(_EACH, _compile(f)))


_JSON_ESCAPES: Final = {
    **{c: f"\\u{c:04x}" for c in range(0x20)},
    0x7F: "\\u007f",
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\b"): "\\b",
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\f"): "\\f",
    ord("\r"): "\\r",
}


def _tojson(v: Any) -> str:
    """jq's text for a value; numbers it may print differently (floats, integers beyond 2**53)
    fall back, anywhere in a container."""
    t = v.__class__
    if t is str:
        return '"' + v.translate(_JSON_ESCAPES) + '"'
    if t is dict or t is list:
        return _container_json(v)
    return _format(v)  # null, booleans and exact integers print as tostring does


def _container_json(v: dict[str, Any] | list[Any]) -> str:
    """jq's compact text of an array or object (what Sigma's `|contains` on an object field
    reads): keys in the order they were read, as orjson writes them, strings escaped as jq does
    (orjson leaves U+007F as is, jq writes it \\u007f; the rest is the same).  The walk is a
    loop, not a recursion: a record may nest deeper than Python's stack."""
    for x in _leaves(v):
        t = x.__class__
        if t is float or (t is int and not (-_EXACT <= x <= _EXACT and x)):
            raise Fallback  # jq prints the literal it read (0 may have been -0)
        if t not in _TYPE_NAMES:
            raise Fallback  # not a JSON value as orjson would decode it
    try:
        text = orjson.dumps(v).decode()
    except orjson.JSONEncodeError:
        raise Fallback from None  # nested beyond orjson's limit
    return text.replace("\x7f", "\\u007f")


def _b_tojson() -> _Code:
    return _Code(_ONE, _tojson)


_TYPE_SELECTORS: Final[dict[str, Callable[[Any], bool]]] = {
    "values": lambda x: x is not None,
    "nulls": lambda x: x is None,
    "booleans": lambda x: x.__class__ is bool,
    "numbers": lambda x: x.__class__ is int or x.__class__ is float,
    "strings": lambda x: x.__class__ is str,
    "arrays": lambda x: x.__class__ is list,
    "objects": lambda x: x.__class__ is dict,
    "iterables": lambda x: x.__class__ is list or x.__class__ is dict,
    "scalars": lambda x: x.__class__ is not list and x.__class__ is not dict,
}


def _type_selector(keep: Callable[[Any], bool]) -> Callable[[], _Code]:
    def build() -> _Code:
        return _Code(_OPT, lambda x: x if keep(x) else NO_OUTPUT)

    return build


_BUILTINS: Final[dict[tuple[str, int], Callable[..., _Code]]] = {
    ("select", 1): _b_select,
    ("not", 0): _b_not,
    ("empty", 0): _b_empty,
    ("length", 0): _b_length,
    ("type", 0): _b_type,
    ("tostring", 0): _b_tostring,
    ("ascii_downcase", 0): _b_ascii_downcase,
    ("ascii_upcase", 0): _b_ascii_upcase,
    ("startswith", 1): _b_startswith,
    ("endswith", 1): _b_endswith,
    ("ltrimstr", 1): _b_ltrimstr,
    ("rtrimstr", 1): _b_rtrimstr,
    ("contains", 1): _b_contains,
    ("has", 1): _b_has,
    ("test", 1): _b_test,
    ("test", 2): _b_test,
    ("any", 0): _b_any,
    ("any", 1): _b_any,
    ("any", 2): _b_any,
    ("all", 0): _b_all,
    ("all", 1): _b_all,
    ("all", 2): _b_all,
    ("isempty", 1): _b_isempty,
    ("IN", 1): _b_in,
    ("IN", 2): _b_in,
    ("split", 1): _b_split,
    ("join", 1): _b_join,
    ("first", 0): _b_first,
    ("last", 0): _b_last,
    ("first", 1): _b_first_of,
    ("last", 1): _b_last_of,
    ("map", 1): _b_map,
    ("tojson", 0): _b_tojson,
    ("fromjson", 0): _b_fromjson,
    ("flatten", 0): _b_flatten,
    **{(name, 0): _type_selector(keep) for name, keep in _TYPE_SELECTORS.items()},
}


# ---------------------------------------------------------------------------------------------
# Prefilter analysis.
#
# Facts are necessary conditions, {path: allowed string values}: if a record violates any of
# them, the expression provably yields nothing (or nothing truthy) and raises no error.  NEVER
# means the expression never yields anything truthy, whatever the record.  Paths are one key
# deep because indexing the record (an object) cannot fail there, while `.a.b` fails when `.a`
# is a string; `ctx` is the path of the expression's input within the record, () for the record.

_Facts = dict[tuple[str, ...], frozenset[str]] | None
_NEVER: Final = None


def _required(ast: _Node) -> dict[tuple[str, ...], frozenset[str]] | None:
    facts = _falsy_unless(ast, ())
    return facts or None


def _conj(a: _Facts, b: _Facts) -> _Facts:
    """Violating either set already suffices."""
    if a is _NEVER or b is _NEVER:
        return _NEVER
    out = dict(a)
    for path, values in b.items():
        out[path] = out[path] & values if path in out else values
    return out


def _disj(a: _Facts, b: _Facts) -> _Facts:
    """Both sets must be violated."""
    if a is _NEVER:
        return b
    if b is _NEVER:
        return a
    return {path: a[path] | b[path] for path in a.keys() & b.keys()}


def _none_unless(node: _Node, ctx: tuple[str, ...] | None) -> _Facts:
    """Facts under which ``node`` has no output at all (and raises no error)."""
    match node:
        case _Call("empty", ()):
            return _NEVER
        case _Call("select", (cond,)):
            return _falsy_unless(cond, ctx)
        case _Pipe(left, right):
            return _pipe_facts(left, right, ctx, _none_unless)
        case _Comma(a, b):
            return _disj(_none_unless(a, ctx), _none_unless(b, ctx))
        case _Alt(a, b):
            return _disj(_falsy_unless(a, ctx), _none_unless(b, ctx))
        case _If(cond, then, otherwise):
            return _if_facts(cond, then, otherwise, ctx, _none_unless)
        case _Try(body):
            return _none_unless(body, ctx)
        case _Bind(source, _, body):
            facts = _none_unless(source, ctx)
            return _conj(facts, _none_unless(body, ctx)) if _error_free(source, ctx) else facts
    return {}


def _falsy_unless(node: _Node, ctx: tuple[str, ...] | None) -> _Facts:
    """Facts under which every output of ``node`` is null or false (and no error is raised)."""
    match node:
        case _Const(value):
            return _NEVER if value is None or value is False else {}
        case _Compare("==", left, right):
            return _conj(_none_unless(node, ctx), _equality_facts(left, right, ctx))
        case _And(a, b):
            facts = _falsy_unless(a, ctx)
            return _conj(facts, _falsy_unless(b, ctx)) if _error_free(a, ctx) else facts
        case _Or(a, b):
            return _disj(_falsy_unless(a, ctx), _falsy_unless(b, ctx))
        case _Call("IN", (candidates,)):
            literals = _string_literals(candidates)
            if literals is not None and ctx is not None and len(ctx) == 1:
                return {ctx: literals}
        case _Call("IN", (source, candidates)):
            path = _value_path(source, ctx)
            literals = _string_literals(candidates)
            if literals is not None and path is not None and len(path) == 1:
                return {path: literals}
        case _Pipe(left, right):
            return _pipe_facts(left, right, ctx, _falsy_unless)
        case _Comma(a, b) | _Alt(a, b):
            return _disj(_falsy_unless(a, ctx), _falsy_unless(b, ctx))
        case _If(cond, then, otherwise):
            return _if_facts(cond, then, otherwise, ctx, _falsy_unless)
        case _Try(body):
            return _falsy_unless(body, ctx)
        case _Bind(source, _, body):
            facts = _none_unless(source, ctx)
            return _conj(facts, _falsy_unless(body, ctx)) if _error_free(source, ctx) else facts
    return _none_unless(node, ctx)


def _equality_facts(left: _Node, right: _Node, ctx: tuple[str, ...] | None) -> _Facts:
    for value_side, literal_side in ((left, right), (right, left)):
        path = _value_path(value_side, ctx)
        literals = _string_literals(literal_side)
        if path is not None and len(path) == 1 and literals is not None:
            return {path: literals}
    return {}


def _pipe_facts(
    left: _Node,
    right: _Node,
    ctx: tuple[str, ...] | None,
    facts_of: Callable[[_Node, tuple[str, ...] | None], _Facts],
) -> _Facts:
    left_none = _none_unless(left, ctx)
    path = _value_path(left, ctx)
    if path is not None:
        return _conj(left_none, facts_of(right, path))
    if _preserves_input(left) and _error_free(left, ctx):
        return _conj(left_none, facts_of(right, ctx))
    return left_none


def _if_facts(
    cond: _Node,
    then: _Node,
    otherwise: _Node,
    ctx: tuple[str, ...] | None,
    facts_of: Callable[[_Node, tuple[str, ...] | None], _Facts],
) -> _Facts:
    if not _error_free(cond, ctx):
        return {}
    else_facts = facts_of(otherwise, ctx)
    if else_facts is _NEVER:
        # Only the then-branch can yield: it needs a truthy condition.
        return _conj(_falsy_unless(cond, ctx), facts_of(then, ctx))
    return _disj(facts_of(then, ctx), else_facts)


def _value_path(node: _Node, ctx: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The record path whose value is ``node``'s single output, when indexing cannot fail."""
    if ctx is None:
        return None
    match node:
        case _Identity():
            return ctx
        case _Index(target, str(key), _):
            base = _value_path(target, ctx)
            return (key,) if base == () else None
        case _Pipe(left, right):
            return _value_path(right, _value_path(left, ctx))
    return None


def _error_free(node: _Node, ctx: tuple[str, ...] | None) -> bool:
    """``node`` cannot raise a jq error on its input (the record itself when ctx == ())."""
    match node:
        case _Identity() | _Const() | _Try() | _Var() | _Collect(None):
            return True
        case _Collect(body):
            return body is not None and _error_free(body, ctx)
        case _Object(entries):
            return all(_error_free(value, ctx) for _, value in entries)
        case _Bind(source, _, body):
            return _error_free(source, ctx) and _error_free(body, ctx)
        case _Index(target, _, True):  # `?` guards the last step only
            return _error_free(target, ctx)
        case _Index():
            return _value_path(node, ctx) is not None
        case _Compare(_, a, b) | _And(a, b) | _Or(a, b) | _Comma(a, b) | _Alt(a, b):
            return _error_free(a, ctx) and _error_free(b, ctx)
        case _If(c, a, b):
            return _error_free(c, ctx) and _error_free(a, ctx) and _error_free(b, ctx)
        case _Interp(parts):
            return all(isinstance(p, str) or _error_free(p, ctx) for p in parts)
        case _Pipe(left, right):
            if not _error_free(left, ctx):
                return False
            path = _value_path(left, ctx)
            inner = path if path is not None else (ctx if _preserves_input(left) else None)
            return _error_free(right, inner)
        case _Call("not" | "empty" | "type", ()):
            return True
        case _Call(name, ()) if name in _TYPE_SELECTORS:
            return True
        case _Call("select", (cond,)):
            return _error_free(cond, ctx)
        case _Call("IN", args):
            return all(_error_free(a, ctx) for a in args)
    return False


# ---------------------------------------------------------------------------------------------
# Memoisation: the record paths that determine a program's first output.
#
# Values flowing through the program are described as either a record path whose value they
# are ("pending": extracted, not necessarily used), _DET (computed from values already counted
# as read), or _BOTTOM (no outputs).  Extracting `.k` from a path registers the longer path
# *weakly*: what matters is only how jq walks there (objects, nulls, or the first other value,
# where it raises an error), and the key of any longer path registered encodes that walk too.
# Using a value (comparing it, testing it, interpolating it, outputting it) registers its path
# *strongly*: its whole value matters.  The reads are the strong paths plus the weak paths no
# other registered path extends.


class _NotPure(Exception):
    """The program may depend on more of the record than a few paths' values."""


class _Desc:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_DET: Final = _Desc("DET")
_BOTTOM: Final = _Desc("BOTTOM")
_Flow = tuple[str, ...] | _Desc

# Builtins (all with literal arguments in the subset) that use their whole input value.
_VALUE_BUILTINS: Final = frozenset(
    [
        "not",
        "length",
        "type",
        "tostring",
        "ascii_downcase",
        "ascii_upcase",
        "startswith",
        "endswith",
        "ltrimstr",
        "rtrimstr",
        "contains",
        "has",
        "test",
        "split",
        "join",
        "tojson",
        "fromjson",
        "flatten",
    ]
)


def _reads(ast: _Node) -> tuple[tuple[tuple[str, ...], ...], bool] | None:
    """(reads, identity_output) for an evaluable program, or None."""
    analysis = _ReadsAnalysis()
    try:
        out = analysis.flow(ast, ())
        identity = out == ()
        if not identity:
            analysis.use(out)
    except _NotPure:
        return None
    registered = analysis.weak | analysis.strong
    reads = set(analysis.strong)
    for path in analysis.weak:
        if not any(len(other) > len(path) and other[: len(path)] == path for other in registered):
            reads.add(path)
    return tuple(sorted(reads)), identity


class _ReadsAnalysis:
    def __init__(self) -> None:
        self.weak: set[tuple[str, ...]] = set()
        self.strong: set[tuple[str, ...]] = set()
        self.env: dict[int, _Flow] = {}

    def use(self, flow: _Flow) -> None:
        if isinstance(flow, tuple):
            if flow == ():
                raise _NotPure  # the whole record
            self.strong.add(flow)

    def join(self, a: _Flow, b: _Flow) -> _Flow:
        if a is _BOTTOM:
            return b
        if b is _BOTTOM or a == b:
            return a
        self.use(a)
        self.use(b)
        return _DET

    def used(self, *flows: _Flow) -> _Flow:
        for flow in flows:
            self.use(flow)
        return _BOTTOM if all(f is _BOTTOM for f in flows) and flows else _DET

    def flow(self, node: _Node, inp: _Flow) -> _Flow:  # noqa: C901 - one case per node type
        if inp is _BOTTOM:
            return _BOTTOM
        match node:
            case _Identity():
                return inp
            case _Const() | _Collect(None):
                return _DET
            case _Var(_, cell):
                return self.env[id(cell)]
            case _Index(target, key, _):
                base = self.flow(target, inp)
                if not isinstance(base, tuple):
                    return base
                if not isinstance(key, str):
                    raise _NotPure  # array elements are not keyed
                path = (*base, key)
                self.weak.add(path)
                return path
            case _Iterate(target, _):
                base = self.flow(target, inp)
                if isinstance(base, tuple):
                    raise _NotPure
                return base
            case _Interp(parts):
                self.used(*(self.flow(p, inp) for p in parts if not isinstance(p, str)))
                return _DET
            case _Pipe(left, right):
                return self.flow(right, self.flow(left, inp))
            case _Comma(a, b):
                return self.join(self.flow(a, inp), self.flow(b, inp))
            case _Alt(a, b) | _And(a, b) | _Or(a, b) | _Compare(_, a, b) | _Add(a, b):
                self.used(self.flow(a, inp), self.flow(b, inp))
                return _DET
            case _If(cond, then, otherwise):
                self.use(self.flow(cond, inp))
                return self.join(self.flow(then, inp), self.flow(otherwise, inp))
            case _Try(body):
                return self.flow(body, inp)
            case _Bind(source, cell, body):
                self.env[id(cell)] = self.flow(source, inp)
                return self.flow(body, inp)
            case _Collect(body):
                assert body is not None
                self.use(self.flow(body, inp))
                return _DET
            case _Object(entries):
                for _, value in entries:
                    self.use(self.flow(value, inp))
                return _DET
            case _Call(name, args):
                return self.call(name, args, inp)
        raise _NotPure

    def call(self, name: str, args: tuple[_Node, ...], inp: _Flow) -> _Flow:
        iterates = isinstance(inp, tuple)  # `.[]` of a path: not keyed
        match name, len(args):
            case "select", 1:
                self.use(self.flow(args[0], inp))
                return inp
            case "empty", 0:
                return _BOTTOM
            case (("first" | "last"), 0):
                if iterates:
                    raise _NotPure
                return inp
            case "first", 1:
                return self.flow(args[0], inp)
            case "last", 1:
                # the last output depends on every output before it
                return self.join(self.flow(args[0], inp), _DET)
            case (("any" | "all"), 2):
                self.use(self.flow(args[1], self.flow(args[0], inp)))
                return _DET
            case (("any" | "all" | "map"), _):
                if iterates:
                    raise _NotPure
                for arg in args:
                    self.use(self.flow(arg, _DET))
                return _DET
            case "isempty", 1:
                self.use(self.flow(args[0], inp))
                return _DET
            case "IN", 1:
                self.used(self.flow(args[0], inp), inp)
                return _DET
            case "IN", 2:
                self.used(self.flow(args[0], inp), self.flow(args[1], inp))
                return _DET
            case (("contains" | "startswith" | "endswith"), 1) if not isinstance(args[0], _Const):
                self.used(self.flow(args[0], inp), inp)
                return _DET
            case _ if name in _TYPE_SELECTORS and not args:
                self.use(inp)
                return inp
            case _ if name in _VALUE_BUILTINS and all(isinstance(a, _Const) for a in args):
                self.use(inp)
                return _DET
        raise _NotPure


_STOP: Final = _Desc("STOP")


class _Unkeyable(Exception):
    pass


def _value_key(v: Any) -> Any:
    t = v.__class__
    if t is str or v is None or t is bool:
        return v  # these three never compare equal to one another, nor to a tagged number
    if t is int and v:
        return (t, v)  # 1 == 1.0 == True in Python, never in jq
    # libjq reads the record's own text, where equal doubles may be different literals (1.0,
    # 1.00, 1.000000000000000000001; 0 and -0) that jq prints and compares apart.
    raise _Unkeyable


def _path_key(record: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` as jq's ``.k1.k2...`` finds it; a missing key reads as null, as it
    does in every use the analysis allows.  Where the walk meets something other than an object
    or null (jq raises an error there), that value and its depth are the key."""
    v = record
    for depth, key in enumerate(path):
        if v.__class__ is dict:
            v = v.get(key)
        elif v is None:
            return None
        else:
            return (_STOP, depth, _value_key(v))
    return _value_key(v)


def _memo_key_function(reads: tuple[tuple[str, ...], ...]) -> Callable[[Any], Any]:
    def general(record: Any) -> Any:
        try:
            return tuple([_path_key(record, path) for path in reads])
        except _Unkeyable:
            return None

    # The common case -- objects all the way, a string, boolean or null at the end -- without a
    # call per path; its key is the one `general` gives for it (those are their own keys).
    fast = [_scalar_getter(path) for path in reads]
    if len(fast) == 1:
        (get,) = fast

        def key_of_one(record: Any) -> Any:
            if record.__class__ is dict:
                v = get(record)
                if v is not _SLOW:
                    return (v,)
            return general(record)

        return key_of_one

    def key_of(record: Any) -> Any:
        if record.__class__ is dict:
            values = tuple([get(record) for get in fast])
            if _SLOW not in values:
                return values
        return general(record)

    return key_of


_SLOW: Final = _Desc("SLOW")
# What `NativeProgram.memo_value` gives when a record is not keyed that cheaply.
UNKEYED: Final = _SLOW


def _memo_value_function(reads: tuple[tuple[str, ...], ...]) -> Callable[[Any], Any]:
    """Like memo_key for a dict record whose values at ``reads`` are strings, booleans or nulls
    reached through objects: the value itself for one path, their tuple for several; UNKEYED
    for any other record.  (Those three types never compare equal to one another, so the value
    keeps JSON types apart as memo_key does.)  One call per record, where it runs for every
    record: single paths of one or two keys without a loop."""
    fast = [_scalar_getter(path) for path in reads]
    if len(fast) == 1:
        return fast[0]

    def value_of(record: Any) -> Any:
        values = tuple([get(record) for get in fast])
        return UNKEYED if _SLOW in values else values

    return value_of


def _scalar_getter(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """The string, boolean or null at ``path`` of a record, or _SLOW for anything else on the
    way.  (Those three types never compare equal to one another, so as keys they keep JSON
    types apart.)"""
    if len(path) == 1:
        (k,) = path

        def get1(record: dict[str, Any]) -> Any:
            v = record.get(k)
            return v if v.__class__ is str or v is None or v.__class__ is bool else _SLOW

        return get1
    if len(path) == 2:
        k1, k2 = path

        def get2(record: dict[str, Any]) -> Any:
            v = record.get(k1)
            if v.__class__ is dict:
                v = v.get(k2)
                return v if v.__class__ is str or v is None or v.__class__ is bool else _SLOW
            return None if v is None else _SLOW

        return get2

    def get_n(record: dict[str, Any]) -> Any:
        v: Any = record
        for k in path:
            if v.__class__ is dict:
                v = v.get(k)
            elif v is None:
                return None
            else:
                return _SLOW
        return v if v.__class__ is str or v is None or v.__class__ is bool else _SLOW

    return get_n
