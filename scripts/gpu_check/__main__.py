"""``python scripts/gpu_check SUBCOMMAND``: the package run as a program (see __init__.py)."""

import sys
from pathlib import Path

_SCRIPTS = Path(__file__).resolve().parents[1]
# Python put this package's own folder first on sys.path, which would make its modules
# importable as top-level names (`evaluate`, `report`, ...) that could shadow libraries'.
# Import it as the package `gpu_check` instead, and the repository's packages (pretrain,
# data_prep) from the repo root.
sys.path[0] = str(_SCRIPTS)
sys.path.insert(1, str(_SCRIPTS.parent))

from gpu_check.cli import main  # noqa: E402

sys.exit(main())
