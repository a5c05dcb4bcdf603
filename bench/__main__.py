"""Run the benchmarks: `python -m bench` (all) or `python -m bench service`."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

SUITES = (
    "engine",
    "scale",
    "models",
    "service",
    "strategies",
    "events",
    "search",
    "ablation",
    "sweep",
    "papers",
    "fmnist",
    "scenarios",
    "mechanisms",
    "accounting",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], default=[])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--full",
        action="store_true",
        help="the papers' own protocols where a suite has a reduced default (papers)",
    )
    args = parser.parse_args(argv)
    for name in args.suites or SUITES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            print(f"[{name}] not available: {exc}")
            continue
        print(f"=== {name} ===", flush=True)
        if "full" in inspect.signature(module.main).parameters:
            module.main(quick=args.quick, full=args.full)
        else:
            module.main(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
