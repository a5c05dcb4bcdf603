"""The run-search language of `GET /simulations` (`filter=`, `order_by=`), parsed with Lark.

A filter is one or more comparisons joined by `and`, in the style of MLflow's run search:

    config.dataset = 'digits' and metrics.test_accuracy >= 0.9 and tags.team = 'fl'

A term is `config.<field>` (any `SimulationConfig` field), `metrics.<name>` (the final round's
metric; `scarcity.results.METRIC_NAMES` lists the names), `tags.<key>` (a key with other
characters than letters, digits and `_` goes in backticks: tags.`lr-sweep`), or one of the
attributes `name`, `status`, `preset`. The README documents operators and values. Every
name and value is checked here, so an error is a 422 naming the field and the position, and
`models/search.py` only turns valid conditions into SQL: no text a database refuses (NUL, a
lone surrogate), no number outside what SQL compares (signed 64-bit integers, finite floats), no
`like` pattern ending in its escape character.
"""

from __future__ import annotations

import math
import types
from typing import Any, Literal, Union, get_args, get_origin

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.exceptions import VisitError

from app.errors import Unprocessable
from app.text import MAX_INT64, unstorable_character
from models.search import ATTRIBUTES, Condition, Kind, SortKey, Term
from scarcity.config import SimulationConfig, strategy_names
from scarcity.datasets import DATASETS, SYNTHETIC
from scarcity.datasets.uploaded import is_upload_id
from scarcity.results import METRIC_NAMES

GRAMMAR = r"""
filter: condition (AND condition)*
order: sort_key ("," sort_key)*

sort_key: term DIRECTION?
condition: term COMPARATOR value            -> compare
         | term IN "(" value ("," value)* ")"   -> member
         | term NOT IN "(" value ("," value)* ")" -> not_member

term: NAME ("." key)?
key: NAME | BACKQUOTED

value: STRING | NUMBER | TRUE | FALSE | NULL

AND.2: /and\b/i
IN.2: /in\b/i
NOT.2: /not\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
NULL.2: /null\b/i
DIRECTION.2: /(asc|desc)\b/i
COMPARATOR: "<=" | ">=" | "!=" | "=" | "<" | ">" | /like\b/i
NAME: /[A-Za-z_][A-Za-z0-9_]*/
BACKQUOTED: /`[^`]+`/
STRING: /'[^']*'/ | /"[^"]*"/
NUMBER: /[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/

%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", start=["filter", "order"], maybe_placeholders=False)

# What the parser expected, in the words of the README.
_EXPECTED = {
    "NAME": "a name",
    "BACKQUOTED": "a `quoted` tag key",
    "COMPARATOR": "an operator (=, !=, <, <=, >, >=, like)",
    "IN": "in",
    "NOT": "not in",
    "AND": "and",
    "STRING": "a 'string'",
    "NUMBER": "a number",
    "TRUE": "true",
    "FALSE": "false",
    "NULL": "null",
    "DIRECTION": "asc or desc",
    "LPAR": "(",
    "RPAR": ")",
    "COMMA": ",",
    "DOT": ".",
    "$END": "the end",
}
ORDER_ATTRIBUTES = (*ATTRIBUTES, "created_at")


def _base_type(annotation: Any) -> Any:
    """`float | None` → float; `Literal[...] | None` → the Literal."""
    if get_origin(annotation) in (Union, types.UnionType):
        return next(a for a in get_args(annotation) if a is not type(None))
    return annotation


class _DatasetNames(tuple[str, ...]):
    """The values of `config.dataset`: the registry's names, or any upload's id (ds_…)."""

    def __contains__(self, value: object) -> bool:
        return tuple.__contains__(self, value) or (isinstance(value, str) and is_upload_id(value))


def _config_kinds() -> dict[str, tuple[Kind, tuple[Any, ...] | None]]:
    """Each config field's kind and, for a closed set of names, its choices."""
    kinds: dict[str, tuple[Kind, tuple[Any, ...] | None]] = {}
    for name, info in SimulationConfig.model_fields.items():
        base = _base_type(info.annotation)
        if get_origin(base) is Literal:
            kinds[name] = ("string", get_args(base))
        elif name == "strategy":
            kinds[name] = ("string", tuple(strategy_names()))
        elif name == "dataset":
            kinds[name] = ("string", _DatasetNames((SYNTHETIC, *DATASETS, "ds_…")))
        elif base is bool:
            kinds[name] = ("bool", None)
        elif base in (int, float):
            kinds[name] = ("number", None)
        else:
            kinds[name] = ("string", None)
    return kinds


CONFIG_KINDS = _config_kinds()
STATUSES = ("pending", "queued", "running", "succeeded", "failed", "cancelled")


class _Invalid(Exception):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message, self.position = message, position


def _pos(token: Token) -> int:
    return (token.start_pos or 0) + 1  # 1-based character position, as people count


def _number(token: Token) -> float:
    """A number the databases can compare: an integer within signed 64 bits, a finite float."""
    where = _pos(token)
    text = str(token)
    if text.lstrip("+-").isdigit() and not -MAX_INT64 - 1 <= int(text) <= MAX_INT64:
        raise _Invalid(f"the integer at position {where} is outside the signed 64-bit range", where)
    value = float(token)
    if not math.isfinite(value):
        raise _Invalid(f"the number at position {where} is out of range", where)
    return value


def _ends_in_escape(pattern: str) -> bool:
    """A `like` pattern whose last backslash escapes nothing (PostgreSQL refuses it)."""
    return (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 1


class _Build(Transformer[Token, Any]):
    """Parse tree → `Condition` / `SortKey`, checking every name and value on the way."""

    def __init__(self, *, for_order: bool) -> None:
        super().__init__()
        self.for_order = for_order

    def key(self, children: list[Token]) -> Token:
        token = children[0]
        if token.type == "BACKQUOTED":
            return token.update(value=token[1:-1])
        return token

    def term(self, children: list[Token]) -> tuple[Term, tuple[Any, ...] | None, int]:
        head = children[0]
        where = _pos(head)
        if len(children) == 1:
            allowed = ORDER_ATTRIBUTES if self.for_order else ATTRIBUTES
            if head in allowed:
                choices = {"status": STATUSES, "preset": CONFIG_KINDS["preset"][1]}.get(head)
                return Term("attribute", str(head), "string"), choices, where
            raise _Invalid(
                f"unknown field {str(head)!r} at position {where}: expected config.<field>, "
                f"metrics.<name>, tags.<key> or one of {', '.join(allowed)}",
                where,
            )
        prefix, name = str(head), str(children[1])
        if prefix == "config":
            if name not in CONFIG_KINDS:
                raise _Invalid(
                    f"unknown config field {name!r} at position {where} (GET /presets shows "
                    "every field)",
                    where,
                )
            kind, choices = CONFIG_KINDS[name]
            return Term("config", name, kind), choices, where
        if prefix == "metrics":
            if name not in METRIC_NAMES:
                raise _Invalid(
                    f"unknown metric {name!r} at position {where}: expected one of "
                    f"{', '.join(METRIC_NAMES)}",
                    where,
                )
            return Term("metric", name, "number"), None, where
        if prefix == "tags":
            return Term("tag", name, "string"), None, where
        raise _Invalid(
            f"unknown prefix {prefix!r} at position {where}: expected config, metrics or tags",
            where,
        )

    def value(self, children: list[Token]) -> tuple[Any, str, int]:
        token = children[0]
        kind = token.type
        if kind == "STRING":
            return str(token)[1:-1], "string", _pos(token)
        if kind == "NUMBER":
            return _number(token), "number", _pos(token)
        if kind in ("TRUE", "FALSE"):
            return kind == "TRUE", "bool", _pos(token)
        return None, "null", _pos(token)

    def _checked(
        self, term: tuple[Term, tuple[Any, ...] | None, int], op: str, value: tuple[Any, str, int]
    ) -> Any:
        (t, choices, _), (v, kind, where) = term, value
        label = f"{t.source}.{t.name}" if t.source != "attribute" else t.name
        label = label.replace("metric.", "metrics.").replace("tag.", "tags.")
        if kind == "null":
            if op not in ("=", "!=", "in", "not in"):
                raise _Invalid(
                    f"{label}: null only goes with =, != or in (position {where})", where
                )
            return None
        if kind != t.kind:
            raise _Invalid(
                f"{label} is a {t.kind}, got a {kind} at position {where}"
                + (" (quote strings: 'value')" if t.kind == "string" else ""),
                where,
            )
        if op == "like" and t.kind != "string":
            raise _Invalid(f"{label}: like compares strings, not a {t.kind}", where)
        if op == "like" and _ends_in_escape(v):
            raise _Invalid(
                f"{label}: a like pattern cannot end in a lone \\ (the escape character: \\% "
                f"and \\_ match % and _, \\\\ a backslash) at position {where}",
                where,
            )
        if t.kind == "bool" and op not in ("=", "!=", "in", "not in"):
            raise _Invalid(f"{label} is true or false: use = or != (position {where})", where)
        if choices is not None and op in ("=", "!=", "in", "not in") and v not in choices:
            raise _Invalid(
                f"{label}: unknown value {v!r} at position {where}, expected one of "
                f"{', '.join(map(str, choices))}",
                where,
            )
        return v

    def compare(self, children: list[Any]) -> Condition:
        term, comparator, value = children
        op = str(comparator).lower()
        return Condition(term[0], op, self._checked(term, op, value))  # type: ignore[arg-type]

    def member(self, children: list[Any]) -> Condition:
        term, _, *values = children
        return Condition(term[0], "in", tuple(self._checked(term, "in", v) for v in values))

    def not_member(self, children: list[Any]) -> Condition:
        term, _, _, *values = children
        return Condition(term[0], "not in", tuple(self._checked(term, "not in", v) for v in values))

    def filter(self, children: list[Any]) -> list[Condition]:
        return [c for c in children if isinstance(c, Condition)]

    def sort_key(self, children: list[Any]) -> SortKey:
        term = children[0][0]
        descending = len(children) > 1 and str(children[1]).lower() == "desc"
        return SortKey(term, descending)

    def order(self, children: list[SortKey]) -> list[SortKey]:
        return children


def _syntax_error(param: str, text: str, exc: UnexpectedInput) -> Unprocessable:
    if isinstance(exc, UnexpectedCharacters):
        index = exc.pos_in_stream or 0
        where = index + 1
        found = f"character {text[index]!r}"
        expected = set()  # the lexer's terminals of the state, before reductions: misleading
    elif isinstance(exc, UnexpectedToken):
        token = exc.token
        at_end = token.type == "$END"
        where = len(text) + 1 if at_end else _pos(token)
        found = "the end" if at_end else repr(str(token))
        expected = exc.accepts or exc.expected or set()  # accepts: after pending reductions
    else:  # pragma: no cover - the LALR parser raises only the two above
        where, found, expected = len(text) + 1, "the end", set()
    wanted = sorted({_EXPECTED.get(name, name.lower()) for name in expected})
    message = f"syntax error at position {where}: unexpected {found}"
    if wanted:
        message += f", expected {' or '.join(wanted)}"
    return Unprocessable([{"field": param, "message": message}])


def _parse(param: str, text: str, start: str) -> Any:
    unstorable = unstorable_character(text)
    if unstorable is not None:  # in a value or a quoted tag key it would reach the database
        raise Unprocessable([{"field": param, "message": unstorable}])
    try:
        tree = _PARSER.parse(text, start=start)
    except UnexpectedInput as exc:
        raise _syntax_error(param, text, exc) from None
    try:
        return _Build(for_order=start == "order").transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _Invalid):
            raise Unprocessable([{"field": param, "message": exc.orig_exc.message}]) from None
        raise


def parse_filter(text: str | None) -> list[Condition]:
    """The conditions of a `filter=` value (none for an empty one); 422 naming the position."""
    if text is None or not text.strip():
        return []
    return list(_parse("filter", text, "filter"))


def parse_order(text: str | None) -> list[SortKey]:
    """The sort keys of an `order_by=` value (e.g. `metrics.loss asc, name`)."""
    if text is None or not text.strip():
        return []
    return list(_parse("order_by", text, "order"))
