"""Ground-truth misregistration of a simulated pair.

Convention (shared with registration): all coordinates are in HR pixels of the reference (HR)
frame. ``displacement(x)`` = u(x) is where the LR camera saw the scene point x, minus x: the
LR image (resampled to the HR grid) aligned to the HR is ``lr_up(x + u(x))``. Registration
estimates exactly this field, so residual error = |u_est − u_true|.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Misregistration:
    shift_yx_px: tuple[float, float]
    rotation_deg: float
    scale: float
    elastic_grid_px: np.ndarray  # (2, gy, gx) y/x displacement at control points spanning the frame
    shape: tuple[int, int]        # HR frame the control grid spans

    @classmethod
    def identity(cls, shape: tuple[int, int]) -> Misregistration:
        return cls((0.0, 0.0), 0.0, 1.0, np.zeros((2, 2, 2)), tuple(shape))

    @classmethod
    def random(cls, rng: np.random.Generator, shape: tuple[int, int], max_shift_px: float,
               max_rotation_deg: float, max_scale_error: float, elastic_amplitude_px: float,
               grid: int = 4) -> Misregistration:
        """A plausible pair misregistration: uniform sub-pixel shift, small rotation and
        magnification error, and a smooth (4×4 control point, cubic) elastic distortion."""
        shift = tuple(float(v) for v in rng.uniform(-max_shift_px, max_shift_px, 2))
        elastic = rng.normal(0.0, elastic_amplitude_px, (2, grid, grid)) if elastic_amplitude_px > 0 \
            else np.zeros((2, 2, 2))
        return cls(shift, float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
                   float(1.0 + rng.uniform(-max_scale_error, max_scale_error)), elastic, tuple(shape))

    def displacement_at(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u(y, x) at arbitrary HR-pixel coordinates."""
        h, w = self.shape
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        th = np.deg2rad(self.rotation_deg)
        c, s = np.cos(th) * self.scale, np.sin(th) * self.scale
        ry, rx = y - cy, x - cx
        uy = (c * ry + s * rx) - ry + self.shift_yx_px[0]
        ux = (-s * ry + c * rx) - rx + self.shift_yx_px[1]
        gy, gx = self.elastic_grid_px.shape[1:]
        if np.any(self.elastic_grid_px):
            gyc = np.asarray(y, dtype=np.float64) / max(h - 1, 1) * (gy - 1)
            gxc = np.asarray(x, dtype=np.float64) / max(w - 1, 1) * (gx - 1)
            coords = np.stack([np.ravel(gyc), np.ravel(gxc)])
            ey = ndimage.map_coordinates(self.elastic_grid_px[0], coords, order=3, mode="nearest")
            ex = ndimage.map_coordinates(self.elastic_grid_px[1], coords, order=3, mode="nearest")
            uy = uy + ey.reshape(np.shape(y))
            ux = ux + ex.reshape(np.shape(x))
        return uy, ux

    def displacement(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """u on the full HR grid, (2, H, W) float32."""
        h, w = shape or self.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        uy, ux = self.displacement_at(yy, xx)
        return np.stack([uy, ux]).astype(np.float32)

    def inverse_map(self, py: np.ndarray, px: np.ndarray, iterations: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Scene point x seen at LR-frame position p, i.e. solve x + u(x) = p by fixed point
        (u is small and smooth, so this contracts in a few steps)."""
        y, x = np.array(py, dtype=np.float64), np.array(px, dtype=np.float64)
        for _ in range(iterations):
            uy, ux = self.displacement_at(y, x)
            y, x = py - uy, px - ux
        return y, x

    def to_dict(self) -> dict:
        d = asdict(self)
        d["elastic_grid_px"] = np.asarray(self.elastic_grid_px).tolist()
        d["shape"] = list(self.shape)
        d["shift_yx_px"] = list(self.shift_yx_px)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Misregistration:
        return cls(tuple(d["shift_yx_px"]), float(d["rotation_deg"]), float(d["scale"]),
                   np.asarray(d["elastic_grid_px"], dtype=np.float64), tuple(d["shape"]))
