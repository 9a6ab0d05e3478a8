"""scripts/gpu_bundle.sh replaces OUT_DIR wholesale, so it refuses any OUT_DIR that is not a
previous bundle before it downloads anything (docs/trust.md)."""

import subprocess

from tests.conftest import REPO


def run_bundle(out) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/gpu_bundle.sh", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_an_out_dir_holding_other_files_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    done = run_bundle(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not a bundle" in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_an_out_dir_that_is_a_symlink_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "bundle").symlink_to(tmp_path / "elsewhere")
    done = run_bundle(tmp_path / "bundle")
    assert done.returncode == 2 and "is not a bundle" in done.stderr
