"""torchrun worker: LEV's forward on a [2, 64] batch of ids from a trained checkpoint.

Usage: torchrun --nproc-per-node TP lev_table_worker.py TAG_DIR OUT.pt
Saves the ids and the embeddings the checkpoint's LEV module computes for them (its
ordinary batched forward, not the export's id-by-id chunks).
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from pretrain.export.inference import build_inference_engine, load_checkpoint_config
from pretrain.runtime.distributed import destroy_distributed, init_distributed

tag_dir, out_path = Path(sys.argv[1]), sys.argv[2]
config, meta = load_checkpoint_config(tag_dir, "unused", 1)
init_distributed(config.parallel.tensor_parallel, config.train.seed)
engine = build_inference_engine(config, meta, tag_dir)
ids = torch.randint(0, config.model.vocab_size, (2, 64), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    rows = engine.module.embedding.word_embeddings(ids).float()
if dist.get_rank() == 0:
    torch.save({"ids": ids, "rows": rows}, out_path)
destroy_distributed()
