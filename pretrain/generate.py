"""``python -m pretrain.generate``: text from a checkpoint or an exported model.

The command-line entry point; the code lives in :mod:`pretrain.export.generate`.
"""

import sys

from pretrain.export.generate import main

if __name__ == "__main__":
    # The usage line names the command as it is typed (argparse would say "generate.py").
    sys.argv[0] = "python -m pretrain.generate"
    sys.exit(main())
