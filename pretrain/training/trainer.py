"""The training run: distributed set-up, DeepSpeed engine over megatron-core GPT, loop.

Phases are named methods (``setup``, ``train_step``, ``evaluate``, ``save``, ``train``,
``close``) so that ``pretrain/train.py`` reads in one sitting. The data position is one
integer, ``consumed_samples``; with the RNG states and DeepSpeed's model/optimizer/
scheduler state it makes a resumed run continue exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import types
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from data_prep.progress import format_duration
from megatron_patches.deepspeed_elastic import enable_elastic_zero_resume, install_zero_resume
from megatron_patches.deepspeed_grad_norm import report_zero0_grad_norm
from megatron_patches.quiet import quiet_deepspeed
from pretrain.checkpoint.lease import SaveDirLease, lease_save_dir
from pretrain.checkpoint.manager import CheckpointManager, CheckpointMismatchError, check_compatible
from pretrain.checkpoint.preflight import (
    check_save_dir_shared,
    open_splits_everywhere,
    rank_view_of_save_dir,
)
from pretrain.config import Config, ConfigError, config_to_dict
from pretrain.config.model import LEVConfig, ModelConfig
from pretrain.data.blend import (
    BlendedDataset,
    describe_mixture,
    mixture_shares,
    open_data,
    sample_order,
)
from pretrain.data.sampler import BatchLayout, TrainBatchIterator, val_batches
from pretrain.runtime.distributed import init_distributed
from pretrain.runtime.faults import fault_delay_s
from pretrain.runtime.metrics import (
    MEMORY_KIND,
    MetricsWriter,
    memory_gib,
    model_flops_per_token,
    perplexity,
)
from pretrain.runtime.mpu import MegatronMPU
from pretrain.runtime.stopping import ExitCode, StopController, StopReason
from pretrain.runtime.watchdog import Watchdog
from pretrain.training.model import build_model, count_parameters, layer_spec
from pretrain.training.optimizer import build_optimizer
from pretrain.training.schedule import lr_factors
from pretrain.training.startup import startup_block

__all__ = ["NonFiniteLossError", "Trainer", "build_engine", "deepspeed_config"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimizer steps had a non-finite loss."""


def deepspeed_config(config: Config, dp_size: int) -> dict[str, Any]:
    """DeepSpeed config for ``config`` at data-parallel size ``dp_size``."""
    t = config.train
    layout = BatchLayout(global_batch_size=t.global_batch_size,
                         micro_batch_size=t.micro_batch_size, dp_size=dp_size)
    zero: dict[str, Any] = {"stage": t.zero_stage}
    if t.zero_stage in (1, 2):
        # Optimizer partitions can be re-split when the DP size changes (elastic resume).
        zero["elastic_checkpoint"] = True
    bf16 = t.precision == "bf16"
    precision: dict[str, Any] = {}
    if bf16:
        # Accumulate and reduce gradients in fp32, as Megatron and torchtitan do (DeepSpeed
        # defaults to bf16 for both). bf16 ZeRO-1 then runs on DeepSpeed's BF16_Optimizer.
        precision = {"data_types": {"grad_accum_dtype": "fp32"},
                     "communication_data_type": "fp32"}
    return {**precision,
        "train_batch_size": t.global_batch_size,
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": layout.accum_steps,
        "gradient_clipping": config.optimizer.clip_grad,
        "zero_optimization": zero,
        # check_grad_overflow: ZeRO-1/2 skip the update of a step whose gradient norm is
        # NaN/Inf under bf16 as they already do under fp32 (the LR schedule does not move).
        "bf16": {"enabled": bf16, "check_grad_overflow": True},
        # AdamW from torch: DeepSpeed's fused/CPU Adam need compiled ops.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,  # we log ourselves
        "wall_clock_breakdown": False,
    }


def _fault_injection_delay(section: str, stopper: StopController | None = None) -> None:
    """Sleep in ``section`` (``save``, ``eval`` or ``setup``) for the seconds
    ``LEV_FAULT_DELAY_S`` gives as ``SECTION:SECONDS`` (tests: a signal that arrives during
    a slow save, or during set-up however loaded the machine is). With ``stopper``, a stop
    request ends the sleep early."""
    seconds = fault_delay_s(section)
    if not seconds:
        return
    log.warning("fault injection: %s delayed by %s s", section, seconds)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stopper is not None and stopper.local_reason() != StopReason.NONE:
            return
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _fault_injection_nan(loss: torch.Tensor, step: int) -> torch.Tensor:
    """Turn the loss NaN at the steps listed in ``LEV_FAULT_NAN_LOSS_STEPS`` (tests)."""
    steps = os.environ.get("LEV_FAULT_NAN_LOSS_STEPS")
    if steps and str(step) in steps.split(","):
        return loss * float("nan")
    return loss


def build_engine(config: Config, dp_size: int):
    """The megatron-core GPT of ``config`` in the DeepSpeed engine every entrypoint uses.

    AdamW (matrices decayed), the warm-up + cosine schedule, and ``deepspeed_config`` at
    ``dp_size``. Returns ``(engine, lr_scheduler)``.
    """
    quiet_deepspeed(torch.cuda.is_available())
    import deepspeed  # imported here: it logs on import and is slow to load

    model = build_model(config)
    args = None
    if torch.cuda.is_available():
        model = model.cuda()
        # The device init_distributed chose (also right with one visible GPU per task,
        # where DeepSpeed's LOCAL_RANK would name a GPU this process cannot see).
        args = types.SimpleNamespace(device_rank=torch.cuda.current_device())
    opt = config.optimizer
    optimizer = build_optimizer(model, opt)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factors(optimizer, opt, config.lev.lr_mult_schedule,
                              config.train.train_steps))
    engine, _, _, scheduler = deepspeed.initialize(
        args=args, model=model, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(config, dp_size), mpu=MegatronMPU(), dist_init_required=False)
    if config.train.zero_stage in (1, 2):
        install_zero_resume(engine)  # a restart reads only its own optimizer partition
    if config.train.zero_stage == 0:
        report_zero0_grad_norm(engine)
    return engine, scheduler


class Trainer:
    """One training run of ``config`` on the processes of the current launcher."""

    def __init__(self, config: Config, stopper: StopController | None = None,
                 watchdog: Watchdog | None = None) -> None:
        self.config = config
        # A stopper passed in belongs to the entrypoint, which keeps its signal handlers
        # installed until the process exits; only one made here is restored by close().
        self._owns_stopper = stopper is None
        self.stopper = stopper or StopController(config.train.exit_duration_mins)
        # Untimed unless the entrypoint passes a started one (pretrain/runtime/watchdog.py).
        self.watchdog = watchdog or Watchdog({}, None, rank=0)
        self.step = 0
        self.consumed_samples = 0
        self.engine = None
        self.train_iter: TrainBatchIterator | None = None
        self.metrics: MetricsWriter | None = None
        self.lease: SaveDirLease | None = None
        self.last_saved_step: int | None = None
        # True once a non-finite update was applied (ZeRO-0/3 do not skip it): the weights
        # are poisoned and must never be saved; the last checkpoint stays the last good one.
        self.poisoned = False
        self.last_step_finite = True  # a step with a non-finite loss is never checkpointed
        # Consecutive non-finite steps up to now; saved in meta.json so a relaunch keeps
        # counting towards train.max_skipped_steps instead of starting over.
        self.bad_steps = 0
        self.exit_code = ExitCode.FINISHED

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        """Distributed groups, data, model, DeepSpeed engine, resume."""
        c = self.config
        # LEV_ALLOW_CPU_BF16=1 (tests, the GPU check's dry run): the bf16 path on CPU at tiny
        # shapes, to test BF16_Optimizer's save and resume without a GPU.
        if (c.train.precision == "bf16" and not torch.cuda.is_available()
                and os.environ.get("LEV_ALLOW_CPU_BF16") != "1"):
            raise ConfigError("train.precision=bf16 needs CUDA (bf16 matmuls are emulated and "
                              "slow on CPU); set train.precision=fp32 on this host")
        self.layout = init_distributed(c.parallel.tensor_parallel, c.train.seed)
        self.rank = dist.get_rank()
        self.dp_rank, self.dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
        self.batch = BatchLayout(global_batch_size=c.train.global_batch_size,
                                 micro_batch_size=c.train.micro_batch_size, dp_size=self.dp_size)
        save_dir = rank_view_of_save_dir(c.checkpoint.save_dir, self.rank)
        check_save_dir_shared(save_dir, timeout_s=c.checkpoint.probe_timeout_s)
        # Before anything in save_dir is read or moved: one job writes there at a time.
        self.lease = lease_save_dir(save_dir, c.checkpoint.lease_timeout_s, self.rank)
        # Without evaluation a run needs no validation split (shards made with
        # --val-fraction 0 have none).
        splits = ("train", "val") if c.train.eval_interval else ("train",)
        opened = open_splits_everywhere(
            lambda split: open_data(c.data.path, split, seq_length=c.model.seq_length,
                                    vocab_size=c.model.vocab_size), splits)
        self.train_data, self.val_data = opened[0], (opened[1] if len(opened) > 1 else None)
        self.data_fingerprint = self.train_data.manifest["fingerprint"]
        self.order = sample_order(self.train_data, c.data.shuffle_seed)
        self.order_fingerprint = self.order.fingerprint
        self.layer_spec = layer_spec(c)[1]

        self.engine, self.scheduler = build_engine(c, self.dp_size)
        self.flops_per_token = model_flops_per_token(c)

        self.checkpoints = CheckpointManager(save_dir, c.checkpoint.keep_last,
                                             io_attempts=c.checkpoint.io_attempts,
                                             ignore_abandoned=c.checkpoint.ignore_abandoned)
        self.checkpoints.prepare_fresh_start(c.checkpoint.resume, c.checkpoint.overwrite)
        self._resume()
        self.train_iter = TrainBatchIterator(
            self.train_data, layout=self.batch, dp_rank=self.dp_rank,
            seed=c.data.shuffle_seed, consumed_samples=self.consumed_samples, order=self.order)
        self.metrics = MetricsWriter(c.checkpoint.save_dir, enabled=self.rank == 0,
                                     wandb=c.train.wandb, run_config=config_to_dict(c))
        if self.rank == 0:
            log.info("start-up:\n%s", startup_block(
                c, counts=count_parameters(self.engine.module, c.parallel.tensor_parallel),
                world_size=dist.get_world_size(), dp_size=self.dp_size,
                accum_steps=self.batch.accum_steps, launcher=self.layout.launcher,
                layer_spec=self.layer_spec, train_data=self.train_data,
                val_data=self.val_data, order=self.order, start_step=self.step))
        _fault_injection_delay("setup", self.stopper)

    def _model_shape(self) -> dict[str, Any]:
        c = config_to_dict(self.config)
        return {**{f"model.{k}": v for k, v in c["model"].items() if k != "layer_spec"},
                **({f"lev.{k}": v for k, v in c["lev"].items()}
                   if self.config.model.embedding == "lev" else {}),
                "parallel.tensor_parallel": self.config.parallel.tensor_parallel}

    def _resume(self) -> None:
        c = self.config.checkpoint
        tag_dir = self.checkpoints.find_resume(c.resume)
        if tag_dir is None:
            log.info("no checkpoint to resume from in %s: starting fresh", c.save_dir)
            return
        meta = self.checkpoints.read_meta(tag_dir)
        check_compatible(meta, model_shape=self._model_shape(),
                         data_fingerprint=self.data_fingerprint,
                         order_fingerprint=self.order_fingerprint, layer_spec=self.layer_spec,
                         force=c.force_resume, tag_dir=tag_dir, shape_defaults=_shape_defaults())
        if meta["global_batch_size"] != self.config.train.global_batch_size:
            log.warning("global batch size changed %d -> %d: the sample sequence continues "
                        "from consumed_samples=%d", meta["global_batch_size"],
                        self.config.train.global_batch_size, meta["consumed_samples"])
        if meta["dp_size"] != self.dp_size:
            self._allow_dp_change(meta["dp_size"], tag_dir)
        self.checkpoints.load(self.engine, tag_dir,
                              world_size_changed=meta["world_size"] != dist.get_world_size())
        # LambdaLR.load_state_dict restores its counter but not the optimizer's current lr,
        # which would keep the fresh optimizer's step-0 lr for the first resumed step.
        for group, lr in zip(self.scheduler.optimizer.param_groups, self.scheduler.get_last_lr(),
                             strict=True):
            group["lr"] = lr
        self.step, self.consumed_samples = meta["step"], meta["consumed_samples"]
        self.bad_steps = meta.get("skipped_in_a_row", 0)
        self.last_saved_step = self.step
        log.info("resumed from %s (step %d, consumed_samples %d)", tag_dir, self.step,
                 self.consumed_samples)

    def _allow_dp_change(self, saved_dp: int, tag_dir) -> None:
        stage = self.config.train.zero_stage
        if stage == 3:
            raise CheckpointMismatchError(
                f"checkpoint {tag_dir} was saved at DP={saved_dp} with ZeRO-3; this run has "
                f"DP={self.dp_size}. Resume ZeRO-3 at DP={saved_dp} (world size "
                f"{saved_dp * self.config.parallel.tensor_parallel}); ZeRO 0-2 resume at any DP")
        if stage == 1 and self.config.train.precision == "bf16":
            raise CheckpointMismatchError(
                f"checkpoint {tag_dir} was saved at DP={saved_dp} with bf16 ZeRO-1, whose fp32 "
                f"master weights DeepSpeed's BF16_Optimizer cannot re-partition (it would "
                f"zero-pad them); this run has DP={self.dp_size}. Resume at DP={saved_dp} "
                f"(world size {saved_dp * self.config.parallel.tensor_parallel}), or use "
                f"train.zero_stage=2 for runs that change size")
        if stage in (1, 2):
            enable_elastic_zero_resume(self.engine)
        log.info("elastic resume: DP %d -> %d, same global batch %d (accumulation %d)",
                 saved_dp, self.dp_size, self.config.train.global_batch_size,
                 self.batch.accum_steps)

    # ------------------------------------------------------------------ steps
    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-mean loss of one micro-batch, and its token count."""
        device = self.engine.device
        per_token = self.engine(batch["tokens"].to(device), batch["position_ids"].to(device),
                                None, labels=batch["labels"].to(device))
        mask = batch["loss_mask"].to(device)
        tokens = mask.sum()
        return (per_token.float() * mask).sum() / tokens.clamp(min=1), tokens

    def train_step(self) -> dict[str, float]:
        """One optimizer step (all micro-batches of this rank); returns its metrics."""
        losses, sample_ids = [], []
        skipped_before = self.engine.skipped_steps
        for _ in range(self.batch.accum_steps):
            batch = next(self.train_iter)
            loss, _ = self._loss(batch)
            loss = _fault_injection_nan(loss, self.step + 1)
            self.engine.backward(loss)
            self.engine.step()
            losses.append(loss.detach())
            sample_ids.append(batch["sample_ids"])
        # Mean over micro-batches, then over DP ranks: the global batch's mean loss.
        loss = torch.stack(losses).mean().reshape(1).to(torch.float64)
        dist.all_reduce(loss, group=ps.get_data_parallel_group())
        loss /= self.dp_size
        self.step += 1
        self.consumed_samples += self.config.train.global_batch_size
        grad_norm = self.engine.get_global_grad_norm()
        record = {"loss": float(loss.item()),
                  "grad_norm": float(grad_norm) if grad_norm is not None else None,
                  "skipped": self.engine.skipped_steps > skipped_before}
        if self.config.train.log_sample_ids:
            record["sample_ids"] = self._global_sample_ids(torch.cat(sample_ids))
        return record

    def _global_sample_ids(self, local: torch.Tensor) -> list[int]:
        """This step's sample ids over all DP ranks, sorted (the order inside is layout)."""
        local = local.to(self.engine.device)  # NCCL groups take device tensors only
        parts = [torch.empty_like(local) for _ in range(self.dp_size)]
        dist.all_gather(parts, local, group=ps.get_data_parallel_group())
        return sorted(torch.cat(parts).tolist())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Token-weighted loss over the validation split (every token once); for a mixture,
        per source (``val_loss/NAME``) and their weight-averaged ``val_loss``."""
        _fault_injection_delay("eval")
        self.engine.eval()
        if isinstance(self.val_data, BlendedDataset):
            parts = {s.name: (s.weight, d)
                     for s, d in zip(self.val_data.sources, self.val_data.datasets, strict=True)}
        else:
            parts = {"": (1.0, self.val_data)}
        record: dict[str, float] = {"val_loss": 0.0, "val_tokens": 0}
        for name, (weight, data) in parts.items():
            loss, tokens = self._val_pass(data)
            record["val_loss"] += weight * loss
            record["val_tokens"] += tokens
            if name:
                record[f"val_loss/{name}"] = loss
                record[f"val_ppl/{name}"] = perplexity(loss)
        self.engine.train()
        return {**record, "val_ppl": perplexity(record["val_loss"])}

    def _val_pass(self, data) -> tuple[float, int]:
        total = torch.zeros(2, dtype=torch.float64, device=self.engine.device)
        limit = self.config.train.eval_samples or None
        for batch in val_batches(data, micro_batch_size=self.config.train.micro_batch_size,
                                 dp_rank=self.dp_rank, dp_size=self.dp_size, max_samples=limit):
            loss, tokens = self._loss(batch)
            total += torch.stack([loss.double() * tokens.double(), tokens.double()])
        dist.all_reduce(total, group=ps.get_data_parallel_group())
        return (total[0] / total[1]).item(), int(total[1].item())

    def save(self, *, after_skipped_step: bool = False) -> None:
        """Checkpoint the current step (every rank).

        A step whose loss was non-finite is not saved, except with ``after_skipped_step``
        when its update was skipped (the stop path): the weights and optimizer state are
        then exactly the last finite step's, and the data position is past the skipped
        batch, where the run would have gone on.
        """
        if self.poisoned or not (self.last_step_finite or after_skipped_step):
            log.error("not saving step %d: %s; the last good checkpoint is step %s", self.step,
                      "a non-finite update was applied to the weights" if self.poisoned else
                      "its loss was non-finite", self.last_saved_step)
            return
        meta = {"consumed_samples": self.consumed_samples,
                "global_batch_size": self.config.train.global_batch_size,
                "world_size": dist.get_world_size(), "dp_size": self.dp_size,
                "model_shape": self._model_shape(), "data_fingerprint": self.data_fingerprint,
                "order_fingerprint": self.order_fingerprint, "layer_spec": self.layer_spec,
                # The exact tokenizer (path, sha256, EOD): export and evaluation check it.
                "tokenizer": self.train_data.manifest["tokenizer"],
                "skipped_in_a_row": self.bad_steps,
                "config": config_to_dict(self.config)}
        start = time.monotonic()
        _fault_injection_delay("save")
        path = self.checkpoints.save(self.engine, self.step, meta)
        self.last_saved_step = self.step
        log.info("saved %s in %.1fs", path, time.monotonic() - start)

    # ------------------------------------------------------------------ loop
    def train(self) -> ExitCode:
        """Run until train_steps or an agreed stop; returns the process exit code."""
        c = self.config.train
        tokens_per_step = c.global_batch_size * self.config.model.seq_length
        interval_start, interval_steps = time.monotonic(), 0
        if self.stopper.agreed_reason() == StopReason.SIGNAL:
            # Signalled during set-up: nothing new to save (fresh start or just resumed).
            log.warning("%s during set-up: exiting at step %d without training (exit %d)",
                        self.stopper.signal_name, self.step, ExitCode.NO_PROGRESS)
            return ExitCode.NO_PROGRESS
        first_step = self.step + 1
        while self.step < c.train_steps:
            # The first step (kernel warm-up, lazy allocations) is timed as set-up.
            self.watchdog.enter("setup" if self.step + 1 == first_step else "step",
                                step=self.step + 1)
            record = self.train_step()
            interval_steps += 1
            self.last_step_finite = math.isfinite(record["loss"]) and not record["skipped"]
            if self.last_step_finite:
                self.bad_steps = 0
            else:
                self.bad_steps += 1
                self.poisoned |= not record["skipped"]
                log.error("step %d: loss %s, grad-norm %s: update %s (%d bad steps in a row, "
                          "limit %d)", self.step, record["loss"], record["grad_norm"],
                          "skipped" if record["skipped"] else "NOT skipped (ZeRO-0/3 apply it)",
                          self.bad_steps, c.max_skipped_steps)
                if self.bad_steps > c.max_skipped_steps:
                    raise NonFiniteLossError(self._non_finite_message(
                        f"{self.bad_steps} consecutive non-finite losses up to step "
                        f"{self.step}"))
            if self.step % c.log_interval == 0 or self.step == c.train_steps:
                elapsed = time.monotonic() - interval_start
                self._log_interval(record, interval_steps * tokens_per_step / elapsed,
                                   elapsed / interval_steps)
                interval_start, interval_steps = time.monotonic(), 0
            # Stop before a (possibly long) evaluation: the signal's lead time is for saving.
            if self._stop_agreed():
                return self._stop()
            busy = False  # an evaluation or save ran: a signal may have come during it
            if c.eval_interval and self.step % c.eval_interval == 0:
                self.watchdog.enter("eval", step=self.step)
                self._log_eval()
                busy = True
                interval_start = time.monotonic()  # keep eval time out of tokens/s
            interval = self.config.checkpoint.save_interval
            if interval and self.step % interval == 0 and self.step < c.train_steps:
                self.watchdog.enter("save", step=self.step)
                self.save()
                busy = True
                interval_start = time.monotonic()
            # Stop now rather than after one more step and a second full save.
            if busy and self._stop_agreed():
                return self._stop()
        if self.poisoned or not self.last_step_finite:
            raise NonFiniteLossError(self._non_finite_message(
                f"the run ended at step {self.step} on a non-finite step (not saved)"))
        if self.last_saved_step != self.step:
            self.watchdog.enter("save", step=self.step)
            self.save()
        return ExitCode.FINISHED

    def _stop_agreed(self) -> bool:
        """Whether every rank stops here (a collective) before train_steps is reached."""
        reason = self.stopper.agreed_reason()
        if reason == StopReason.NONE or self.step >= self.config.train.train_steps:
            return False
        log.warning("stopping at step %d (%s); %s", self.step, self.stopper.describe(),
                    "already saved" if self.last_saved_step == self.step else "saving")
        return True

    def _stop(self) -> ExitCode:
        """Save the current step unless it is saved already; the code of a stopped run."""
        if self.last_saved_step == self.step:
            return ExitCode.REQUEUE
        if self.poisoned:
            raise NonFiniteLossError(self._non_finite_message(
                f"stopped at step {self.step} after a non-finite update was applied "
                f"(not saved)"))
        if not self.last_step_finite:
            # Skipped, not applied: the weights are intact, so this is an ordinary stop
            # (exit 75, retried), not a numerical failure (exit 3, final).
            log.warning("step %d's update was skipped (non-finite loss); saving the last "
                        "finite step's weights with the data position past the skipped "
                        "batch", self.step)
        self.watchdog.enter("save", step=self.step)
        self.save(after_skipped_step=True)
        return ExitCode.REQUEUE

    def _non_finite_message(self, what: str) -> str:
        last = (f"step {self.last_saved_step} in {self.config.checkpoint.save_dir}"
                if self.last_saved_step is not None else "none (the run never saved)")
        return (f"{what}; last good checkpoint: {last} (lower optimizer.lr or raise "
                f"warm-up, then resume with checkpoint.resume=auto)")

    def _log_interval(self, record: dict[str, float], tokens_per_sec: float,
                      sec_per_step: float) -> None:
        world = dist.get_world_size()
        tflops = tokens_per_sec * self.flops_per_token / world / 1e12  # per device
        total = self.config.train.train_steps
        full = {"step": self.step, "train_steps": total, "loss": record["loss"],
                "lr": self.scheduler.get_last_lr()[0], "grad_norm": record["grad_norm"],
                "consumed_samples": self.consumed_samples, "tokens_per_sec": tokens_per_sec,
                "tflops": tflops, "ms_per_step": 1000 * sec_per_step,
                # From the last interval's pace: evaluations and saves are not in it.
                "eta_s": (total - self.step) * sec_per_step,
                "memory_gib": memory_gib(), "skipped": record["skipped"]}
        if "sample_ids" in record:
            full["sample_ids"] = record["sample_ids"]
        for name, (_, share, epochs) in mixture_shares(self.train_data, self.order,
                                                       self.consumed_samples).items():
            full[f"data/{name}/share"], full[f"data/{name}/epochs"] = share, epochs
        peak = self.config.train.peak_tflops
        if peak:
            full["mfu"] = tflops / peak
        self.metrics.write(full)
        if self.rank == 0:
            mfu = f" | MFU {100 * full['mfu']:.1f}%" if peak else ""
            norm = "n/a" if full["grad_norm"] is None else f"{full['grad_norm']:.3f}"
            log.info("step %d/%d | loss %.4f | lr %.3e | grad-norm %s | %.0f ms/step | "
                     "%.0f tok/s | %.3f TFLOP/s/dev%s | %s %.2f GiB | ETA %s", self.step, total,
                     full["loss"], full["lr"], norm, full["ms_per_step"], tokens_per_sec,
                     tflops, mfu, MEMORY_KIND, full["memory_gib"],
                     format_duration(full["eta_s"]))

    def _log_eval(self) -> None:
        record = {"step": self.step, **self.evaluate()}
        self.metrics.write(record, prefix="val")
        if self.rank == 0:
            per_source = "".join(f" | {k[len('val_loss/'):]} {v:.4f}" for k, v in record.items()
                                 if k.startswith("val_loss/"))
            log.info("step %6d | val loss %.4f | val ppl %.2f | %d tokens%s", self.step,
                     record["val_loss"], record["val_ppl"], record["val_tokens"], per_source)
            read = mixture_shares(self.train_data, self.order, self.consumed_samples)
            if read:
                log.info("step %6d | data read so far: %s", self.step, describe_mixture(read))

    def close(self) -> None:
        """Release the watchdog, the loader thread, files, and the signal handlers if this
        trainer installed them."""
        self.watchdog.stop()
        if self.train_iter is not None:
            self.train_iter.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.lease is not None:
            self.lease.release()
        if self._owns_stopper:
            self.stopper.restore()


def _shape_defaults() -> dict[str, Any]:
    """Every model and LEV field's default under its shape key (see ``check_compatible``)."""
    return {f"{prefix}.{f.name}": f.default
            for prefix, section in (("model", ModelConfig), ("lev", LEVConfig))
            for f in dataclasses.fields(section) if f.default is not dataclasses.MISSING}
