"""``python -m pretrain.params``: parameter counts of lev / tied / untied, LEV's relative size, the isoparametric tied.

The command-line entry point; the code lives in :mod:`pretrain.training.params`.
"""

import sys

from pretrain.training.params import main

if __name__ == "__main__":
    sys.exit(main())
