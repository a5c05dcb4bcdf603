"""Run search in SQL: the conditions and sort keys of `GET /simulations` as JSON-path clauses.

`app/search.py` parses the filter language and checks names and types; what reaches this module
is already valid. Each term reads one value of a simulation:

- `attribute` — a column of `simulations` (`name`, `status`, `preset`);
- `config` — `simulations.config -> field` (JSONB `->>` on PostgreSQL, `json_extract` on SQLite);
- `tag` — `simulations.tags -> key`;
- `metric` — the final metric: `round_metrics.metrics -> name` of the row whose round is the
  simulation's `rounds_completed`, joined on the unique (simulation_id, round) key, so each
  simulation costs one index lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, false, or_
from sqlalchemy.orm import aliased

from models.round_metrics import RoundMetrics
from models.simulation import Simulation

Source = Literal["attribute", "config", "tag", "metric"]
Kind = Literal["string", "number", "bool"]
Operator = Literal["=", "!=", "<", "<=", ">", ">=", "like", "in", "not in"]

ATTRIBUTES = ("name", "status", "preset")


@dataclass(frozen=True)
class Term:
    source: Source
    name: str
    kind: Kind


@dataclass(frozen=True)
class Condition:
    term: Term
    op: Operator
    value: Any  # str | float | bool | None, or a tuple of them for `in` / `not in`


@dataclass(frozen=True)
class SortKey:
    term: Term
    descending: bool


FinalMetrics = type[RoundMetrics]


def final_metrics_alias() -> FinalMetrics:
    return aliased(RoundMetrics, name="final_metrics")


def _expression(term: Term, final: FinalMetrics) -> ColumnElement[Any]:
    if term.source == "attribute":
        column: ColumnElement[Any] = getattr(Simulation, term.name)
        return column
    document = {"config": Simulation.config, "tag": Simulation.tags, "metric": final.metrics}[
        term.source
    ]
    element = document[term.name]
    if term.kind == "number":
        return element.as_float()
    if term.kind == "bool":
        return element.as_boolean()
    return element.as_string()


def _condition(condition: Condition, final: FinalMetrics) -> ColumnElement[bool]:
    expr, op, value = _expression(condition.term, final), condition.op, condition.value
    if value is None:  # only `=` / `!=` take null (checked by the parser)
        return expr.is_(None) if op == "=" else expr.is_not(None)
    if op == "=":
        return expr == value
    if op == "!=":  # a run without the value (null, missing tag) differs from it too
        return or_(expr != value, expr.is_(None))
    if op == "<":
        return expr < value
    if op == "<=":
        return expr <= value
    if op == ">":
        return expr > value
    if op == ">=":
        return expr >= value
    if op == "like":  # case-insensitive on both databases (SQLite's LIKE is, PostgreSQL's not)
        return expr.ilike(value, escape="\\")  # PostgreSQL's default escape, made SQLite's too
    values = [v for v in value if v is not None]
    has_null = len(values) < len(value)
    if op == "in":
        matched = expr.in_(values) if values else false()
        return or_(matched, expr.is_(None)) if has_null else matched
    # not in: a null is outside a list without null, as with `!=`
    if not values:
        return expr.is_not(None)
    kept = expr.not_in(values)
    return and_(kept, expr.is_not(None)) if has_null else or_(kept, expr.is_(None))


def uses_metrics(conditions: Sequence[Condition], order: Sequence[SortKey]) -> bool:
    terms = [c.term for c in conditions] + [k.term for k in order]
    return any(t.source == "metric" for t in terms)


def apply(
    query: Select[Any],
    conditions: Sequence[Condition],
    order: Sequence[SortKey],
) -> Select[Any]:
    """`query` (over `Simulation`) narrowed by `conditions` and sorted by `order` first (nulls
    last); the caller appends its own tie-breakers."""
    final = final_metrics_alias()
    if uses_metrics(conditions, order):
        query = query.outerjoin(
            final,
            and_(final.simulation_id == Simulation.id, final.round == Simulation.rounds_completed),
        )
    for condition in conditions:
        query = query.where(_condition(condition, final))
    for key in order:
        expr = _expression(key.term, final)
        query = query.order_by((expr.desc() if key.descending else expr.asc()).nulls_last())
    return query
