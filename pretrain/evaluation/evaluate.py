"""Validation perplexity of trained checkpoints, overall and per train-frequency bucket.

``python -m pretrain.evaluate --checkpoint DIR --data-path SHARD_DIR --output OUT
[--compare DIR2 ...] [--buckets N] [--micro-batch-size M]``

``python -m pretrain.evaluate --variant lev L1 L2 L3 --variant tied T1 T2 T3 --data-path ... --output ...``
compares seed groups: each ``--variant NAME DIR...`` is one variant trained with several
seeds (the first is the reference); the report gives mean +- std over seeds. (Not ``--run``:
torchrun would take that for its own ``--run-path`` even after ``-m pretrain.evaluate``.)

* ``DIR`` is a checkpoint tag (``.../step00000400``) or a ``checkpoint.save_dir`` (its
  ``latest``, else its newest complete tag).
* Runs under the training launchers (torchrun, srun, mpiexec; or one plain process).
  The model is rebuilt from the checkpoint's own config (``meta.json["config"]``) with
  the tensor parallelism it was trained with; DP = world size / TP. Weights are loaded
  through a DeepSpeed engine built as the trainer builds it, so any ZeRO stage works:
  ZeRO 0-2 load the module weights only (any DP size); ZeRO-3 loads its fp32 partitions
  and must be evaluated at the DP size it was saved with.
* Every validation token is counted exactly once over all DP ranks (padding rows are
  masked); per-token losses are accumulated per bucket of the *label* token in float64
  and summed over ranks, so the numbers do not depend on the rank count beyond fp32
  forward rounding. Buckets: :mod:`pretrain.evaluation.buckets` (edges documented there).
* Writes ``OUT/eval.json``, ``OUT/report.md`` and PNGs (see :mod:`pretrain.evaluation.report`).
  With ``--compare``, the first checkpoint is the reference (the LEV run) and every
  other one is a baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_prep.cli import add_flag
from pretrain.export.inference import (
    EvaluationError,
    build_inference_engine,
    ensure_tensor_parallel,
    load_checkpoint_config,
    resolve_checkpoint,
)
from pretrain.runtime.logs import setup_logging

# numpy and torch load inside the functions: torch takes seconds to import, which
# `--help` and a refused argument should not pay for.
if TYPE_CHECKING:
    import numpy as np

__all__ = ["evaluate_checkpoint", "main"]

log = logging.getLogger("pretrain.evaluate")


def evaluate_checkpoint(tag_dir: Path, data_dir: str | Path, token_bucket: np.ndarray,
                        micro_batch_size: int | None = None) -> dict[str, Any]:
    """Per-bucket token counts and float64 loss sums of ``tag_dir`` over the val split.

    Call on every rank (collective). Returns the same dict on every rank.
    """
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from pretrain.data.sampler import val_batches
    from pretrain.data.shards import open_split
    from pretrain.runtime.metrics import perplexity
    from pretrain.training.model import count_parameters

    config, meta = load_checkpoint_config(tag_dir, data_dir, micro_batch_size)
    ensure_tensor_parallel(config.parallel.tensor_parallel, config.train.seed)
    val = open_split(str(data_dir), "val", seq_length=config.model.seq_length,
                     vocab_size=config.model.vocab_size)
    if val.manifest.get("fingerprint") != meta.get("data_fingerprint"):
        log.warning("%s was trained on other shards than %s (fingerprint differs); the "
                    "buckets come from %s's train counts", tag_dir, data_dir, data_dir)
    engine = build_inference_engine(config, meta, tag_dir)
    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    nb = int(token_bucket.max()) + 1
    bucket_of = torch.as_tensor(token_bucket, dtype=torch.int64)
    sums = torch.zeros(2, nb, dtype=torch.float64)  # [loss sum, tokens] per bucket
    device = engine.device
    for batch in val_batches(val, micro_batch_size=config.train.micro_batch_size,
                             dp_rank=dp_rank, dp_size=dp_size):
        with torch.no_grad():
            per_token = engine(batch["tokens"].to(device), batch["position_ids"].to(device),
                               None, labels=batch["labels"].to(device))
        mask = batch["loss_mask"].bool()
        loss = per_token.detach().float().cpu()[mask].double()
        buckets = bucket_of[batch["labels"][mask]]
        sums[0] += torch.bincount(buckets, weights=loss, minlength=nb)
        sums[1] += torch.bincount(buckets, minlength=nb).double()
    sums = sums.to(device)  # NCCL groups take device tensors only
    dist.all_reduce(sums, group=ps.get_data_parallel_group())
    sums = sums.cpu()
    params = count_parameters(engine.module, config.parallel.tensor_parallel).total
    val.close()
    if hasattr(engine, "destroy"):
        engine.destroy()
    del engine
    gc.collect()

    loss_sum, tokens = sums[0].tolist(), sums[1].tolist()
    total_tokens = sum(tokens)
    overall = sum(loss_sum) / total_tokens if total_tokens else float("nan")
    c = config
    return {
        "checkpoint": str(tag_dir), "save_dir": str(tag_dir.parent), "step": meta["step"],
        "embedding": c.model.embedding, "tensor_parallel": c.parallel.tensor_parallel,
        "zero_stage": c.train.zero_stage, "trained_world_size": meta["world_size"],
        "params": params, "eval_interval": c.train.eval_interval,
        "eval_samples": c.train.eval_samples,
        "eval_world_size": dist.get_world_size(), "seed": c.train.seed,
        "consumed_samples": meta["consumed_samples"],
        "tokens_per_step": meta["global_batch_size"] * c.model.seq_length,
        "tokens": int(total_tokens), "loss": overall, "ppl": perplexity(overall),
        "bucket_tokens": [int(t) for t in tokens], "bucket_loss_sum": loss_sum,
    }


def _check_tokenizers(data_dir: Path, tags: list[Path]) -> None:
    """Refuse shards tokenized with another tokenizer than a checkpoint's (the perplexity
    would be of other token ids: meaningless)."""
    from pretrain.data.shards import load_manifest

    shards = load_manifest(data_dir)["tokenizer"]["sha256"]
    for tag in tags:
        meta = json.loads((tag / "meta.json").read_text())
        record = meta.get("tokenizer")
        if record is None:  # saved before meta.json recorded it: the training manifest's
            trained_on = Path(meta["config"]["data"]["path"]) / "manifest.json"
            if not trained_on.is_file():
                log.warning("%s records no tokenizer and its training shards are gone: "
                            "cannot check that %s uses the same one", tag, data_dir)
                continue
            record = json.loads(trained_on.read_text())["tokenizer"]
        if record["sha256"] != shards:
            raise EvaluationError(
                f"{tag} was trained with tokenizer sha256 {record['sha256']} "
                f"({record.get('path')}), but --data-path {data_dir} was tokenized with sha256 "
                f"{shards}; evaluate on shards made with the checkpoint's tokenizer "
                f"(data_prep/shard.py --tokenizer {record.get('path')})")


def _check_output(output: Path) -> None:
    """Fail before the (long) evaluation, not after it, if the report cannot be written.

    Every rank runs this before the process group exists, so each writes its own probe
    (host and pid in the name): with one shared name a rank could unlink another's probe
    between that rank's write and unlink and fail a writable directory.
    """
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test.{socket.gethostname()}.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EvaluationError(f"--output {output} is not a writable directory ({exc})") from exc


def _default_labels(tags: list[Path], embeddings: list[str]) -> list[str]:
    """The embedding name; ``name:save_dir`` if repeated; ``#i`` if still ambiguous."""
    labels = [n if embeddings.count(n) == 1 else f"{n}:{t.parent.name}"
              for n, t in zip(embeddings, tags, strict=True)]
    return [label if labels.count(label) == 1 else f"{label}#{i}"
            for i, label in enumerate(labels)]


def _curve_description(runs: list[dict[str, Any]], val_samples: int) -> str:
    interval = {r["eval_interval"] for r in runs}
    subset = {r["eval_samples"] for r in runs}
    every = "/".join(map(str, sorted(interval)))
    n = subset.pop() if len(subset) == 1 else None
    what = ("the whole validation split" if n in (0, None) or n >= val_samples else
            f"a fixed subset of {n} of the {val_samples} validation samples drawn across all "
            "shards (`pretrain.data.sampler.val_subset_ids`)")
    return f"every {every} steps on {what}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pretrain.evaluate",
        description="Validation loss/perplexity, overall and per train-frequency bucket; "
                    "with --compare or several --variant groups, a LEV-vs-baselines report.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="""\
Run it with one process per tensor-parallel rank of the checkpoint (or a multiple of its TP
size: data parallelism takes the rest), as one process or under torchrun, srun or mpiexec;
a ZeRO-3 checkpoint at the data-parallel size it was saved with.

examples:
  torchrun --standalone --nproc-per-node 2 -m pretrain.evaluate \\
      --checkpoint runs/lev --data-path demo_out/shards --output runs/lev/eval
  torchrun --nproc-per-node 2 -m pretrain.evaluate --checkpoint runs/lev_1b2 \\
      --compare runs/tied_1b2 runs/untied_1b2 --data-path /data/pile_neox_512 --output eval/arms
  python -m pretrain.evaluate --data-path SHARDS --output eval/seeds \\
      --variant lev runs/lev/seed1 runs/lev/seed2 --variant tied runs/tied/seed1 runs/tied/seed2
""")
    parser.add_argument("--checkpoint", default=None,
                        help="tag dir (step*) or save_dir; with --compare: the reference (LEV) run")
    parser.add_argument("--compare", nargs="*", default=[], metavar="DIR",
                        help="baseline checkpoints (tag or save_dir) compared to --checkpoint")
    parser.add_argument("--variant", nargs="+", action="append", default=[],
                        metavar=("NAME", "DIR"), dest="groups",
                        help="a seed group: NAME then one checkpoint per seed; repeat per "
                             "variant, the first is the reference (instead of --checkpoint)")
    add_flag(parser, "--data-path", deprecated=("--data",), required=True,
             help="shard dir (manifest.json, token_counts.npy); the training config's data.path")
    parser.add_argument("--output", required=True, help="report dir (eval.json, report.md, *.png)")
    parser.add_argument("--buckets", type=int, default=5,
                        help="equal-train-mass frequency buckets of seen ids (default 5)")
    parser.add_argument("--min-bucket-tokens", type=int, default=1000,
                        help="buckets with fewer val tokens get no ppl change (default 1000)")
    parser.add_argument("--micro-batch-size", type=int, default=None,
                        help="samples per rank per forward (default: the checkpoint's)")
    args = parser.parse_args(argv)
    setup_logging()

    import numpy as np
    import torch.distributed as dist

    from data_prep.paths import PathOutsideError
    from megatron_patches.safe_load import UnsafeCheckpointError
    from pretrain.config import ConfigError
    from pretrain.data.shards import DataMismatchError, ShardsNotFoundError
    from pretrain.evaluation.buckets import frequency_buckets
    from pretrain.evaluation.report import write_report
    from pretrain.runtime.distributed import destroy_distributed, init_distributed

    try:
        if args.buckets < 1:
            raise EvaluationError(f"--buckets must be >= 1, got {args.buckets}")
        if args.micro_batch_size is not None and args.micro_batch_size < 1:
            raise EvaluationError(f"--micro-batch-size must be >= 1, got {args.micro_batch_size}")
        if bool(args.checkpoint) == bool(args.groups):
            raise EvaluationError("give either --checkpoint DIR [--compare DIR ...] or one or "
                                  "more --variant NAME DIR [DIR ...]")
        if args.groups:
            bad = [g[0] for g in args.groups if len(g) < 2]
            if bad:
                raise EvaluationError(f"--variant {bad[0]} names no checkpoint: "
                                      "--variant NAME DIR [DIR ...]")
            names = [g[0] for g in args.groups]
            if len(set(names)) != len(names):
                raise EvaluationError(f"--variant names must differ, got {names}")
            plan = [(g[0], [resolve_checkpoint(p) for p in g[1:]]) for g in args.groups]
        else:
            tags = [resolve_checkpoint(p) for p in [args.checkpoint, *args.compare]]
            kinds = [json.loads((t / "meta.json").read_text())["config"]["model"]["embedding"]
                     for t in tags]
            plan = [(label, [t]) for label, t in zip(_default_labels(tags, kinds), tags,
                                                      strict=True)]
        counts_path = Path(args.data_path) / "token_counts.npy"
        if not counts_path.is_file():
            raise EvaluationError(f"{counts_path} is missing; re-run data_prep/shard.py "
                                  "(it writes the train split's unigram counts)")
        _check_tokenizers(Path(args.data_path), [t for _, tags in plan for t in tags])
        _check_output(Path(args.output))
        first = json.loads((plan[0][1][0] / "meta.json").read_text())["config"]
        init_distributed(first["parallel"]["tensor_parallel"], first["train"]["seed"])
        vocab = first["model"]["vocab_size"]
        spec = frequency_buckets(np.load(counts_path), args.buckets, vocab_size=vocab)
        groups: dict[str, list[dict[str, Any]]] = {}
        for label, tags in plan:
            for tag in tags:
                log.info("evaluating %s (%s)", tag, label)
                result = evaluate_checkpoint(tag, args.data_path, spec.token_bucket,
                                             args.micro_batch_size)
                log.info("%s (%s, step %d): loss %.5f ppl %.3f over %d tokens", tag,
                         result["embedding"], result["step"], result["loss"], result["ppl"],
                         result["tokens"])
                groups.setdefault(label, []).append(result)
        if dist.get_rank() == 0:
            runs = [r for rs in groups.values() for r in rs]
            val_samples = runs[0]["tokens"] // first["model"]["seq_length"]
            out = write_report(Path(args.output), groups, spec, data_dir=args.data_path,
                               curve_description=_curve_description(runs, val_samples),
                               min_bucket_tokens=args.min_bucket_tokens)
            log.info("wrote %s", ", ".join(str(p) for p in out))
        dist.barrier()
        return 0
    except (UnsafeCheckpointError, PathOutsideError) as exc:
        log.error("%s: %s (exit 78)", type(exc).__name__, exc)
        return 78  # refused input: docs/trust.md
    except (EvaluationError, ConfigError, DataMismatchError, ShardsNotFoundError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return 2
    finally:
        destroy_distributed()

