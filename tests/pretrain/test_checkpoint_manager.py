"""Which checkpoint `resume: auto` picks, and what a save prunes (meta.json commits a tag)."""

import json

import pytest

from pretrain.checkpoint import CheckpointManager, CheckpointMismatchError


def make_tag(save_dir, step, complete=True):
    tag = save_dir / f"step{step:08d}"
    tag.mkdir(parents=True)
    (tag / "mp_rank_00_model_states.pt").write_bytes(b"x")
    if complete:
        (tag / "meta.json").write_text(json.dumps({"step": step}))
    return tag


def test_auto_resumes_from_the_newest_complete_tag_even_if_latest_lags(tmp_path):
    make_tag(tmp_path, 400)
    make_tag(tmp_path, 800)  # killed after meta.json, before `latest` moved
    (tmp_path / "latest").write_text("step00000400\n")
    assert CheckpointManager(tmp_path, 2).find_resume("auto").name == "step00000800"


def test_auto_never_picks_a_tag_without_meta_json(tmp_path):
    make_tag(tmp_path, 400)
    make_tag(tmp_path, 800, complete=False)
    assert CheckpointManager(tmp_path, 2).find_resume("auto").name == "step00000400"
    assert CheckpointManager(tmp_path / "empty", 2).find_resume("auto") is None


def test_an_explicit_incomplete_tag_is_refused_by_name(tmp_path):
    tag = make_tag(tmp_path, 800, complete=False)
    with pytest.raises(CheckpointMismatchError, match=r"step00000800: no complete checkpoint"):
        CheckpointManager(tmp_path, 2).find_resume(str(tag))


def test_prune_keeps_the_last_k_and_removes_leftovers_and_abandoned_timelines(tmp_path):
    for step in (100, 200, 300):
        make_tag(tmp_path, step)
    make_tag(tmp_path, 250, complete=False)  # a killed save
    make_tag(tmp_path, 900)  # from a timeline abandoned by resuming at an older step
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager._prune(keep="step00000300")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step00000200", "step00000300"]
