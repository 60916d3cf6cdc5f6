"""Test and validation pairs for evaluation: simulated on the fly, or read from a directory.

Simulated pairs are drawn with ``misregister=False``: the evaluation asks how well each method
recovers the ground truth, and a residual misregistration would penalise every method (and the
sharpest ones most) for an error that is not theirs. Real pairs must be registered beforehand
(``srtrain prepare``). The validation pair that tunes the Lucy–Richardson baseline is drawn
from a seed range disjoint from the test seeds, so the baseline is never tuned on test images.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

#: Seeds of validation pairs start here; test seeds are ``seed, seed+1, ...`` below it.
VALIDATION_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class EvalPair:
    """One registered low/high-resolution pair in camera counts, with its calibration."""

    name: str
    lr: np.ndarray
    hr: np.ndarray
    lr_pixel_size_um: float
    hr_pixel_size_um: float
    emission_wavelength_nm: float | None = None
    background_lr: float | None = None
    background_hr: float | None = None

    @property
    def scale(self) -> int:
        s = self.lr_pixel_size_um / self.hr_pixel_size_um
        if abs(s - round(s)) > 1e-3 or round(s) < 1:
            raise ValueError(f"{self.name}: LR/HR pixel sizes {self.lr_pixel_size_um}/{self.hr_pixel_size_um} "
                             "are not an integer ratio")
        return round(s)

    def center_crop(self, hr_size: int) -> EvalPair:
        """The central ``hr_size``² ground-truth region and the LR pixels that cover it.

        Lets the LR parameter search run on a bounded region whatever the validation image size.
        """
        s = self.scale
        size = min(hr_size, self.hr.shape[0], self.hr.shape[1], self.lr.shape[0] * s, self.lr.shape[1] * s)
        size -= size % s
        r0 = ((self.lr.shape[0] * s - size) // 2) // s
        c0 = ((self.lr.shape[1] * s - size) // 2) // s
        lr = self.lr[r0: r0 + size // s, c0: c0 + size // s]
        hr = self.hr[r0 * s: r0 * s + size, c0 * s: c0 * s + size]
        return replace(self, name=f"{self.name}[center {size}px]", lr=lr, hr=hr)

    def lr_background(self) -> float:
        """The known background, else a low percentile (the paper subtracts an empty-region mean)."""
        if self.background_lr is not None:
            return float(self.background_lr)
        return float(np.percentile(self.lr, 1.0))


def simulated_pairs(modality: str, structure: str, n: int, *, seed: int = 0,
                    hr_shape: tuple[int, int] = (512, 512)) -> Iterator[EvalPair]:
    """``n`` aligned simulated pairs (seeds ``seed … seed+n-1``), generated lazily."""
    from srscope.training.data.simulate import (
        simulate_pair,  # only needed for simulated sets
    )

    for k in range(n):
        pair = simulate_pair(modality, structure, seed=seed + k, hr_shape=hr_shape, misregister=False)
        yield EvalPair(
            name=f"{modality}-{structure}-seed{seed + k}",
            lr=np.asarray(pair.lr, dtype=np.float32), hr=np.asarray(pair.hr, dtype=np.float32),
            lr_pixel_size_um=float(pair.lr_pixel_size_um), hr_pixel_size_um=float(pair.hr_pixel_size_um),
            emission_wavelength_nm=float(pair.emission_wavelength_nm),
            background_lr=float(pair.background_lr), background_hr=float(pair.background_hr),
        )


def simulated_validation_pair(modality: str, structure: str, *, seed: int = 0,
                              hr_shape: tuple[int, int] = (512, 512)) -> EvalPair:
    """A pair for tuning baselines, from a seed no test pair uses."""
    pair = next(simulated_pairs(modality, structure, 1, seed=VALIDATION_SEED_OFFSET + seed, hr_shape=hr_shape))
    return pair


_PAIR_PATTERN = re.compile(r"^(?P<stem>.+)_(?P<kind>lr|hr)(?P<ext>\.ome\.tiff?|\.tiff?|\.ome\.zarr|\.zarr)$",
                           re.IGNORECASE)


def _read_plane(path: Path) -> tuple[np.ndarray, float]:
    from srscope.runtime.io import read_image

    image = read_image(path)
    data = np.asarray(image.data)
    sizes = image.sizes
    if any(sizes.get(ax, 1) != 1 for ax in "tcz"):
        raise ValueError(f"{path.name}: evaluation needs single 2D planes, got axes {sizes}")
    return data.reshape(data.shape[-2:]).astype(np.float32), float(image.pixel_size_um[-1])


def directory_pairs(directory: Path, *, emission_wavelength_nm: float | None = None) -> list[EvalPair]:
    """Pairs ``<name>_lr.<ext>`` + ``<name>_hr.<ext>`` (OME-TIFF or OME-Zarr) in ``directory``.

    Pixel sizes come from the files' metadata, so a pair written without calibration is refused
    rather than evaluated on a guessed grid. ``emission_wavelength_nm`` (the channel's, e.g. the
    paper's 630/532/450 nm) sets the deconvolution baselines' PSF.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"test data directory not found: {directory}")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(directory.iterdir()):
        match = _PAIR_PATTERN.match(path.name)
        if match:
            found.setdefault(match["stem"], {})[match["kind"].lower()] = path
    pairs = []
    for stem, files in sorted(found.items()):
        if set(files) != {"lr", "hr"}:
            raise ValueError(f"{directory}: {stem} has no matching {'hr' if 'lr' in files else 'lr'} file")
        lr, lr_px = _read_plane(files["lr"])
        hr, hr_px = _read_plane(files["hr"])
        pairs.append(EvalPair(name=stem, lr=lr, hr=hr, lr_pixel_size_um=lr_px, hr_pixel_size_um=hr_px,
                              emission_wavelength_nm=emission_wavelength_nm))
    if not pairs:
        raise ValueError(f"{directory}: no <name>_lr / <name>_hr image pairs found")
    return pairs
