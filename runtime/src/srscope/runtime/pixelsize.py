"""One pixel-size tolerance policy for every front end (``srrun``, live acquisition, napari).

A model is trained for one input pixel size (one magnification). Images at another pixel size
show it structures at the wrong scale in pixels, and its output stops being trustworthy well before
it looks obviously wrong. Small calibration differences (a 2 % off objective, a rounded config
value) are harmless, so the policy has two thresholds on the relative difference:

* above :data:`WARN` (5 %): run, but say so (a note in the run summary or output metadata);
* above :data:`REFUSE` (20 %): do not run this model on these images unless the user says so
  explicitly (``--ignore-pixel-size``), because the output would look plausible and be wrong.

Kept in its own module so that the numbers exist once; front ends decide how to report a verdict.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

#: Relative pixel-size difference above which a front end warns.
WARN = 0.05
#: Relative pixel-size difference above which a front end refuses (unless told to ignore it).
REFUSE = 0.20


class Verdict(str, enum.Enum):
    OK = "ok"
    WARN = "warn"
    REFUSE = "refuse"


@dataclass(frozen=True)
class PixelSizeCheck:
    """The verdict for one image (or stream of frames) against one model."""

    verdict: Verdict
    #: the largest relative difference over the axes given
    relative_difference: float
    #: one line for the user when the verdict is not OK, else ``None``
    message: str | None

    @property
    def refused(self) -> bool:
        return self.verdict is Verdict.REFUSE


def check_pixel_size(actual_um: float | Sequence[float], expected_um: float, *, model: str,
                     what: str = "input", ignore: bool = False) -> PixelSizeCheck:
    """Compare ``actual_um`` (one size, or one per axis) with a model's ``expected_um``.

    ``model`` names the model in the message; ``what`` names the images ("input", "frames").
    With ``ignore`` a difference above :data:`REFUSE` is only a warning.
    """
    sizes = [float(actual_um)] if isinstance(actual_um, (int, float)) else [float(s) for s in actual_um]
    if not sizes or any(not s > 0 for s in sizes) or not expected_um > 0:
        raise ValueError(f"pixel sizes must be positive, got {sizes} and {expected_um}")
    worst = max(abs(s / expected_um - 1.0) for s in sizes)
    shown = "x".join(f"{s:g}" for s in dict.fromkeys(sizes))
    text = f"{what} pixel size {shown} µm differs from model {model!r}'s {expected_um:g} µm by {worst:.0%}"
    if worst > REFUSE and not ignore:
        return PixelSizeCheck(Verdict.REFUSE, worst, f"{text}; use a model trained for this magnification "
                                                     "(or --ignore-pixel-size)")
    if worst > WARN:
        return PixelSizeCheck(Verdict.WARN, worst, f"{text}: the output may be unreliable")
    return PixelSizeCheck(Verdict.OK, worst, None)
