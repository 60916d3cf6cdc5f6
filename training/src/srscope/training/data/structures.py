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
import scipy.fft as sfft
from scipy import ndimage
from scipy.spatial import Delaunay, cKDTree
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


# ---------------------------------------------------------------------------------------------
# Broader structure prior: vesicles, ER, whole cells, plasma membranes, dense filament networks.
# Shared helpers first; every size below is in µm and converted to fine pixels with ``px_um``.
# ---------------------------------------------------------------------------------------------

_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


def _smooth_noise(shape: tuple[int, int], px_um: float, rng: np.random.Generator, scale_um: float) -> np.ndarray:
    """Gaussian random field of unit (ensemble) variance, correlated over ``scale_um``.

    Made in Fourier space, so the cost is one FFT whatever the scale (a 10 µm correlation on a
    10 nm grid would be a 1000-pixel Gaussian filter). The variance is normalised analytically
    rather than by the field's own std, so a scale larger than the field gives a gentle ramp
    instead of being blown up to full contrast.
    """
    h, w = shape
    sigma = max(scale_um / px_um, 0.5)
    gy = np.exp(-2.0 * (np.pi * sigma * np.fft.fftfreq(h)) ** 2)
    gx_full = np.exp(-2.0 * (np.pi * sigma * np.fft.fftfreq(w)) ** 2)
    gx = np.exp(-2.0 * (np.pi * sigma * np.fft.rfftfreq(w)) ** 2)
    std = np.sqrt(2.0 * np.sum(gy ** 2) * np.sum(gx_full ** 2)) / (h * w)
    filt = (gy[:, None] * gx[None, :] / std).astype(np.float32)
    spec = rng.standard_normal((h, len(gx)), dtype=np.float32) + 1j * rng.standard_normal((h, len(gx)),
                                                                                        dtype=np.float32)
    return sfft.irfft2(spec * filt, s=shape).astype(np.float32)


def _sample_map(weight: np.ndarray, n: int, px_um: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` positions (µm, (n, 2)) drawn with probability ∝ ``weight`` per pixel, uniform inside
    the pixel (pixel i is centred on i·px, as in :func:`_splat`)."""
    if n <= 0:
        return np.zeros((0, 2))
    cdf = np.cumsum(weight.ravel(), dtype=np.float64)
    if cdf[-1] <= 0:
        return np.zeros((0, 2))
    idx = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), cdf.size - 1)
    iy, ix = np.divmod(idx, weight.shape[1])
    return (np.stack([iy, ix], axis=1) + rng.uniform(-0.5, 0.5, (n, 2))) * px_um


def _lookup(field: np.ndarray, pts_um: np.ndarray, px_um: float) -> np.ndarray:
    """Nearest-pixel value of ``field`` at positions in µm (clamped to the grid)."""
    iy = np.clip(np.rint(pts_um[:, 0] / px_um).astype(np.int64), 0, field.shape[0] - 1)
    ix = np.clip(np.rint(pts_um[:, 1] / px_um).astype(np.int64), 0, field.shape[1] - 1)
    return field[iy, ix]


def _thicken(image: np.ndarray, px_um: float, thickness_um: float) -> np.ndarray:
    """Blur splatted lines to a physical FWHM ``thickness_um`` where the grid resolves it (the
    bilinear splat already spreads a line over ~1 px, variance 1/6 px²)."""
    var = (thickness_um / 2.355 / px_um) ** 2 - 1.0 / 6.0
    if var > 0.3 ** 2:
        return ndimage.gaussian_filter(image, np.sqrt(var), truncate=3.0)
    return image


def _render_vesicles(shape: tuple[int, int], px_um: float, centres_um: np.ndarray, diam_um: np.ndarray,
                     weights: np.ndarray, hollow: np.ndarray) -> np.ndarray:
    """Filled discs (lumen label) or projected spherical shells (membrane label: a ring whose
    rim is brighter than the middle) in one vectorised splat; ``weights`` are integrated
    brightnesses. Points are laid on a sunflower spiral at ~2 per fine pixel² (at least 4)."""
    image = np.zeros(shape, dtype=np.float32)
    n = len(diam_um)
    if n == 0:
        return image
    r_px = np.asarray(diam_um) / 2.0 / px_um
    m = np.clip(np.ceil(2.0 * np.pi * r_px ** 2), 4, 1500).astype(np.int64)
    ves = np.repeat(np.arange(n), m)
    first = np.concatenate([[0], np.cumsum(m)[:-1]])
    k = np.arange(int(m.sum())) - np.repeat(first, m)
    t = (k + 0.5) / m[ves]
    # uniform disc: ρ = R√t; sphere surface seen in projection: ρ = R√(1 − t²) (t = cos polar angle)
    rho = np.where(np.asarray(hollow)[ves], np.sqrt(1.0 - t * t), np.sqrt(t)) * r_px[ves]
    theta = k * _GOLDEN_ANGLE + ves * 1.7
    y = centres_um[ves, 0] / px_um + rho * np.sin(theta)
    x = centres_um[ves, 1] / px_um + rho * np.cos(theta)
    _splat(image, y, x, np.asarray(weights, dtype=np.float64)[ves] / m[ves])
    if r_px.max() > 3.0:  # resolved vesicles: hide the spiral's point pattern
        image = ndimage.gaussian_filter(image, 0.6, truncate=3.0)
    return image


def _segment_points(p0: np.ndarray, p1: np.ndarray, step_um: float, rng: np.random.Generator,
                    bow: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample points every ≤ ``step_um`` along straight segments p0→p1 (µm), each bent by a
    random perpendicular half-sine of amplitude ~``bow``·length (ends stay put, so junctions
    stay joined). Returns points (µm), segment index per point, and the length each represents."""
    if len(p0) == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64), np.zeros(0)
    d = p1 - p0
    length = np.hypot(d[:, 0], d[:, 1])
    count = np.maximum(np.ceil(length / step_um), 1).astype(np.int64)
    seg = np.repeat(np.arange(len(length)), count)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    t = (np.arange(int(count.sum())) - np.repeat(first, count) + 0.5) / count[seg]
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(length, 1e-9)[:, None]
    bend = rng.normal(0.0, bow, len(length)) * length
    pts = p0[seg] + t[:, None] * d[seg] + (bend[seg] * np.sin(np.pi * t))[:, None] * normal[seg]
    return pts, seg, (length / count)[seg]


def _voronoi_edges(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi ridges of ``seeds`` as segment end points: circumcentres of Delaunay triangles
    that share an edge (faster than ``scipy.spatial.Voronoi`` and gives only finite ridges)."""
    if len(seeds) < 4:
        return np.zeros((0, 2)), np.zeros((0, 2))
    tri = Delaunay(seeds)
    a, b, c = (seeds[tri.simplices[:, i]] for i in range(3))
    b, c = b - a, c - a
    den = 2.0 * (b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0])
    b2, c2 = (b ** 2).sum(1), (c ** 2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = a + np.stack([(c[:, 1] * b2 - b[:, 1] * c2) / den, (b[:, 0] * c2 - c[:, 0] * b2) / den], axis=1)
    own = np.repeat(np.arange(len(tri.simplices)), 3)
    other = tri.neighbors.ravel()
    keep = other > own
    p0, p1 = centre[own[keep]], centre[other[keep]]
    ok = np.isfinite(p0).all(1) & np.isfinite(p1).all(1)
    return p0[ok], p1[ok]


def _fourier_field(pts_um: np.ndarray, rng: np.random.Generator, wavelengths_um: tuple[float, float],
                   modes: int = 10) -> np.ndarray:
    """Unit-variance smooth random function evaluated at scattered points: a sum of plane waves
    with random directions, phases and wavelengths in the given range."""
    lam = rng.uniform(*wavelengths_um, modes)
    ang = rng.uniform(0, 2 * np.pi, modes)
    k = np.stack([np.sin(ang), np.cos(ang)], axis=1) * (2 * np.pi / lam)[:, None]
    phase = rng.uniform(0, 2 * np.pi, modes)
    return np.sqrt(2.0 / modes) * np.cos(pts_um @ k.T + phase).sum(axis=1)


@dataclass
class _Cell:
    """A star-shaped cell outline with an elliptical-ish nucleus, all in µm."""
    cy: float
    cx: float
    radius: float             # geometric-mean radius (area ≈ π radius²)
    aspect: float             # elongation (long/short axis)
    angle: float
    harmonics: np.ndarray     # (K, 2): amplitude, phase of cos(kθ + φ), k = 2..K+1
    ny: float                 # nucleus centre offset from the cell centre
    nx: float
    n_radius: float
    n_aspect: float
    n_angle: float
    n_harmonics: np.ndarray

    def extent_um(self) -> float:
        return self.radius * np.sqrt(self.aspect) * (1.0 + np.abs(self.harmonics[:, 0]).sum())

    def distances(self, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Approximate signed distance (µm, positive inside) to the cell edge and to the nucleus edge."""
        return (_star_distance(yy - self.cy, xx - self.cx, self.angle, self.aspect, self.radius, self.harmonics),
                _star_distance(yy - self.cy - self.ny, xx - self.cx - self.nx, self.n_angle, self.n_aspect,
                               self.n_radius, self.n_harmonics))

    def window(self, shape: tuple[int, int], px_um: float, pad_um: float):
        """Pixel slices of the cell's bounding box (plus ``pad_um``) and its µm coordinate grids."""
        ext = self.extent_um() + pad_um
        y0, y1 = max(int((self.cy - ext) / px_um), 0), min(int((self.cy + ext) / px_um) + 2, shape[0])
        x0, x1 = max(int((self.cx - ext) / px_um), 0), min(int((self.cx + ext) / px_um) + 2, shape[1])
        if y0 >= y1 or x0 >= x1:
            return None
        yy = (np.arange(y0, y1, dtype=np.float32) * np.float32(px_um))[:, None]
        xx = (np.arange(x0, x1, dtype=np.float32) * np.float32(px_um))[None, :]
        return (slice(y0, y1), slice(x0, x1)), yy, xx


def _star_distance(dy, dx, angle, aspect, radius, harmonics):
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = dx * c + dy * s
    v = dy * c - dx * s
    sq = np.float32(np.sqrt(aspect))
    us, vs = u / sq, v * sq
    theta = np.arctan2(vs, us)
    r = np.ones_like(theta)
    for k, (amp, phase) in enumerate(harmonics, start=2):
        r += np.float32(amp) * np.cos(k * theta + np.float32(phase))
    frac = np.sqrt(us * us + vs * vs) / (r * np.float32(radius))  # (np.hypot is 5× slower)
    # distance along the ray from the centre to the outline: exact for a circle, close elsewhere
    dist = np.sqrt(u * u + v * v) * (1.0 / np.maximum(frac, 1e-3) - 1.0)
    return np.minimum(dist, np.float32(2.0 * radius))


def _random_cell(rng: np.random.Generator, cy: float, cx: float, diameter_um: float) -> _Cell:
    kind = rng.integers(3)  # 0 rounded, 1 elongated (fibroblast-like), 2 irregular (spread, lamellar)
    aspect = (rng.uniform(1.0, 1.3), rng.uniform(1.8, 4.0), rng.uniform(1.0, 1.8))[kind]
    amp = (0.04, 0.07, 0.22)[kind]
    ks = np.arange(2, 8)
    harm = np.stack([rng.normal(0.0, amp, len(ks)) / np.sqrt(ks - 1), rng.uniform(0, 2 * np.pi, len(ks))], axis=1)
    total = np.abs(harm[:, 0]).sum()
    if total > 0.6:
        harm[:, 0] *= 0.6 / total
    radius = diameter_um / 2.0
    short = radius / np.sqrt(aspect) * (1.0 - np.abs(harm[:, 0]).sum())
    n_radius = float(np.clip(radius * rng.uniform(0.25, 0.4), 3.0, 9.0))
    n_radius = min(n_radius, 0.75 * short)
    n_aspect = rng.uniform(1.0, 1.5)
    angle = rng.uniform(0, np.pi)
    n_angle = angle + rng.normal(0, 0.3)
    off = rng.uniform(-0.3, 0.3) * max(radius * np.sqrt(aspect) * 0.6 - n_radius, 0.0)
    n_harm = np.stack([rng.normal(0.0, 0.03, 3), rng.uniform(0, 2 * np.pi, 3)], axis=1)
    return _Cell(cy, cx, radius, aspect, angle, harm, off * np.sin(angle), off * np.cos(angle),
                 n_radius, n_aspect, n_angle, n_harm)


def _place_cells(shape: tuple[int, int], px_um: float, rng: np.random.Generator, coverage: float,
                 diameter_um: tuple[float, float] = (15.0, 60.0)) -> list[_Cell]:
    """Cells 15–60 µm across (log-uniform) scattered over the field until ~``coverage`` of it is
    covered (or no more fit), barely overlapping. A field under 40 µm (STED, SIM) gets one cell
    placed so that the field centre lies in its cytoplasm, 1–6 µm clear of the nucleus (so the
    frame is never empty and sometimes shows the nuclear edge)."""
    fy, fx = _field_um(shape, px_um)
    lo, hi = np.log(diameter_um[0]), np.log(diameter_um[1])
    if max(fy, fx) < 40.0:
        cell = _random_cell(rng, 0.0, 0.0, float(np.exp(rng.uniform(lo, hi))))
        ext = cell.extent_um()
        cand = rng.uniform(-ext, ext, (256, 2)).astype(np.float32)
        edge, nuc = cell.distances(cand[:, 0], cand[:, 1])
        clear = rng.uniform(1.0, 6.0)
        score = np.minimum(edge - 1.5, -nuc - clear)
        ok = np.flatnonzero(score > 0)
        pick = ok[0] if len(ok) else int(np.argmax(score))
        cell.cy, cell.cx = fy / 2 - float(cand[pick, 0]), fx / 2 - float(cand[pick, 1])
        return [cell]
    out: list[_Cell] = []
    covered = 0.0
    for _ in range(400):
        if covered >= coverage * fy * fx:
            break
        d = float(np.exp(rng.uniform(lo, hi)))
        cell = _random_cell(rng, rng.uniform(0, fy), rng.uniform(0, fx), d)
        cy, cx, ext = cell.cy, cell.cx, cell.extent_um()
        if any(np.hypot(cy - c.cy, cx - c.cx) < 0.8 * (ext + c.extent_um()) for c in out):
            continue
        out.append(cell)
        inside_y = (min(cy + d / 2, fy) - max(cy - d / 2, 0.0)) / d
        inside_x = (min(cx + d / 2, fx) - max(cx - d / 2, 0.0)) / d
        covered += np.pi * (d / 2) ** 2 * inside_y * inside_x  # the part on the field, roughly
    return out


def _cell_maps(shape: tuple[int, int], px_um: float, placed: list[_Cell], edge_um: float = 0.15,
               envelope_sigma_um: float | None = None):
    """Soft cell footprint, soft nucleus, distance (µm) outside the nearest nucleus and, when
    ``envelope_sigma_um`` is given, the nuclear outline as a Gaussian line of unit integral
    across (per µm²; multiply by brightness per length and px² to get per-pixel density)."""
    foot = np.zeros(shape, dtype=np.float32)
    nucleus = np.zeros(shape, dtype=np.float32)
    dnuc = np.full(shape, 1e3, dtype=np.float32)
    envelope = np.zeros(shape, dtype=np.float32) if envelope_sigma_um else None
    width = np.float32(max(edge_um, 0.5 * px_um))
    for cell in placed:
        win = cell.window(shape, px_um, pad_um=1.0)
        if win is None:
            continue
        sl, yy, xx = win
        edge, nuc = cell.distances(yy, xx)
        np.maximum(foot[sl], expit(edge / width), out=foot[sl])
        np.maximum(nucleus[sl], expit(nuc / width), out=nucleus[sl])
        np.minimum(dnuc[sl], np.maximum(-nuc, 0.0), out=dnuc[sl])
        if envelope is not None:
            s = np.float32(envelope_sigma_um)
            envelope[sl] += np.exp(-0.5 * (nuc / s) ** 2) / (s * np.float32(np.sqrt(2 * np.pi)))
    if envelope is not None:
        return foot, nucleus, dnuc, envelope
    return foot, nucleus, dnuc


def vesicles(shape, px_um, rng, density=1.0) -> Specimen:
    """Punctate vesicles (endosomes, lysosomes, peroxisomes, secretory granules) in cells 15–60 µm
    across: diameters log-normal around 130 nm, clipped to 50–400 nm (endosomes and lysosomes
    are 100–500 nm, peroxisomes 100–200 nm); integrated brightness ∝ diameter × a log-normal
    cargo load, ~1.5 decades between the 5th and 95th percentiles. ~0.8 per µm² of cytoplasm × ``density`` × a per-field
    factor (log-normal, σ 0.5), enriched up to ~4× in the perinuclear region (where late
    endosomes/lysosomes gather around the centrosome), modulated on a 2–5 µm scale, and about
    half of them in small clusters (σ 0.2–0.6 µm). None in the nucleus. Most vesicles over
    200 nm (and ~15% of smaller ones) are membrane-labelled, i.e. rings when resolved; the rest
    are lumen-filled discs."""
    placed = _place_cells(shape, px_um, rng, coverage=rng.uniform(0.4, 0.7))
    foot, nucleus, dnuc = _cell_maps(shape, px_um, placed)
    cyto = foot * (1.0 - nucleus)
    lam = cyto * (0.25 + np.exp(-dnuc / np.float32(rng.uniform(2.0, 6.0)))) \
        * np.exp(0.6 * _smooth_noise(shape, px_um, rng, rng.uniform(2.0, 5.0)))
    rate = 0.8 * density * rng.lognormal(0.0, 0.5)
    n = max(rng.poisson(rate * float(cyto.sum()) * px_um ** 2), 3)  # a tiny field still shows a few
    clustered = rng.uniform(0.3, 0.7)
    per_cluster = rng.uniform(3.0, 8.0)
    n_parents = rng.poisson(n * clustered / per_cluster)
    parents = _sample_map(lam, n_parents, px_um, rng)
    counts = rng.poisson(per_cluster, n_parents)
    children = np.repeat(parents, counts, axis=0) + rng.normal(0.0, rng.uniform(0.2, 0.6), (int(counts.sum()), 2))
    children = children[_lookup(cyto, children, px_um) > rng.random(len(children))]
    centres = np.concatenate([_sample_map(lam, max(n - len(children), 0), px_um, rng), children])
    k = len(centres)
    diam = np.clip(rng.lognormal(np.log(0.13), 0.55, k), 0.05, 0.4)
    weights = diam / 0.13 * rng.lognormal(0.0, 0.9, k)
    hollow = rng.random(k) < np.where(diam > 0.2, 0.7, 0.15)
    return Specimen(_render_vesicles(shape, px_um, centres, diam, weights, hollow))


def er(shape, px_um, rng, density=1.0) -> Specimen:
    """Endoplasmic reticulum: the peripheral tubular network as the Voronoi edges of random
    points (polygons with three-way junctions, mesh 0.8–2 µm at the cell periphery tightening
    to 0.5–1 µm near the nucleus, as in live-cell ER images), tubules ~60 nm thick (50–80 nm)
    with uniform brightness per length and a slight bend; smooth, fenestrated sheet patches (flat
    cisternae, 1–4 µm, brighter per area than the network) concentrated within a few µm of the
    nucleus; the nuclear envelope as a bright rim (it is continuous with the ER); and a dark
    nucleus. ``density`` scales the number of network nodes (mesh ∝ 1/√density)."""
    placed = _place_cells(shape, px_um, rng, coverage=rng.uniform(0.4, 0.7))
    thickness = rng.uniform(0.05, 0.08)
    foot, nucleus, dnuc, envelope = _cell_maps(shape, px_um, placed,
                                               envelope_sigma_um=max(thickness / 2.355, 0.5 * px_um))
    cyto = foot * (1.0 - nucleus)
    mesh_out = np.exp(rng.uniform(np.log(0.8), np.log(2.0)))
    mesh_in = max(mesh_out * rng.uniform(0.4, 0.7), 0.5)
    falloff = rng.uniform(3.0, 8.0)
    ratio = (mesh_in / mesh_out) ** 2
    rel = cyto * (ratio + (1.0 - ratio) * np.exp(-dnuc / np.float32(falloff)))
    # thin a uniform Poisson field of nodes (rate 1/mesh_in²) by ``rel``, over the field plus a
    # margin (clamped look-up) so that the mesh does not thin out towards the frame edges
    fy, fx = _field_um(shape, px_um)
    pad = 2.0 * mesh_out
    cand = rng.uniform([-pad, -pad], [fy + pad, fx + pad],
                       (rng.poisson((fy + 2 * pad) * (fx + 2 * pad) * max(density, 0.0) / mesh_in ** 2), 2))
    seeds = cand[_lookup(rel, cand, px_um) > rng.random(len(cand))]
    p0, p1 = _voronoi_edges(seeds)
    keep = np.hypot(*(p1 - p0).T) < 3.0 * mesh_out
    pts, seg, dl = _segment_points(p0[keep], p1[keep], px_um / 2.0, rng, bow=0.08)
    weight = rng.uniform(0.85, 1.15, int(keep.sum()))[seg] * dl * _lookup(cyto, pts, px_um)
    image = np.zeros(shape, dtype=np.float32)
    _splat(image, pts[:, 0] / px_um, pts[:, 1] / px_um, weight)
    image = _thicken(image, px_um, thickness)
    # sheets: a ~50 nm lumen holds as much dye per µm² as ~10–20 µm of 60 nm tubule, so they are
    # brighter per area than the network (1–4 µm of tubule per µm²); small fenestrations in them
    sheet_level = rng.uniform(8.0, 18.0) * px_um ** 2
    z = _smooth_noise(shape, px_um, rng, rng.uniform(0.5, 1.0))
    sheets = expit((z - rng.uniform(0.3, 1.0)) / 0.1) * np.exp(-dnuc / np.float32(rng.uniform(1.5, 4.0)))
    holes = expit((_smooth_noise(shape, px_um, rng, 0.06) - 1.3) / 0.15)
    image += np.float32(sheet_level) * sheets * (1.0 - holes) * cyto
    # nuclear envelope rim, and a faint nucleus (its top and bottom envelope, out of focus)
    image += np.float32(rng.uniform(2.0, 4.0) * px_um ** 2) * envelope
    image += np.float32(rng.uniform(0.0, 0.3) * px_um ** 2) * nucleus * foot
    return Specimen(image.astype(np.float32))


def cells(shape, px_um, rng, density=1.0) -> Specimen:
    """Whole cells with a cytoplasmic stain (CellTracker, cytosolic GFP): rounded, elongated
    (aspect 1.8–4) and irregular spread cells 15–60 µm across, covering ~35–70% of a large
    field (× ``density``). Inside: a smooth multi-scale texture (0.3–8 µm, organelles excluding
    the dye and thickness variation), intensity rising from thin lamellar edges to the thick
    cell body, a brighter cortical rim whose width varies from 0.1 to 1.5 µm between cells, a
    dimmer nucleus (20–60%), and per-cell brightness spread over a decade (expression levels
    differ ~10× in a transfected population). This is the low-frequency-rich content that
    dominates real widefield frames."""
    placed = _place_cells(shape, px_um, rng, coverage=float(np.clip(rng.uniform(0.35, 0.7) * density, 0.1, 0.9)))
    texture = np.zeros(shape, dtype=np.float32)
    for scale_um, amp in ((0.3, 0.25), (1.0, 0.3), (3.0, 0.3), (8.0, 0.2)):
        texture += np.float32(amp) * _smooth_noise(shape, px_um, rng, scale_um)
    texture = np.exp(0.8 * texture)
    n = len(placed)
    levels = 10.0 ** ((rng.permutation(n) + rng.random(n)) / max(n, 1))  # stratified over a decade
    image = np.zeros(shape, dtype=np.float32)
    edge_w = np.float32(max(0.1, 0.5 * px_um))
    for cell, level in zip(placed, levels, strict=True):
        win = cell.window(shape, px_um, pad_um=1.0)
        if win is None:
            continue
        sl, yy, xx = win
        edge, nuc = cell.distances(yy, xx)
        inside = np.maximum(edge, 0.0)
        body = 0.3 + 0.7 * np.sqrt(np.minimum(inside / np.float32(cell.radius * rng.uniform(0.2, 0.5)), 1.0))
        rim = np.float32(rng.uniform(0.3, 1.5)) * np.exp(-inside / np.float32(np.exp(rng.uniform(np.log(0.1),
                                                                                                  np.log(1.5)))))
        nuc_factor = 1.0 - np.float32(1.0 - rng.uniform(0.2, 0.6)) * expit(nuc / edge_w)
        image[sl] += np.float32(level) * expit(edge / edge_w) * (body + rim) * nuc_factor * texture[sl]
    return Specimen(image * np.float32(px_um ** 2))


def membranes(shape, px_um, rng, density=1.0) -> Specimen:
    """Plasma-membrane label (CellMask, membrane-GFP) in a confluent epithelium-like sheet:
    outlines of touching cells 10–35 µm across (Voronoi cells of hard-core points, so sizes are
    fairly even as in a monolayer; smaller with ``density``), warped into gentle curves, drawn
    as 50–100 nm lines whose brightness varies along the outline (on a 1–6 µm scale, ±30–60%)
    and between junctions, plus sparse internalised vesicles (endocytosed dye, 60–500 nm,
    mostly rings, 0.03–0.2 per µm²)."""
    fy, fx = _field_um(shape, px_um)
    d = float(np.clip(np.exp(rng.uniform(np.log(10.0), np.log(35.0))) / np.sqrt(max(density, 1e-3)), 5.0, 60.0))
    pad = 2.0 * d
    r_core = 0.5 * d
    area = (fy + 2 * pad) * (fx + 2 * pad)
    cand = rng.uniform([-pad, -pad], [fy + pad, fx + pad], (rng.poisson(3.0 * area / (np.pi * r_core ** 2)), 2))
    # one pair straddling the centre guarantees a junction crosses even a STED-sized field: with
    # no other seed within r_core of either, their bisector ridge passes through the centre
    ang = rng.uniform(0, np.pi)
    off = rng.uniform(0.2, 0.35) * d * np.array([np.sin(ang), np.cos(ang)])
    anchor = np.array([[fy / 2, fx / 2]]) + np.stack([off, -off])
    clear = np.ones(len(cand), dtype=bool)
    for a in anchor:
        clear &= np.hypot(cand[:, 0] - a[0], cand[:, 1] - a[1]) > r_core
    cand = cand[clear]
    marks = rng.random(len(cand))
    pairs = cKDTree(cand).query_pairs(r_core, output_type="ndarray") if len(cand) > 1 else np.zeros((0, 2), int)
    keep = np.ones(len(cand), dtype=bool)
    keep[np.where(marks[pairs[:, 0]] > marks[pairs[:, 1]], pairs[:, 0], pairs[:, 1])] = False  # Matérn II
    seeds = np.concatenate([anchor, cand[keep]])
    p0, p1 = _voronoi_edges(seeds)
    keep = np.hypot(*(p1 - p0).T) < 2.5 * d
    p0, p1 = p0[keep], p1[keep]
    mid = (p0 + p1) / 2.0
    sel = (mid[:, 0] > -d) & (mid[:, 0] < fy + d) & (mid[:, 1] > -d) & (mid[:, 1] < fx + d)
    p0, p1 = p0[sel], p1[sel]
    pts, seg, dl = _segment_points(p0, p1, px_um / 2.0, rng)
    # smooth warp, pinned at the field centre so the anchored junction stays in view
    warp = rng.uniform(0.04, 0.1) * d
    probe = np.concatenate([pts, [[fy / 2, fx / 2]]])
    shift = warp * np.stack([_fourier_field(probe, rng, (0.6 * d, 2.0 * d), 6),
                             _fourier_field(probe, rng, (0.6 * d, 2.0 * d), 6)], axis=1)
    pts = pts + shift[:-1] - shift[-1]
    spread = rng.uniform(0.3, 0.6)
    weight = dl * rng.lognormal(0.0, 0.25, len(p0))[seg] \
        * np.exp(spread * _fourier_field(pts, rng, (1.0, 6.0), 10) - spread ** 2 / 2)
    image = np.zeros(shape, dtype=np.float32)
    _splat(image, pts[:, 0] / px_um, pts[:, 1] / px_um, weight)
    image = _thicken(image, px_um, rng.uniform(0.05, 0.1))
    n_ves = rng.poisson(rng.uniform(0.03, 0.2) * density * fy * fx)
    diam = np.clip(rng.lognormal(np.log(0.15), 0.5, n_ves), 0.06, 0.5)
    image += _render_vesicles(shape, px_um, rng.uniform([0, 0], [fy, fx], (n_ves, 2)), diam,
                              rng.lognormal(np.log(0.15), 0.5, n_ves) * (diam / 0.15) ** 2, rng.random(n_ves) < 0.7)
    return Specimen(image)


def dense_filaments(shape, px_um, rng, density=1.0) -> Specimen:
    """A crowded, crossing cytoskeletal network (dense microtubule arrays, intermediate filaments,
    actin meshworks imaged as lines): 2–10× the filament length per area of ``filaments``
    (1.2–6 µm/µm², × ``density``), split over 3–5 populations whose persistence lengths are
    log-uniform over 2–50 µm (floppy intermediate filaments to stiff microtubules; lengths
    5–30 µm, longer for stiffer ones), brightness log-normal (±25%) with ~15% bundles of 2–5
    filaments. Thin (unresolved) lines, unlike the 250 nm-thick, few-µm-long mitochondria."""
    fy, fx = _field_um(shape, px_um)
    total = 0.6 * fy * fx * np.exp(rng.uniform(np.log(2.0), np.log(10.0))) * density
    n_pop = int(rng.integers(3, 6))
    persistence = np.exp(rng.uniform(np.log(2.0), np.log(50.0), n_pop))
    share = rng.dirichlet(np.full(n_pop, 2.0))
    image = np.zeros(shape, dtype=np.float32)
    for p, frac in zip(persistence, share, strict=True):
        mean_len = float(np.clip(5.0 + 0.5 * p, 5.0, 20.0))
        n = max(int(total * frac / mean_len), 1)
        weights = rng.lognormal(0.0, 0.25, n) * np.where(rng.random(n) < 0.15, rng.uniform(2.0, 5.0, n), 1.0)
        image += _render_worms(shape, px_um, rng, rng.uniform([0, 0], [fy, fx], (n, 2)),
                               rng.uniform(0.5, 1.5, n) * mean_len, p, weights)
    return Specimen(image * _cell_mask(shape, px_um, rng))


GENERATORS: dict[str, Generator] = {
    "filaments": filaments,
    "actin": actin,
    "mitochondria": mitochondria,
    "nuclei": nuclei,
    "beads": beads,
    "ccps": ccps,
    "vesicles": vesicles,
    "er": er,
    "cells": cells,
    "membranes": membranes,
    "dense_filaments": dense_filaments,
}
STRUCTURES: tuple[str, ...] = tuple(GENERATORS)
