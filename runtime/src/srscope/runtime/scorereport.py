"""A run's per-plane consistency scores, gathered for the output's metadata and one warning line.

Each plane's score (:func:`srscope.runtime.consistency.score_plane`) is recorded by the process
that computed the plane, in the plane's done-marker (``info["consistency"]``, see
:func:`srscope.runtime.planework.process_plane`). This module reads them back from those facts,
whichever process or earlier run wrote them (local, dask worker, a killed run resumed), and turns
them into what the user sees: a JSON record stored with the output (``srscope.metadata.consistency``
of an OME-Zarr, the OME-TIFF's srscope metadata) and a one-line warning naming the flagged planes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from srscope.runtime.planes import Plane

#: Key of the record in the output's srscope metadata (and in ``srrun --log-json``).
METADATA_KEY = "consistency"
#: Flagged planes named in the warning line before it says "and N more".
SHOWN_IN_WARNING = 5


def _rounded(value: Any) -> float:
    """Six significant digits: enough to compare planes, and a small ``zarr.json`` for long runs."""
    return float(f"{float(value):.6g}")


@dataclass(frozen=True)
class PlaneConsistency:
    """One scored plane: where it is, its scores and, when flagged, why."""

    plane: int                  #: plane number (C order over the leading axes)
    index: dict[str, int]       #: its position, e.g. ``{"t": 3, "c": 0, "z": 0}``
    rsp: float
    rse: float
    error_fraction: float
    flagged: bool
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"t=3 c=0 z=0"`` (``"the image"`` for a single 2D plane)."""
        return " ".join(f"{a}={i}" for a, i in self.index.items()) or "the image"

    def as_dict(self) -> dict[str, Any]:
        return {"plane": self.plane, "index": dict(self.index), "rsp": self.rsp, "rse": self.rse,
                "error_fraction": self.error_fraction, "flagged": self.flagged, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PlaneConsistency:
        return cls(plane=int(raw["plane"]), index={str(k): int(v) for k, v in dict(raw["index"]).items()},
                   rsp=float(raw["rsp"]), rse=float(raw["rse"]), error_fraction=float(raw["error_fraction"]),
                   flagged=bool(raw["flagged"]), reasons=tuple(str(r) for r in raw.get("reasons", ())))


@dataclass(frozen=True)
class ConsistencyReport:
    """The scores of every checked plane of one output (planes whose model has no degradation
    model, and pass-through channels, are not checked)."""

    planes_total: int
    planes: tuple[PlaneConsistency, ...]

    @property
    def checked(self) -> int:
        return len(self.planes)

    @property
    def flagged(self) -> list[PlaneConsistency]:
        return [p for p in self.planes if p.flagged]

    @classmethod
    def from_facts(cls, planes: Sequence[Plane], facts: Mapping[int, Mapping[str, Any]]) -> ConsistencyReport:
        """Gather the scores recorded in the planes' done-marker facts (plane number → facts)."""
        scored = []
        for plane in planes:
            score = facts.get(plane.number, {}).get("consistency")
            if not isinstance(score, Mapping):
                continue
            scored.append(PlaneConsistency(
                plane=plane.number, index=dict(zip(plane.axes[:-2], (int(i) for i in plane.index))),
                rsp=_rounded(score["rsp"]), rse=_rounded(score["rse"]),
                error_fraction=_rounded(score["error_fraction"]), flagged=bool(score["flagged"]),
                reasons=tuple(str(r) for r in score.get("reasons", ()))))
        return cls(planes_total=len(planes), planes=tuple(scored))

    def as_metadata(self) -> dict[str, Any]:
        """The JSON record stored with the output: counts, the flagged plane numbers, every score."""
        return {"planes_total": self.planes_total, "planes_checked": self.checked,
                "planes_flagged": len(self.flagged), "flagged": [p.plane for p in self.flagged],
                "planes": [p.as_dict() for p in self.planes]}

    @classmethod
    def from_metadata(cls, raw: Any) -> ConsistencyReport | None:
        """The report stored by :meth:`as_metadata`; ``None`` if ``raw`` is not one."""
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls(planes_total=int(raw["planes_total"]),
                       planes=tuple(PlaneConsistency.from_dict(p) for p in raw["planes"]))
        except (KeyError, TypeError, ValueError):
            return None

    def warning(self) -> str | None:
        """One line naming the flagged planes (the first :data:`SHOWN_IN_WARNING`); ``None`` if none."""
        flagged = self.flagged
        if not flagged:
            return None
        shown = ", ".join(f"{p.describe()} ({', '.join(p.reasons) or 'flagged'})" for p in flagged[:SHOWN_IN_WARNING])
        more = len(flagged) - SHOWN_IN_WARNING
        tail = f", and {more} more" if more > 0 else ""
        unchecked = self.planes_total - self.checked
        of = f"{self.checked} plane(s)" if not unchecked else f"{self.checked} checked plane(s) ({unchecked} not checked)"
        return (f"{len(flagged)} of {of} flagged by the consistency check (outside what the model was "
                f"calibrated on): {shown}{tail}; scores in the output's srscope '{METADATA_KEY}' metadata")


__all__ = ["METADATA_KEY", "ConsistencyReport", "PlaneConsistency"]
