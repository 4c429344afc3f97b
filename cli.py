"""The seed's interface, from the repository root: ``python cli.py --status`` (see ``--help``).

A thin launcher for ``failure_aware.cli.seed``; the full command line is ``failure-aware``
(``python -m failure_aware``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # run from elsewhere, or without the package installed
    sys.path.insert(0, str(ROOT))

from failure_aware.cli.seed import main  # noqa: E402  (the path must be set first)

if __name__ == "__main__":
    sys.exit(main())
