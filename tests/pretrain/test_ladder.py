"""The size ladder (docs/ladder.md, pretrain/study/ladder.py): its configs build with the
counts the doc states, its cost formula, and the report on hand-made finished runs."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from pretrain.config import Config, config_to_dict, load_config
from pretrain.study.ladder import ARMS, RUNGS, config_path, gpu_hours, main, write_ladder_report
from pretrain.training.params import count_all

REPO = Path(__file__).resolve().parents[2]

#: (total, LEV) parameters of each ladder config, as docs/ladder.md's table states them.
EXPECTED = {
    ("lev", "200m"): (212_480_544, 401_184),
    ("tied", "200m"): (212_079_360, 0),
    ("untied", "200m"): (250_712_832, 0),
    ("lev", "400m"): (360_506_400, 663_584),
    ("tied", "400m"): (359_842_816, 0),
    ("untied", "400m"): (411_354_112, 0),
    ("lev", "1b2"): (1_235_848_224, 2_368_544),
    ("tied", "1b2"): (1_233_479_680, 0),
    ("untied", "1b2"): (1_336_502_272, 0),
}


def test_every_ladder_config_builds_on_the_meta_device_with_the_stated_counts():
    from pretrain.runtime.distributed import destroy_distributed, init_distributed
    from pretrain.training.model import build_model, count_parameters

    built = {}
    init_distributed(tensor_parallel=1, seed=0)
    try:
        for arm, rung in EXPECTED:
            # Each file as it is (its own model.embedding), not the lev file's backbone.
            counts = count_parameters(build_model(load_config(config_path(arm, rung)), meta=True))
            built[(arm, rung)] = (counts.total, counts.lev)
    finally:
        destroy_distributed()
    assert built == EXPECTED


def test_docs_ladder_states_every_count_of_the_table():
    doc = (REPO / "docs" / "ladder.md").read_text()
    for (arm, rung), (total, lev) in EXPECTED.items():
        assert f"{total:,}" in doc, f"{arm}_{rung}: total {total:,} not in docs/ladder.md"
        if lev:
            assert f"{lev:,}" in doc, f"{arm}_{rung}: LEV {lev:,} not in docs/ladder.md"


def test_gpu_hours_are_flops_over_mfu_times_peak():
    # 1 GFLOP/token x 1T tokens at 50 % of 1000 TFLOP/s: 1e21 / 5e14 s.
    assert gpu_hours(1e9, 10**12, mfu=0.5, peak_tflops=1000) == pytest.approx(1e21 / 5e14 / 3600)


# ---------------------------------------------------------------------------- report

#: Hand-made rungs: the tiny CPU shape at three widths, so the three bodies differ.
WIDTHS = {"200m": 32, "400m": 64, "1b2": 128}


def rung_config(rung: str, arm: str) -> Config:
    return load_config(REPO / "pretrain" / "configs" / "tiny_lev.yaml",
                       [f"model.hidden_size={WIDTHS[rung]}", f"model.embedding={arm}",
                        "train.train_steps=10"])


def fake_run(runs: Path, rung: str, arm: str, val_loss: float, step: int = 10) -> None:
    """A run directory as the training leaves it: latest -> tag/meta.json, metrics.jsonl."""
    save = runs / f"{arm}_{rung}"
    tag = save / f"step{step:08d}"
    tag.mkdir(parents=True)
    (save / "latest").write_text(tag.name + "\n")
    (tag / "meta.json").write_text(json.dumps(
        {"step": step, "config": config_to_dict(rung_config(rung, arm))}))
    (save / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"step": step, "loss": val_loss + 0.1},
        {"step": step, "val_loss": val_loss, "val_ppl": math.exp(val_loss)})))


def bodies() -> dict[str, int]:
    return {rung: count_all(rung_config(rung, "lev"))["lev"].backbone for rung in WIDTHS}


def test_report_fits_the_gap_to_tied_against_the_body_size(tmp_path: Path):
    body = bodies()
    for rung in RUNGS:
        tied = 5.0 - 0.2 * math.log(body[rung])  # falls with size
        fake_run(tmp_path, rung, "tied", tied)
        fake_run(tmp_path, rung, "untied", tied - 0.01)
        fake_run(tmp_path, rung, "lev", tied + 0.3 - 0.05 * math.log(body[rung] / body["200m"]))

    text = write_ladder_report(tmp_path, tmp_path / "ladder.md",
                               target_config=REPO / "pretrain" / "configs" / "tiny_lev.yaml"
                               ).read_text()

    tied_part = text.split("## LEV vs tied")[1].split("## LEV vs untied")[0]
    assert [line.split("|")[1].strip() for line in tied_part.splitlines()
            if re.match(r"\| (200m|400m|1b2) \|", line)] == list(RUNGS)
    assert "Line in ln(body): -0.0500 nats per e-fold of the body" in tied_part
    assert "reaches 0 at a body of" in tied_part


def test_report_names_the_runs_left_out_of_the_fit(tmp_path: Path):
    for rung in ("200m", "400m"):
        fake_run(tmp_path, rung, "tied", 4.0)
        fake_run(tmp_path, rung, "lev", 4.1)
    fake_run(tmp_path, "1b2", "tied", 3.9, step=5)  # stopped half-way

    text = write_ladder_report(tmp_path, tmp_path / "ladder.md",
                               target_config=REPO / "pretrain" / "configs" / "tiny_lev.yaml"
                               ).read_text()

    assert "- `tied_1b2`: not finished (step 5 of 10)" in text


def test_report_command_exits_2_naming_a_missing_runs_dir(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    code = main(["report", str(tmp_path / "nowhere")])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"LadderError: runs directory {tmp_path / 'nowhere'} does not exist "
                   f"(the RUNS_DIR slurm/submit_ladder.sh wrote to)")


def test_every_arm_of_a_rung_shares_the_lev_arms_backbone_and_recipe():
    for rung in RUNGS:
        lev = load_config(config_path("lev", rung))
        for arm in ARMS:
            other = load_config(config_path(arm, rung))
            assert other.model == replace(lev.model, embedding=arm)
            assert (other.optimizer, other.train, other.lev) == (lev.optimizer, lev.train, lev.lev)
