"""Text a database can store: the one check every free-text input passes before any query.

PostgreSQL refuses NUL (U+0000) in `text` and JSONB, and a lone UTF-16 surrogate (U+D800 to
U+DFFF, which JSON's `\\ud800` escapes can produce) cannot be encoded as UTF-8 for either
database. Both would fail inside the driver as a 500; refused here, they are a 422 naming the
field, the same on SQLite and PostgreSQL. Integers sent to SQL are signed 64-bit on both.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# The widest integer SQLite and PostgreSQL (BIGINT, OFFSET) take: a bigger one overflows there.
MAX_INT64 = 2**63 - 1

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable_character(text: str) -> str | None:
    """Why `text` cannot be stored (the first offending character and its 1-based position),
    or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = (
        "a NUL character (\\u0000)" if char == "\x00" else f"a lone surrogate (\\u{ord(char):04x})"
    )
    return f"{what} at position {found.start() + 1} is not allowed in text"


def encodable(text: str) -> str:
    """`text` with each lone surrogate written as its `\\uXXXX` escape, so that an answer
    echoing it (a field name taken from a JSON key) can be encoded as UTF-8."""
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _storable(text: str) -> str:
    reason = unstorable_character(text)
    if reason is not None:
        raise ValueError(reason)
    return text


#: A string of the request schemas: any text a database stores as it is sent.
StorableText = Annotated[str, AfterValidator(_storable)]
