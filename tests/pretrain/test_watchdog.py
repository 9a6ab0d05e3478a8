"""The hang watchdog: section timeouts, heartbeats, and naming the rank that stopped."""

from __future__ import annotations

import json
import threading
import time

from pretrain.runtime.watchdog import StepTimeout, Watchdog


def _watch(tmp_path, rank: int, timeouts: dict[str, float]):
    fired: list[str] = []
    done = threading.Event()

    def on_timeout(message: str) -> None:
        fired.append(message)
        done.set()

    return Watchdog(timeouts, tmp_path, rank=rank, on_timeout=on_timeout), fired, done


def _beat(path, timeout: float = 5.0, **expected) -> dict:
    """The heartbeat in ``path`` once the (asynchronous) writer has written ``expected``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            beat = json.loads(path.read_text())
            if all(beat.get(k) == v for k, v in expected.items()):
                return beat
        except (OSError, ValueError):
            beat = None
        assert time.monotonic() < deadline, f"no heartbeat with {expected} in {path}: {beat}"
        time.sleep(0.05)


def test_a_section_past_its_timeout_names_itself_and_the_rank_that_stopped_reporting(tmp_path):
    stuck, _, _ = _watch(tmp_path, rank=1, timeouts={})
    stuck.start()
    stuck.enter("step", step=11)  # rank 1 reports step 11, then goes silent (SIGSTOP)
    _beat(tmp_path / "rank1.json", step=11)
    stuck.stop()
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


def test_heartbeats_record_section_step_and_host_from_their_own_thread(tmp_path):
    dog, _, _ = _watch(tmp_path, rank=3, timeouts={})
    dog.start()
    dog.enter("setup")
    beat = _beat(tmp_path / "rank3.json", section="setup")
    assert beat["rank"] == 3 and beat["step"] == 0
    dog.enter("step", step=2)  # the latest state is written within about a second
    beat = _beat(tmp_path / "rank3.json", section="step", step=2)
    assert beat["host"] and beat["pid"]
    dog.stop()


def test_entering_a_section_returns_at_once_when_heartbeat_writes_block(tmp_path):
    import os

    os.mkfifo(tmp_path / "rank0.json.tmp")  # opening it for writing blocks: a stalled mount
    dog, _, _ = _watch(tmp_path, rank=0, timeouts={})
    dog.start()
    started = time.monotonic()
    for step in range(1, 2001):
        dog.enter("step", step=step)
    assert time.monotonic() - started < 1.0
    dog.stop()


def test_the_step_timeout_is_a_multiple_of_the_slowest_step_within_floor_and_ceiling():
    rule = StepTimeout(multiple=5, floor_s=60, after_steps=5)
    assert rule.derive(0.3, steps=4, ceiling_s=180) is None  # not measured enough yet
    assert rule.derive(0.3, steps=5, ceiling_s=180) == 60  # the floor
    assert rule.derive(20.0, steps=5, ceiling_s=180) == 100
    assert rule.derive(50.0, steps=9, ceiling_s=180) == 180  # never above step_timeout_s
    assert StepTimeout(multiple=0, floor_s=60).derive(0.3, steps=99, ceiling_s=180) is None


def test_a_hang_after_fast_steps_fires_after_the_derived_timeout_not_the_fixed_one(tmp_path):
    fired: list[str] = []
    done = threading.Event()
    dog = Watchdog({"step": 600}, tmp_path, rank=0,
                   on_timeout=lambda m: (fired.append(m), done.set()),
                   step_timeout=StepTimeout(multiple=5, floor_s=1.5, after_steps=3))
    dog.start()
    for step in range(1, 5):  # 3 timed steps of ~0.05 s
        dog.enter("step", step=step)
        time.sleep(0.05)
    assert dog.timeout_of("step") == 1.5
    started = time.monotonic()
    assert done.wait(10), "the derived step timeout did not fire"
    dog.stop()
    assert time.monotonic() - started < 4
    assert "timeout 2 s, 5 x the slowest step" in fired[0]
    assert "watchdog.step_timeout_multiple, watchdog.step_timeout_floor_s" in fired[0]
