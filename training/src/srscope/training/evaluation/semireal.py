"""Semi-real evaluation pairs: real fluorescence images from PyPI packages, degraded anew.

srscope's networks are trained on its own simulator. To see whether they hold on *real
specimens* without fetching anything at run time, this module takes real fluorescence images
that ship inside PyPI wheels (so ``pip`` is the only network access, as in CI), treats each as
the specimen (the *object*) on a fine grid, and images it into a 10x/0.4NA → 20x/0.75NA pair
with an optical and camera model that is deliberately **not** the training simulator's:

==========================  ===========================================  ==========================================
step                        this module                                  training simulator (``data/simulate.py``)
==========================  ===========================================  ==========================================
PSF                         Gaussian, σ = 0.21·λ/NA (Zhang et al. 2007,   Born & Wolf scalar PSF (Airy rings), with
                            widefield paraxial fit); no rings             an out-of-focus layer
object grid                 81.25 nm (HR/2), real image resampled         HR grid (oversample 1), synthetic structures
pixel integration           exact area binning of the fine grid           sinc aperture in the OTF, then point
                            (2×2 → HR, 4×4 → LR)                          sampling (LR by interpolation)
photometry                  one object flux for both sides: photons ∝     each side scaled to its own peak
                            NA² × pixel area (LR ≈ 1.14× HR per pixel)
camera                      sCMOS with per-pixel offset/gain/read-noise   uniform CCD for the widefield modality;
                            maps + column offsets + hot (RTS) pixels,     domain randomisation (``randomise.py``)
                            QE; or EMCCD (gamma register, ENF √2, CIC,    also draws sCMOS (per-pixel maps, log-
                            read noise after the register)                normal read noise) and EMCCD, but no
                                                                          column pattern, QE, CIC or hot pixels
emission                    520 nm                                        532 nm (randomised: 450–700 nm)
==========================  ===========================================  ==========================================

The HR image is the reference (``hr``; its noise-free expectation is ``hr_clean``). Both sides
see the same object on the same pixel lattice: LR pixel ``i`` covers HR pixels ``[2i, 2i+2)``,
the :class:`~srscope.training.evaluation.testset.EvalPair` convention, so no registration is
needed. The PSF shape, the fine-grid area binning, the coupled photometry and the real
specimens are what no training field has; the cameras overlap in kind with the randomised
training cameras, so camera robustness alone is not what this set isolates.

A deconvolution baseline must not be handed the Gaussian used here: each pair carries
the LR's *nominal* optics (NA 0.4, immersion 1.0, λ) and :meth:`SemiRealPair.nominal_lr_psf`
gives the Born & Wolf PSF a user would compute from them, which is the realistic situation.

Sources and licences (checked on the wheels, see each :class:`RealSource`): ``mahotas`` (MIT),
``pysted`` (CC BY 4.0 licence file; MIT classifier), ``flowdec`` (Apache-2.0). Images from the
packages stardist, nanopyx and NanoImagingPack are reserved for independent evaluation and
must never be added here. Files are located with :func:`importlib.util.find_spec` and read
directly, so the packages are never imported (none of their code runs).
"""

from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from .testset import EvalPair

__all__ = [
    "CAMERAS",
    "DEFAULT_CAMERAS",
    "EMISSION_WAVELENGTH_NM",
    "FINE_PIXEL_SIZE_UM",
    "HR_NA",
    "HR_PIXEL_SIZE_UM",
    "LR_NA",
    "LR_PIXEL_SIZE_UM",
    "SOURCES",
    "CameraModel",
    "RealSource",
    "SemiRealPair",
    "SensorMaps",
    "SourceUnavailableError",
    "available_sources",
    "expose",
    "gaussian_psf_sigma_um",
    "semireal_object",
    "semireal_pairs",
    "sensor_maps",
]

LR_PIXEL_SIZE_UM = 0.325
HR_PIXEL_SIZE_UM = 0.1625
#: The object grid: HR/2, so HR pixels are 2×2 and LR pixels 4×4 fine pixels.
FINE_PIXEL_SIZE_UM = HR_PIXEL_SIZE_UM / 2
LR_NA = 0.4
HR_NA = 0.75
N_IMMERSION = 1.0
EMISSION_WAVELENGTH_NM = 520.0
#: Zhang, Zerubia & Olivo-Marin (2007), Appl. Opt. 46:1819: widefield, paraxial, 2D: σ ≈ 0.21 λ/NA.
ZHANG_WIDEFIELD_FACTOR = 0.21

_HR_BIN = round(HR_PIXEL_SIZE_UM / FINE_PIXEL_SIZE_UM)   # 2
_LR_BIN = round(LR_PIXEL_SIZE_UM / FINE_PIXEL_SIZE_UM)   # 4
_FIELD_MULTIPLE = 16                                     # HR field edges are multiples of this
_MARGIN_FINE = 32                                        # > 4 σ_LR (3.4 fine px) + binning


def gaussian_psf_sigma_um(wavelength_nm: float, na: float) -> float:
    """Standard deviation (µm) of the Gaussian fit to a widefield PSF: 0.21·λ/NA (Zhang et al. 2007)."""
    return ZHANG_WIDEFIELD_FACTOR * wavelength_nm / 1000.0 / na


# ----------------------------------------------------------------------------------------------
# Real sources
# ----------------------------------------------------------------------------------------------


class SourceUnavailableError(ModuleNotFoundError):
    """The package that ships a source's image is not installed here."""


def _package_dir(module: str) -> Path | None:
    """The directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _package_file(module: str, relative: str, distribution: str) -> Path:
    root = _package_dir(module)
    path = None if root is None else root / relative
    if path is None or not path.is_file():
        raise SourceUnavailableError(
            f"{relative} not found: install the PyPI package {distribution!r} "
            f"(srscope-training[semireal])", name=module)
    return path


def _read_png_channel0(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        data = np.asarray(im)
    return (data[..., 0] if data.ndim == 3 else data).astype(np.float32)


def _read_tiff_mip(path: Path) -> np.ndarray:
    import tifffile

    data = np.asarray(tifffile.imread(path), dtype=np.float32)
    return data.max(axis=0) if data.ndim == 3 else data


@dataclass(frozen=True)
class RealSource:
    """A real 2D fluorescence image shipped inside a PyPI package.

    ``source_pixel_size_um`` is the physical size *assigned* to one source pixel so that the
    specimen's features have a plausible size for a 10x/20x widefield pair; where it differs
    from the native pixel size (``native_pixel_size_um``, ``None`` when undocumented) the
    specimen is in effect enlarged, which ``describe`` states.
    """

    name: str
    package: str                     # PyPI distribution name (what to pip install)
    version: str                     # version checked when this source was added
    module: str                      # import name, used only to locate files
    relative_path: str               # file inside the installed package
    describe: str
    licence: str
    source_pixel_size_um: float
    native_pixel_size_um: float | None
    reader: Callable[[Path], np.ndarray]
    default_hr_size: int             # HR field edge (px) when the image is large enough
    center: tuple[float, float] = (0.5, 0.5)   # field centre, as fractions of the image (y, x)

    @property
    def path(self) -> Path:
        """The image file; raises :class:`SourceUnavailableError` when the package is missing."""
        return _package_file(self.module, self.relative_path, self.package)

    @property
    def available(self) -> bool:
        root = _package_dir(self.module)
        return root is not None and (root / self.relative_path).is_file()

    def loader(self) -> np.ndarray:
        """The raw image as a 2D float32 array (source units, no processing)."""
        image = np.asarray(self.reader(self.path), dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"{self.name}: expected a 2D image, got shape {image.shape}")
        return image


_PYSTED_NOTE = ("pySTED 'datamap': an emitter map that pySTED's U-Net inferred from a real STED image "
                "(Bilodeau et al. 2024, Nat. Mach. Intell.), 224×224 at ~20 nm; used at 81.25 nm per "
                "pixel, i.e. enlarged ~4× so the 4.5 µm crop spans an 18 µm field")
_PYSTED_LICENCE = "CC BY 4.0 (LICENSE file of the wheel; trove classifier says MIT); no separate image terms"

SOURCES: dict[str, RealSource] = {
    s.name: s
    for s in (
        RealSource(
            name="nuclei", package="mahotas", version="1.4.19", module="mahotas",
            relative_path="demos/data/nuclear.png",
            describe=("Hoechst-stained nuclei of cultured mouse cells (chromocentres visible), 2D widefield, "
                      "from the Coelho et al. 2009 nuclear-segmentation benchmark; 1024×1344 8-bit grey "
                      "(stored RGB); pixel size undocumented, 162.5 nm assigned (nuclei ~12–16 µm)"),
            licence="MIT (mahotas); image shipped by the benchmark's author in the MIT package, no separate terms",
            source_pixel_size_um=0.1625, native_pixel_size_um=None, reader=_read_png_channel0,
            default_hr_size=512, center=(0.64, 0.41),   # away from the saturated mitotic cells
        ),
        RealSource(
            name="microtubules", package="pysted", version="0.0.4", module="pysted",
            relative_path="data/examples/tubulin/4.npy",
            describe="Microtubule network (tubulin, STED) in cultured neurons. " + _PYSTED_NOTE,
            licence=_PYSTED_LICENCE, source_pixel_size_um=FINE_PIXEL_SIZE_UM, native_pixel_size_um=0.02,
            reader=lambda p: np.load(p), default_hr_size=112,
        ),
        RealSource(
            name="actin", package="pysted", version="0.0.4", module="pysted",
            relative_path="data/examples/factin/3.npy",
            describe="F-actin fibres with periodic axonal rings (STED) in cultured neurons. " + _PYSTED_NOTE,
            licence=_PYSTED_LICENCE, source_pixel_size_um=FINE_PIXEL_SIZE_UM, native_pixel_size_um=0.02,
            reader=lambda p: np.load(p), default_hr_size=112,
        ),
        RealSource(
            name="puncta", package="pysted", version="0.0.4", module="pysted",
            relative_path="data/examples/psd95/1.npy",
            describe="PSD95 synaptic clusters (puncta, STED) on a sparse speckled background. " + _PYSTED_NOTE,
            licence=_PYSTED_LICENCE, source_pixel_size_um=FINE_PIXEL_SIZE_UM, native_pixel_size_um=0.02,
            reader=lambda p: np.load(p), default_hr_size=112,
        ),
        RealSource(
            name="neuron", package="flowdec", version="1.1.0", module="flowdec",
            relative_path="datasets/neuron-25pct/data.tif",
            describe=("Purkinje neuron (soma and dendritic arbour), 3D widefield stack 50×256×256 downsampled "
                      "to 25% by flowdec; maximum-intensity projection used; pixel size undocumented, "
                      "162.5 nm assigned (fine dendrites ~0.2–0.5 µm); the soma is saturated in the source"),
            licence="Apache-2.0 (flowdec); image origin and terms not stated separately in the package",
            source_pixel_size_um=0.1625, native_pixel_size_um=None, reader=_read_tiff_mip,
            default_hr_size=256,
        ),
    )
}


def available_sources() -> list[str]:
    """Names of the sources whose package is installed here (nothing is imported or downloaded)."""
    return [name for name, source in SOURCES.items() if source.available]


# ----------------------------------------------------------------------------------------------
# Cameras
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraModel:
    """A camera unlike the simulator's uniform one.

    sCMOS: every pixel has its own offset (plus a per-column amplifier offset), gain (photo-
    response non-uniformity) and read noise (gamma-distributed around ``read_noise_e`` with a
    fraction of random-telegraph "hot" pixels); the pattern is fixed by ``pattern_seed`` and
    shared by all frames, as on a real sensor. EMCCD: photo-electrons (plus clock-induced charge)
    go through a gamma-distributed multiplication register of mean gain ``em_gain`` (excess
    noise factor √2, so the shot-noise variance doubles), then read noise and a uniform offset.
    Counts = round(gain·electrons + offset + read noise), clipped to ``bit_depth`` (uint16).
    """

    name: str
    kind: Literal["scmos", "emccd"]
    offset_adu: float
    gain_adu_per_e: float            # ADU per electron at the output (after the EM register)
    read_noise_e: float              # RMS read noise at the output node, electrons
    quantum_efficiency: float
    peak_photons: float              # photons at the 99.9th percentile of the clean HR signal
    background_photons: float        # uniform autofluorescence, photons per HR pixel
    offset_sd_adu: float = 0.0       # sCMOS pixel-to-pixel offset spread
    column_offset_sd_adu: float = 0.0
    gain_sd: float = 0.0             # relative pixel gain spread
    hot_pixel_fraction: float = 0.0
    hot_pixel_factor: float = 1.0    # read-noise multiplier of hot pixels
    em_gain: float = 1.0
    cic_e: float = 0.0               # clock-induced charge, electrons per pixel per frame
    bit_depth: int = 16
    sensor_shape: tuple[int, int] = (2048, 2048)
    pattern_seed: int = 0

    @property
    def adu_per_photoelectron(self) -> float:
        return self.gain_adu_per_e * self.em_gain

    def describe(self) -> str:
        if self.kind == "emccd":
            return (f"{self.name}: EMCCD, EM gain {self.em_gain:g} (ENF √2), {self.adu_per_photoelectron:g} "
                    f"ADU/photo-e⁻, offset {self.offset_adu:g} ADU, read {self.read_noise_e:g} e⁻, "
                    f"CIC {self.cic_e:g} e⁻, QE {self.quantum_efficiency:g}, peak {self.peak_photons:g} photons, "
                    f"background {self.background_photons:g} photons/HR px")
        return (f"{self.name}: sCMOS, offset {self.offset_adu:g}±{self.offset_sd_adu:g} ADU "
                f"(+columns ±{self.column_offset_sd_adu:g}), gain {self.gain_adu_per_e:g} ADU/e⁻ "
                f"±{100 * self.gain_sd:g}%, read {self.read_noise_e:g} e⁻ median "
                f"({100 * self.hot_pixel_fraction:g}% hot ×{self.hot_pixel_factor:g}), QE {self.quantum_efficiency:g}, "
                f"peak {self.peak_photons:g} photons, background {self.background_photons:g} photons/HR px")


CAMERAS: dict[str, CameraModel] = {
    c.name: c
    for c in (
        # dim sample on a fast-readout sCMOS: offset 100, 2 ADU/e⁻, ~400 photons at the peak
        CameraModel("scmos-100", "scmos", offset_adu=100.0, gain_adu_per_e=2.0, read_noise_e=1.6,
                    quantum_efficiency=0.8, peak_photons=400.0, background_photons=10.0,
                    offset_sd_adu=3.0, column_offset_sd_adu=1.5, gain_sd=0.02,
                    hot_pixel_fraction=0.02, hot_pixel_factor=5.0, pattern_seed=11),
        # bright sample, high-dynamic-range mode: offset 500, 0.5 ADU/e⁻, ~1500 photons
        CameraModel("scmos-500", "scmos", offset_adu=500.0, gain_adu_per_e=0.5, read_noise_e=1.1,
                    quantum_efficiency=0.82, peak_photons=1500.0, background_photons=40.0,
                    offset_sd_adu=6.0, column_offset_sd_adu=3.0, gain_sd=0.015,
                    hot_pixel_fraction=0.01, hot_pixel_factor=6.0, pattern_seed=23),
        # EMCCD at EM gain 100 (10 ADU per photo-electron), very dim sample
        CameraModel("emccd", "emccd", offset_adu=200.0, gain_adu_per_e=0.1, read_noise_e=40.0,
                    quantum_efficiency=0.9, peak_photons=150.0, background_photons=5.0,
                    em_gain=100.0, cic_e=0.005, sensor_shape=(1024, 1024), pattern_seed=37),
    )
}
DEFAULT_CAMERAS: tuple[str, ...] = tuple(CAMERAS)


@dataclass(frozen=True)
class SensorMaps:
    """Per-pixel offset (ADU), gain (ADU/e⁻) and read noise (e⁻ RMS) of a sensor region."""

    offset: np.ndarray
    gain: np.ndarray
    read_noise_e: np.ndarray


@lru_cache(maxsize=8)
def _full_sensor(camera: CameraModel) -> SensorMaps:
    h, w = camera.sensor_shape
    rng = np.random.default_rng([camera.pattern_seed, 0x5E2])
    if camera.kind == "emccd":   # one output amplifier: no pixel pattern to speak of
        shape = (h, w)
        return SensorMaps(np.full(shape, camera.offset_adu, np.float32),
                          np.full(shape, camera.gain_adu_per_e, np.float32),
                          np.full(shape, camera.read_noise_e, np.float32))
    offset = (camera.offset_adu + camera.offset_sd_adu * rng.standard_normal((h, w))
              + camera.column_offset_sd_adu * rng.standard_normal((1, w)))
    gain = camera.gain_adu_per_e * np.clip(1.0 + camera.gain_sd * rng.standard_normal((h, w)), 0.5, 1.5)
    read = camera.read_noise_e * rng.gamma(16.0, 1.0 / 16.0, (h, w))
    hot = rng.random((h, w)) < camera.hot_pixel_fraction
    read[hot] *= camera.hot_pixel_factor
    return SensorMaps(offset.astype(np.float32), gain.astype(np.float32), read.astype(np.float32))


def sensor_maps(camera: CameraModel, shape: tuple[int, int]) -> SensorMaps:
    """The fixed pattern of the ``shape`` region of interest at the sensor's corner (seeded)."""
    h, w = shape
    full = _full_sensor(camera)
    if h > full.offset.shape[0] or w > full.offset.shape[1]:
        raise ValueError(f"{camera.name}: region {shape} exceeds the {camera.sensor_shape} sensor")
    return SensorMaps(full.offset[:h, :w], full.gain[:h, :w], full.read_noise_e[:h, :w])


def expose(photons: np.ndarray, camera: CameraModel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One frame of ``photons`` (expected photons per pixel) → (uint16 counts, float32 expected counts)."""
    maps = sensor_maps(camera, photons.shape)
    mean_e = camera.quantum_efficiency * np.clip(photons, 0.0, None) + camera.cic_e
    electrons = rng.poisson(mean_e).astype(np.float64)
    if camera.kind == "emccd":
        # n electrons out of a long multiplication register ~ Gamma(n, g): mean n·g, variance n·g²;
        # with the Poisson n in, the variance is 2 n g² (ENF² = 2). Zero in, zero out.
        electrons = np.where(electrons > 0, rng.gamma(np.maximum(electrons, 1e-12), camera.em_gain), 0.0)
    adu = (maps.gain * electrons + maps.offset
           + maps.gain * maps.read_noise_e * rng.standard_normal(photons.shape))
    counts = np.clip(np.rint(adu), 0, 2**camera.bit_depth - 1).astype(np.uint16)
    expected = (maps.gain * camera.em_gain * mean_e + maps.offset).astype(np.float32)
    return counts, expected


# ----------------------------------------------------------------------------------------------
# Object preparation and imaging
# ----------------------------------------------------------------------------------------------


def _field_shape(source: RealSource, image_shape: tuple[int, int], hr_size: int | None) -> tuple[int, int]:
    """HR field (multiples of 16): ``hr_size`` (or the source default), or what the image allows."""
    zoom = source.source_pixel_size_um / FINE_PIXEL_SIZE_UM
    want = source.default_hr_size if hr_size is None else int(hr_size)
    if want < _FIELD_MULTIPLE or want % _FIELD_MULTIPLE:
        raise ValueError(f"hr_size must be a positive multiple of {_FIELD_MULTIPLE}, got {want}")
    out = []
    for n in image_shape:
        fits = int(np.floor(n * zoom / _HR_BIN / _FIELD_MULTIPLE)) * _FIELD_MULTIPLE
        if fits < _FIELD_MULTIPLE:
            raise ValueError(f"{source.name}: image {image_shape} too small for a {_FIELD_MULTIPLE}-px field")
        out.append(min(want, fits))
    return out[0], out[1]


@lru_cache(maxsize=16)
def _object_with_margin(name: str, hr_size: int | None) -> np.ndarray:
    """Background-subtracted, normalised object on the fine grid, with a reflected margin."""
    source = SOURCES[name]
    image = source.loader()
    # background: a low percentile of the whole image (the paper subtracts an empty-region mean)
    image = np.clip(image - np.percentile(image, 1.0), 0.0, None)
    zoom = source.source_pixel_size_um / FINE_PIXEL_SIZE_UM
    hr_h, hr_w = _field_shape(source, image.shape, hr_size)
    fine_h, fine_w = hr_h * _HR_BIN, hr_w * _HR_BIN
    src_h, src_w = fine_h / zoom, fine_w / zoom                 # field in source pixels
    margin_src = int(np.ceil(_MARGIN_FINE / zoom)) + 2
    y0 = round(np.clip(source.center[0] * image.shape[0] - src_h / 2, 0, image.shape[0] - src_h))
    x0 = round(np.clip(source.center[1] * image.shape[1] - src_w / 2, 0, image.shape[1] - src_w))
    y1, x1 = int(np.ceil(y0 + src_h)), int(np.ceil(x0 + src_w))
    # take real context where it exists, reflect where the field touches the image border
    ya, yb = max(y0 - margin_src, 0), min(y1 + margin_src, image.shape[0])
    xa, xb = max(x0 - margin_src, 0), min(x1 + margin_src, image.shape[1])
    region = np.pad(image[ya:yb, xa:xb],
                    ((margin_src - (y0 - ya), margin_src - (yb - y1)), (margin_src - (x0 - xa), margin_src - (xb - x1))),
                    mode="reflect")
    if zoom != 1.0:
        # cubic spline; grid_mode maps each source pixel's *area* onto zoom×zoom fine pixels
        region = np.clip(ndimage.zoom(region, zoom, order=3, mode="grid-mirror", grid_mode=True), 0.0, None)
    m = round(margin_src * zoom)
    start = m - _MARGIN_FINE
    obj = region[start: start + fine_h + 2 * _MARGIN_FINE, start: start + fine_w + 2 * _MARGIN_FINE]
    core = obj[_MARGIN_FINE:-_MARGIN_FINE, _MARGIN_FINE:-_MARGIN_FINE]
    obj = obj / max(float(np.percentile(core, 99.9)), 1e-12)
    obj = obj.astype(np.float32)
    obj.setflags(write=False)
    return obj


def semireal_object(name: str, hr_size: int | None = None) -> np.ndarray:
    """The specimen of source ``name`` on the 81.25 nm grid (2·HR field), normalised to its 99.9th pct."""
    if name not in SOURCES:
        raise KeyError(f"unknown semi-real source {name!r}; choose from {sorted(SOURCES)}")
    obj = _object_with_margin(name, hr_size)
    return obj[_MARGIN_FINE:-_MARGIN_FINE, _MARGIN_FINE:-_MARGIN_FINE].copy()


def _bin(image: np.ndarray, k: int) -> np.ndarray:
    h, w = image.shape[0] // k, image.shape[1] // k
    return image[: h * k, : w * k].reshape(h, k, w, k).sum(axis=(1, 3))


def _image_clean(obj_with_margin: np.ndarray, wavelength_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free HR and LR signals (arbitrary flux units): Gaussian blur on the fine grid, area binning.

    The LR signal is multiplied by (NA_LR/NA_HR)², the ratio of collected light, so that the
    same object flux gives both sides' photon counts.
    """
    fine = FINE_PIXEL_SIZE_UM
    m = _MARGIN_FINE
    out = []
    for na, k in ((HR_NA, _HR_BIN), (LR_NA, _LR_BIN)):
        sigma = gaussian_psf_sigma_um(wavelength_nm, na) / fine
        blurred = ndimage.gaussian_filter(obj_with_margin.astype(np.float64), sigma, mode="reflect", truncate=5.0)
        out.append(_bin(blurred[m:-m, m:-m], k) * (na / HR_NA) ** 2)
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------
# Pairs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemiRealPair:
    """One semi-real LR/HR pair in camera counts, aligned (LR pixel i ↔ HR pixels [2i, 2i+2))."""

    name: str
    source: str
    camera: CameraModel
    lr: np.ndarray                   # uint16, LR grid (325 nm)
    hr: np.ndarray                   # uint16, HR grid (162.5 nm): the reference
    hr_clean: np.ndarray             # float32 expected HR counts (noise-free, incl. offset/gain maps)
    lr_clean: np.ndarray             # float32 expected LR counts
    object: np.ndarray               # float32 specimen on the 81.25 nm grid (normalised)
    seed: int
    lr_pixel_size_um: float = LR_PIXEL_SIZE_UM
    hr_pixel_size_um: float = HR_PIXEL_SIZE_UM
    object_pixel_size_um: float = FINE_PIXEL_SIZE_UM
    emission_wavelength_nm: float = EMISSION_WAVELENGTH_NM
    lr_na: float = LR_NA             # nominal optics of the LR side, for a baseline's PSF
    hr_na: float = HR_NA
    n_immersion: float = N_IMMERSION
    background_lr: float = 0.0       # mean expected background + offset, LR counts
    background_hr: float = 0.0

    @property
    def scale(self) -> int:
        return round(self.lr_pixel_size_um / self.hr_pixel_size_um)

    @property
    def camera_description(self) -> str:
        return self.camera.describe()

    @property
    def psf_sigma_um(self) -> tuple[float, float]:
        """The Gaussian σ actually used (LR, HR), µm: for diagnostics, not for baselines."""
        return (gaussian_psf_sigma_um(self.emission_wavelength_nm, self.lr_na),
                gaussian_psf_sigma_um(self.emission_wavelength_nm, self.hr_na))

    def nominal_lr_psf(self, size: int = 33) -> np.ndarray:
        """Born & Wolf PSF on the LR grid from the *nominal* NA, immersion and emission only."""
        from ..optics.psf import born_wolf_psf

        return born_wolf_psf(size, self.lr_pixel_size_um, self.emission_wavelength_nm / 1000.0,
                             self.lr_na, self.n_immersion)

    def to_eval_pair(self, reference: Literal["clean", "noisy"] = "clean") -> EvalPair:
        """As an :class:`EvalPair` for the evaluation runner (float32 counts, known background).

        The reference is the noise-free HR by default: at the set's 150–1,500 photons a noisy
        reference caps every method near the same PSNR and rewards denoising over resolution,
        and resolution is what the set is built to test (``"noisy"`` gives the camera's HR frame).
        """
        hr = self.hr_clean if reference == "clean" else self.hr
        return EvalPair(name=self.name, lr=self.lr.astype(np.float32), hr=hr.astype(np.float32),
                        lr_pixel_size_um=self.lr_pixel_size_um, hr_pixel_size_um=self.hr_pixel_size_um,
                        emission_wavelength_nm=self.emission_wavelength_nm,
                        background_lr=self.background_lr, background_hr=self.background_hr)


def _resolve_cameras(cameras: Iterable[str | CameraModel]) -> list[CameraModel]:
    out = []
    for cam in cameras:
        if isinstance(cam, CameraModel):
            out.append(cam)
        elif cam in CAMERAS:
            out.append(CAMERAS[cam])
        else:
            raise KeyError(f"unknown camera {cam!r}; choose from {sorted(CAMERAS)}")
    return out


def semireal_pairs(names: Sequence[str] | None = None, *, seed: int,
                   cameras: Iterable[str | CameraModel] = DEFAULT_CAMERAS,
                   hr_size: int | None = None,
                   emission_wavelength_nm: float = EMISSION_WAVELENGTH_NM) -> list[SemiRealPair]:
    """Pairs for every source in ``names`` (default: :func:`available_sources`) × camera.

    Deterministic in ``seed``: frame noise is seeded by (seed, source, camera, side); camera
    fixed patterns by the camera alone. ``hr_size`` (multiple of 16) overrides the sources'
    default field; a smaller image gives its largest field. A named source whose package is
    missing raises :class:`SourceUnavailableError`.
    """
    names = available_sources() if names is None else list(names)
    cams = _resolve_cameras(cameras)
    pairs: list[SemiRealPair] = []
    for name in names:
        if name not in SOURCES:
            raise KeyError(f"unknown semi-real source {name!r}; choose from {sorted(SOURCES)}")
        obj = _object_with_margin(name, hr_size)
        hr_signal, lr_signal = _image_clean(obj, emission_wavelength_nm)
        bright = max(float(np.percentile(hr_signal, 99.9)), 1e-12)
        area_ratio = (_LR_BIN / _HR_BIN) ** 2 * (LR_NA / HR_NA) ** 2   # LR/HR photons of a flat field
        core = np.ascontiguousarray(obj[_MARGIN_FINE:-_MARGIN_FINE, _MARGIN_FINE:-_MARGIN_FINE])
        for cam in cams:
            flux = cam.peak_photons / bright
            hr_ph = hr_signal * flux + cam.background_photons
            lr_ph = lr_signal * flux + cam.background_photons * area_ratio
            key = zlib.crc32(f"{name}|{cam.name}".encode())
            hr, hr_clean = expose(hr_ph, cam, np.random.default_rng([seed, key, 0]))
            lr, lr_clean = expose(lr_ph, cam, np.random.default_rng([seed, key, 1]))
            k = cam.quantum_efficiency * cam.adu_per_photoelectron
            pairs.append(SemiRealPair(
                name=f"semireal-{name}-{cam.name}-seed{seed}", source=name, camera=cam,
                lr=lr, hr=hr, hr_clean=hr_clean, lr_clean=lr_clean, object=core, seed=seed,
                emission_wavelength_nm=float(emission_wavelength_nm),
                background_lr=float(cam.offset_adu + k * (cam.background_photons * area_ratio)
                                    + cam.adu_per_photoelectron * cam.cic_e),
                background_hr=float(cam.offset_adu + k * cam.background_photons
                                    + cam.adu_per_photoelectron * cam.cic_e),
            ))
    return pairs
