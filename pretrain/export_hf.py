"""``python -m pretrain.export_hf``: a checkpoint as a Hugging Face LlamaForCausalLM (LEV materialised into a table).

The command-line entry point; the code lives in :mod:`pretrain.export.hf`.
"""

import sys

from pretrain.export.hf import main

if __name__ == "__main__":
    sys.exit(main())
