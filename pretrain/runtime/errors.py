"""One clean line per job for the errors a user can fix, whatever the launcher.

Every rank validates the same config and meets the same data, so every rank raises the
same error; printing it on each would repeat it N times. ``report`` prints it once (rank
0, to stderr) and returns the documented exit code, which srun and mpiexec pass through
(every rank exits with it). torchrun exits 1 whatever its workers return; its failure
summary prints each worker's error file, so every rank writes the message there
(``TORCHELASTIC_ERROR_FILE``) and the summary names the error instead of "To enable
traceback see ...".
"""

from __future__ import annotations

import json
import os
import sys
import time

from pretrain.runtime.launcher import detect_rank_layout

__all__ = ["report"]


def report(tool: str, exc: BaseException, code: int) -> int:
    """Print ``TOOL: error: Type: message (exit CODE)`` once per job; return ``code``."""
    line = f"{type(exc).__name__}: {exc}"
    if detect_rank_layout().rank == 0 or os.environ.get("LEV_LOG_ALL_RANKS") == "1":
        print(f"{tool}: error: {line} (exit {code})", file=sys.stderr, flush=True)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        record = {"message": {"message": line, "extraInfo": {
            "py_callstack": f"{line} (exit {code}; torchrun itself exits 1)",
            "timestamp": str(int(time.time()))}}}
        try:
            with open(error_file, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
        except OSError:
            pass  # the console line above is the message; the file only helps torchrun
    return code
