"""Public names of a package loaded on first use (PEP 562), so importing the package is cheap.

`scarcity` and `scarcity.core` name their public classes here instead of importing them: the
command line's `--help` then imports no torch, and a module that needs one piece of a package
does not pull in the rest (which may be on its way in: an import cycle hidden by order).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's `__getattr__` and `__dir__`: each name in `homes` (name → defining module)
    is imported when first read and kept in `namespace` (the package's globals) after."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *homes])

    return __getattr__, __dir__
