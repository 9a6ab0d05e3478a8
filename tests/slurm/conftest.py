"""Fixtures for tests that run jobs on a real local Slurm (see slurm/local_cluster.py).

``local_slurm`` starts one one-node cluster per test session and stops it at the end;
``multinode_slurm`` likewise a three-node one (started only if a test asks for it). Without
the Slurm/munge binaries it skips, unless ``LEV_REQUIRE_SLURM=1`` (set on CI), where a
missing Slurm is a failure rather than a silently skipped suite.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# slurm/ holds sbatch scripts and is not a package; import the module from its file's folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "slurm"))
from local_cluster import LocalSlurm, slurm_binaries_missing  # noqa: E402


def _require_slurm() -> None:
    """Skip (or, with LEV_REQUIRE_SLURM=1, fail) when Slurm or munge is not installed."""
    missing = slurm_binaries_missing()
    if not missing:
        return
    why = f"Slurm not installed (missing: {', '.join(missing)}); `apt-get install -y slurm-wlm munge`"
    if os.environ.get("LEV_REQUIRE_SLURM") == "1":
        pytest.fail(f"LEV_REQUIRE_SLURM=1 but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def require_slurm() -> None:
    """For tests that start their own LocalSlurm: skip/fail like ``local_slurm`` does."""
    _require_slurm()


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    """A running one-node Slurm shared by the session; submit with ``local_slurm.sbatch``."""
    _require_slurm()
    with LocalSlurm(tmp_path_factory.mktemp("local_slurm")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def multinode_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    """A running three-node Slurm (three slurmd daemons on this machine, ``node1``-``node3``)
    shared by the session: two-node jobs, and a spare node to move to when one dies."""
    _require_slurm()
    with LocalSlurm(tmp_path_factory.mktemp("multinode_slurm"), nodes=3) as cluster:
        yield cluster


@pytest.fixture
def slurm(local_slurm: LocalSlurm) -> Iterator[LocalSlurm]:
    """The session's cluster, with every job cancelled after the test so none leaks into the next."""
    yield local_slurm
    local_slurm.cancel_all()
