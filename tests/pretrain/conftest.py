"""Fixtures for pretrain tests: a small, real shard directory (data_prep/FORMAT.md).

Real text (this Python's LICENSE.txt and a few stdlib sources) -> a BPE tokenizer
trained with the `tokenizers` library -> `python data_prep/shard.py`, the command
users run. (The tokenizer is trained here because data_prep/train_tokenizer.py did
not exist yet when this was written.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Make `import pretrain` work when pytest runs without the package installed.
sys.path.insert(0, str(REPO))

SEQ_LENGTH = 32
VOCAB_SIZE = 384
EOD_TOKEN = "<|endoftext|>"


def _documents() -> list[str]:
    lib = Path(os.__file__).parent
    files = [
        lib / "LICENSE.txt",
        lib / "textwrap.py",
        lib / "json" / "decoder.py",
        lib / "shlex.py",
    ]
    docs = []
    for f in files:
        if f.is_file():
            text = f.read_text(encoding="utf-8", errors="replace")
            docs += [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40]
    assert docs, f"no text found under {lib}"
    return docs


def _train_tokenizer(docs: list[str], path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()  # as data_prep/train_tokenizer.py: ids decode to text
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(docs, trainer)
    tok.save(str(path))


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention shard directory: seq_length 32, a few hundred samples."""
    root = tmp_path_factory.mktemp("shards")
    docs = _documents()
    _train_tokenizer(docs, root / "tokenizer.json")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    cmd = [
        sys.executable, str(REPO / "data_prep" / "shard.py"),
        "--input", str(corpus), "--tokenizer", str(root / "tokenizer.json"),
        "--output", str(root / "data"), "--seq-length", str(SEQ_LENGTH),
        "--val-fraction", "0.1",
        "--shard-size-mb", "0.04",  # ~40 samples per shard: samples cross many shards
        "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return root / "data"


@pytest.fixture
def shard_copy(shard_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shard directory that a test may corrupt."""
    return Path(shutil.copytree(shard_dir, tmp_path / "data"))


#: Tiny 2-rank runs that several test modules read (evaluation, export), each trained once
#: per session on first use: 6 steps, a full-split validation every 2 steps.
TRAINED_STEPS = 6
TRAINED = {
    "lev": ["train.zero_stage=1"],
    "lev_zero3": ["train.zero_stage=3"],
    "lev_tp2": ["train.zero_stage=1", "parallel.tensor_parallel=2"],
    "lev_mlp_tp2": ["train.zero_stage=1", "parallel.tensor_parallel=2", "lev.aggregation=mlp"],
    "tied_zero3": ["model.embedding=tied", "train.zero_stage=3"],
    "untied_zero3": ["model.embedding=untied", "train.zero_stage=3"],
}


@pytest.fixture(scope="session")
def trained(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``trained(name)`` -> the save_dir of run ``name`` of :data:`TRAINED` (read-only by
    convention: copy it to change it)."""
    from tests.pretrain.train_helpers import run_training

    root = tmp_path_factory.mktemp("trained")

    def get(name: str) -> Path:
        save = root / name
        if not (save / "latest").is_file():
            run_training(2, save, shard_dir, *TRAINED[name], f"train.train_steps={TRAINED_STEPS}",
                         "train.eval_interval=2", "train.eval_samples=0")
        return save

    return get


@pytest.fixture(scope="session")
def zero1_two_tags(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-step ZeRO-1 run on 2 ranks with complete tags at steps 4 and 8, trained once per
    session for the checkpoint tests (read-only by convention: copy it to change it)."""
    from tests.pretrain.train_helpers import run_training

    save = tmp_path_factory.mktemp("zero1_two_tags") / "run"
    run_training(2, save, shard_dir, "train.zero_stage=1", "train.train_steps=8",
                 "checkpoint.save_interval=4", "checkpoint.keep_last=5")
    return save
