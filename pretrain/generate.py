"""``python -m pretrain.generate``: text from a checkpoint or an exported model.

The command-line entry point; the code lives in :mod:`pretrain.export.generate`.
"""

import sys

from pretrain.export.generate import main

if __name__ == "__main__":
    sys.exit(main())
