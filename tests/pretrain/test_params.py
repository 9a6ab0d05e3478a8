"""`python -m pretrain.params` prints counts equal to closed forms derived here from the
config alone (not from megatron-core or pretrain.training.model)."""

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from pretrain.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "pretrain" / "configs"
ROW = re.compile(r"^(lev|tied|untied)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)$")
OVERHEAD = re.compile(r"^(lev|untied) overhead over tied: ([+-]\d+\.\d+) %$")
COLUMNS = ("total", "backbone", "input_embedding", "output_head", "lev")


RELATIVE = re.compile(r"^LEV relative size: (\d+\.\d+) % of the tied table, num_modes/vocab "
                      r"(\d+\.\d+) %, (\d+\.\d+) LEV parameters per vocabulary entry$")


@cache
def stdout(config: str) -> str:
    """Run the CLI once per config."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "pretrain.params", "--config", config],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def printed(config: str) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """The CLI's table rows and overhead lines, parsed."""
    rows, overheads = {}, {}
    out = stdout(config)
    for line in out.splitlines():
        if m := ROW.match(line.strip()):
            rows[m[1]] = {c: int(v.replace(",", "")) for c, v in zip(COLUMNS, m.groups()[1:],
                                                                      strict=True)}
        elif m := OVERHEAD.match(line.strip()):
            overheads[m[1]] = float(m[2])
    assert set(rows) == {"lev", "tied", "untied"}, out
    assert set(overheads) == {"lev", "untied"}, out
    return rows, overheads


def smallest_base(vocab: int, digits: int) -> int:
    base = 2
    while base**digits < vocab:
        base += 1
    return base


def closed_form(config_path: str) -> dict[str, dict[str, int]]:
    """Counts of the megatron-core local spec GPT (RMSNorm, SwiGLU, no biases, MHA)."""
    config = load_config(REPO / config_path)
    m, lev = config.model, config.lev
    assert m.num_query_groups is None and not lev.share_codebooks  # the forms below
    d, ffn, vocab = m.hidden_size, m.ffn_hidden_size, m.vocab_size
    # Local spec (megatron-core 0.16.1 get_gpt_layer_local_spec): input_layernorm and
    # pre_mlp_layernorm are separate RMSNorm modules with one weight of d each.
    per_layer = (d * 3 * d      # self_attention.linear_qkv
                 + d * d        # self_attention.linear_proj
                 + d * 2 * ffn  # mlp.linear_fc1 (gate and up of SwiGLU)
                 + ffn * d      # mlp.linear_fc2
                 + 2 * d)       # input_layernorm, pre_mlp_layernorm
    backbone = m.num_layers * per_layer + d  # + decoder.final_layernorm
    base = smallest_base(vocab, lev.num_coords)
    assert lev.aggregation == "linear"  # the form below
    lev_count = (lev.num_coords * base * lev.seed_dim + lev.seed_dim * lev.grid_size
                 * lev.num_modes + lev.num_modes * d
                 + (d if lev.output_norm else 0))  # the output norm's per-channel gain
    table = vocab * d
    return {
        "lev": dict(total=backbone + lev_count + table, backbone=backbone,
                    input_embedding=lev_count, output_head=table, lev=lev_count),
        "tied": dict(total=backbone + table, backbone=backbone, input_embedding=table,
                     output_head=0, lev=0),
        "untied": dict(total=backbone + 2 * table, backbone=backbone, input_embedding=table,
                       output_head=table, lev=0),
    }


@pytest.mark.parametrize("config", ["pretrain/configs/tiny_lev.yaml",
                                    "pretrain/configs/lev_1b2.yaml"])
def test_printed_counts_equal_the_closed_form(config):
    rows, overheads = printed(config)
    expected = closed_form(config)
    assert rows == expected
    tied = expected["tied"]["total"]
    for kind in ("lev", "untied"):
        assert overheads[kind] == pytest.approx(
            100 * (expected[kind]["total"] - tied) / tied, abs=0.0005)


def test_smallest_base_covers_the_vocabulary():
    assert smallest_base(50304, 2) == 225 and smallest_base(4096, 2) == 64
    assert smallest_base(4097, 2) == 65 and smallest_base(4096, 3) == 16


def test_1b2_tied_baseline_has_about_1_2_billion_parameters():
    rows, _ = printed("pretrain/configs/lev_1b2.yaml")
    assert 1.15e9 <= rows["tied"]["total"] <= 1.25e9


def test_1b2_lev_overhead_over_tied_is_at_most_0_3_percent():
    _, overheads = printed("pretrain/configs/lev_1b2.yaml")
    assert 0 < overheads["lev"] <= 0.3


ISO = re.compile(r"^isoparametric tied: model.embedding=tied model.ffn_hidden_size=(\d+) -> "
                 r"([\d,]+) parameters \(([+-]\d+\.\d+) % vs lev\)$")


@pytest.mark.parametrize("config,overrides", [
    ("pretrain/configs/tiny_lev.yaml", []),
    ("pretrain/configs/tiny_lev.yaml", ["model.hidden_size=160", "model.num_layers=3",
                                        "model.num_attention_heads=5",
                                        "model.ffn_hidden_size=432"]),
    ("pretrain/configs/lev_1b2.yaml", []),
])
def test_isoparametric_tied_widening_matches_the_lev_count_within_one_percent(config, overrides):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pretrain.params", "--config", config,
                           *overrides, "--isoparametric"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = next(ISO.match(line) for line in proc.stdout.splitlines() if ISO.match(line))
    ffn, tied_total = int(m[1]), int(m[2].replace(",", ""))
    lev_total = next(int(line.split()[1].replace(",", "")) for line in proc.stdout.splitlines()
                     if line.startswith("lev "))
    assert abs(tied_total - lev_total) <= 0.01 * lev_total
    base_ffn = load_config(REPO / config, overrides).model.ffn_hidden_size
    assert ffn > base_ffn  # widened, not narrowed
    # The printed count is the tied model at that width (closed form: 3*d per unit per layer).
    m_cfg = load_config(REPO / config, overrides).model
    tied_base = next(int(line.split()[1].replace(",", "")) for line in proc.stdout.splitlines()
                     if line.startswith("tied "))
    assert tied_total == tied_base + 3 * m_cfg.hidden_size * m_cfg.num_layers * (ffn - base_ffn)


@pytest.mark.parametrize("config", ["pretrain/configs/tiny_lev.yaml", "pretrain/configs/lev_1b2.yaml"])
def test_the_lev_relative_size_is_printed_in_each_reading(config):
    rows, _ = printed(config)
    m = next(RELATIVE.match(line) for line in stdout(config).splitlines() if RELATIVE.match(line))
    cfg = load_config(REPO / config)
    lev, table = rows["lev"]["lev"], rows["tied"]["input_embedding"]
    assert float(m[1]) == pytest.approx(100 * lev / table, abs=0.005)
    assert float(m[2]) == pytest.approx(100 * cfg.lev.num_modes / cfg.model.vocab_size, abs=0.005)
    assert float(m[3]) == pytest.approx(lev / cfg.model.vocab_size, abs=0.05)


def test_tiny_lev_and_lev_1b2_train_lev_at_relative_sizes_within_2x():
    def ratio(config: str) -> float:
        rows, _ = printed(config)
        return rows["lev"]["lev"] / rows["tied"]["input_embedding"]

    tiny, big = ratio("pretrain/configs/tiny_lev.yaml"), ratio("pretrain/configs/lev_1b2.yaml")
    assert 0.5 <= tiny / big <= 2.0


def test_counting_in_process_leaves_the_environment_as_it_found_it(monkeypatch):
    """The study's reports count in-process; a MASTER_PORT left behind would send every
    process they start later to one port (address already in use)."""
    from pretrain.runtime.launcher import PROCESS_GROUP_ENV as keys
    from pretrain.training.params import count_all

    for key in keys:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    count_all(load_config(REPO / "pretrain/configs/tiny_lev.yaml"))
    assert {k: os.environ.get(k) for k in keys} == {
        **dict.fromkeys(keys), "MASTER_ADDR": "127.0.0.1"}
