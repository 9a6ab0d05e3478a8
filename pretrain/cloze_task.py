"""``python -m pretrain.cloze_task``: the offline LAMBADA-style lm-eval task built from a validation split.

The command-line entry point; the code lives in :mod:`pretrain.evaluation.cloze_task`.
"""

import sys

from pretrain.evaluation.cloze_task import main

if __name__ == "__main__":
    sys.exit(main())
