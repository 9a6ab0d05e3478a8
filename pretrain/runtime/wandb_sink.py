"""Weights & Biases as a mirror of metrics.jsonl (``train.wandb``; rank 0 only).

Every record ``MetricsWriter`` writes is logged as ``<prefix>/<key>`` with the training
step as its x-axis, and the resolved config is the run's config. The W&B run id is kept
in ``save_dir/wandb_run_id``: a requeued or resumed job (same save_dir) appends to the
same W&B run instead of starting a new one. ``mode: offline`` writes under
``save_dir/wandb`` for a later ``wandb sync`` (clusters without internet access).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from pathlib import Path
from typing import Any

from pretrain.config import WandbConfig

__all__ = ["WandbSink"]

log = logging.getLogger(__name__)


class WandbSink:
    """One W&B run for one save_dir."""

    def __init__(self, cfg: WandbConfig, save_dir: str | os.PathLike[str],
                 run_config: dict[str, Any]) -> None:
        import wandb  # optional dependency: imported only when enabled

        save = Path(save_dir)
        id_file = save / "wandb_run_id"
        run_id = (id_file.read_text().strip() if id_file.is_file()
                  else secrets.token_hex(4))  # W&B ids: lower-case letters and digits
        self.run = wandb.init(project=cfg.project, entity=cfg.entity,
                              name=cfg.name or save.resolve().name, id=run_id, resume="allow",
                              mode=cfg.mode, dir=str(save), config=run_config)
        # The step is a metric, not W&B's own counter: after a resume the run logs steps
        # it had logged before the stop, which W&B's monotonic step would drop.
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        tmp = id_file.with_suffix(f".tmp.{os.getpid()}")
        tmp.write_text(run_id + "\n")
        os.replace(tmp, id_file)
        log.info("W&B run %s (%s, project %s)%s", run_id, cfg.mode, cfg.project,
                 f": {self.run.url}" if cfg.mode == "online" else f" under {save / 'wandb'}")

    def log(self, record: dict[str, Any], prefix: str) -> None:
        """Log ``record``'s finite numbers as ``prefix/key`` at ``record["step"]``."""
        values = {f"{prefix}/{k}": v for k, v in record.items()
                  if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
                  and math.isfinite(v)}
        self.run.log({"step": record["step"], **values})

    def close(self) -> None:
        self.run.finish()
