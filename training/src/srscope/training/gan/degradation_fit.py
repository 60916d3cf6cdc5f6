"""Fit and calibrate the card's degradation model (the runtime's per-plane consistency check).

Two steps, both on data the model was built from, none on the benchmark's fields:

1. **Fit the kernel** that maps the HR grid back to the LR input, SQUIRREL's resolution-scaling
   function (Culley et al. 2018) but fitted, not assumed: a Gaussian pre-fit gives the width and
   hence the kernel's support, then non-negative least squares on the full ``n × n`` kernel, per
   training/validation pair (each pair normalised by its own percentiles, the offset removed by
   centring), averaged over pairs and over the eight symmetries of the square (the optics are
   rotationally symmetric; this also averages out each pair's residual misregistration). LR pixel
   ``i`` is centred at HR coordinate ``i·s + (s − 1)/2`` (:class:`~srscope.runtime.card.DegradationModel`).
2. **Calibrate** the score's in-domain ranges by running the exported model (through the runtime
   ``Enhancer``, as users will) on held-out validation fields cut into planes of one size, each
   enhanced on its own as the runtime treats every plane: the
   local-error threshold is the 99th percentile of the local error over all calibration pixels;
   each feature's range is its ``[min, max]`` over the crops widened by ``margin`` × its spread.

The fields come from a simulator recipe (the ``simdataset`` arguments printed in every shipped
model's card: the val split is re-simulated field by field with the same seeds and draws, in camera
counts) or from a dataset written by ``simdataset`` (its recorded recipe), so a shipped model can be
re-calibrated after its dataset is gone (:func:`embed_degradation` changes only the card).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from scipy.optimize import minimize_scalar, nnls
from srscope.runtime.card import (
    DegradationModel,
    DomainModel,
    ModelCardError,
    embed_card,
    read_card,
    weights_checksum,
)
from srscope.runtime.consistency import (
    DOMAIN_FEATURES,
    FEATURES,
    MIN_SPREAD,
    knn_distance,
    local_error_map,
    plane_features,
    redegrade,
    transformed_features,
)

#: Widest kernel side (HR pixels) the fit considers.
MAX_KERNEL = 41
#: Rows of the least-squares system sampled per pair (enough for a ~30² kernel, bounded memory).
ROWS_PER_PAIR = 12_000
#: Default widening of each feature's calibrated [min, max], in units of its spread: twice the smallest
#: margin of the grid 0, 0.1, 0.25, 0.5, 1 that flagged none of the in-domain tuning fields (seeds
#: 300000+: 72 widefield, 48 confocal→STED; disjoint from calibration, test and benchmark seeds).
DEFAULT_MARGIN = 0.5
DEFAULT_CROP = 128
#: Neighbours and percentile of the joint domain model (:class:`~srscope.runtime.card.DomainModel`):
#: chosen on the in-domain tuning fields (seeds 300000+) and out-of-domain tuning examples
#: (310000+), never on the benchmark's.
DOMAIN_K = 5
DOMAIN_QUANTILE = 99.5
#: Seed offset (from the recipe's seed) of the extra held-out calibration fields, drawn exactly like
#: the recipe's training fields: between its validation (100000+) and test (200000+) blocks, so
#: disjoint from every split. The validation split alone is small (6 fields for the STED model).
CALIBRATION_SEED_OFFSET = 120_000
#: Extra calibration fields by default (on top of the validation split).
DEFAULT_CALIBRATION_FIELDS = 48
#: The local-error window new calibrations use (:data:`srscope.runtime.card.ERROR_WINDOWS`).
ERROR_WINDOW = "binned"


@dataclass(frozen=True)
class Field:
    """One LR/HR pair in camera counts on native grids (HR ``scale``× LR)."""

    lr: np.ndarray
    hr: np.ndarray
    seed: int
    structure: str


def _normalised(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1.0, 99.8])
    return ((np.asarray(image, dtype=np.float64) - lo) / max(float(hi - lo), 1e-9)).astype(np.float32)


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    """A normalised isotropic Gaussian on an ``size × size`` HR grid, centred at ``(size − 1)/2``."""
    u = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-0.5 * (u / max(sigma, 1e-3)) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def _model(kernel: np.ndarray, scale: int) -> DegradationModel:
    return DegradationModel(scale=scale, kernel=tuple(map(tuple, kernel.tolist())), error_threshold=1.0,
                            ranges={})


def _side(extent: float, scale: int) -> int:
    n = int(np.ceil(extent))
    n += (n - scale) % 2
    return max(min(n, MAX_KERNEL - (MAX_KERNEL - scale) % 2), scale)


def _rse(lr: np.ndarray, hr: np.ndarray, kernel: np.ndarray, scale: int) -> float:
    blurred = redegrade(hr, _model(kernel, scale), lr.shape).astype(np.float64).ravel()
    y = lr.astype(np.float64).ravel()
    design = np.stack([blurred, np.ones_like(blurred)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.sqrt(np.mean((y - design @ coef) ** 2)))


def gaussian_prefit(pairs: Sequence[tuple[np.ndarray, np.ndarray]], scale: int) -> float:
    """σ (HR pixels) of the Gaussian RSF minimising the summed RSE over ``pairs`` (SQUIRREL's search)."""
    def total(sigma: float) -> float:
        size = _side(8 * sigma + 2 * scale, scale)
        return sum(_rse(lr, hr, gaussian_kernel(sigma, size), scale) for lr, hr in pairs)

    return float(minimize_scalar(total, bounds=(0.3, 12.0), method="bounded", options={"xatol": 0.02}).x)


def _design(lr: np.ndarray, hr: np.ndarray, size: int, scale: int, rows: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sampled rows of ``lr ≈ Σ k[u,v]·hr[i·s+c+u, j·s+c+v]`` (reflect-padded), centred to drop the offset."""
    c = (scale - size) // 2  # = (s − 1)/2 − (n − 1)/2, an integer since n ≡ s (mod 2)
    pad = size + scale
    padded = np.pad(hr, pad, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    border = max(1, size // (2 * scale))
    ii, jj = np.meshgrid(np.arange(border, lr.shape[0] - border), np.arange(border, lr.shape[1] - border),
                         indexing="ij")
    pick = rng.choice(ii.size, size=min(rows, ii.size), replace=False)
    i, j = ii.ravel()[pick], jj.ravel()[pick]
    a = windows[i * scale + c + pad, j * scale + c + pad].reshape(len(pick), -1).astype(np.float64)
    b = lr[i, j].astype(np.float64)
    return a - a.mean(axis=0), b - b.mean()


def _nnls_normal(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """NNLS through the normal equations: with ``AᵀA = RᵀR``, ``‖Ax − b‖² = ‖Rx − R⁻ᵀAᵀb‖² + const``,
    so the active-set solver works on an ``n² × n²`` system instead of the sampled rows."""
    ridge = 1e-9 * float(np.trace(gram)) / len(gram)
    r = np.linalg.cholesky(gram + ridge * np.eye(len(gram))).T
    d = np.linalg.solve(r.T, rhs)
    k, _ = nnls(r, d, maxiter=50 * len(gram))
    return k


def _symmetrised(kernel: np.ndarray) -> np.ndarray:
    """The mean over the eight rotations and reflections of the square."""
    views = [np.rot90(kernel, k) for k in range(4)]
    views += [v.T for v in views]
    return np.mean(views, axis=0)


def fit_kernel(pairs: Sequence[tuple[np.ndarray, np.ndarray]], scale: int, *, size: int | None = None,
               rows_per_pair: int = ROWS_PER_PAIR, seed: int = 0, symmetric: bool = True) -> np.ndarray:
    """The HR → LR kernel (``n × n``, ``n ≡ scale`` mod 2, sums to 1) fitted on ``(lr, hr)`` pairs.

    ``size`` defaults to the support of the Gaussian pre-fit (±4σ plus a pixel footprint).
    """
    if not pairs:
        raise ValueError("fitting a degradation kernel needs at least one LR/HR pair")
    normed = []
    for lr, hr in pairs:
        if hr.shape != (lr.shape[0] * scale, lr.shape[1] * scale):
            raise ValueError(f"HR {hr.shape} is not LR {lr.shape} × {scale}")
        normed.append((_normalised(lr), _normalised(hr)))
    if size is None:
        sigma = gaussian_prefit(normed[:4], scale)
        size = _side(8 * sigma + 2 * scale, scale)
    elif size % 2 != scale % 2:
        raise ValueError(f"kernel size {size} must have the parity of the scale {scale}")
    rng = np.random.default_rng(seed)
    kernels = []
    for lr, hr in normed:
        a, b = _design(lr, hr, size, scale, rows_per_pair, rng)
        k = _nnls_normal(a.T @ a, a.T @ b)
        if k.sum() > 0:
            kernels.append(k.reshape(size, size) / k.sum())
    if not kernels:
        raise ValueError("no pair gave a usable kernel (blank fields?)")
    kernel = np.mean(kernels, axis=0)
    if symmetric:
        kernel = _symmetrised(kernel)
    return kernel / kernel.sum()


def _crops(lr: np.ndarray, crop: int) -> list[np.ndarray]:
    """Non-overlapping ``crop``² input windows (the whole plane when smaller)."""
    if min(lr.shape) < crop:
        return [lr]
    return [lr[r:r + crop, c:c + crop] for r in range(0, lr.shape[0] - crop + 1, crop)
            for c in range(0, lr.shape[1] - crop + 1, crop)]


def fit_domain(rows: Sequence[dict[str, float]], *, k: int = DOMAIN_K, quantile: float = DOMAIN_QUANTILE,
               ) -> DomainModel:
    """The joint domain model of in-domain planes' features ``rows`` (one dict per plane).

    Each feature is standardised by its calibration mean and standard deviation, so that no single
    feature's units dominate the distance. Not robustly (median, P16–P84): the in-domain
    distribution of some features is heavy-tailed (the STED model's error in noise units spans
    decades between empty and bead-rich planes), and a robust spread turns that genuine tail into
    distances that set a threshold far too loose (on the tuning fields, seeds 300000+/310000+: the
    STED model on widefield data flagged 5/20 with robust spreads, 13/20 with standard deviations,
    at the same 1/72 false flags of the widefield model). The threshold is the ``quantile`` of the
    leave-one-out k-NN distances, i.e. the false-flag rate on fresh in-domain planes is about
    ``100 − quantile`` %.
    """
    names = tuple(DOMAIN_FEATURES)
    transforms = tuple(DOMAIN_FEATURES[n] for n in names)
    if len(rows) <= k + 1:
        raise ValueError(f"the domain model needs more than {k + 1} calibration planes, got {len(rows)}")
    raw = np.stack([transformed_features(r, names, transforms) for r in rows])
    center = raw.mean(axis=0)
    spread = np.maximum(raw.std(axis=0), 1e-3)
    reference = (raw - center) / spread
    distances = knn_distance(reference, reference, k, leave_one_out=True)
    threshold = float(np.percentile(distances, quantile))
    return DomainModel(names, transforms, tuple(float(v) for v in center), tuple(float(v) for v in spread),
                       tuple(tuple(round(float(v), 4) for v in row) for row in reference), k, threshold,
                       provenance={"planes": len(rows), "quantile": quantile,
                                   "standardisation": "mean, standard deviation"})


def calibrate(kernel: np.ndarray, scale: int, samples: Sequence[tuple[np.ndarray, np.ndarray]], *,
              margin: float = DEFAULT_MARGIN, error_quantile: float = 99.0,
              provenance: dict[str, Any] | None = None, domain: bool = True) -> DegradationModel:
    """The :class:`DegradationModel` whose ranges cover the ``(lr, model output)`` ``samples``.

    ``samples`` are in-domain planes (held-out fields, or crops of them) with the model's outputs.
    With ``domain`` (and enough planes) the joint :class:`~srscope.runtime.card.DomainModel` is
    fitted on the same planes.
    """
    if len(samples) < 2:
        raise ValueError("calibration needs at least two in-domain planes")
    base = dataclasses.replace(_model(kernel, scale), error_window=ERROR_WINDOW)
    errors = [local_error_map(lr, sr, base, trim_border=True).ravel() for lr, sr in samples]
    threshold = float(np.percentile(np.concatenate(errors), error_quantile))
    model = dataclasses.replace(base, error_threshold=max(threshold, 1e-6))
    values = {name: [] for name in FEATURES}
    rows = [plane_features(lr, sr, model) for lr, sr in samples]
    for row in rows:
        for name, value in row.items():
            values[name].append(value)
    ranges = {}
    for name in FEATURES:
        v = np.asarray(values[name], dtype=np.float64)
        spread = max(float(v.max() - v.min()), MIN_SPREAD.get(name, 1e-6))
        ranges[name] = (float(v.min() - margin * spread), float(v.max() + margin * spread))
    prov = {"calibration_planes": len(samples), "margin": margin, "error_quantile": error_quantile,
            **(provenance or {})}
    fitted = fit_domain(rows) if domain and len(rows) > 4 * DOMAIN_K else None
    return dataclasses.replace(model, ranges=ranges, provenance=prov, domain=fitted)


def calibration_samples(enhance: Callable[[np.ndarray], np.ndarray], fields: Sequence[Field],
                        crop: int = DEFAULT_CROP) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut each field into ``crop``² planes and run the model (``enhance``: counts → output counts)
    on each plane *on its own*, as the runtime sees every plane (its own percentile mapping, its own
    borders); the (plane, output) pairs are the calibration samples."""
    return [(plane, enhance(plane)) for f in fields for plane in _crops(f.lr, crop)]


# --- where the fields come from -------------------------------------------------------------

@dataclass(frozen=True)
class SimRecipe:
    """The ``simdataset`` arguments that built a model's dataset (only what decides the fields)."""

    modality: str
    structures: tuple[str, ...]
    n_train: int
    n_val: int
    fov: int
    seed: int
    randomise: bool
    #: the ranges the fields were drawn from (``None``: the modality's defaults), e.g. a
    #: ``--emission-nm`` dye-band dataset's
    randomisation: Any = None

    @classmethod
    def parse(cls, text: str | Sequence[str]) -> SimRecipe:
        """From ``simdataset`` arguments (``MODALITY STRUCTURES OUT [--val N] [--fov F] ...``)."""
        from srscope.training.gan import simdataset

        argv = shlex.split(text) if isinstance(text, str) else list(text)
        if argv and argv[0] in ("python", "python3") and argv[1:3] == ["-m", "srscope.training.gan.simdataset"]:
            argv = argv[3:]
        if argv and argv[0] == "simdataset":  # the form :meth:`describe` writes into a card's provenance
            argv = argv[1:]
        if len(argv) == 2 or (len(argv) > 2 and argv[2].startswith("-")):  # no output path: irrelevant here
            argv.insert(2, "unused.zarr")
        a = simdataset.build_parser().parse_args(argv)
        return cls(a.modality, simdataset.parse_structures(a.structure), a.train, a.val, a.fov, a.seed, a.randomise,
                   simdataset.randomisation_of(a))

    @classmethod
    def from_dataset(cls, path: str | Path) -> SimRecipe:
        """The recipe a ``simdataset`` dataset records in its attributes."""
        from srscope.training.data.dataset import dataset_attrs

        return cls.from_attrs(dataset_attrs(path), where=str(path))

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], *, where: str = "dataset") -> SimRecipe:
        """The recipe in a dataset's attributes (also kept in every training checkpoint)."""
        from srscope.training.data.randomise import defaults_for

        source = attrs.get("source", {})
        if "simulator" not in source or "seeds" not in source:
            raise ValueError(f"{where}: not a simdataset dataset (no simulator recipe); pass --sim ARGS")
        randomised = bool(source.get("randomised"))
        randomisation = None
        if randomised and _jsonable(attrs.get("randomisation")) != _jsonable(defaults_for(source["modality"]).to_dict()):
            from srscope.training.data.randomise import randomisation_from_dict

            try:  # the dataset's own recorded ranges (e.g. an --emission-nm dye band)
                randomisation = randomisation_from_dict(attrs["randomisation"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: unreadable randomisation ranges ({exc}); pass --sim ARGS") from exc
        seeds = source["seeds"]
        seed = int(seeds["train"][0])  # train seeds start at seed + 0
        n = {k: int(v[1]) - int(v[0]) + 1 for k, v in seeds.items()}
        return cls(source["modality"], tuple(source["structure"].split(",")), n["train"], n["val"],
                   int(source["fov_hr_px"][0]), seed, randomised, randomisation)

    def fields(self, split: str = "val", *, n: int | None = None, first: int = 0) -> list[Field]:
        """Re-simulate fields ``first … first+n−1`` of ``split``: the same calls ``simdataset`` makes."""
        from srscope.training.data.randomise import defaults_for, draw_field
        from srscope.training.data.simulate import simulate_pair
        from srscope.training.gan.simdataset import SPLIT_SEED_BASE, structure_of_field

        if split == "calibration" and n is None:
            raise ValueError("the calibration block has no size of its own: pass n")
        count = (self.n_val if split == "val" else self.n_train) if n is None else n
        seed0 = self.seed + (CALIBRATION_SEED_OFFSET if split == "calibration" else SPLIT_SEED_BASE[split])
        out = []
        for i in range(first, first + count):
            name = structure_of_field(self.structures, i)
            if self.randomise:
                draw = draw_field(self.modality, np.random.default_rng([seed0 + i, 1]),
                                  self.randomisation or defaults_for(self.modality))
                pair = simulate_pair(self.modality, name, seed=seed0 + i, hr_shape=(self.fov, self.fov),
                                     misregister=draw.misregister, **draw.overrides)
            else:
                pair = simulate_pair(self.modality, name, seed=seed0 + i, hr_shape=(self.fov, self.fov),
                                     misregister=False)
            out.append(Field(pair.lr, pair.hr, seed0 + i, name))
        return out

    def describe(self) -> str:
        return (f"simdataset {self.modality} {','.join(self.structures)} --fov {self.fov} --seed {self.seed}"
                f"{' --randomise' if self.randomise else ''}"
                + (f" --emission-nm {self.randomisation.emission_nm.lo:g},{self.randomisation.emission_nm.hi:g}"
                   if self.randomisation is not None else ""))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --- the whole procedure, and writing it into a model file ----------------------------------

def fit_degradation(onnx_path: str | Path, recipe: SimRecipe, *, fit_fields: int | None = None,
                    crop: int = DEFAULT_CROP, margin: float = DEFAULT_MARGIN, threads: int | None = None,
                    calibration_fields: int = DEFAULT_CALIBRATION_FIELDS) -> DegradationModel:
    """Fit the kernel on the recipe's validation pairs and calibrate on the model's outputs.

    The kernel is a property of the optics (HR → LR), so it is fitted on the ground-truth pairs;
    the ranges and the domain model are a property of the model on in-domain data, so they come
    from its outputs: for the validation split plus ``calibration_fields`` extra fields drawn like
    the training set from a block of their own (:data:`CALIBRATION_SEED_OFFSET`). None of them was
    trained on, and the benchmark never sees them.
    """
    from srscope.runtime.enhancer import Enhancer

    card = read_card(onnx_path)
    scale = card.integer_scale
    fields = recipe.fields("val")
    if not fields:
        raise ValueError("the recipe has no validation fields (--val 0)")
    pairs = [(f.lr, f.hr) for f in fields[:fit_fields]] if fit_fields else [(f.lr, f.hr) for f in fields]
    kernel = fit_kernel(pairs, scale)
    enhancer = Enhancer.from_file(onnx_path, device="cpu", intra_op_threads=threads)
    extra = recipe.fields("calibration", n=calibration_fields) if calibration_fields else []
    samples = calibration_samples(enhancer.enhance, [*fields, *extra], crop)
    seeds = [f.seed for f in fields]
    provenance = {"kernel_fitted_on": f"{len(pairs)} validation LR/HR pairs (NNLS, symmetrised)",
                  "calibrated_on": f"{len(fields)} validation fields and {len(extra)} held-out calibration fields "
                                   f"cut into {crop}² input-pixel planes, each enhanced on its own",
                  "recipe": recipe.describe(), "seeds": [min(seeds), max(seeds)],
                  **({"calibration_seeds": [extra[0].seed, extra[-1].seed]} if extra else {})}
    return calibrate(kernel, scale, samples, margin=margin, provenance=provenance)


def embed_degradation(onnx_path: str | Path, degradation: DegradationModel | None,
                      out: str | Path | None = None) -> Path:
    """Write ``degradation`` into the card of an existing ONNX file; its weights stay bit-identical.

    Only the card (metadata) changes; the initializers are compared byte for byte before saving.
    """
    src = Path(onnx_path)
    out = Path(out) if out is not None else src
    model = onnx.load(str(src))
    card = read_card(model)
    before = {t.name: t.SerializeToString() for t in model.graph.initializer}
    embed_card(model, dataclasses.replace(card, degradation=degradation))
    after = {t.name: t.SerializeToString() for t in model.graph.initializer}
    if before != after or weights_checksum(model) != card.weights_sha256:
        raise ModelCardError("embedding the degradation model changed the weights")
    tmp = out.with_suffix(out.suffix + ".tmp")
    onnx.save(model, str(tmp))
    read_card(tmp)  # verifies both checksums of what was written
    tmp.replace(out)
    return out
