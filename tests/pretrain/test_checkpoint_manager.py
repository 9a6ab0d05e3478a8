"""Which checkpoint `resume: auto` picks, and what a save prunes (meta.json commits a tag).

Single process: the cross-rank behaviour is in tests/pretrain/test_checkpoint_durability.py.
"""

import json

import pytest

from pretrain.checkpoint.manager import CheckpointManager, CheckpointMismatchError, file_crc32


def make_tag(save_dir, step, complete=True):
    tag = save_dir / f"step{step:08d}"
    tag.mkdir(parents=True)
    weights = tag / "mp_rank_00_model_states.pt"
    weights.write_bytes(b"weights of step %d" % step)
    if complete:
        files = {weights.name: {"size": weights.stat().st_size, "crc32": file_crc32(weights)}}
        (tag / "meta.json").write_text(json.dumps({"step": step, "files": files}))
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


def test_prune_keeps_the_last_k_removes_leftovers_and_sets_newer_tags_aside(tmp_path):
    for step in (100, 200, 300):
        make_tag(tmp_path, step)
    make_tag(tmp_path, 250, complete=False)  # a killed save
    make_tag(tmp_path, 900)  # from a timeline abandoned by resuming at an older step
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager._prune(keep="step00000300")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "abandoned", "step00000200", "step00000300"]
    assert [p.name for p in (tmp_path / "abandoned").iterdir()] == ["step00000900"]
    assert (tmp_path / "abandoned" / "step00000900" / "meta.json").is_file()


def test_auto_skips_a_truncated_newest_tag_and_names_the_file(tmp_path, caplog):
    make_tag(tmp_path, 400)
    newest = make_tag(tmp_path, 800)
    weights = newest / "mp_rank_00_model_states.pt"
    weights.write_bytes(weights.read_bytes()[:5])  # what a node crash after the save leaves
    assert CheckpointManager(tmp_path, 2).find_resume("auto").name == "step00000400"
    assert f"skipping checkpoint step00000800: {weights} has 5 bytes" in caplog.text


def test_a_same_size_corruption_fails_the_crc_check(tmp_path, caplog):
    make_tag(tmp_path, 400)
    weights = make_tag(tmp_path, 800) / "mp_rank_00_model_states.pt"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert CheckpointManager(tmp_path, 2).find_resume("auto").name == "step00000400"
    assert "fails its CRC-32 check" in caplog.text


def test_auto_refuses_when_no_tag_passes_verification(tmp_path):
    (make_tag(tmp_path, 400) / "mp_rank_00_model_states.pt").unlink()
    with pytest.raises(CheckpointMismatchError, match=r"no checkpoint in .* passed verification"):
        CheckpointManager(tmp_path, 2).find_resume("auto")


def test_a_fresh_start_over_checkpoints_is_refused_unless_overwrite(tmp_path):
    make_tag(tmp_path, 400)
    with pytest.raises(CheckpointMismatchError, match=r"resume=none but .* holds checkpoints "
                                                      r"\(step00000400\).*overwrite=true"):
        CheckpointManager(tmp_path, 2).prepare_fresh_start("none", overwrite=False)
    CheckpointManager(tmp_path, 2).prepare_fresh_start("auto", overwrite=False)  # resumes
    CheckpointManager(tmp_path, 2).prepare_fresh_start("none", overwrite=True)
    assert not (tmp_path / "step00000400").exists()
    assert (tmp_path / "abandoned" / "step00000400" / "meta.json").is_file()
    assert CheckpointManager(tmp_path, 2).find_resume("none") is None


def test_auto_refuses_step_0_while_abandoned_holds_tags_unless_told_to_ignore_them(tmp_path):
    make_tag(tmp_path / "abandoned", 400)
    with pytest.raises(CheckpointMismatchError, match=r"abandoned/ holds step00000400: a fresh "
                                                      r"start would begin at step 0.*"
                                                      r"checkpoint.ignore_abandoned=true"):
        CheckpointManager(tmp_path, 2).find_resume("auto")
    assert CheckpointManager(tmp_path, 2, ignore_abandoned=True).find_resume("auto") is None


def test_a_skipped_damaged_tag_stays_in_place_until_the_next_save_prunes(tmp_path):
    make_tag(tmp_path, 400)
    newest = make_tag(tmp_path, 800)
    (newest / "mp_rank_00_model_states.pt").write_bytes(b"short")
    manager = CheckpointManager(tmp_path, 2)
    assert manager.find_resume("auto").name == "step00000400"
    assert (newest / "meta.json").is_file()  # nothing moved at restart
    make_tag(tmp_path, 500)
    manager._prune(keep="step00000500")  # what the next save does
    assert (tmp_path / "abandoned" / "step00000800" / "meta.json").is_file()
