"""Which planes of a store are finished, and who is writing it: the record behind
:class:`srscope.runtime.io.store.PlaneStore` (``mark_done``/``done``/``lock``), so a killed job can resume.

One small marker file per plane, created (by atomic rename) only *after* that plane's pixels are
in the store. A plane whose marker exists is therefore complete; a plane killed half-way has no
marker and is simply computed again. Markers also carry per-plane facts (clipped pixel counts) so
the final report covers planes computed by earlier, interrupted runs. Files rather than one log so
that many dask workers can record planes concurrently without locking.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from srscope.runtime.io.faults import fault_point

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs on one output are not detected
    fcntl = None  # type: ignore[assignment]

RECORD_DIR = ".srrun-progress"


class RecordBusyError(RuntimeError):
    """Another process holds the job's lock (two srrun runs on one output at once)."""


class ProgressRecord:
    """Per-plane completion markers kept inside the output store while the job runs."""

    def __init__(self, store: str | Path) -> None:
        self.directory = Path(store) / RECORD_DIR

    def _marker(self, number: int) -> Path:
        return self.directory / f"plane-{number:09d}.json"

    def mark_done(self, number: int, facts: dict) -> None:
        """Record plane ``number`` as finished; call only after its pixels are written."""
        self.directory.mkdir(exist_ok=True)
        tmp = self.directory / f".{number}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(facts))
        fault_point("record.mark")
        os.replace(tmp, self._marker(number))

    def done(self) -> dict[int, dict]:
        """Finished plane numbers → the facts recorded with them."""
        if not self.directory.is_dir():
            return {}
        finished: dict[int, dict] = {}
        for marker in self.directory.glob("plane-*.json"):
            try:
                finished[int(marker.stem.split("-")[1])] = json.loads(marker.read_text())
            except (ValueError, OSError):
                continue  # unreadable marker: treat the plane as not done
        return finished

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock for the job's driver; the OS drops it when the process dies.

        So a killed run never blocks its rerun, while two live runs on one output refuse to mix.
        """
        if fcntl is None:
            yield
            return
        self.directory.mkdir(exist_ok=True)
        with open(self.directory / "lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise RecordBusyError(str(self.directory.parent)) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
