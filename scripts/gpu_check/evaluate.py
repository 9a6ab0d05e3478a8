"""The ``evaluate`` part: ``pretrain.evaluate`` on the small run's final checkpoint."""

from __future__ import annotations

import json
import math
from typing import Any

from .runner import Limit, Runner

__all__ = ["part_evaluate"]


def part_evaluate(runner: Runner, limit: Limit) -> tuple[str, dict[str, Any]]:
    """Perplexity of the 8-step checkpoint over the validation split; pass if finite."""
    output = runner.work / "eval"
    runner.python("evaluate", ["-m", "pretrain.evaluate", "--checkpoint",
                               runner.work / "runs" / "straight", "--data-path",
                               runner.work / "shards", "--output", output], limit())
    run = json.loads((output / "eval.json").read_text())["runs"][0]
    fields = {k: run.get(k) for k in ("checkpoint", "step", "embedding", "loss", "ppl",
                                      "tokens", "params")}
    if run.get("loss") is None or not math.isfinite(run["loss"]) or not run.get("tokens"):
        return "fail", {"reason": "no finite loss over a non-empty validation split", **fields}
    return "pass", fields
