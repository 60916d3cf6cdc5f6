"""Fluorophore distributions of the paper's samples, rendered on a fine grid in physical units.

Every generator takes the fine grid (shape, pixel size in µm) and a numpy Generator and returns
a :class:`Specimen`: a density image for extended structures plus, for point-like emitters
whose sub-pixel position matters (beads), exact point coordinates that the simulator renders in
Fourier space rather than splatting onto pixels (splatting would widen a 20 nm bead by a
fraction of a pixel and bias the FWHM check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import expit


@dataclass
class Specimen:
    density: np.ndarray                 # float32 (H, W) fluorophores per fine pixel, arbitrary units
    points_yx: np.ndarray | None = None  # (K, 2) fine-pixel coordinates of point emitters
    point_weights: np.ndarray | None = None
    point_diameter_um: float = 0.0


Generator = Callable[[tuple[int, int], float, np.random.Generator, float], Specimen]


def _splat(image: np.ndarray, y: np.ndarray, x: np.ndarray, weight: np.ndarray | float = 1.0) -> None:
    """Bilinear deposit of points into ``image`` (in place); points off the grid are dropped."""
    h, w = image.shape
    weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), y.shape)
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    fy = y - y0
    fx = x - x0
    flat = image.reshape(-1)
    for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                        (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy = y0 + dy
        xx = x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        flat += np.bincount((yy[ok] * w + xx[ok]), weights=(weight * wgt)[ok], minlength=h * w).astype(flat.dtype)


def _render_worms(shape: tuple[int, int], px_um: float, rng: np.random.Generator, starts_yx: np.ndarray,
                  lengths_um: np.ndarray, persistence_um: float, weights: np.ndarray) -> np.ndarray:
    """Worm-like chains (filaments, tubules) rendered in one vectorised pass.

    The tangent angle of each chain diffuses with variance step/persistence per step, which is
    what gives filaments their stiffness. Steps are at most half a pixel so the line is
    continuous, and every vertex deposits ``weight · step``: uniform brightness per length.
    """
    image = np.zeros(shape, dtype=np.float32)
    if len(lengths_um) == 0:
        return image
    step = min(0.05, px_um / 2.0)
    counts = np.maximum((np.asarray(lengths_um) / step).astype(np.int64), 2)
    total = int(counts.sum())
    chain = np.repeat(np.arange(len(counts)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    dtheta = rng.normal(0.0, np.sqrt(step / persistence_um), total)
    dtheta[first] = rng.uniform(0, 2 * np.pi, len(counts))  # initial direction of each chain
    theta = np.cumsum(dtheta)
    theta -= np.repeat(np.cumsum(dtheta)[first] - dtheta[first], counts)
    dy, dx = np.sin(theta) * step, np.cos(theta) * step
    cy, cx = np.cumsum(dy), np.cumsum(dx)
    y = cy - np.repeat(cy[first] - dy[first], counts) + starts_yx[chain, 0]
    x = cx - np.repeat(cx[first] - dx[first], counts) + starts_yx[chain, 1]
    _splat(image, y / px_um, x / px_um, np.asarray(weights)[chain] * step)
    return image


def _cell_mask(shape: tuple[int, int], px_um: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth cell footprints leaving empty glass between cells on large fields of view, so
    that background estimation and empty-patch skipping see what they see in real data."""
    h, w = shape
    field_um = max(h, w) * px_um
    if field_um < 40.0:
        return np.ones(shape, dtype=np.float32)
    coarse_px = 2.0  # µm
    ch, cw = max(int(h * px_um / coarse_px), 4), max(int(w * px_um / coarse_px), 4)
    noise = ndimage.gaussian_filter(rng.standard_normal((ch, cw)), sigma=12.0 / coarse_px, mode="wrap")
    noise = (noise - noise.mean()) / (noise.std() + 1e-12)
    coarse = 1.0 / (1.0 + np.exp(-(noise + 0.3) * 4.0))
    # separable linear upsampling as two small matrix products (much faster than ndimage.zoom)
    ay = _linear_upsampler(ch, h)
    ax = _linear_upsampler(cw, w)
    return (ay @ coarse.astype(np.float32) @ ax.T).astype(np.float32)


def _linear_upsampler(n_in: int, n_out: int) -> np.ndarray:
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    return np.stack([np.interp(pos, np.arange(n_in), np.eye(n_in)[i]) for i in range(n_in)], axis=1).astype(np.float32)


def _field_um(shape, px_um) -> tuple[float, float]:
    return shape[0] * px_um, shape[1] * px_um


def filaments(shape, px_um, rng, density=1.0) -> Specimen:
    """Microtubule-like network: long, stiff (persistence ~20 µm at this scale) 25 nm filaments,
    ~0.6 µm of filament per µm² of cell."""
    fy, fx = _field_um(shape, px_um)
    n = max(int(0.6 * fy * fx * density / 15.0), 1)
    image = _render_worms(shape, px_um, rng, rng.uniform([0, 0], [fy, fx], (n, 2)), rng.uniform(5.0, 25.0, n),
                          20.0, rng.uniform(0.8, 1.2, n))
    return Specimen(image * _cell_mask(shape, px_um, rng))


def actin(shape, px_um, rng, density=1.0) -> Specimen:
    """F-actin: bright straight stress fibres (bundles) over a dense mesh of short filaments."""
    fy, fx = _field_um(shape, px_um)
    area = fy * fx * density
    n_fibres = max(int(area / 60.0), 1)
    n_mesh = int(area * 1.5)
    image = _render_worms(shape, px_um, rng, rng.uniform([0, 0], [fy, fx], (n_fibres, 2)),
                          rng.uniform(5, 20, n_fibres), 200.0, rng.uniform(3.0, 6.0, n_fibres))
    image += _render_worms(shape, px_um, rng, rng.uniform([0, 0], [fy, fx], (n_mesh, 2)),
                           rng.uniform(0.3, 1.5, n_mesh), 5.0, rng.uniform(0.5, 1.0, n_mesh))
    return Specimen(image * _cell_mask(shape, px_um, rng))


def mitochondria(shape, px_um, rng, density=1.0) -> Specimen:
    """Tubular mitochondria: 1–6 µm worms, ~250 nm thick (matrix/outer-membrane label)."""
    fy, fx = _field_um(shape, px_um)
    n = max(int(fy * fx * 0.08 * density), 1)
    image = _render_worms(shape, px_um, rng, rng.uniform([0, 0], [fy, fx], (n, 2)), rng.uniform(1.0, 6.0, n),
                          2.0, rng.uniform(0.7, 1.3, n))
    image = ndimage.gaussian_filter(image, sigma=0.25 / 2.355 / px_um * 1.5)
    return Specimen(image * _cell_mask(shape, px_um, rng))


def nuclei(shape, px_um, rng, density=1.0) -> Specimen:
    """Nuclei stained for histone: ellipses 10–18 µm across with chromatin texture (multi-scale
    granules), brighter heterochromatin foci and darker nucleoli. On a STED-sized field (15 µm)
    one nucleus fills most of the frame, as in the paper's HeLa transfer-learning data."""
    h, w = shape
    fy, fx = _field_um(shape, px_um)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) * px_um
    image = np.zeros(shape, dtype=np.float32)
    count = 1 if max(fy, fx) < 40 else max(int(fy * fx / 600.0 * density), 1)
    texture = np.zeros(shape, dtype=np.float32)
    for scale_um, amp in ((0.08, 0.5), (0.25, 0.6), (0.8, 0.4)):
        sigma = max(scale_um / px_um, 0.5)
        noise = rng.standard_normal(shape).astype(np.float32)
        layer = ndimage.gaussian_filter(noise, sigma)
        texture += amp * layer / (layer.std() + 1e-12)
    chromatin = np.exp(0.45 * texture)
    for _ in range(count):
        if count == 1:
            cy, cx = fy / 2 + rng.uniform(-0.15, 0.15) * fy, fx / 2 + rng.uniform(-0.15, 0.15) * fx
        else:
            cy, cx = rng.uniform(0, fy), rng.uniform(0, fx)
        a, b = rng.uniform(5.0, 9.0), rng.uniform(4.0, 7.0)
        phi = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(phi) + dy * np.sin(phi)) / a
        v = (-dx * np.sin(phi) + dy * np.cos(phi)) / b
        r = np.sqrt(u * u + v * v)
        inside = expit(-(r - 1.0) / (0.1 / a))  # ~100 nm soft edge
        for _ in range(rng.integers(1, 4)):  # nucleoli
            ny_, nx_ = cy + rng.uniform(-0.4, 0.4) * b, cx + rng.uniform(-0.4, 0.4) * a
            rad = rng.uniform(0.6, 1.3)
            d = np.hypot(yy - ny_, xx - nx_) / rad
            inside *= 1.0 - 0.7 * expit(-(d - 1.0) * 8.0)
        image += inside.astype(np.float32) * rng.uniform(0.8, 1.2)
    foci = np.zeros(shape, dtype=np.float32)
    n_foci = int(fy * fx * 0.3)
    _splat(foci, rng.uniform(0, h, n_foci), rng.uniform(0, w, n_foci), rng.uniform(0.5, 1.5, n_foci))
    foci = ndimage.gaussian_filter(foci, max(0.15 / px_um, 0.5)) * (4.0 * np.pi * (0.15 / px_um) ** 2)
    return Specimen((image * (chromatin + foci)).astype(np.float32))


def beads(shape, px_um, rng, density=1.0, min_separation_um: float = 1.0) -> Specimen:
    """20 nm beads on the coverslip, ~0.1 per µm², thinned to a minimum separation so that most
    are isolated for FWHM statistics (a few percent of close pairs remain, as on real slides)."""
    fy, fx = _field_um(shape, px_um)
    n = rng.poisson(0.1 * fy * fx * density)
    pos = rng.uniform([0, 0], [fy, fx], size=(n, 2))
    keep: list[int] = []
    for i in range(n):
        if keep and np.min(np.hypot(*(pos[keep] - pos[i]).T)) < min_separation_um and rng.random() > 0.03:
            continue
        keep.append(i)
    pos = pos[keep] / px_um
    weights = rng.lognormal(0.0, 0.15, len(keep))
    return Specimen(np.zeros(shape, dtype=np.float32), pos, weights, point_diameter_um=0.02)


def ccps(shape, px_um, rng, density=1.0) -> Specimen:
    """Clathrin-coated structures seen by TIRF: pits of 80–200 nm diameter (rings when resolved,
    which is what TIRF-SIM shows and TIRF does not), ~0.6 per µm², plus ~15% larger flat plaques."""
    fy, fx = _field_um(shape, px_um)
    n = rng.poisson(0.6 * fy * fx * density)
    centres = rng.uniform([0, 0], [fy, fx], size=(n, 2))
    is_pit = rng.random(n) < 0.85
    m = 24
    # pits: a ring of coat, brightness ∝ coat area
    radius = rng.uniform(0.04, 0.1, n)[:, None]
    ang = rng.uniform(0, 2 * np.pi, (n, 1)) + np.linspace(0, 2 * np.pi, m, endpoint=False)[None, :]
    ring_w = (rng.uniform(0.7, 1.3, n)[:, None] / m * (radius / 0.07) ** 2) * np.ones((1, m))
    # plaques: a filled disc
    rr = rng.uniform(0.15, 0.3, n)[:, None] * np.sqrt(rng.random((n, m)))
    disc_ang = rng.uniform(0, 2 * np.pi, (n, m))
    disc_w = (rng.uniform(1.0, 2.0, n)[:, None] * 3.0 / m) * np.ones((1, m))
    r = np.where(is_pit[:, None], radius * np.ones((1, m)), rr)
    a = np.where(is_pit[:, None], ang, disc_ang)
    wgt = np.where(is_pit[:, None], ring_w, disc_w)
    image = np.zeros(shape, dtype=np.float32)
    _splat(image, ((centres[:, :1] + r * np.sin(a)) / px_um).ravel(),
           ((centres[:, 1:] + r * np.cos(a)) / px_um).ravel(), wgt.ravel())
    return Specimen(image * _cell_mask(shape, px_um, rng))


GENERATORS: dict[str, Generator] = {
    "filaments": filaments,
    "actin": actin,
    "mitochondria": mitochondria,
    "nuclei": nuclei,
    "beads": beads,
    "ccps": ccps,
}
STRUCTURES: tuple[str, ...] = tuple(GENERATORS)
