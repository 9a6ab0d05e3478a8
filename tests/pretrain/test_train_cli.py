"""The training command line: one clean error per job under every launcher, YAML typos
with line:column, a config that prints and reads back, every key documented."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pretrain.config import load_config
from tests.conftest import REPO, cpu_env, free_port

TINY = "pretrain/configs/tiny_lev.yaml"
BAD = "model.num_attention_heads=5"  # does not divide hidden_size: a config error
MESSAGE = "ConfigError: model.hidden_size="


def run(cmd: list[str], timeout: float = 180,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=env or cpu_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.multiproc
def test_a_config_error_under_mpiexec_prints_once_exits_2_and_publishes_2(tmp_path):
    code_file = tmp_path / "exit_code.run0"
    proc = run([shutil.which("mpiexec") or "mpiexec", "-n", "2", sys.executable, "-m",
                "pretrain.train", "--config", TINY, BAD],
               env=cpu_env(LEV_EXIT_CODE_FILE=str(code_file)))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert out.count(MESSAGE) == 1 and "pretrain.train: error: ConfigError" in out
    assert "Traceback" not in out
    # Both ranks raced to publish the same verdict: one file, no temporary left behind.
    assert code_file.read_text() == "2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exit_code.run0"]


@pytest.mark.multiproc
def test_a_config_error_under_torchrun_prints_once_and_names_it_in_torchruns_summary():
    proc = run([shutil.which("torchrun") or "torchrun", "--nproc-per-node", "2",
                f"--master-port={free_port()}", "-m", "pretrain.train", "--config", TINY, BAD])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # torchrun's own code; each rank's 2 is in its summary
    # Rank 0 prints the line; when rank 1 fails first, torchrun SIGTERMs rank 0, which may
    # not have installed its handler yet (a loaded machine): then only the summary says it.
    assert out.count(f"pretrain.train: error: {MESSAGE}") <= 1
    summary = out[out.index("ChildFailedError"):]
    assert "exitcode  : 2" in summary and MESSAGE in summary
    assert "To enable traceback" not in summary


def test_a_yaml_typo_is_one_line_with_line_and_column(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(f"base: {REPO / TINY}\nmodel:\n  num_layers: 2\n\thidden_size: 32\n")
    proc = run([sys.executable, "-m", "pretrain.train", "--config", str(config)])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"pretrain.train: error: ConfigError: {config}:4:1: found character '\\t' "
                     f"that cannot start any token (YAML indents with spaces, not tabs) "
                     f"(exit 2)"]


def test_print_config_round_trips(tmp_path):
    first = run([sys.executable, "-m", "pretrain.train", "--config", TINY, "--print-config",
                 "--train.train_steps=17", "--optimizer.lr", "0.002",
                 "data.path=[{path: /a, weight: 0.7}, {path: /b, weight: 0.3}]"])
    assert first.returncode == 0, first.stderr
    printed = tmp_path / "resolved.yaml"
    printed.write_text(first.stdout)
    second = run([sys.executable, "-m", "pretrain.train", "--config", str(printed),
                  "--print-config"])
    assert second.stdout == first.stdout
    config = load_config(printed)
    assert config.train.train_steps == 17 and config.optimizer.lr == 0.002
    assert config == load_config(TINY, ["train.train_steps=17", "optimizer.lr=0.002",
                                        "data.path=[{path: /a, weight: 0.7}, "
                                        "{path: /b, weight: 0.3}]"])


def test_help_config_documents_every_key():
    proc = run([sys.executable, "-m", "pretrain.train", "--help-config"])
    assert proc.returncode == 0
    assert "train.wandb.mode (online | offline; default 'online')" in proc.stdout
    assert "  data.path (" in proc.stdout and "Megatron's form" in proc.stdout
    help_text = run([sys.executable, "-m", "pretrain.train", "--help"]).stdout
    assert "--help-config" in help_text and "--print-config" in help_text
