"""`pretrain.evaluate` checks that --output is writable on every rank at once.

Every rank of ``torchrun --nproc-per-node 2 -m pretrain.evaluate`` runs the check before
the process group exists; with one shared probe name one rank could unlink the other's
probe and fail a writable directory. Two real rank processes hammer the check here.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, cpu_env

pytestmark = pytest.mark.multiproc

ROUNDS = 3000

# Each rank waits for the go file so that both loops overlap from the first round.
_RANK_LOOP = """
import sys, time
from pathlib import Path
from pretrain.evaluation.evaluate import _check_output
out, go, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
for _ in range(rounds):
    _check_output(out)
"""


def test_two_ranks_checking_one_output_dir_at_once_never_fail_it(tmp_path):
    out, go = tmp_path / "report", tmp_path / "go"
    ranks = [subprocess.Popen([sys.executable, "-c", _RANK_LOOP, str(out), str(go), str(ROUNDS)],
                              cwd=REPO, env=cpu_env(RANK=str(rank), WORLD_SIZE="2"),
                              stderr=subprocess.PIPE, text=True) for rank in range(2)]
    time.sleep(1.0)  # both imported and waiting
    go.touch()
    results = [(p.wait(timeout=300), p.stderr.read()) for p in ranks]
    assert [code for code, _ in results] == [0, 0], "\n".join(err[-2000:] for _, err in results)
    assert list(out.iterdir()) == [], "a probe file was left behind"
