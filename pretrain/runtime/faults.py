"""Fault injection for tests: delays that stand in for a slow save, a stalled mount or a
slow set-up, named by ``LEV_FAULT_DELAY_S=SECTION:SECONDS[,SECTION:SECONDS...]`` (unset in
real runs)."""

from __future__ import annotations

import os

__all__ = ["fault_delay_s"]


def fault_delay_s(section: str) -> float:
    """Seconds ``LEV_FAULT_DELAY_S`` asks ``section`` to be delayed by (0: none)."""
    for item in os.environ.get("LEV_FAULT_DELAY_S", "").split(","):
        name, _, seconds = item.partition(":")
        if name == section:
            return float(seconds)
    return 0.0
