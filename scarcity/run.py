"""The seed's entry script: `python scarcity/run.py` runs a default (stage8) simulation.

Also works as `python -m scarcity.run`; extra arguments are those of `scarcity run`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package from the repo root
    package_dir = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != package_dir]
    sys.path.insert(0, str(package_dir.parent))

from scarcity.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["run", *sys.argv[1:]]))
