"""Pure-Python microscope devices for offline acquisitions (demo, tests, benchmarks).

The camera images a procedurally generated fluorescent slide (curved filaments plus beads) at
the current stage position, blurred with a Gaussian PSF and with Poisson shot noise and a camera
offset, so live super-resolution sees realistic widefield-like frames without hardware. Devices
are plain ``pymmcore_plus.experimental.unicore`` Python devices; :data:`SIMULATED_CONFIG` is a
Micro-Manager ``.cfg`` that loads them with ``#py`` lines, so the same code path that loads a
real microscope configuration is exercised.

The slide content is deliberately independent of the training package's simulator: acquisition
must never import training code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pymmcore_plus.experimental.unicore import (
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    StateDevice,
    XYStageDevice,
    pymm_property,
)

#: Pixel size of the simulated camera in micrometres (10x objective on a 3.25 µm-pixel camera).
SIMULATED_PIXEL_SIZE_UM = 0.325
#: Micro-Manager config (``#py`` lines are Python devices) for the simulated microscope.
SIMULATED_CONFIG = Path(__file__).with_name("simulated.cfg")

_SLIDE_TILE_UM = 200.0  # the slide pattern repeats every 200 µm, so any stage position has content


def _gaussian_kernel_1d(sigma_px: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3.5 * sigma_px)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur (wrap-around edges keep the periodic slide seamless)."""
    k = _gaussian_kernel_1d(sigma_px)
    r = (k.size - 1) // 2
    out = image
    for axis in (0, 1):
        padded = np.concatenate([np.take(out, range(-r, 0), axis=axis), out,
                                 np.take(out, range(r), axis=axis)], axis=axis)
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * np.take(padded, range(i, i + out.shape[axis]), axis=axis)
        out = acc
    return out


class SimulatedSlide:
    """A periodic fluorescent sample rendered on a fine grid once, then sampled per frame.

    ``render(x_um, y_um, shape, pixel_size_um)`` returns noiseless, PSF-blurred photon
    expectations for a camera window centred on the stage position.
    """

    def __init__(self, *, seed: int = 0, fine_px_um: float = SIMULATED_PIXEL_SIZE_UM / 2,
                 psf_fwhm_um: float = 0.68, brightness: float = 400.0) -> None:
        rng = np.random.default_rng(seed)
        n = round(_SLIDE_TILE_UM / fine_px_um)
        self.fine_px_um = _SLIDE_TILE_UM / n
        canvas = np.zeros((n, n), dtype=np.float32)
        # Filaments: smooth random curves drawn as dense point sets.
        for _ in range(60):
            p = rng.uniform(0, n, size=2)
            heading = rng.uniform(0, 2 * np.pi)
            curvature = rng.normal(0, 0.004)
            steps = int(rng.uniform(0.3, 1.0) * n)
            for _ in range(steps):
                heading += curvature + rng.normal(0, 0.01)
                p = p + np.array([np.sin(heading), np.cos(heading)])
                canvas[int(p[0]) % n, int(p[1]) % n] += 1.0
        # Beads: sub-resolution point sources.
        idx = rng.integers(0, n, size=(300, 2))
        canvas[idx[:, 0], idx[:, 1]] += rng.uniform(2.0, 5.0, size=300).astype(np.float32)
        sigma_fine = psf_fwhm_um / 2.3548 / self.fine_px_um
        blurred = _blur(canvas, sigma_fine)
        self._image = (brightness * blurred / np.percentile(blurred[blurred > 0], 99.5)).astype(np.float32)

    def render(self, x_um: float, y_um: float, shape: tuple[int, int], pixel_size_um: float) -> np.ndarray:
        """Camera-pixel photon expectations (box-sampled from the fine grid) at a stage position."""
        h, w = shape
        n = self._image.shape[0]
        step = pixel_size_um / self.fine_px_um
        ys = (y_um / self.fine_px_um + (np.arange(h) - h / 2) * step).astype(np.int64) % n
        xs = (x_um / self.fine_px_um + (np.arange(w) - w / 2) * step).astype(np.int64) % n
        return self._image[np.ix_(ys, xs)]


_BENCH: dict[str, object] = {}


class SimulatedStage(XYStageDevice):
    """An XY stage that moves instantly; the camera reads its position to choose the field."""

    def __init__(self) -> None:
        super().__init__()
        self._xy = (0.0, 0.0)
        _BENCH["stage"] = self

    def set_position_um(self, x: float, y: float) -> None:
        self._xy = (float(x), float(y))

    def get_position_um(self) -> tuple[float, float]:
        return self._xy

    def set_origin_x(self) -> None:
        self._xy = (0.0, self._xy[1])

    def set_origin_y(self) -> None:
        self._xy = (self._xy[0], 0.0)

    def home(self) -> None:
        self._xy = (0.0, 0.0)

    def stop(self) -> None:
        """Moves are instantaneous, so there is nothing to stop."""


class SimulatedFocus(StageDevice):
    """A Z drive (the sample is thin, so focus only moves the recorded z coordinate)."""

    def __init__(self) -> None:
        super().__init__()
        self._z = 0.0

    def set_position_um(self, val: float) -> None:
        self._z = float(val)

    def get_position_um(self) -> float:
        return self._z

    def set_origin(self) -> None:
        self._z = 0.0

    def home(self) -> None:
        self._z = 0.0

    def stop(self) -> None:
        """Moves are instantaneous, so there is nothing to stop."""


class SimulatedShutter(ShutterDevice):
    """A shutter that only records its state (the core's auto-shutter needs one)."""

    def __init__(self) -> None:
        super().__init__()
        self._open = False

    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = bool(open)


class SimulatedFilterWheel(StateDevice):
    """Emission filters; the selected label changes the simulated brightness per channel."""

    LABELS = ("DAPI", "FITC", "TxRed")

    def __init__(self) -> None:
        super().__init__(dict(enumerate(self.LABELS)))
        self._state = 0
        _BENCH["filters"] = self

    def get_state(self) -> int:
        return self._state

    def set_state(self, position: int) -> None:
        self._state = int(position)


class SimulatedCamera(SimpleCameraDevice):
    """A 16-bit camera imaging :class:`SimulatedSlide` at the stage position.

    Python devices get no query access to the core, so the camera finds the stage and filter
    wheel through :data:`_BENCH`, where the most recently created simulated devices register
    themselves (one simulated microscope per process at a time, which is all demos and tests need).
    """

    def __init__(self, *, shape: tuple[int, int] = (512, 512), seed: int = 0) -> None:
        super().__init__()
        self._shape = shape
        self._exposure_ms = 10.0
        self._rng = np.random.default_rng(seed)
        self._slide = _shared_slide(seed)
        self.offset_counts = 100.0
        self._noise = "poisson"
        self._z_bank: np.ndarray | None = None
        self._z_next = 0

    @pymm_property(allowed_values=["poisson", "fast"])
    def noise_model(self) -> str:
        """``poisson``: exact shot noise (~10 ms of CPU per 512² frame). ``fast``: Gaussian
        approximation from a pre-drawn bank, so the camera costs almost no CPU, like real
        hardware; benchmarks use it to time the hook rather than the simulator."""
        return self._noise

    @noise_model.setter
    def noise_model(self, value: str) -> None:
        self._noise = str(value)

    def _shot_noise(self, photons: np.ndarray) -> np.ndarray:
        if self._noise != "fast":
            return self._rng.poisson(photons).astype(np.float32)
        if self._z_bank is None or self._z_bank.shape[1:] != photons.shape:
            self._z_bank = self._rng.standard_normal((8, *photons.shape), dtype=np.float32)
        self._z_next = (self._z_next + 1) % len(self._z_bank)
        return photons + np.sqrt(photons) * self._z_bank[self._z_next]

    def get_offset(self) -> float:
        """Camera offset (bias) in counts, Micro-Manager's standard ``Offset`` property."""
        return self.offset_counts

    def set_offset(self, value: float) -> None:
        self.offset_counts = float(value)

    def sensor_shape(self) -> tuple[int, int]:
        return self._shape

    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16)

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self._exposure_ms = float(exposure)

    def _field(self) -> tuple[float, float, float]:
        stage, filters = _BENCH.get("stage"), _BENCH.get("filters")
        x, y = stage.get_position_um() if stage is not None else (0.0, 0.0)
        gain = 1.0 + (0.5 * filters.get_state() if filters is not None else 0.0)
        return float(x), float(y), gain

    def snap(self, buffer: np.ndarray) -> Mapping:
        """Render only the active ROI (the base class crops the full-frame buffer to it)."""
        t0 = time.perf_counter()
        x, y, channel_gain = self._field()
        rx, ry, rw, rh = self.get_roi()
        full_h, full_w = self._shape
        # Stage position = sensor centre; shift to the ROI centre.
        cx = x + (rx + rw / 2 - full_w / 2) * SIMULATED_PIXEL_SIZE_UM
        cy = y + (ry + rh / 2 - full_h / 2) * SIMULATED_PIXEL_SIZE_UM
        photons = self._slide.render(cx, cy, (rh, rw), SIMULATED_PIXEL_SIZE_UM)
        photons = photons * np.float32(channel_gain * self._exposure_ms / 10.0) + np.float32(5.0)
        counts = self._shot_noise(photons) + np.float32(self.offset_counts)
        buffer[ry:ry + rh, rx:rx + rw] = np.clip(counts, 0, np.iinfo(np.uint16).max).astype(np.uint16)
        # Keep the requested exposure as the frame period so timing tests see a real camera cadence.
        remaining = self._exposure_ms / 1000.0 - (time.perf_counter() - t0)
        if remaining > 0:
            time.sleep(remaining)
        return {}


_SLIDES: dict[int, SimulatedSlide] = {}
_SLIDES_LOCK = threading.Lock()


def _shared_slide(seed: int) -> SimulatedSlide:
    """Rendering the slide takes ~0.5 s; share it between cameras in one process."""
    with _SLIDES_LOCK:
        if seed not in _SLIDES:
            _SLIDES[seed] = SimulatedSlide(seed=seed)
        return _SLIDES[seed]
