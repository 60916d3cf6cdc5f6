"""Write arrays in the prepared-dataset format that :mod:`.patches` reads.

``srtrain prepare`` (the data package) is the normal producer. This writer exists so the GAN
package can build small datasets straight from simulated pairs (tests, the shipped CPU models)
in exactly the same format, without depending on the registration pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .patches import ATTRS_KEY, SPLITS


def write_dataset(path: str | Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], attrs: dict[str, Any],
                  fov: dict[str, np.ndarray] | None = None) -> Path:
    """``splits[name] = (lr_on_hr_grid, hr)``, each float32 ``(N, P, P)`` and already normalised."""
    path = Path(path)
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise ValueError(f"dataset needs splits {SPLITS}; missing {missing}")
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, (lr, hr) in splits.items():
        lr = np.ascontiguousarray(lr, dtype=np.float32)
        hr = np.ascontiguousarray(hr, dtype=np.float32)
        if lr.shape != hr.shape or lr.ndim != 3:
            raise ValueError(f"split {name}: lr {lr.shape} and hr {hr.shape} must be matching (N,P,P)")
        sub = group.require_group(name)
        chunks = (min(len(lr), 16), *lr.shape[1:])
        sub.create_array("lr", shape=lr.shape, dtype="float32", chunks=chunks)[...] = lr
        sub.create_array("hr", shape=hr.shape, dtype="float32", chunks=chunks)[...] = hr
        ids = np.asarray(fov[name] if fov and name in fov else np.zeros(len(lr)), dtype=np.int32)
        sub.create_array("fov", shape=ids.shape, dtype="int32")[...] = ids
    group.attrs[ATTRS_KEY] = attrs
    return path
