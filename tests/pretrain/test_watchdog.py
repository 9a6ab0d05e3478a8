"""The hang watchdog: section timeouts, heartbeats, and naming the rank that stopped."""

from __future__ import annotations

import json
import threading
import time

from pretrain.runtime.watchdog import Watchdog


def _watch(tmp_path, rank: int, timeouts: dict[str, float]):
    fired: list[str] = []
    done = threading.Event()

    def on_timeout(message: str) -> None:
        fired.append(message)
        done.set()

    return Watchdog(timeouts, tmp_path, rank=rank, on_timeout=on_timeout), fired, done


def test_a_section_past_its_timeout_names_itself_and_the_rank_that_stopped_reporting(tmp_path):
    stuck, _, _ = _watch(tmp_path, rank=1, timeouts={})
    stuck.enter("step", step=11)  # rank 1 reports step 11, then goes silent (SIGSTOP)
    live, fired, done = _watch(tmp_path, rank=0, timeouts={"step": 1.5})
    live.start()
    live.enter("step", step=12)
    assert done.wait(10), "the watchdog did not fire"
    live.stop()
    (message,) = fired
    assert "rank 0 made no progress in section 'step' (step 12)" in message
    assert "timeout 2 s, watchdog.step_timeout_s" in message
    assert "lagging ranks: rank 1 " in message and "in 'step' at step 11" in message


def test_progress_within_the_timeout_never_fires(tmp_path):
    dog, fired, _ = _watch(tmp_path, rank=0, timeouts={"step": 1.5})
    dog.start()
    for step in range(1, 6):
        dog.enter("step", step=step)
        time.sleep(0.5)
    dog.enter("save", step=5)  # untimed here
    time.sleep(2.0)
    dog.stop()
    assert fired == []


def test_heartbeats_record_section_step_and_host_at_most_once_a_second(tmp_path):
    dog, _, _ = _watch(tmp_path, rank=3, timeouts={})
    dog.enter("setup")
    dog.enter("setup", step=1)  # same section within a second: not rewritten
    beat = json.loads((tmp_path / "rank3.json").read_text())
    assert beat["rank"] == 3 and beat["section"] == "setup" and beat["step"] == 0
    dog.enter("step", step=2)  # a new section is always written
    beat = json.loads((tmp_path / "rank3.json").read_text())
    assert beat["section"] == "step" and beat["step"] == 2 and beat["host"]
