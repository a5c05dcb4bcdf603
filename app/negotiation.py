"""JSON or CSV for a table (metrics, clients, sweep results): `format=` or the `Accept` header,
negotiated the same way by every route that offers both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Response

from app.errors import NotAcceptable

TABLE_MEDIA_TYPES = ("application/json", "text/csv")


def negotiate(accept: str | None, offered: tuple[str, ...] = TABLE_MEDIA_TYPES) -> str:
    """The offered media type the `Accept` header prefers (RFC 9110 §12.5.1): the highest q,
    the most specific match deciding each type's q, ties going to the first offered; q=0 means
    "not this". No header = the first offered; nothing acceptable = 406."""
    if not accept or not accept.strip():
        return offered[0]
    ranges: list[tuple[str, str, float]] = []
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        kind, _, sub = media.lower().partition("/")
        ranges.append((kind, sub or "*", q))

    def quality(media_type: str) -> float:
        kind, _, sub = media_type.partition("/")
        best, specificity = 0.0, -1
        for r_kind, r_sub, q in ranges:
            if (r_kind, r_sub) == (kind, sub):
                rank = 2
            elif r_kind == kind and r_sub == "*":
                rank = 1
            elif (r_kind, r_sub) == ("*", "*"):
                rank = 0
            else:
                continue
            if rank > specificity:
                best, specificity = q, rank
        return best

    scored = [(quality(media), -i, media) for i, media in enumerate(offered)]
    q, _, media = max(scored)
    if q <= 0:
        raise NotAcceptable(
            f"no acceptable representation; this resource offers {', '.join(offered)}"
        )
    return media


def wants_csv(format: str | None, accept: str | None) -> bool:
    """CSV or JSON for a table: `format=csv|json` wins, else `Accept` is negotiated (q-values
    honoured; nothing acceptable is a 406)."""
    if format is not None:
        return format == "csv"
    return negotiate(accept) == "text/csv"


def table(body: Any, to_csv: Callable[[], str], *, format: str | None, accept: str | None) -> Any:
    """`body` as the route's JSON, or `to_csv()` as a text/csv response, as negotiated."""
    if wants_csv(format, accept):
        return Response(to_csv(), media_type="text/csv")
    return body
