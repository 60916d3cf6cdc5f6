"""Which planes of an ``srrun`` job are finished, recorded so a killed job can resume.

One small marker file per plane, created (by atomic rename) only *after* that plane's pixels are
in the store. A plane whose marker exists is therefore complete; a plane killed half-way has no
marker and is simply computed again. Markers also carry per-plane facts (clipped pixel counts) so
the final report covers planes computed by earlier, interrupted runs. Files rather than one log so
that many dask workers can record planes concurrently without locking.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

RECORD_DIR = ".srrun-progress"


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

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
