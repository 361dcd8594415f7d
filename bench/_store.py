"""The benchmarks' JSON result files: read one, and change one while other streams may too."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: every tree-strategy run's measured schedules, one file per run under its CPU model, written by
#: bench/ablation.py and read by the warm-start rows, bench/costmodel.py, retime and interference
#: (not in git: large)
RECORDS = Path(__file__).resolve().parent / "out" / "records"


def read(path: Path, empty: Any) -> Any:
    """The file's content, or ``empty`` before its first row."""
    return json.loads(path.read_text()) if path.exists() else empty


def update(path: Path, empty: Any, change: Callable[[Any], Any]) -> None:
    """Write ``change`` of the file's content. Two streams (one per core) may save at once, so the
    read-modify-write holds a lock and re-reads under it; the file is replaced whole, never half
    written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = change(read(path, empty))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
