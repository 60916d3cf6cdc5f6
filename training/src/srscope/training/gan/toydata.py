"""A seconds-to-make toy dataset (blurred points and lines) in the prepared-dataset format.

For tests and smoke runs of the training/export machinery only: it has the right format and a
learnable blur-to-sharp mapping, but none of the optics of the real simulator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .dataset_writer import write_dataset


def toy_images(n: int, size: int, rng: np.random.Generator, blur_sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    hr = np.zeros((n, size, size), np.float32)
    for img in hr:
        pts = rng.integers(0, size, (size // 4, 2))
        img[pts[:, 0], pts[:, 1]] = rng.uniform(0.5, 1.0, len(pts))
        for _ in range(3):
            y0, x0, y1, x1 = rng.integers(0, size, 4)
            t = np.linspace(0, 1, 2 * size)
            img[(y0 + t * (y1 - y0)).astype(int), (x0 + t * (x1 - x0)).astype(int)] = 0.8
    hr = ndimage.gaussian_filter(hr, (0, 0.7, 0.7)) * 3.0
    lr = ndimage.gaussian_filter(hr, (0, blur_sigma, blur_sigma))
    return lr.astype(np.float32), hr.astype(np.float32)


def write_toy_dataset(path: str | Path, *, n_train: int = 24, n_val: int = 8, n_test: int = 8, size: int = 64,
                      seed: int = 0, scale: int = 2, **attr_overrides: object) -> Path:
    rng = np.random.default_rng(seed)
    splits = {name: toy_images(n, size, rng) for name, n in (("train", n_train), ("val", n_val), ("test", n_test))}
    attrs = {
        "version": 1, "input_modality": "toy-blurred", "output_modality": "toy-sharp", "structures": ["toy"],
        "input_pixel_size_um": 0.1 * scale, "output_pixel_size_um": 0.1, "emission_wavelength_nm": 530.0,
        "normalization": {"offset": 100.0, "scale": 1000.0}, "denormalization": {"offset": 100.0, "scale": 2000.0},
        "patch_size": size, "splits": {k: len(v[0]) for k, v in splits.items()}, "registration": "none (toy)",
    }
    attrs.update(attr_overrides)
    return write_dataset(path, splits, attrs)
