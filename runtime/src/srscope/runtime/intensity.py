"""How camera counts become network input, and network output becomes counts again.

A model trained on one camera's fixed mapping (``(x − 300) / 2810``) has learned that camera: the
same photons seen through an sCMOS at offset 100, or at a quarter of the exposure, land elsewhere
in its input range, and its output degrades by 1–4 dB (measured on the v3.0 widefield model). So
models trained from card schema 2 on declare a **percentile** mode: each input is mapped by its own
robust range (``lo, hi`` = the card's low/high percentiles of the plane, the rule CARE uses and
the paper's per-image scaling to 0–255 approximates), and the network output is mapped back
through *the same* affine. For any gain ``a > 0`` and offset ``b``::

    enhance(a·x + b) == a·enhance(x) + b

so the output stays in the input's counts (quantitative), whatever the camera's gain, offset and
exposure. Three policies decide *which* affine a plane gets (:func:`intensity_policy`):

``plane``
    every plane its own percentiles. Each frame is treated alike, but in a time-lapse the mapping
    follows the content, so a frame whose brightest object leaves the field is scaled differently
    from its neighbour: the SR series can flicker relative to the raw one.
``series``
    one mapping for a whole run or series, latched from its first plane(s) (or given explicitly).
    Planes stay comparable to each other, as the raw data are: use it for time-lapse and
    intensity measurements; it assumes later planes resemble the first ones.
``fixed``
    the card's stored mapping (``card.normalization`` / ``card.denormalization``): the only mode of
    schema-1 cards, whose models were trained that way; for percentile cards, the training set's
    median mapping (for completeness, not a recommendation).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from srscope.runtime.card import AffineIntensity, ModelCard, ModelCardError

PolicyName = Literal["auto", "plane", "series", "fixed"]
POLICY_NAMES: tuple[str, ...] = ("auto", "plane", "series", "fixed")

#: The smallest ``hi − lo`` relative to the plane's magnitude before a plane counts as flat; a flat
#: plane (blank frame, saturated frame) gets a unit range instead of a division by ~0.
_FLAT_RELATIVE = 1e-6


def percentile_affine(image: np.ndarray | Sequence[np.ndarray], low: float, high: float) -> AffineIntensity:
    """``AffineIntensity(offset=P_low, scale=P_high − P_low)`` of one plane (or of several pooled).

    Percentiles use numpy's linear interpolation between order statistics, which commutes with
    any positive affine map of the values: the heart of the equivariance above.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    if isinstance(image, np.ndarray):
        values = image.ravel()
    else:
        values = np.concatenate([np.asarray(p).ravel() for p in image])
    lo, hi = np.percentile(values.astype(np.float64, copy=False), [low, high])
    span = float(hi - lo)
    if not np.isfinite(span) or span <= _FLAT_RELATIVE * max(abs(float(lo)), abs(float(hi)), 1e-30):
        span = max(abs(float(hi)), 1.0)
    return AffineIntensity(offset=float(lo), scale=span)


class IntensityPolicy(Protocol):
    """Chooses the input affine of each plane and the output affine that undoes it."""

    name: str

    def input_mapping(self, image: np.ndarray) -> AffineIntensity: ...

    def output_mapping(self, input_mapping: AffineIntensity) -> AffineIntensity: ...


@dataclass(frozen=True)
class FixedIntensity:
    """The card's stored mapping, the same for every plane (schema-1 behaviour)."""

    normalization: AffineIntensity
    denormalization: AffineIntensity
    name: str = "fixed"

    def input_mapping(self, image: np.ndarray) -> AffineIntensity:
        return self.normalization

    def output_mapping(self, input_mapping: AffineIntensity) -> AffineIntensity:
        return self.denormalization


@dataclass(frozen=True)
class PlaneIntensity:
    """Each plane's own percentiles in, the same affine out."""

    low: float
    high: float
    name: str = "plane"

    def input_mapping(self, image: np.ndarray) -> AffineIntensity:
        return percentile_affine(image, self.low, self.high)

    def output_mapping(self, input_mapping: AffineIntensity) -> AffineIntensity:
        return input_mapping


class SeriesIntensity:
    """One affine for a whole run, latched from the first plane(s) seen, or given explicitly.

    Thread-safe: the live pipeline may call it from a worker thread while the acquisition goes on;
    the first plane to arrive fixes the mapping for all later ones.
    """

    name = "series"

    def __init__(self, low: float, high: float, mapping: AffineIntensity | None = None) -> None:
        self.low, self.high = low, high
        self._mapping = mapping
        self._lock = threading.Lock()

    @property
    def mapping(self) -> AffineIntensity | None:
        """The latched mapping (``None`` until the first plane or :meth:`calibrate`)."""
        return self._mapping

    def calibrate(self, planes: Sequence[np.ndarray]) -> AffineIntensity:
        """Fix the mapping from the pooled percentiles of ``planes`` (e.g. the first few of a run)."""
        with self._lock:
            self._mapping = percentile_affine(list(planes), self.low, self.high)
            return self._mapping

    def input_mapping(self, image: np.ndarray) -> AffineIntensity:
        with self._lock:
            if self._mapping is None:
                self._mapping = percentile_affine(image, self.low, self.high)
            return self._mapping

    def output_mapping(self, input_mapping: AffineIntensity) -> AffineIntensity:
        return input_mapping

    def __repr__(self) -> str:
        return f"SeriesIntensity(low={self.low}, high={self.high}, mapping={self._mapping})"


def intensity_policy(card: ModelCard, choice: str | AffineIntensity | IntensityPolicy | None = "auto",
                     ) -> IntensityPolicy:
    """The policy for ``card`` and the user's ``choice``.

    ``auto`` (or ``None``) is the card's own mode; an :class:`AffineIntensity` is an explicit
    series mapping (e.g. measured once on a calibration slide); a policy object passes through.
    Per-plane and series mappings need a percentile card: a schema-1 model was trained on one
    camera's fixed mapping and would see inputs it never learned.
    """
    if choice is None:
        choice = "auto"
    if not isinstance(choice, str | AffineIntensity):
        return choice
    rule = card.intensity
    if isinstance(choice, AffineIntensity):
        if rule.mode != "percentile":
            raise ModelCardError(f"model {card.name!r} uses a fixed intensity mapping; an explicit mapping "
                                 "needs a model with percentile normalisation (card schema 2)")
        return SeriesIntensity(rule.low, rule.high, mapping=choice)
    if choice not in POLICY_NAMES:
        raise ValueError(f"intensity policy must be one of {', '.join(POLICY_NAMES)}, not {choice!r}")
    if choice == "auto":
        choice = "plane" if rule.mode == "percentile" else "fixed"
    if choice == "fixed":
        return FixedIntensity(card.normalization, card.denormalization)
    if rule.mode != "percentile":
        raise ModelCardError(f"model {card.name!r} was trained with a fixed intensity mapping (card schema 1); "
                             f"intensity {choice!r} needs a model with percentile normalisation")
    if choice == "plane":
        return PlaneIntensity(rule.low, rule.high)
    return SeriesIntensity(rule.low, rule.high)


def parse_intensity(text: str) -> str | AffineIntensity:
    """A command-line ``--intensity`` value: a policy name, or ``OFFSET:SCALE`` for an explicit mapping."""
    if text in POLICY_NAMES:
        return text
    try:
        offset, scale = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--intensity must be one of {', '.join(POLICY_NAMES)} or OFFSET:SCALE, "
                         f"not {text!r}") from None
    return AffineIntensity(offset=offset, scale=scale)
