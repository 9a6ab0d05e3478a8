"""Every tool speaks one vocabulary of flags, documents each one, and keeps old spellings
working for a release with a deprecation note."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = ["data_prep.shard", "data_prep.train_tokenizer", "data_prep.verify",
         "data_prep.sample_corpus", "data_prep.wordnet_corpus", "pretrain.evaluate",
         "pretrain.cloze_task", "pretrain.export_hf", "pretrain.generate", "pretrain.params",
         "pretrain.study", "pretrain.train"]
#: Spellings retired in favour of the training config's names (data.path, seq_length, ...).
RETIRED = {"--data", "--data-dir", "--seq", "--vocab"}


class _Parsed(BaseException):  # BaseException: tools catch Exception to report errors
    pass


def parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The tool's own parser, captured when its main() parses."""
    def grab(self, *args, **kwargs):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    with pytest.raises(_Parsed) as caught:
        importlib.import_module(module).main([])
    return caught.value.args[0]


@pytest.mark.parametrize("module", TOOLS)
def test_every_flag_has_help_and_no_retired_spelling_is_advertised(module, monkeypatch):
    parser = parser_of(module, monkeypatch)
    undocumented = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert undocumented == []
    shown = {o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings}
    assert not shown & RETIRED


def test_an_old_spelling_still_works_with_a_deprecation_note(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pretrain.cloze_task", "--data",
                           str(tmp_path / "no-shards"), "--output", str(tmp_path / "task")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "--data is deprecated, use --data-path" in proc.stderr
    # The value reached the tool under the new name: it reports the missing shard dir.
    assert proc.returncode == 2 and "no-shards" in proc.stdout + proc.stderr


def test_the_slurm_launcher_uses_data_path_and_still_reads_data_dir():
    text = (REPO / "slurm" / "launch_pretrain.sh").read_text()
    assert '"data.path=$DATA_PATH"' in text
    assert "DATA_DIR is deprecated, use DATA_PATH" in text
