"""``python -m vramtop``: the same entry point as the ``vramtop`` console script."""

from vramtop.cli import main

raise SystemExit(main())
