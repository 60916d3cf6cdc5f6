"""Write whole in-memory splits in the prepared-dataset format (:mod:`srscope.training.data.dataset`).

``srtrain prepare`` (the data package) is the normal producer and streams patches field by field
through :class:`~srscope.training.data.dataset.DatasetWriter`. This adapter feeds the same writer
from ready-made arrays, so the GAN package can build small datasets straight from simulated pairs
(tests, the shipped CPU models) without the registration pipeline, in exactly the same format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from srscope.training.data.dataset import SPLITS, DatasetWriter


def write_dataset(path: str | Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], attrs: dict[str, Any],
                  fov: dict[str, np.ndarray] | None = None) -> Path:
    """``splits[name] = (lr_on_hr_grid, hr)``, each float32 ``(N, P, P)`` and already normalised."""
    path = Path(path)
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise ValueError(f"dataset needs splits {SPLITS}; missing {missing}")
    shapes = {lr.shape[1:] for lr, _ in splits.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"all splits must hold (N, P, P) patches of one size, got {sorted(shapes)}")
    writer = DatasetWriter(path, next(iter(shapes))[0], overwrite=True)
    for name, (lr, hr) in splits.items():
        if lr.shape != hr.shape or lr.ndim != 3:
            raise ValueError(f"split {name}: lr {lr.shape} and hr {hr.shape} must be matching (N,P,P)")
        ids = np.asarray(fov[name] if fov and name in fov else np.zeros(len(lr)), dtype=np.int32)
        for field_of_view in np.unique(ids):
            mask = ids == field_of_view
            writer.append(name, lr[mask], hr[mask], int(field_of_view))
    writer.finish(attrs)
    return path
