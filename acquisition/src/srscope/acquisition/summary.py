"""The run summary: what happened to every frame, and how fast.

Kept separate from the pipeline so the same numbers are printed by the CLI, stored in the
OME-Zarr provenance and returned by benchmarks, with one definition of each quantity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Flagged frames listed by :meth:`RunSummary.format` before "and N more".
FLAGGED_SHOWN = 5


def _percentile_ms(values_s: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values_s) * 1e3, q)) if values_s else None


def _mean_ms(values_s: list[float]) -> float | None:
    return float(np.mean(values_s) * 1e3) if values_s else None


@dataclass
class RunSummary:
    """Frame accounting for one live run. Every frame handed to the hook lands in exactly one of
    ``frames_super_resolved``, ``frames_passed_through`` (channel has no model), ``frames_skipped``
    (dropped by the ``drop-oldest`` policy), ``frames_failed`` (model or writer error) or
    ``frames_unprocessed`` (still queued when the run was aborted without draining).
    """

    frames_in: int = 0
    frames_super_resolved: int = 0
    frames_passed_through: int = 0
    frames_skipped: int = 0
    frames_failed: int = 0
    frames_unprocessed: int = 0
    status: str = "running"
    policy: str = "block"
    wall_s: float = 0.0
    latency_mean_ms: float | None = None
    latency_p95_ms: float | None = None
    callback_median_ms: float | None = None
    callback_p95_ms: float | None = None
    callback_max_ms: float | None = None
    blocked_s: float = 0.0
    inference_ms_per_frame: float | None = None
    write_ms_per_frame: float | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_frames: list[dict[str, Any]] = field(default_factory=list)
    failed_frames: list[dict[str, Any]] = field(default_factory=list)
    #: per channel, the ``series`` intensity mapping latched on its first frame (see srscope.runtime.intensity)
    intensity: dict[str, Any] = field(default_factory=dict)
    #: frames whose SR plane was scored by the consistency check (their model's card carries a
    #: degradation model, see srscope.runtime.consistency), and how many of them were flagged
    frames_checked: int = 0
    frames_flagged: int = 0
    #: per checked frame, in the order written: position, t, channel, z, rsp, rse, error_fraction,
    #: flagged, reasons
    frame_scores: list[dict[str, Any]] = field(default_factory=list)
    #: the flagged frames' (position, t, c, channel, z) and reasons, also in the store's metadata
    flagged_frames: list[dict[str, Any]] = field(default_factory=list)
    consistency_ms_per_frame: float | None = None

    @property
    def sr_frames_per_s(self) -> float | None:
        """Sustained throughput over the whole run (first frame in to last frame written)."""
        return self.frames_super_resolved / self.wall_s if self.wall_s > 0 else None

    @property
    def accounted(self) -> int:
        return (self.frames_super_resolved + self.frames_passed_through + self.frames_skipped
                + self.frames_failed + self.frames_unprocessed)

    def set_latencies(self, latencies_s: list[float], callbacks_s: list[float]) -> None:
        self.latency_mean_ms = _mean_ms(latencies_s)
        self.latency_p95_ms = _percentile_ms(latencies_s, 95)
        self.callback_median_ms = _percentile_ms(callbacks_s, 50)
        self.callback_p95_ms = _percentile_ms(callbacks_s, 95)
        self.callback_max_ms = float(max(callbacks_s) * 1e3) if callbacks_s else None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sr_frames_per_s"] = self.sr_frames_per_s
        return out

    def format(self) -> str:
        """Human-readable multi-line summary, printed at the end of a run."""

        def ms(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f} ms"

        fps = self.sr_frames_per_s
        lines = [
            f"live SR run {self.status} (policy {self.policy}, {self.wall_s:.2f} s)",
            f"  frames in:              {self.frames_in}",
            (f"  frames super-resolved:  {self.frames_super_resolved}"
             + (f"  ({fps:.2f} frames/s sustained)" if fps else "")),
            f"  frames skipped:         {self.frames_skipped}",
            f"  frames passed through:  {self.frames_passed_through} (channel without a model; raw only)",
            f"  frames failed:          {self.frames_failed}",
            f"  frames unprocessed:     {self.frames_unprocessed}",
            f"  SR latency:             mean {ms(self.latency_mean_ms)}, p95 {ms(self.latency_p95_ms)}",
            (f"  hook callback time:     median {ms(self.callback_median_ms)}, p95 {ms(self.callback_p95_ms)},"
             f" max {ms(self.callback_max_ms)}"),
        ]
        if self.inference_ms_per_frame is not None:
            lines.append(f"  SR worker per frame:    inference {ms(self.inference_ms_per_frame)},"
                         f" OME-Zarr write {ms(self.write_ms_per_frame)}")
        if self.frames_checked:
            lines.append(f"  consistency check:      {self.frames_flagged} of {self.frames_checked} frames flagged"
                         + (" (outside what the model was calibrated on)" if self.frames_flagged else "")
                         + (f", {ms(self.consistency_ms_per_frame)} per frame"
                            if self.consistency_ms_per_frame is not None else ""))
            for frame in self.flagged_frames[:FLAGGED_SHOWN]:
                lines.append(f"    flagged: position {frame['position']} t={frame['t']} {frame['channel']} "
                             f"z={frame['z']} ({', '.join(frame['reasons'])})")
            if self.frames_flagged > FLAGGED_SHOWN:
                lines.append(f"    ... and {self.frames_flagged - FLAGGED_SHOWN} more (in the store's srscope.consistency)")
        if self.blocked_s > 0:
            lines.append(f"  acquisition blocked by a full queue for {self.blocked_s:.3f} s in total")
        lines += [f"  error: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
