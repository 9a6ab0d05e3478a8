"""``python -m pretrain.study``: the LEV design study and embedding comparisons
(:mod:`pretrain.study.runner`)."""

import sys

from pretrain.study.runner import main

if __name__ == "__main__":  # importing the package's modules (tests, tools) runs nothing
    sys.exit(main())
