"""``python -m pretrain.study``: the LEV design study and embedding comparisons
(:mod:`pretrain.study.runner`)."""

import sys

from pretrain.study.runner import main

sys.exit(main())
