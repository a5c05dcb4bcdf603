"""`python -m scarcity [run ...]`: the `scarcity` command (no arguments = a default run)."""

from scarcity.cli import main

raise SystemExit(main())
