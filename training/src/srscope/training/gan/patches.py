"""Training batches from a prepared srscope dataset (zarr v3 group written by ``srtrain prepare``).

The format (owned by the data package): ``attrs["srscope_dataset"]`` holds modalities, pixel sizes
and the intensity normalisation; arrays ``{train,val,test}/{lr,hr}`` are float32 ``(N, P, P)``,
normalised, with the LR already resampled to the HR grid and registered. We read the zarr group
directly (the format is the contract) so training works with any writer of that format.

Batches are a pure function of ``(seed, rank, iteration)``: a resumed run draws exactly the batches
the uninterrupted run would have drawn, and each DDP rank draws different ones, with no sampler
state to checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from srscope.training.data.dataset import ATTRS_KEY, SPLITS


class DatasetFormatError(ValueError):
    """The path is not a prepared srscope dataset, or a split is missing or malformed."""


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The dataset's ``srscope_dataset`` attributes (modalities, pixel sizes, normalisation...)."""
    group = _open(path)
    attrs = group.attrs.get(ATTRS_KEY)
    if not isinstance(attrs, dict):
        raise DatasetFormatError(f"{path}: no '{ATTRS_KEY}' attributes; make it with `srtrain prepare`")
    return dict(attrs)


def _open(path: str | Path) -> zarr.Group:
    path = Path(path)
    if not path.exists():
        raise DatasetFormatError(f"dataset not found: {path}")
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises several types for "not a group"
        raise DatasetFormatError(f"{path} is not a zarr group ({exc.__class__.__name__})") from None


def load_split(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(lr, hr)`` float32 arrays ``(N, P, P)`` of one split, read fully into memory."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    group = _open(path)
    try:
        lr = np.asarray(group[f"{split}/lr"][...], dtype=np.float32)
        hr = np.asarray(group[f"{split}/hr"][...], dtype=np.float32)
    except KeyError:
        raise DatasetFormatError(f"{path}: split '{split}' lacks lr/hr arrays") from None
    if lr.ndim != 3 or lr.shape != hr.shape or len(lr) == 0:
        raise DatasetFormatError(f"{path}: {split} lr {lr.shape} / hr {hr.shape} are not matching (N,P,P) stacks")
    return lr, hr


@dataclass
class PatchSampler:
    """Random ``patch×patch`` crops with random flips / 90° rotations from in-memory pairs."""

    lr: torch.Tensor  # (N, P, P) float32
    hr: torch.Tensor
    patch: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lr.shape[-1] < self.patch or self.lr.shape[-2] < self.patch:
            raise DatasetFormatError(
                f"dataset patches {tuple(self.lr.shape[-2:])} are smaller than the training patch {self.patch}"
            )

    @classmethod
    def from_dataset(cls, path: str | Path, split: str, patch: int, seed: int = 0) -> PatchSampler:
        lr, hr = load_split(path, split)
        return cls(torch.from_numpy(lr), torch.from_numpy(hr), patch, seed)

    def batch(self, iteration: int, size: int, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lr, hr)`` of shape ``(size, 1, patch, patch)`` for this iteration and DDP rank."""
        g = torch.Generator().manual_seed(_mix(self.seed, rank, iteration))
        n, h, w = self.lr.shape
        idx = torch.randint(n, (size,), generator=g)
        ys = torch.randint(h - self.patch + 1, (size,), generator=g)
        xs = torch.randint(w - self.patch + 1, (size,), generator=g)
        rots = torch.randint(4, (size,), generator=g)
        flips = torch.randint(2, (size,), generator=g)
        lr_out, hr_out = [], []
        for i, y, x, r, f in zip(idx.tolist(), ys.tolist(), xs.tolist(), rots.tolist(), flips.tolist()):
            pair = torch.stack([self.lr[i, y:y + self.patch, x:x + self.patch],
                                self.hr[i, y:y + self.patch, x:x + self.patch]])
            pair = torch.rot90(pair, r, dims=(1, 2))
            if f:
                pair = torch.flip(pair, dims=(2,))
            lr_out.append(pair[0])
            hr_out.append(pair[1])
        return torch.stack(lr_out)[:, None], torch.stack(hr_out)[:, None]


def _mix(seed: int, rank: int, iteration: int) -> int:
    """A 63-bit seed from three integers (SplitMix64-style), so nearby inputs give unrelated streams."""
    z = (seed * 0x9E3779B97F4A7C15 + rank * 0xBF58476D1CE4E5B9 + iteration * 0x94D049BB133111EB) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (z ^ (z >> 31)) & (2**63 - 1)


def central_crop(stack: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the last two axes to the largest multiple of ``multiple`` (U-Net pooling needs it)."""
    h, w = stack.shape[-2:]
    ch, cw = h - h % multiple, w - w % multiple
    if ch == 0 or cw == 0:
        raise DatasetFormatError(f"patches {h}×{w} are smaller than the network's size multiple {multiple}")
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return stack[..., y0:y0 + ch, x0:x0 + cw]
