"""The model card: everything the runtime needs to run a model correctly, stored inside the ONNX file.

A shipped model is one self-describing ``.onnx`` file. The generator graph takes a normalised
low-resolution batch ``[N, 1, H, W]`` (float32, or float16 for fp16 variants) and returns the
normalised high-resolution batch ``[N, 1, H*s, W*s]``. Everything that turns camera counts into
that input, and the output back into physical intensity units, lives in this card, so a lab can
run the file years later without the training code.

The card is JSON in the ONNX ``metadata_props`` under :data:`CARD_KEY`. Schema 2 adds
:class:`IntensityRule` (fixed or per-image percentile normalisation, see
:mod:`srscope.runtime.intensity`); schema-1 cards still load, as fixed. Its ``weights_sha256``
is computed over the graph's initializers (see :func:`weights_checksum`), so a card pasted onto
other weights, or weights edited after export, is caught at load time. Its ``behaviour_sha256``
(written by :func:`embed_card` since it was added; older cards lack it and still load) covers the
card fields that change the output (:data:`BEHAVIOUR_FIELDS`), so an edited intensity mapping or
pixel size is caught the same way instead of silently scaling every result.

An optional :class:`DegradationModel` (``degradation``) carries what the runtime's per-plane
consistency score (:mod:`srscope.runtime.consistency`) needs: the kernel, fitted at export on the
training pairs, that maps the model's output grid back to its input grid, and the in-domain ranges
of the score's features, calibrated on held-out fields. Cards without it load with the check off;
when present, ``behaviour_sha256`` covers it (an edited threshold would silently un-flag planes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

CARD_KEY = "srscope.card"
CARD_SCHEMA_VERSION = 2
#: Card schemas this runtime reads; 1 predates :class:`IntensityRule` (always ``fixed``).
READABLE_SCHEMA_VERSIONS = (1, 2)


class ModelCardError(ValueError):
    """The ONNX file has no card, an invalid card, or weights that do not match the card."""


@dataclass(frozen=True)
class AffineIntensity:
    """``normalised = (x - offset) / scale``; the inverse maps network output back to counts.

    Affine so output stays quantitative. In a schema-1 (``fixed``) card it is global: the same
    input counts always map to the same output counts. In a ``percentile`` card each plane gets its
    own (:mod:`srscope.runtime.intensity`), and the stored one is the training set's median.
    """

    offset: float
    scale: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.offset) or not np.isfinite(self.scale) or self.scale <= 0:
            raise ModelCardError(f"invalid intensity mapping offset={self.offset} scale={self.scale}")

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) - np.float32(self.offset)) / np.float32(self.scale)

    def denormalise(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float32) * np.float32(self.scale) + np.float32(self.offset)


#: Numeric precisions of a model file. ``int8``: a static QDQ-quantised graph with float32 inputs
#: and outputs (``srscope.training.gan.quantise``), fed exactly like ``fp32``.
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class IntensityRule:
    """How the model was trained to see intensities: ``fixed`` (one camera's affine, schema 1) or
    ``percentile`` (each input by its own ``low``/``high`` percentiles, output mapped back through
    the same affine; camera-independent, see :mod:`srscope.runtime.intensity`)."""

    mode: str = "fixed"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.mode not in ("fixed", "percentile"):
            raise ModelCardError(f"intensity mode must be fixed or percentile, not {self.mode!r}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ModelCardError(f"intensity percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}")


#: How a feature enters the domain model's space (:class:`DomainModel`): ``log`` for positive
#: magnitudes (errors, noise, gain), ``log1m`` for correlations near 1 (``log(1 − r)``), ``logeps``
#: for fractions that are often 0 (``log(x + 0.001)``), ``identity`` for what is already a log.
DOMAIN_TRANSFORMS = ("identity", "log", "log1m", "logeps")


@dataclass(frozen=True)
class DomainModel:
    """Where in-domain planes lie in the space of the consistency features, jointly.

    Per-feature ranges miss a plane whose features are each typical but whose *combination* is not
    (a blurred but bright plane, a sparse but noisy one). This keeps the calibration planes
    themselves: each feature transformed (``transforms``, :data:`DOMAIN_TRANSFORMS`) and
    standardised (``(x − center) / spread``: the calibration mean and standard deviation), as
    ``reference`` vectors. A plane's novelty is its mean distance to its ``k`` nearest references
    (a k-nearest-neighbour density test, which assumes no distribution shape: the in-domain set is a
    mixture of specimens, cameras and optics); ``threshold`` is that distance's
    ``provenance['quantile']`` percentile over the calibration planes, each left out in turn.
    """

    features: tuple[str, ...]
    transforms: tuple[str, ...]
    center: tuple[float, ...]
    spread: tuple[float, ...]
    reference: tuple[tuple[float, ...], ...]
    k: int
    threshold: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if not n or len(self.transforms) != n or len(self.center) != n or len(self.spread) != n:
            raise ModelCardError("domain model: features, transforms, center and spread must have one entry each")
        if any(t not in DOMAIN_TRANSFORMS for t in self.transforms):
            raise ModelCardError(f"domain model transforms must be among {DOMAIN_TRANSFORMS}")
        ref = np.asarray(self.reference, dtype=np.float64)
        if ref.ndim != 2 or ref.shape[1] != n or ref.shape[0] <= self.k or self.k < 1:
            raise ModelCardError(f"domain model needs more than k={self.k} reference vectors of {n} features")
        if not (np.all(np.isfinite(ref)) and np.all(np.asarray(self.spread) > 0)
                and np.isfinite(self.threshold) and self.threshold > 0):
            raise ModelCardError("domain model reference, spread and threshold must be finite and positive")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DomainModel:
        data = dict(raw)
        for name in ("features", "transforms"):
            data[name] = tuple(str(v) for v in data[name])
        for name in ("center", "spread"):
            data[name] = tuple(float(v) for v in data[name])
        data["reference"] = tuple(tuple(float(v) for v in row) for row in data["reference"])
        data["k"], data["threshold"] = int(data["k"]), float(data["threshold"])
        return cls(**data)


#: Degradation-model fields added after cards were first shipped, with the value that reproduces
#: the older cards' behaviour; at that value they are left out of the behaviour checksum, so those
#: cards still verify.
DEGRADATION_ADDITIONS: dict[str, Any] = {"error_window": "gaussian", "domain": None}
#: Local-error windows: ``gaussian`` (σ on the input grid) or ``binned`` (the squared residual
#: averaged over 2 × 2 input pixels, then a Gaussian of σ/2 on that grid: the same window to within
#: a few percent of its width, on a quarter of the pixels).
ERROR_WINDOWS = ("gaussian", "binned")


@dataclass(frozen=True)
class DegradationModel:
    """The output → input degradation and the calibrated in-domain ranges of the consistency score.

    ``kernel`` lives on the output (HR) grid: input pixel ``(i, j)`` is modelled as
    ``Σ kernel[u, v] · HR[i·s + c + u, j·s + c + v]`` with ``c = (s − 1)/2 − (n − 1)/2`` for an
    ``n × n`` kernel (``n ≡ s`` mod 2, so ``c`` is an integer): the kernel is centred on the input
    pixel's centre at HR coordinate ``i·s + (s − 1)/2``, the convention of the whole project. It is
    fitted on data (SQUIRREL's resolution-scaling function, not an assumed Gaussian) and sums to 1;
    the affine intensity fit absorbs gain and offset. ``error_threshold`` is the local relative
    error that only 1 % of in-domain input pixels exceed; ``ranges`` maps each score feature
    (:data:`srscope.runtime.consistency.FEATURES`) to its in-domain ``[lo, hi]``.
    ``provenance`` says what it was fitted and calibrated on (seeds, sizes); the behaviour checksum
    covers the whole field, provenance included, since it documents the thresholds.
    """

    scale: int
    kernel: tuple[tuple[float, ...], ...]
    error_threshold: float
    ranges: dict[str, tuple[float, float]]
    #: σ (input pixels) of the window the local error is averaged over
    error_sigma_px: float = 1.5
    #: input pixels ignored at each border (the output's border is padding-dominated)
    border_px: int = 4
    provenance: dict[str, Any] = field(default_factory=dict)
    #: how the local error is windowed (:data:`ERROR_WINDOWS`; cards before it: ``gaussian``)
    error_window: str = "gaussian"
    #: the joint in-domain model of the features (:class:`DomainModel`); ``None``: ranges only
    domain: DomainModel | None = None

    def __post_init__(self) -> None:
        if int(self.scale) != self.scale or self.scale < 1:
            raise ModelCardError(f"degradation scale must be a positive integer, not {self.scale!r}")
        k = np.asarray(self.kernel, dtype=np.float64)
        if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 != self.scale % 2:
            raise ModelCardError(f"degradation kernel must be square with side ≡ scale (mod 2), got {k.shape}")
        if not np.all(np.isfinite(k)) or abs(float(k.sum()) - 1.0) > 1e-3:
            raise ModelCardError("degradation kernel must be finite and sum to 1")
        if not (np.isfinite(self.error_threshold) and self.error_threshold > 0):
            raise ModelCardError(f"invalid degradation error_threshold {self.error_threshold!r}")
        for name, bounds in self.ranges.items():
            if len(bounds) != 2 or not all(np.isfinite(bounds)) or bounds[0] > bounds[1]:
                raise ModelCardError(f"degradation range {name!r} must be finite [lo, hi], got {bounds!r}")
        if self.error_sigma_px <= 0 or self.border_px < 0:
            raise ModelCardError("degradation error_sigma_px must be > 0 and border_px >= 0")
        if self.error_window not in ERROR_WINDOWS:
            raise ModelCardError(f"degradation error_window must be one of {ERROR_WINDOWS}, not {self.error_window!r}")

    @property
    def kernel_array(self) -> np.ndarray:
        return np.asarray(self.kernel, dtype=np.float32)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DegradationModel:
        try:
            data = dict(raw)
            data["kernel"] = tuple(tuple(float(v) for v in row) for row in data["kernel"])
            data["ranges"] = {str(k): (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
            if data.get("domain") is not None:
                data["domain"] = DomainModel.from_dict(data["domain"])
            return cls(**data)
        except (TypeError, KeyError, IndexError) as exc:
            raise ModelCardError(f"model card degradation field has the wrong shape: {exc}") from None


@dataclass(frozen=True)
class ModelCard:
    """Describes one exported generator. Pixel sizes are in micrometres, wavelengths in nm.

    ``halo_px`` is the context, in *input* pixels, each tile needs so that tiled output matches
    whole-image output (calibrated at export by :func:`srscope.runtime.halo.calibrate_halo`).
    ``receptive_field_px`` is the graph's theoretical receptive-field radius, an upper bound that
    a trained generator's influence never reaches; tiling with it is exact but several times
    slower. ``size_multiple`` is the input size (in input pixels) the graph needs, e.g. 8 for a
    4-level U-Net behind an in-graph ×2 resampling.
    """

    name: str
    version: str
    input_modality: str
    output_modality: str
    input_pixel_size_um: float
    output_pixel_size_um: float
    normalization: AffineIntensity
    denormalization: AffineIntensity
    halo_px: int
    size_multiple: int
    weights_sha256: str
    emission_wavelength_nm: float | None = None
    precision: str = "fp32"
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    receptive_field_px: int | None = None
    intensity: IntensityRule = field(default_factory=IntensityRule)
    schema_version: int = CARD_SCHEMA_VERSION
    #: :func:`behaviour_checksum` of this card, filled in by :func:`embed_card`; ``None`` in cards
    #: written before it existed (and in cards built in code, until embedded).
    behaviour_sha256: str | None = None
    #: The consistency check's degradation model (:class:`DegradationModel`); ``None``: check off.
    degradation: DegradationModel | None = None

    def __post_init__(self) -> None:
        if self.input_pixel_size_um <= 0 or self.output_pixel_size_um <= 0:
            raise ModelCardError("pixel sizes must be positive")
        if self.halo_px < 0 or self.size_multiple < 1:
            raise ModelCardError("halo_px must be >= 0 and size_multiple >= 1")
        if self.receptive_field_px is not None and self.receptive_field_px < self.halo_px:
            raise ModelCardError("receptive_field_px must be >= halo_px")
        if self.precision not in PRECISIONS:
            raise ModelCardError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.schema_version not in READABLE_SCHEMA_VERSIONS:
            raise ModelCardError(f"unsupported model card schema_version {self.schema_version!r}")
        if self.schema_version < 2 and self.intensity.mode != "fixed":
            raise ModelCardError("schema-1 cards can only describe a fixed intensity mapping")
        if self.degradation is not None and self.degradation.scale != self.integer_scale:
            raise ModelCardError(f"degradation scale {self.degradation.scale} is not the card's "
                                 f"scale {self.integer_scale}")

    @property
    def scale_factor(self) -> float:
        """Output pixels per input pixel along each axis (2.0 for 10x/0.4 → 20x/0.75)."""
        return self.input_pixel_size_um / self.output_pixel_size_um

    @property
    def integer_scale(self) -> int:
        """The scale factor as an integer; the runtime's tiling needs whole output pixels."""
        s = self.scale_factor
        if abs(s - round(s)) > 1e-6:
            raise ModelCardError(f"scale factor {s} is not an integer")
        return round(s)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"model card is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ModelCardError("model card must be a JSON object")
        if raw.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
            raise ModelCardError(
                f"unsupported model card schema_version {raw.get('schema_version')!r} "
                f"(this runtime reads {', '.join(map(str, READABLE_SCHEMA_VERSIONS))})"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in raw]
        if missing:
            raise ModelCardError(f"model card lacks required fields: {', '.join(missing)}")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelCardError(f"model card has unknown fields: {', '.join(unknown)}")
        try:
            raw["normalization"] = AffineIntensity(**raw["normalization"])
            raw["denormalization"] = AffineIntensity(**raw["denormalization"])
            if "intensity" in raw:
                raw["intensity"] = IntensityRule(**raw["intensity"])
            if raw.get("degradation") is not None:
                if not isinstance(raw["degradation"], dict):
                    raise ModelCardError("model card degradation field must be an object")
                raw["degradation"] = DegradationModel.from_dict(raw["degradation"])
            return cls(**raw)
        except TypeError as exc:
            raise ModelCardError(f"model card field has the wrong shape: {exc}") from None


def weights_checksum(model: onnx.ModelProto) -> str:
    """SHA-256 over every initializer (name, dtype, shape, raw bytes), sorted by name.

    Hashing the parsed tensors rather than the file keeps the checksum stable when metadata
    (the card itself) is edited, and independent of protobuf serialisation order.
    """
    digest = hashlib.sha256()
    for init in sorted(model.graph.initializer, key=lambda t: t.name):
        array = numpy_helper.to_array(init)
        digest.update(init.name.encode())
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


#: Card fields that change what the model outputs for a given input (intensity mappings, the
#: pixel grids, tiling geometry, numeric precision). Names, descriptions and provenance are free
#: to edit; these are not, so :func:`behaviour_checksum` covers exactly them.
BEHAVIOUR_FIELDS = ("normalization", "denormalization", "intensity", "input_pixel_size_um",
                    "output_pixel_size_um", "halo_px", "size_multiple", "precision")
#: Covered too when present (it decides which planes are flagged); absent, it leaves the checksum
#: of cards written before it existed unchanged.
OPTIONAL_BEHAVIOUR_FIELDS = ("degradation",)


def _canonical_numbers(value: Any) -> Any:
    """Every number as a float, so ``2`` and ``2.0`` (a hand-edited JSON) hash alike."""
    if isinstance(value, dict):
        return {k: _canonical_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical_numbers(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def behaviour_checksum(card: ModelCard) -> str:
    """SHA-256 over the canonical JSON (sorted keys, no spaces) of :data:`BEHAVIOUR_FIELDS`, plus
    :data:`OPTIONAL_BEHAVIOUR_FIELDS` that are not ``None``."""
    raw = dataclasses.asdict(card)
    covered = {name: raw[name] for name in BEHAVIOUR_FIELDS}
    covered.update({name: raw[name] for name in OPTIONAL_BEHAVIOUR_FIELDS if raw[name] is not None})
    if covered.get("degradation") is not None:
        covered["degradation"] = {k: v for k, v in covered["degradation"].items()
                                  if not (k in DEGRADATION_ADDITIONS and v == DEGRADATION_ADDITIONS[k])}
    canonical = _canonical_numbers(covered)
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def embed_card(model: onnx.ModelProto, card: ModelCard) -> onnx.ModelProto:
    """Write ``card`` into ``model``'s metadata (replacing any earlier card); returns ``model``.

    The caller passes a card whose ``weights_sha256`` it got from :func:`weights_checksum`, so
    the runtime's check at load time compares two independent computations. The card's
    ``behaviour_sha256`` is (re)computed here, from the card as embedded.
    """
    if card.weights_sha256 != weights_checksum(model):
        raise ModelCardError("card.weights_sha256 does not match this model's weights")
    card = dataclasses.replace(card, behaviour_sha256=behaviour_checksum(card))
    kept = [p for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = CARD_KEY
    entry.value = card.to_json()
    return model


def read_card(model: onnx.ModelProto | str | Path, *, verify: bool = True) -> ModelCard:
    """Parse and (by default) verify the card of a model or ``.onnx`` path."""
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        if not path.is_file():
            raise ModelCardError(f"model file not found: {path}")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - protobuf raises several unrelated types
            raise ModelCardError(f"{path} is not a readable ONNX model ({exc.__class__.__name__})") from None
    entries = {p.key: p.value for p in model.metadata_props}
    if CARD_KEY not in entries:
        raise ModelCardError(f"ONNX model has no srscope model card (metadata key {CARD_KEY!r})")
    card = ModelCard.from_json(entries[CARD_KEY])
    if verify:
        actual = weights_checksum(model)
        if actual != card.weights_sha256:
            raise ModelCardError(
                f"weights checksum mismatch: card says {card.weights_sha256[:12]}…, "
                f"weights are {actual[:12]}… (file modified after export?)"
            )
        if card.behaviour_sha256 is not None and card.behaviour_sha256 != behaviour_checksum(card):
            raise ModelCardError(
                "behaviour checksum mismatch: the card's intensity, pixel-size, tiling, precision or "
                "degradation fields were edited after export; re-export the model instead of editing its card"
            )
    return card
