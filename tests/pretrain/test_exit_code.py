"""The job's exit code for the launcher: rank 0 speaks for a collective code, a rank for
its own error, and the first published code is never overwritten."""

from __future__ import annotations

import pytest

from pretrain.runtime.exit_code import publish_exit_code


@pytest.fixture
def code_file(tmp_path, monkeypatch):
    path = tmp_path / "exit_code.run0"
    monkeypatch.setenv("LEV_EXIT_CODE_FILE", str(path))
    return path


def test_rank_0_publishes_a_collective_code_whole_and_leaves_no_temporary(code_file):
    assert publish_exit_code(75, rank=0, collective=True)
    assert code_file.read_text() == "75\n"
    assert [p.name for p in code_file.parent.iterdir()] == [code_file.name]


def test_other_ranks_leave_a_collective_code_to_rank_0(code_file):
    assert not publish_exit_code(75, rank=1, collective=True)
    assert not code_file.exists()


def test_a_rank_publishes_its_own_error(code_file):
    assert publish_exit_code(2, rank=3, collective=False)
    assert code_file.read_text() == "2\n"


def test_the_first_published_code_wins(code_file):
    # A corrupt shard: rank 1 exits 2; rank 0's watchdog would say 77 later.
    assert publish_exit_code(2, rank=1, collective=False)
    assert not publish_exit_code(77, rank=0, collective=True)
    assert code_file.read_text() == "2\n"
    assert [p.name for p in code_file.parent.iterdir()] == [code_file.name]


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("LEV_EXIT_CODE_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert not publish_exit_code(0, rank=0, collective=True)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_location_is_a_warning_not_a_failure(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LEV_EXIT_CODE_FILE", str(tmp_path / "missing-dir" / "exit_code.run0"))
    assert not publish_exit_code(75, rank=0, collective=True)
    assert "falls back to srun's status" in caplog.text
