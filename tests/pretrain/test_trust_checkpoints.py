"""A checkpoint loads as data, never as code (docs/trust.md).

Each attack copies a real checkpoint of the session (tests/pretrain/conftest.py), re-pickles
one of its files with an object whose unpickling runs ``touch MARKER`` and updates
``meta.json``'s size and CRC (whoever can write the files can write those too). Resume,
evaluate, export and generate must refuse it with exit 78 and a line naming the file and
the global, and the marker must never appear.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrain.checkpoint.manager import file_crc32
from tests.conftest import REPO, cpu_env, rank_logs, spawn_ranks, wait_ranks
from tests.pretrain.conftest import TRAINED_STEPS
from tests.pretrain.train_helpers import run_training

pytestmark = pytest.mark.multiproc

TAG = f"step{TRAINED_STEPS:08d}"
MODEL = "mp_rank_00_model_states.pt"
OPTIM_RANK1 = "zero_pp_rank_1_mp_rank_00_optim_states.pt"
RNG_RANK1 = "rng_rank00001.pt"
REFUSED = 78
# The "lev" run of conftest.TRAINED, resumed one step further.
RESUME = ["train.zero_stage=1", f"train.train_steps={TRAINED_STEPS + 1}",
          "train.eval_interval=2", "train.eval_samples=0"]


class Payload:
    """Unpickling this runs a shell command, as a planted checkpoint would."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def planted(trained, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A copy of the session's ``lev`` save_dir whose ``name`` also holds a :class:`Payload`;
    returns (save_dir, marker)."""
    save, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(trained("lev"), save)
    path = save / TAG / name
    state = torch.load(path, weights_only=False)  # the session's own file: trusted here
    state["note"] = Payload(marker)
    torch.save(state, path)
    meta_path = save / TAG / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["files"][name] = {"size": path.stat().st_size, "crc32": file_crc32(path)}
    meta_path.write_text(json.dumps(meta))
    return save, marker


def assert_refused(logs: str, name: str, marker: Path) -> None:
    assert not marker.exists(), "the payload ran"
    assert "refused to load" in logs and name in logs and "posix.system" in logs, logs[-3000:]


def command(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, env=cpu_env(),
                          capture_output=True, text=True, timeout=300)


def test_every_file_of_real_checkpoints_loads_and_needs_every_allowed_global(trained):
    from megatron_patches.safe_load import _ALLOWED_NAMES, restricted_load

    named = set()
    for run in ("lev", "lev_zero3", "lev_tp2"):
        for path in sorted((trained(run) / TAG).glob("*.pt")):
            restricted_load(path)
            named |= set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    # numpy's UInt32DType is built by np.dtype's reduce, so the scan cannot name it.
    assert named | {"numpy.dtypes.UInt32DType"} == set(_ALLOWED_NAMES)


def test_resume_refuses_model_states_that_would_run_code(trained, shard_dir, tmp_path):
    save, marker = planted(trained, tmp_path, MODEL)
    run_training(1, save, shard_dir, *RESUME, expect=REFUSED)
    assert_refused(rank_logs(save.parent / "run-logs"), MODEL, marker)


def test_resume_refuses_optimizer_states_that_would_run_code(trained, shard_dir, tmp_path):
    save, marker = planted(trained, tmp_path, OPTIM_RANK1)
    run_training(1, save, shard_dir, *RESUME, expect=REFUSED)  # DP 2 -> 1 reads both
    assert_refused(rank_logs(save.parent / "run-logs"), OPTIM_RANK1, marker)


def test_resume_refuses_rng_states_that_would_run_code_on_every_rank(trained, shard_dir,
                                                                    tmp_path):
    save, marker = planted(trained, tmp_path, RNG_RANK1)
    run_training(2, save, shard_dir, *RESUME, expect=REFUSED)  # rank 1 alone reads it
    assert_refused(rank_logs(save.parent / "run-logs"), RNG_RANK1, marker)


def test_evaluate_refuses_a_checkpoint_that_would_run_code(trained, shard_dir, tmp_path):
    save, marker = planted(trained, tmp_path, MODEL)
    log_dir = tmp_path / "eval-logs"
    argv = ["-m", "pretrain.evaluate", "--checkpoint", str(save / TAG), "--data-path",
            str(shard_dir), "--output", str(tmp_path / "report")]
    assert wait_ranks(spawn_ranks(1, argv, log_dir=log_dir), log_dir) == [REFUSED]
    assert_refused(rank_logs(log_dir), MODEL, marker)


def test_export_refuses_a_checkpoint_that_would_run_code(trained, tmp_path):
    save, marker = planted(trained, tmp_path, MODEL)
    done = command("pretrain.export_hf", "--checkpoint", str(save / TAG),
                   "--output", str(tmp_path / "hf"))
    assert done.returncode == REFUSED, done.stdout[-3000:] + done.stderr[-3000:]
    assert_refused(done.stdout + done.stderr, MODEL, marker)


def test_generate_refuses_a_checkpoint_that_would_run_code(trained, tmp_path):
    save, marker = planted(trained, tmp_path, MODEL)
    done = command("pretrain.generate", "--checkpoint", str(save),
                   "--prompt", "the king", "--max-new-tokens", "2")
    assert done.returncode == REFUSED, done.stdout[-3000:] + done.stderr[-3000:]
    assert_refused(done.stdout + done.stderr, MODEL, marker)


def test_a_meta_json_file_key_outside_the_tag_is_refused_by_name(trained, tmp_path):
    from data_prep.paths import PathOutsideError
    from pretrain.checkpoint.manager import CheckpointManager

    save = tmp_path / "run"
    shutil.copytree(trained("lev"), save)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    meta_path = save / TAG / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["../../outside.bin"] = {"size": 1, "crc32": "00000000"}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PathOutsideError, match=r"entry '\.\./\.\./outside\.bin' leads outside"):
        CheckpointManager(save, keep_last=2).find_resume("auto")


def test_a_legacy_serialized_file_is_refused_by_name_before_any_rank_loads(tmp_path):
    """The pre-load scan cannot read a legacy pickle's globals, so it refuses the format
    itself: otherwise only the rank that loads it would refuse, and the others would wait."""
    from megatron_patches.safe_load import UnsafeCheckpointError
    from pretrain.checkpoint.manager import refuse_unsafe_files

    torch.save({"w": torch.ones(2)}, tmp_path / "mp_rank_00_model_states.pt")
    refuse_unsafe_files(tmp_path)  # zip-serialized: passes
    torch.save({"w": torch.ones(2)}, tmp_path / "zero_pp_rank_1_mp_rank_00_optim_states.pt",
               _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match=r"zero_pp_rank_1_mp_rank_00_optim_states"
                                                    r"\.pt: not in torch's zip serialization"):
        refuse_unsafe_files(tmp_path)


def test_an_rng_file_pickled_under_numpy_1_loads(tmp_path):
    """numpy 1.x pickles its arrays' reconstructor as numpy.core.multiarray._reconstruct
    (numpy 2: numpy._core); an RNG file saved before an upgrade must still load."""
    import zipfile

    import numpy as np

    from megatron_patches.safe_load import restricted_load, unsafe_globals

    state = np.random.RandomState(3).get_state()
    new = tmp_path / "rng_new.pt"
    torch.save({"np": state}, new)
    old = tmp_path / "rng_rank00000.pt"
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(item, data)
    assert "numpy.core.multiarray._reconstruct" in torch.serialization.get_unsafe_globals_in_checkpoint(old)
    assert unsafe_globals(old) == []
    loaded = restricted_load(old)["np"]
    assert loaded[0] == state[0] and np.array_equal(loaded[1], state[1])
