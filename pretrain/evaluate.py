"""``python -m pretrain.evaluate``: validation perplexity, frequency buckets and LEV-vs-baseline reports.

The command-line entry point; the code lives in :mod:`pretrain.evaluation.evaluate`.
"""

import sys

from pretrain.evaluation.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
