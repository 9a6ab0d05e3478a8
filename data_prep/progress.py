"""Progress lines for long data work that runs in logs (Slurm, CI), not on a terminal.

One line every ``every_s`` seconds, e.g.::

    progress: 12/40 units (30 %), 1,234,567 docs, 310,000,000 tokens, 8,100 docs/s,
    2,030,000 tokens/s, ETA 3m27s

and a closing ``summary()``. The ETA extrapolates the done fraction of a known total.
"""

from __future__ import annotations

import logging
import time

__all__ = ["RateLog", "format_duration"]


def format_duration(seconds: float) -> str:
    """``3h02m``, ``3m27s`` or ``42s``."""
    s = int(max(seconds, 0))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class RateLog:
    """Counters with rates, logged at most every ``every_s`` seconds.

    Args:
        log: Where lines go (``log.info``).
        unit: What ``total`` counts (``units``, ``MB``, ``shards``).
        total: The amount of ``unit`` the whole job does, for the fraction and ETA; None
            when unknown.
        every_s: Seconds between lines; None or <= 0 disables the periodic lines.
        counters: Names of the extra counters to report with a rate (``docs``, ``tokens``).
    """

    def __init__(self, log: logging.Logger, unit: str, total: float | None,
                 every_s: float | None, counters: tuple[str, ...] = ()) -> None:
        self.log, self.unit, self.total = log, unit, total
        self.every_s = every_s if every_s and every_s > 0 else None
        self.done = 0.0
        self.counts = dict.fromkeys(counters, 0)
        self.t0 = self._last = time.monotonic()

    def add(self, done: float = 0.0, **counts: int) -> None:
        """Advance ``done`` (in ``unit``) and the named counters; log if a line is due."""
        self.done += done
        for name, n in counts.items():
            self.counts[name] += n
        now = time.monotonic()
        if self.every_s is not None and now - self._last >= self.every_s:
            self._last = now
            self.log.info("progress: %s", self.line(now))

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.t0, 1e-9)

    def rate(self, name: str) -> float:
        """Per-second rate of counter ``name`` so far."""
        return self.counts[name] / self.elapsed

    def line(self, now: float | None = None) -> str:
        """Done of total, counters, rates and ETA as one string."""
        dt = max((now or time.monotonic()) - self.t0, 1e-9)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            parts = [f"{self.done:,.0f}/{self.total:,.0f} {self.unit} ({100 * frac:.0f} %)"]
        else:
            parts = [f"{self.done:,.0f} {self.unit}"]
        parts += [f"{n:,} {name}" for name, n in self.counts.items()]
        parts += [f"{n / dt:,.0f} {name}/s" for name, n in self.counts.items()]
        if self.total:
            eta = (format_duration((self.total - self.done) * dt / self.done)
                   if self.done else "unknown")
            parts.append(f"ETA {eta}")
        return ", ".join(parts)

    def summary(self) -> str:
        """Totals and mean rates over the whole run, plus its wall time."""
        parts = [f"{n:,} {name} ({n / self.elapsed:,.0f}/s)" for name, n in self.counts.items()]
        return ", ".join([*parts, f"{self.done:,.0f} {self.unit}",
                          f"in {format_duration(self.elapsed)}"])
