"""The prepared-dataset format: the contract between ``srtrain prepare`` and GAN training.

A zarr v3 group::

    OUT.zarr/
      zarr.json            attrs["srscope_dataset"] = {version, modalities, pixel sizes, emission,
                                                      normalization, denormalization, patch_size,
                                                      splits, registration, ...}
      {train,val,test}/lr  float32 (N, P, P), normalised network input (LR already on the HR grid)
      {train,val,test}/hr  float32 (N, P, P), normalised target
      {train,val,test}/fov int32 (N,), field-of-view index (splits never share a FOV)

Normalisation is global (one offset/scale per side, from the training split) so that the network
output stays quantitative: ``hr_counts = output * denormalization.scale + denormalization.offset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

FORMAT_VERSION = 1
ATTRS_KEY = "srscope_dataset"
SPLITS = ("train", "val", "test")


class DatasetWriter:
    """Appends patches split by split; arrays grow as FOVs arrive, so a crash keeps what was
    written and memory never holds more than one field of view."""

    def __init__(self, path: Path, patch_size: int, *, overwrite: bool = False, chunk_patches: int = 64) -> None:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists (use --overwrite to replace it)")
        self.path = path
        self.patch_size = int(patch_size)
        self.root = zarr.open_group(str(path), mode="w", zarr_format=3)
        self._arrays: dict[str, dict[str, Any]] = {}
        p = self.patch_size
        for split in SPLITS:
            g = self.root.create_group(split)
            self._arrays[split] = {
                "lr": g.create_array("lr", shape=(0, p, p), chunks=(chunk_patches, p, p), dtype="float32"),
                "hr": g.create_array("hr", shape=(0, p, p), chunks=(chunk_patches, p, p), dtype="float32"),
                "fov": g.create_array("fov", shape=(0,), chunks=(4096,), dtype="int32"),
            }

    def append(self, split: str, lr: np.ndarray, hr: np.ndarray, fov: int) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        if lr.shape != hr.shape or lr.ndim != 3 or lr.shape[1:] != (self.patch_size, self.patch_size):
            raise ValueError(f"patch stacks must be (N, {self.patch_size}, {self.patch_size}), got {lr.shape}, {hr.shape}")
        if len(lr) == 0:
            return
        arrays = self._arrays[split]
        arrays["lr"].append(lr.astype(np.float32), axis=0)
        arrays["hr"].append(hr.astype(np.float32), axis=0)
        arrays["fov"].append(np.full(len(lr), fov, dtype=np.int32), axis=0)

    def finish(self, attrs: dict[str, Any]) -> None:
        """Write the attributes last: a dataset without them is recognisably unfinished."""
        self.root.attrs[ATTRS_KEY] = _jsonable(attrs)


def dataset_attrs(path: str | Path) -> dict[str, Any]:
    """The ``srscope_dataset`` attributes (normalisation, pixel sizes, splits, registration)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset")
    root = zarr.open_group(str(path), mode="r")
    attrs = root.attrs.asdict().get(ATTRS_KEY)
    if attrs is None:
        raise ValueError(f"{path}: not a finished srscope dataset (no {ATTRS_KEY!r} attributes)")
    if attrs.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: dataset version {attrs.get('version')} is not supported (expected {FORMAT_VERSION})")
    return attrs


def open_split(path: str | Path, split: str) -> tuple[zarr.Array, zarr.Array, zarr.Array]:
    """Lazy (lr, hr, fov) zarr arrays of one split, for training loops that page patches in."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    dataset_attrs(path)
    root = zarr.open_group(str(path), mode="r")
    return root[f"{split}/lr"], root[f"{split}/hr"], root[f"{split}/fov"]


def load_split(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(lr, hr) float32 (N, P, P) normalised patches of one split, in memory."""
    lr, hr, _ = open_split(path, split)
    return np.asarray(lr[...]), np.asarray(hr[...])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
