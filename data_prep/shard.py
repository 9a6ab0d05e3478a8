"""Tokenize a raw corpus into webdataset tar shards + manifest (format: data_prep/FORMAT.md).

Usage:
    python data_prep/shard.py --input corpus/ --tokenizer tok.json --output shards/ --seq-length 2048
    mpiexec -n 8 python data_prep/shard.py ...      # or: srun python data_prep/shard.py ...

Phases: validate (tokenizer, output dir, inputs) -> plan work units -> prepare the output
dir (rank 0) -> each rank processes its units (read -> tokenize -> pack -> write shards ->
marker) -> rank 0 merges unit results into the manifest and prints a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass

if __package__ in (None, ""):  # run as `python data_prep/shard.py`: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from tqdm import tqdm

from data_prep.cli import RealDefaultsFormatter
from data_prep.indexed_input import IndexedInputError, indexed_prefix, iter_indexed_batches
from data_prep.inputs import (
    InputError,
    assign_units,
    auto_unit_bytes,
    discover_files,
    plan_units,
)
from data_prep.launch import World, detect_world, wait_until
from data_prep.manifest import (
    SPLITS,
    SkipCounter,
    empty_split,
    merge_units,
    write_json_atomic,
    write_outputs,
)
from data_prep.packing import Packer, is_val, is_val_ids
from data_prep.progress import RateLog
from data_prep.readers import TOKEN_KINDS, Piece, iter_piece
from data_prep.shard_writer import ShardWriter, remove_unit_files
from data_prep.tokenizer_spec import (
    DEFAULT_EOD_TOKEN,
    TokenizerError,
    TokenizerSpec,
    load_tokenizer,
)
from data_prep.workdir import OutputError, WorkDir

__all__ = ["ShardConfig", "ShardConfigError", "run", "process_unit", "main"]

log = logging.getLogger("data_prep.shard")
_MB = 1 << 20
#: Characters per tokenizer call: big enough to amortise the call, small enough for memory.
_BATCH_CHARS = 8 << 20


class ShardConfigError(ValueError):
    """A command-line value is out of range; the message names the flag and the fix."""


@dataclass(kw_only=True, slots=True)
class ShardConfig:
    """Settings of one sharding run (one field per command-line flag)."""

    inputs: list[str]
    """Files, directories or globs of .jsonl, .jsonl.zst, .txt, .parquet."""
    tokenizer: str
    """Path of a Hugging Face tokenizers JSON file."""
    output: str
    """Output directory (created)."""
    seq_length: int
    """Model sequence length; each sample stores seq_length + 1 tokens."""
    val_fraction: float = 0.01
    """Fraction of documents (by text hash) that go to the val split."""
    shard_size_mb: float = 256.0
    """A shard is closed before it would exceed this size."""
    text_key: str = "text"
    """JSON / parquet field holding the document text."""
    overwrite: bool = False
    """Delete this tool's previous outputs in --output and start afresh."""
    dtype: str = "auto"
    """Token id dtype on disk: auto (uint16 when the vocab fits), uint16 or uint32."""
    eod_token: str = DEFAULT_EOD_TOKEN
    """Token appended after each document."""
    unit_size_mb: float | str = "auto"
    """Input MB per work unit (the unit of parallelism and of crash recovery); ``auto``:
    total input / 64 within [1, 256] MB, so small corpora still spread over the ranks."""
    batch_size: int = 1024
    """Documents per tokenizer batch call."""
    progress: bool = True
    """Show a tqdm bar on rank 0."""
    wait_timeout_s: float = 0.0
    """srun without an MPI world: how long rank 0 waits for the other ranks (0 = forever)."""
    log_every_s: float = 30.0
    allow_empty: bool = False
    """Write the manifest even when the output cannot train (auditing bad input)."""

    def __post_init__(self) -> None:
        if self.seq_length < 1:
            raise ShardConfigError(f"--seq-length must be >= 1, got {self.seq_length}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ShardConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_size_mb <= 0:
            raise ShardConfigError(f"--shard-size-mb must be > 0, got {self.shard_size_mb}")
        if self.log_every_s <= 0:
            raise ShardConfigError(f"--log-every-s must be > 0, got {self.log_every_s}")
        if self.unit_size_mb != "auto" and not (
                isinstance(self.unit_size_mb, (int, float)) and self.unit_size_mb > 0):
            raise ShardConfigError(
                f"--unit-size-mb must be 'auto' or a number > 0, got {self.unit_size_mb!r}")
        if self.batch_size < 1:
            raise ShardConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.inputs:
            raise ShardConfigError("--input is required: pass files, directories or globs")


class _Progress:
    """Rank 0's progress over its units: a tqdm bar on a terminal; elsewhere (Slurm, CI
    logs) one line every ``log_every_s`` seconds with docs/s, tokens/s and an ETA."""

    def __init__(self, total_units: int, enabled: bool, world: World,
                 log_every_s: float = 30.0) -> None:
        tty = sys.stderr.isatty()
        self.rate = RateLog(log, "units", total_units,
                            log_every_s if enabled and not tty else None, ("docs", "tokens"))
        self._last_bar = time.monotonic()
        self.bar = tqdm(
            total=total_units,
            unit="unit",
            disable=not (enabled and tty),
            dynamic_ncols=True,
            desc=f"shard rank 0/{world.size}",
            file=sys.stderr,
        )

    def unit_done(self) -> None:
        self.bar.update(1)
        self.rate.add(1)

    def batch(self, docs: int, tokens: int) -> None:
        self.rate.add(docs=docs, tokens=tokens)
        now = time.monotonic()
        if not self.bar.disable and now - self._last_bar >= 0.5:
            self._last_bar = now
            self.bar.set_postfix_str(
                f"{self.rate.rate('docs'):,.0f} docs/s {self.rate.rate('tokens'):,.0f} tok/s")

    def close(self) -> None:
        self.bar.close()


def process_unit(
    unit: int,
    pieces: list[Piece],
    tok,
    spec: TokenizerSpec,
    cfg: ShardConfig,
    progress: _Progress | None,
) -> tuple[dict, np.ndarray]:
    """Read, tokenize, pack and write one work unit; return its result dict and train counts."""
    for split in SPLITS:
        remove_unit_files(cfg.output, split, unit)  # leftovers of an attempt killed mid-unit
    block = cfg.seq_length + 1
    packers = {s: Packer(block, spec.eod_id, spec.dtype) for s in SPLITS}
    writers = {
        s: ShardWriter(cfg.output, s, unit, int(cfg.shard_size_mb * _MB), spec.dtype)
        for s in SPLITS
    }
    counts = np.zeros(spec.vocab_size, dtype=np.int64)
    skips = SkipCounter()
    docs = {"read": 0, "kept": 0, "kept_train": 0, "kept_val": 0}
    imported: list[dict] = []
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # _fast skips char offsets
    texts: list[str] = []
    to_val: list[bool] = []
    chars = 0

    def pack(by_split: dict[str, list], n_docs: int, n_tokens: int, arrays: bool) -> None:
        for split in SPLITS:
            if not by_split[split]:
                continue
            packer = packers[split]
            blocks = packer.add_arrays(by_split[split]) if arrays else packer.add(by_split[split])
            if len(blocks):
                writers[split].write(blocks)
                if split == "train":
                    counts[:] += np.bincount(blocks.ravel(), minlength=spec.vocab_size)
        if progress is not None:
            progress.batch(n_docs, n_tokens)

    def flush() -> None:
        nonlocal chars
        if not texts:
            return
        encodings = encode(texts, add_special_tokens=False)
        by_split: dict[str, list] = {"train": [], "val": []}
        n_tokens = 0
        for enc, val in zip(encodings, to_val, strict=True):
            ids = enc.ids
            n_tokens += len(ids) + 1
            by_split["val" if val else "train"].append(ids)
        pack(by_split, len(texts), n_tokens, arrays=False)
        texts.clear()
        to_val.clear()
        chars = 0

    def import_tokens(piece: Piece) -> None:
        """A Megatron .bin/.idx document range: already ids, so straight to the packers."""
        sha = hashlib.sha256()
        where = f"{indexed_prefix(piece.path)}.bin:document"
        for batch in iter_indexed_batches(piece, spec.eod_id, spec.vocab_size, sha):
            by_split: dict[str, list] = {"train": [], "val": []}
            n_tokens = 0
            for offset, ids in enumerate(batch.docs):
                docs["read"] += 1
                if len(ids) == 0:
                    skips.add("empty_document", f"{where} {batch.first_doc + offset}")
                    continue
                val = is_val_ids(ids, cfg.val_fraction)
                docs["kept"] += 1
                docs["kept_val" if val else "kept_train"] += 1
                by_split["val" if val else "train"].append(ids)
                n_tokens += len(ids) + 1
            pack(by_split, len(batch.docs), n_tokens, arrays=True)
        imported.append({"path": piece.path, "documents": [piece.start, piece.stop],
                         "bin_sha256": sha.hexdigest()})

    for piece in pieces:
        if piece.kind in TOKEN_KINDS:
            flush()  # keep the document order of the unit
            import_tokens(piece)
            continue
        for text, reason, where in iter_piece(piece, cfg.text_key):
            docs["read"] += 1
            if reason is not None:
                skips.add(reason, where)
                continue
            val = is_val(text, cfg.val_fraction)
            docs["kept"] += 1
            docs["kept_val" if val else "kept_train"] += 1
            texts.append(text)
            to_val.append(val)
            chars += len(text)
            if len(texts) >= cfg.batch_size or chars >= _BATCH_CHARS:
                flush()
    flush()
    splits = {}
    for split in SPLITS:
        shards = writers[split].close()
        splits[split] = empty_split() | {
            "samples": sum(s["samples"] for s in shards),
            "tokens": sum(s["tokens"] for s in shards),
            "tail_tokens_dropped": packers[split].pending_tokens,
            "shards": shards,
        }
    result = {
        "unit": unit,
        "pieces": [[p.path, p.kind, p.start, p.stop] for p in pieces],
        "documents": {**docs, "skipped": skips.to_dict()},
        "splits": splits,
        "imported": imported,
    }
    return result, counts


def _plan_doc(cfg: ShardConfig, spec: TokenizerSpec, units: list[list[Piece]]) -> dict:
    """Everything that determines the output; a resumed run must match it exactly."""
    return {
        "settings": {
            "tokenizer_sha256": spec.sha256,
            "eod_id": spec.eod_id,
            "dtype": spec.dtype,
            "seq_length": cfg.seq_length,
            "val_fraction": cfg.val_fraction,
            "text_key": cfg.text_key,
            "shard_size_mb": cfg.shard_size_mb,
            "unit_size_mb": cfg.unit_size_mb,
        },
        "units": [[[p.path, p.kind, p.start, p.stop, p.est_bytes] for p in unit] for unit in units],
    }


def _plan_digest(plan: dict) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


#: In ``.work/``: which Slurm job run last cleared the directory for ``--overwrite``.
_OVERWRITE_MARK = "overwritten_by.json"


def _slurm_run() -> dict | None:
    """This process's Slurm job id and restart count, or None outside a batch job."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    return {"job": job, "restart": int(os.environ.get("SLURM_RESTART_COUNT") or 0)}


def _overwrite_done_by_this_job(work: WorkDir, plan: dict) -> bool:
    """True when an earlier run of this same Slurm job already cleared the directory for
    ``--overwrite`` and wrote this plan: this run is its requeue (preemption, time limit,
    node failure), and clearing again would delete the units it finished.

    Why the restart count: a second ``--overwrite`` launch inside the *same* run (an
    interactive allocation, a test session in one job) still means "start afresh".
    """
    now = _slurm_run()
    if now is None:
        return False
    try:
        with open(os.path.join(work.work, _OVERWRITE_MARK), encoding="utf-8") as fh:
            mark = json.load(fh)
    except (OSError, ValueError):
        return False
    return (mark.get("job") == now["job"] and int(mark.get("restart", 0)) < now["restart"]
            and work.read_plan() == plan)


def _prepare_output(world: World, work: WorkDir, cfg: ShardConfig, plan: dict) -> None:
    """Rank 0 clears (--overwrite) or checks the directory and writes the plan; others wait.

    Before any rank writes, every rank proves it planned the same work units as rank 0 (a
    rank that sees other input files, e.g. a node-local path or a file still being copied,
    would otherwise write shards that belong to another plan).
    """
    error = None
    if world.rank == 0:
        try:
            cleared = False
            if cfg.overwrite:
                if _overwrite_done_by_this_job(work, plan):
                    log.info("--overwrite: %s was already cleared by an earlier run of Slurm job "
                             "%s; resuming its finished units", cfg.output, os.environ["SLURM_JOB_ID"])
                else:
                    work.clear()
                    cleared = True
            work.check_reusable(plan)
            work.write_plan(plan)
            if cleared and _slurm_run() is not None:
                # After the plan: a requeue finds the mark only with the plan it belongs to.
                write_json_atomic(os.path.join(work.work, _OVERWRITE_MARK), _slurm_run())
            if world.mode == "files":
                stale = work.clear_other_launches(world.step_id)
                if stale:
                    log.info("removed %d marker(s) of earlier launches (%s)", len(stale),
                             ", ".join(stale[:4]))
        except OutputError as exc:
            error = str(exc)
    if world.mode == "mpi":
        error = world.comm.bcast(error, root=0)
        if error is None:
            digests = world.comm.allgather(_plan_digest(plan))
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            if differ:
                error = (f"ranks {differ} planned other work units than rank 0 from "
                         f"{' '.join(cfg.inputs)}: every rank must see the same input files "
                         f"(a shared file system, not a node-local path); nothing was written")
    elif world.mode == "files":
        if world.rank == 0:
            if error is not None:
                work.mark_failed(world.step_id, 0, error, code=2)
            else:
                work.mark_ready(world.step_id)
        else:

            def rank0_failed() -> None:
                failed = work.failures(world.step_id)
                if failed:
                    raise OutputError("; ".join(m for m, _ in failed))

            wait_until(
                lambda: os.path.exists(work.ready_path(world.step_id)),
                what=f"rank 0 to prepare {cfg.output}",
                timeout_s=cfg.wait_timeout_s,
                check=rank0_failed,
            )
            if work.read_plan() != plan:
                raise RankLocalError(
                    f"rank {world.rank} planned other work units than rank 0 from "
                    f"{' '.join(cfg.inputs)}: every rank must see the same input files (a "
                    f"shared file system, not a node-local path)")
    if error is not None:
        raise OutputError(error)


def _wait_for_all(world: World, work: WorkDir, n_units: int, cfg: ShardConfig, assignment) -> None:
    """Rank 0: block until every unit has its marker (barrier in MPI mode, polling in files mode)."""
    world.barrier()
    if world.rank != 0:
        return

    def others_failed() -> None:
        failed = work.failures(world.step_id) if world.mode == "files" else []
        if failed:
            raise OtherRanksFailed("other ranks failed: " + "; ".join(m for m, _ in failed),
                                   max(code for _, code in failed))

    def all_done() -> bool:
        return all(work.is_done(u) for u in range(n_units))

    try:
        wait_until(
            all_done, what="all work units", timeout_s=cfg.wait_timeout_s, check=others_failed
        )
    except TimeoutError as exc:
        missing = [u for u in range(n_units) if not work.is_done(u)]
        owners = sorted({r for r, units in enumerate(assignment) for u in units if u in missing})
        raise TimeoutError(f"{exc}: units {missing[:10]} of ranks {owners} have no marker") from exc


def run(cfg: ShardConfig, world: World | None = None) -> dict | None:
    """Shard the corpus; return the manifest on rank 0 (None on other ranks)."""
    world = world or detect_world()
    t_start = time.monotonic()
    tok, spec = load_tokenizer(cfg.tokenizer, cfg.eod_token, cfg.dtype)
    work = WorkDir(cfg.output)
    work.check_writable(world.rank)
    files = discover_files(cfg.inputs)
    unit_bytes = (auto_unit_bytes(files) if cfg.unit_size_mb == "auto"
                  else max(int(cfg.unit_size_mb * _MB), 1))
    units = plan_units(files, unit_bytes)
    plan = _plan_doc(cfg, spec, units)
    _prepare_output(world, work, cfg, plan)

    assignment = assign_units(units, world.size)
    todo = [u for u in assignment[world.rank] if not work.is_done(u)]
    if world.rank == 0:
        log.info(
            "%d files -> %d work units over %d rank(s) (%s mode); rank 0 has %d to do; dtype=%s vocab=%d",
            len(files),
            len(units),
            world.size,
            world.mode,
            len(todo),
            spec.dtype,
            spec.vocab_size,
        )
    progress = _Progress(len(todo), cfg.progress and world.rank == 0, world, cfg.log_every_s)
    try:
        for u in todo:
            try:
                result, counts = process_unit(u, units[u], tok, spec, cfg, progress)
            except IndexedInputError as exc:
                raise RankLocalError(f"rank {world.rank}: {exc}") from exc
            work.save_unit(u, {**result, "done_by_rank": world.rank}, counts)
            progress.unit_done()
    finally:
        progress.close()
    _wait_for_all(world, work, len(units), cfg, assignment)
    if world.rank != 0:
        return None

    results, counts = [], np.zeros(spec.vocab_size, dtype=np.int64)
    for u in range(len(units)):
        result, unit_counts = work.load_unit(u, spec.vocab_size)
        results.append(result)
        counts += unit_counts
    header = {
        "seq_length": cfg.seq_length,
        "sample_tokens": cfg.seq_length + 1,
        "dtype": spec.dtype,
        "val_fraction": cfg.val_fraction,
        "text_key": cfg.text_key,
    }
    manifest = merge_units(results, header, spec.manifest_entry())
    try:  # before the manifest makes the directory look usable
        check_trainable(manifest, cfg)
    except EmptyOutputError as exc:
        if not cfg.allow_empty:
            raise
        log.warning("%s (--allow-empty: writing the manifest anyway)", exc)
    write_outputs(cfg.output, manifest, counts)
    _summarize(manifest, time.monotonic() - t_start, progress, len(todo), len(units))
    return manifest


class RankLocalError(InputError):
    """Bad input only this rank found (an imported id outside the vocabulary in its unit,
    or input files it sees differently from rank 0): it reports it, marks the launch failed
    and stops the others (exit 2)."""


class OtherRanksFailed(RuntimeError):
    """Files mode, rank 0: other ranks marked the launch failed; ``code`` is their exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class EmptyOutputError(InputError):
    """Sharding would produce a data set that cannot train (no samples, no validation)."""


def check_trainable(manifest: dict, cfg: ShardConfig) -> None:
    """Refuse output no training run can use, naming why (exit 2), or warn.

    Raises:
        EmptyOutputError: no document read; every document skipped (by reason, with
            examples); fewer train tokens than one sample; an empty validation split
            although ``--val-fraction`` asked for one.
    """
    docs, splits = manifest["documents"], manifest["splits"]
    inputs = " ".join(cfg.inputs)
    if docs["read"] == 0:
        raise EmptyOutputError(
            f"no documents read from {inputs}: the inputs are empty (or hold only files "
            f"shard.py does not read); nothing to shard")
    if docs["kept"] == 0:
        reasons = "; ".join(
            f"{reason}={entry['count']} (e.g. {', '.join(entry['examples'][:2]) or '-'})"
            for reason, entry in sorted(docs["skipped"].items()))
        hint = (f" (is --text-key {cfg.text_key!r} the field holding the text?)"
                if "missing_text_key" in docs["skipped"] else "")
        raise EmptyOutputError(
            f"all {docs['read']} documents of {inputs} were skipped: {reasons}{hint}")
    if splits["train"]["samples"] == 0:
        tokens = splits["train"]["tokens"] + splits["train"]["tail_tokens_dropped"]
        raise EmptyOutputError(
            f"the train split packs into no sample: {tokens} tokens, and each work unit "
            f"needs one sample of --seq-length {cfg.seq_length} + 1 = {cfg.seq_length + 1} "
            f"tokens (a unit's tail is dropped): use a larger corpus, a smaller "
            f"--seq-length or a larger --unit-size-mb")
    if splits["val"]["samples"] == 0:
        message = (f"the validation split is empty ({docs['kept_val']} of {docs['kept']} "
                   f"documents drawn with --val-fraction {cfg.val_fraction}, fewer tokens "
                   f"than one sample)")
        if cfg.val_fraction > 0:
            raise EmptyOutputError(
                f"{message}: raise --val-fraction (e.g. "
                f"{min(0.5, max(0.05, 2 * cfg.val_fraction)):g}), or pass --val-fraction 0 "
                f"to shard without validation (then train with train.eval_interval=0)")
        log.warning("%s: --val-fraction 0, so runs on these shards cannot evaluate", message)


def _summarize(
    manifest: dict, seconds: float, progress: _Progress, done_here: int, n_units: int
) -> None:
    d = manifest["documents"]
    skipped = ", ".join(f"{k}={v['count']}" for k, v in d["skipped"].items()) or "none"
    log.info(
        "documents: read=%d kept=%d (train=%d val=%d) skipped: %s",
        d["read"],
        d["kept"],
        d["kept_train"],
        d["kept_val"],
        skipped,
    )
    for name in SPLITS:
        s = manifest["splits"][name]
        log.info(
            "%s: %d shards, %d samples, %d tokens (%d tail tokens dropped)",
            name,
            len(s["shards"]),
            s["samples"],
            s["tokens"],
            s["tail_tokens_dropped"],
        )
    log.info(
        "rank 0 did %d of %d units: %.0f docs/s, %.0f tokens/s; total %.1fs; fingerprint %s",
        done_here,
        n_units,
        progress.rate.rate("docs"),
        progress.rate.rate("tokens"),
        seconds,
        manifest["fingerprint"][:16],
    )


def _unit_size(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {value!r}") from None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, RealDefaultsFormatter):
    """Real defaults, and the epilog's examples kept as written."""


_EPILOG = """\
--input also takes a Megatron-LM / GPT-NeoX tokenized dataset (PREFIX, PREFIX.bin,
PREFIX.idx or a directory of .bin/.idx pairs): its documents are packed without
re-tokenizing; --tokenizer is the one the dataset was made with.

Runs as one process, or as many ranks under mpiexec or srun (the same output for any
rank count; resumable: run it again after a failure and finished work units are kept).

examples:
  python data_prep/shard.py --input '/data/pile/*.jsonl.zst' --tokenizer tok.json \\
      --output /data/pile_neox_512 --seq-length 512 --val-fraction 0.005
  mpiexec -n 32 python data_prep/shard.py --input corpus/ --tokenizer tok.json \\
      --output shards/ --seq-length 512
  srun python data_prep/shard.py ...            (or: sbatch slurm/shard_corpus.sh)
  python data_prep/shard.py --input /data/pile_neox/pile_text_document \\
      --tokenizer 20B_tokenizer.json --output /data/pile_neox_2048 --seq-length 2048
"""


def _parse_args(argv: list[str] | None) -> ShardConfig:
    p = argparse.ArgumentParser(
        prog="python data_prep/shard.py", description=__doc__.split("\n")[0],
        formatter_class=_HelpFormatter, epilog=_EPILOG)
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        dest="inputs",
        metavar="PATH|GLOB",
        help="files (.jsonl .jsonl.zst .txt .parquet), directories or quoted globs",
    )
    p.add_argument(
        "--tokenizer",
        required=True,
        help="tokenizers JSON file (train one: data_prep/train_tokenizer.py)",
    )
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument(
        "--seq-length", type=int, required=True, help="sequence length; samples hold N+1 tokens"
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.01, help="fraction of documents sent to val"
    )
    p.add_argument("--shard-size-mb", type=float, default=256.0, help="maximum shard size")
    p.add_argument("--text-key", default="text", help="JSON/parquet field with the text")
    p.add_argument(
        "--overwrite", action="store_true", help="delete previous outputs in --output first"
    )
    p.add_argument(
        "--dtype", default="auto", choices=["auto", "uint16", "uint32"], help="token id dtype"
    )
    p.add_argument(
        "--eod-token", default=DEFAULT_EOD_TOKEN, help="token appended after each document"
    )
    p.add_argument("--unit-size-mb", type=_unit_size, default="auto",
                   help="input MB per work unit (parallelism and crash recovery); auto = "
                        "total input / 64 within [1, 256] MB, the same for any rank count")
    p.add_argument("--batch-size", type=int, default=1024, help="documents per tokenizer call")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (terminal) and no progress lines (logs)")
    p.add_argument("--allow-empty", action="store_true",
                   help="write the manifest even if no sample (or no validation sample) "
                        "results, e.g. to audit bad input; training cannot use it")
    p.add_argument("--log-every-s", type=float, default=30.0,
                   help="when stderr is not a terminal (Slurm, CI): seconds between progress "
                        "lines (default 30)")
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=0.0,
        dest="wait_timeout_s",
        help="srun without MPI: seconds rank 0 waits for other ranks (0 = forever)",
    )
    return ShardConfig(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 = bad arguments or inputs, 1 = failure)."""
    world = detect_world()
    logging.basicConfig(
        level=logging.INFO, format=f"[shard r{world.rank}/{world.size}] %(message)s"
    )
    cfg: ShardConfig | None = None
    try:
        cfg = _parse_args(argv)
        run(cfg, world)
        return 0
    except RankLocalError as exc:  # only this rank knows: it speaks and stops the others
        print(f"shard.py: error: {exc}", file=sys.stderr)
        if world.mode == "files" and cfg is not None:
            WorkDir(cfg.output).mark_failed(world.step_id, world.rank, str(exc), code=2)
        world.abort(2)
        return 2
    except OtherRanksFailed as exc:  # files mode: they printed their own error already
        print(f"shard.py: error: {exc}", file=sys.stderr)
        return exc.code
    except (ShardConfigError, TokenizerError, InputError, OutputError) as exc:
        if world.rank == 0 or world.mode == "single":
            print(f"shard.py: error: {exc}", file=sys.stderr)
        elif world.mode == "files" and cfg is not None:
            # Usually every rank fails alike; if only this one did (a file its node cannot
            # see), rank 0 must not wait for its units forever.
            WorkDir(cfg.output).mark_failed(world.step_id, world.rank, str(exc), code=2)
        return 2
    except Exception as exc:  # noqa: BLE001 - stop the other ranks too, then report
        traceback.print_exc()
        if world.mode == "files" and cfg is not None:
            WorkDir(cfg.output).mark_failed(world.step_id, world.rank, repr(exc))
        world.abort(1)
        return 1


if __name__ == "__main__":
    sys.exit(main())
