"""A tiny fake srscope prepared dataset and test images, for the CARE peer's smoke test.

Same layout as ``srscope.training.data.dataset`` (zarr v3 group, ``{train,val,test}/{lr,hr,fov}``,
float32 ``(N, P, P)``, ``srscope_dataset`` attributes with version 1), written with zarr alone so
it runs in the peer venv. HR is a field of small Gaussian spots and short filaments; LR is HR
blurred (σ = 2.5 px) plus a little noise, on the same grid. Both are "already normalised" (the
fake normalisation attributes are the identity)::

    python fake_dataset.py OUT.zarr IMAGES_LR.npz IMAGES_HR.npz [--train 64 --patch 128 --seed 0]

IMAGES_*.npz hold two whole images (one larger than a 256² tile, one smaller) for ``predict``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import zarr
from scipy import ndimage

BLUR_SIGMA = 2.5
NOISE = 0.01


def hr_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    img = np.zeros(shape, np.float32)
    n_spots = int(shape[0] * shape[1] / 400)
    ys, xs = rng.integers(0, shape[0], n_spots), rng.integers(0, shape[1], n_spots)
    img[ys, xs] = rng.uniform(0.5, 1.0, n_spots)
    for _ in range(int(shape[0] * shape[1] / 2500)):  # short straight filaments
        y0, x0 = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        angle, length = rng.uniform(0, np.pi), rng.uniform(10, 40)
        t = np.linspace(0, length, int(length * 2))
        yy = np.clip((y0 + t * np.sin(angle)).astype(int), 0, shape[0] - 1)
        xx = np.clip((x0 + t * np.cos(angle)).astype(int), 0, shape[1] - 1)
        img[yy, xx] = np.maximum(img[yy, xx], 0.6)
    img = ndimage.gaussian_filter(img, 1.0)
    return (img / max(float(img.max()), 1e-6)).astype(np.float32)


def lr_from_hr(rng: np.random.Generator, hr: np.ndarray) -> np.ndarray:
    return (ndimage.gaussian_filter(hr, BLUR_SIGMA) + rng.normal(0, NOISE, hr.shape)).astype(np.float32)


def pairs(rng: np.random.Generator, n: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    hr = np.stack([hr_field(rng, (p, p)) for _ in range(n)]) if n else np.zeros((0, p, p), np.float32)
    lr = np.stack([lr_from_hr(rng, h) for h in hr]) if n else np.zeros((0, p, p), np.float32)
    return lr, hr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_zarr")
    ap.add_argument("images_lr")
    ap.add_argument("images_hr")
    ap.add_argument("--train", type=int, default=64)
    ap.add_argument("--val", type=int, default=16)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    root = zarr.open_group(a.out_zarr, mode="w", zarr_format=3)
    counts = {}
    for split, n in (("train", a.train), ("val", a.val), ("test", a.test)):
        lr, hr = pairs(rng, n, a.patch)
        g = root.create_group(split)
        g.create_array("lr", shape=lr.shape, chunks=(64, a.patch, a.patch), dtype="float32")[...] = lr
        g.create_array("hr", shape=hr.shape, chunks=(64, a.patch, a.patch), dtype="float32")[...] = hr
        g.create_array("fov", shape=(n,), chunks=(4096,), dtype="int32")[...] = np.arange(n, dtype=np.int32) // 8
        counts[split] = n
    root.attrs["srscope_dataset"] = {
        "version": 1, "fake": True, "patch_size": a.patch, "splits": counts,
        "normalization": {"offset": 0.0, "scale": 1.0}, "denormalization": {"offset": 0.0, "scale": 1.0},
        "note": f"care_peer smoke test: LR = HR blurred sigma {BLUR_SIGMA} + N(0, {NOISE})",
    }
    shapes = {"big": (320, 288), "small": (128, 128)}
    hr_imgs = {k: hr_field(rng, s) for k, s in shapes.items()}
    lr_imgs = {k: lr_from_hr(rng, v) for k, v in hr_imgs.items()}
    np.savez(a.images_lr, **lr_imgs)
    np.savez(a.images_hr, **hr_imgs)
    print(json.dumps({"dataset": a.out_zarr, "splits": counts, "patch": a.patch,
                      "images": {k: list(s) for k, s in shapes.items()}}))


if __name__ == "__main__":
    main()
