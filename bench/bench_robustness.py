"""Robustness benchmark: would this model hold on a user's camera, specimen and objective?

For the widefield 10x/0.4 → 20x/0.75 task, one run sweeps one knob at a time around the nominal
microscope and scores every method side by side against the noise-free HR (``hr_clean``, after
the affine intensity fit of :func:`~srscope.training.evaluation.metrics.score_image`):

* ``bilinear``: bilinear ×2 of the camera counts (the floor every method must beat);
* ``lucy-richardson-nominal``: Lucy–Richardson on the bilinear grid with the Born & Wolf PSF a user
  computes from the objective and dye (NA 0.4, n 1.0, 532 nm; for the semi-real set the pair's
  nominal NA 0.4 / 520 nm), iterations and damping chosen once by
  :func:`~srscope.training.evaluation.baselines.search_lucy_richardson` on validation fields at the
  nominal setting (seeds disjoint from the test seeds), then fixed;
* ``lucy-richardson-exact``: the same iterations/damping with the in-focus PSF that really made the
  data (jittered NA, emission, pixel size; the semi-real set's Gaussian × pixel box): an upper
  bound a user rarely has;
* every ``--model NAME=PATH`` through the runtime's ``Enhancer`` (its card's intensity policy);
* ``care`` (optional): a CAREamics CARE run of ``bench/peers`` (``--care-run DIR``), called once on
  all inputs batched into one npz.

Axes (1-D sweeps around LR offset 100, gain 1 count/e⁻, read noise 2 e⁻, 1,000 photons peak,
100 photons background, NA 0.4, 532 nm, 325 nm pixels; the HR side keeps its 0.75 NA and default
camera): ``photons`` (background 10 % of the peak), ``offset`` (same seeds, so the photon noise is
identical and only the offset differs), ``gain``, ``na``, ``wavelength`` (both sides), ``pixel_size``
(both sides; the model runs as if nominal), ``structure`` (trained-on and never-trained types) and
``semireal`` (real specimens through another optical and camera model,
:mod:`srscope.training.evaluation.semireal`). Axes 1–6 alternate filaments and mitochondria fields;
seeds are the same for every setting of an axis.

A percentile-card model (card schema 2) is equivariant to camera offset and gain, so its PSNR along
the ``offset`` axis must not move (spread ≤ 0.1 dB); a fixed-card (schema 1) model trained on one
camera drops as soon as offset or exposure leave it.

Run alone with::

    python bench/bench_robustness.py [--model NAME=PATH ...] [--care-run DIR] [--fields 3]
        [--hr-size 256] [--axes photons,offset] [--quick] [--out bench/results]

It writes ``bench_robustness.json`` and ``bench_robustness.png`` into ``--out``.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODALITY = "widefield"
TASK = "widefield 10x/0.4NA → 20x/0.75NA (×2)"

#: ``--model`` defaults: (name, path relative to the repository). Missing or unreadable ones are skipped.
DEFAULT_MODELS: tuple[tuple[str, str], ...] = (
    ("v3.0", "models/legacy/widefield-10x0.4-to-20x0.75-v3.0.onnx"),
    ("v4.0", "models/legacy/widefield-10x0.4-to-20x0.75-v4.0.onnx"),
    ("gan", "models/widefield-10x0.4-to-20x0.75.onnx"),
    ("cnn-only", "models/ablation/widefield-10x0.4-to-20x0.75-cnn-only.onnx"),
)

#: Test seeds: far from training (0+), validation (100 000+), test (200 000+) splits and the
#: evaluation development/report seeds (500 000+, 600 000+, 700 000+). Field j of every setting
#: uses TEST_SEED + j; the LR parameter search uses VALIDATION_SEED + j (never a test seed).
TEST_SEED = 800_000
VALIDATION_SEED = 890_000
#: Axes 1–6 alternate these structures field by field.
MIX = ("filaments", "mitochondria")
#: Which of the structure axis' specimens the shipped widefield recipes train on.
TRAINED_STRUCTURES = ("filaments", "nuclei", "vesicles", "er")
UNSEEN_STRUCTURES = ("mitochondria", "beads")

NOMINAL: dict[str, Any] = {
    "offset": 100.0,             # counts
    "gain": 1.0,                 # counts per photo-electron
    "read_noise_e": 2.0,         # electrons RMS (2 counts at gain 1)
    "peak_photons": 1000.0,
    "background_photons": 100.0,
    "na": 0.4,
    "emission_nm": 532.0,
    "pixel_factor": 1.0,         # × 325 nm LR / 162.5 nm HR
    "structure": None,           # None: the MIX
}
NOMINAL_N_IMMERSION = 1.0
LR_PIXEL_UM = 0.325
HR_PIXEL_UM = 0.1625
SCALE = 2

AXES: tuple[str, ...] = ("photons", "offset", "gain", "na", "wavelength", "pixel_size", "structure", "semireal")
AXIS_INFO: dict[str, dict[str, Any]] = {
    "photons": {"title": "exposure: LR peak photons (background 10 %)", "unit": "photons", "log": True,
                "values": (100.0, 300.0, 1000.0, 3000.0, 10000.0)},
    "offset": {"title": "camera offset", "unit": "counts", "log": False, "values": (0.0, 100.0, 300.0, 1000.0)},
    "gain": {"title": "camera gain", "unit": "counts/e⁻", "log": True, "values": (0.25, 1.0, 4.0)},
    "na": {"title": "LR objective NA (PSF mismatch)", "unit": "NA", "log": False, "values": (0.38, 0.40, 0.42)},
    "wavelength": {"title": "emission wavelength (both sides)", "unit": "nm", "log": False,
                   "values": (450.0, 532.0, 700.0)},
    "pixel_size": {"title": "pixel size (both sides), × nominal", "unit": "× nominal", "log": False,
                   "values": (0.9, 1.0, 1.1)},
    "structure": {"title": "specimen (nominal microscope)", "unit": "", "log": False, "categorical": True,
                  "values": TRAINED_STRUCTURES + UNSEEN_STRUCTURES},
    "semireal": {"title": "semi-real: real specimens × cameras", "unit": "", "log": False, "categorical": True,
                 "values": ()},
}
#: LR parameter search grids (full run, quick run).
LR_ITERATIONS = (1, 2, 5, 10, 20, 50, 100)
LR_DAMPINGS = (0.0, 0.001, 0.01, 0.1)
LR_ITERATIONS_QUICK = (1, 5, 10, 20, 50)
LR_DAMPINGS_QUICK = (0.0, 0.001, 0.01)
LR_SEARCH_METRIC = "psnr"
OFFSET_SPREAD_LIMIT_DB = 0.1   # the acceptance bound for percentile (camera-independent) models

BILINEAR = "bilinear"
LR_NOMINAL = "lucy-richardson-nominal"
LR_EXACT = "lucy-richardson-exact"
CARE = "care"
CARE_PYTHON = REPO / "bench" / "peers" / ".venv-care" / "bin" / "python"
CARE_PEER = REPO / "bench" / "peers" / "care_peer.py"
#: Where ``make care-peer`` trains the CARE peer; used when ``--care-run`` is not given and it exists.
DEFAULT_CARE_RUN = REPO / "runs" / "care" / "wf-green"


class BenchError(RuntimeError):
    """A problem the user must fix (bad --model, unreadable card); shown as one line."""


# ----------------------------------------------------------------------------------------------
# Fields
# ----------------------------------------------------------------------------------------------


@dataclass
class Field:
    """One test image: LR counts, the reference, and what each deconvolution needs."""

    name: str
    lr: np.ndarray               # camera counts on the LR grid
    reference: np.ndarray        # noise-free HR counts (hr_clean)
    background_lr: float         # known mean background + offset (LR counts)
    nominal_psf: tuple           # key for _psf
    exact_psf: tuple | None      # key for _psf; None: not defined
    info: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=64)
def _psf(key: tuple) -> np.ndarray:
    """PSF on the bilinear (HR) grid: ("born-wolf", na, n, emission_nm, px) or ("gauss-box", σ, box, px)."""
    from srscope.training.evaluation.baselines import DeconvolutionOptics

    if key[0] == "born-wolf":
        _, na, n, emission_nm, px = key
        return DeconvolutionOptics(na=na, n_immersion=n, emission_nm=emission_nm).psf(px)
    if key[0] == "gauss-box":
        from srscope.training.evaluation.methods import gaussian_box_psf

        _, sigma, box, px = key
        return gaussian_box_psf(sigma, box, px)
    raise ValueError(f"unknown PSF key {key!r}")


def _nominal_psf_key() -> tuple:
    return ("born-wolf", NOMINAL["na"], NOMINAL_N_IMMERSION, NOMINAL["emission_nm"], HR_PIXEL_UM)


def simulated_field(params: dict[str, Any], index: int, hr_size: int, *, seed0: int = TEST_SEED) -> Field:
    """Field ``index`` of a setting: ``simulate_pair`` with the setting's camera and optics."""
    from srscope.training.data.modalities import Detector
    from srscope.training.data.simulate import simulate_pair

    structure = params["structure"] or MIX[index % len(MIX)]
    seed = seed0 + index
    gain = float(params["gain"])
    detector = Detector(gain=gain, offset=float(params["offset"]), read_noise=gain * float(params["read_noise_e"]),
                        bit_depth=16, peak_photons=float(params["peak_photons"]),
                        background_photons=float(params["background_photons"]))
    emission_um = float(params["emission_nm"]) / 1000.0
    f = float(params["pixel_factor"])
    pair = simulate_pair(MODALITY, structure, seed=seed, hr_shape=(hr_size, hr_size), misregister=False,
                         lr__detector=detector, lr__na=float(params["na"]),
                         lr__emission_wavelength_um=emission_um, hr__emission_wavelength_um=emission_um,
                         lr__pixel_size_um=LR_PIXEL_UM * f, hr__pixel_size_um=HR_PIXEL_UM * f)
    exact = ("born-wolf", float(params["na"]), NOMINAL_N_IMMERSION, float(params["emission_nm"]),
             round(pair.hr_pixel_size_um, 9))
    return Field(name=f"{structure}-seed{seed}", lr=pair.lr, reference=pair.hr_clean,
                 background_lr=pair.background_lr, nominal_psf=_nominal_psf_key(), exact_psf=exact,
                 info={"seed": seed, "structure": structure})


def semireal_fields(quick: bool) -> tuple[list[Field], str | None]:
    """Every available semi-real source × camera (quick: one of each), or a reason why none."""
    try:
        from srscope.training.evaluation.semireal import (
            DEFAULT_CAMERAS,
            available_sources,
            semireal_pairs,
        )
    except ImportError as exc:  # pragma: no cover - the training package is a dependency here
        return [], f"not available: {exc}"
    names = available_sources()
    if not names:
        return [], "not available: no semi-real source package installed (pip install 'srscope-training[semireal]')"
    cameras = DEFAULT_CAMERAS
    if quick:
        names = ["microtubules"] if "microtubules" in names else names[:1]
        cameras = cameras[:1]
    fields = []
    for pair in semireal_pairs(names, seed=TEST_SEED, cameras=cameras):
        nominal = ("born-wolf", float(pair.lr_na), float(pair.n_immersion), float(pair.emission_wavelength_nm),
                   round(pair.hr_pixel_size_um, 9))
        exact = ("gauss-box", round(float(pair.psf_sigma_um[0]), 9), float(pair.lr_pixel_size_um),
                 round(pair.hr_pixel_size_um, 9))
        fields.append(Field(name=f"{pair.source}-{pair.camera.name}", lr=pair.lr, reference=pair.hr_clean,
                            background_lr=pair.background_lr, nominal_psf=nominal, exact_psf=exact,
                            info={"seed": pair.seed, "source": pair.source, "camera": pair.camera.name,
                                  "hr_shape": list(pair.hr.shape)}))
    return fields, None


@dataclass
class Setting:
    axis: str
    label: str
    value: float | str
    params: dict[str, Any]
    fields: list[Field] = field(default_factory=list)
    #: method → per-field (psnr, ssim)
    scores: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def axis_settings(axis: str, quick: bool) -> list[Setting]:
    """The settings of one simulated axis (quick: its first and last)."""
    values = list(AXIS_INFO[axis]["values"])
    if quick and len(values) > 2:
        values = [values[0], values[-1]]
    out = []
    for v in values:
        params = dict(NOMINAL)
        if axis == "photons":
            params.update(peak_photons=v, background_photons=0.1 * v)
        elif axis == "offset":
            params.update(offset=v)
        elif axis == "gain":
            params.update(gain=v)
        elif axis == "na":
            params.update(na=v)
        elif axis == "wavelength":
            params.update(emission_nm=v)
        elif axis == "pixel_size":
            params.update(pixel_factor=v)
        elif axis == "structure":
            params.update(structure=v)
        else:
            raise ValueError(f"{axis!r} is not a simulated axis")
        label = v if isinstance(v, str) else f"{v:g}"
        out.append(Setting(axis, label, v, params))
    return out


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------


@dataclass
class Model:
    name: str
    path: Path
    enhancer: Any
    info: dict[str, Any]


def parse_model_args(values: Sequence[str] | None) -> list[tuple[str, Path, bool]]:
    """``NAME=PATH`` strings → (name, path, explicit); no values → the defaults."""
    if not values:
        return [(name, REPO / rel, False) for name, rel in DEFAULT_MODELS]
    out = []
    for text in values:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise BenchError(f"--model wants NAME=PATH, not {text!r}")
        if name in {BILINEAR, LR_NOMINAL, LR_EXACT, CARE} or name in {n for n, _, _ in out}:
            raise BenchError(f"--model name {name!r} is reserved or given twice")
        out.append((name, Path(path), True))
    return out


def load_models(specs: Sequence[tuple[str, Path, bool]], *, tile: int, threads: int,
                ) -> tuple[list[Model], dict[str, str]]:
    """Load each model's card and session; defaults that are missing or unreadable are skipped."""
    from srscope.runtime import Enhancer

    models, skipped = [], {}
    for name, path, explicit in specs:
        try:
            if not path.is_file():
                raise BenchError(f"{path}: no such file")
            enhancer = Enhancer.from_file(path, device="cpu", tile=tile, intra_op_threads=threads, intensity="auto")
            card = enhancer.card
            if card.integer_scale != SCALE:
                raise BenchError(f"{path}: card scale ×{card.integer_scale}, this bench is ×{SCALE}")
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if explicit:
                raise BenchError(f"--model {name}={path}: {reason}") from exc
            skipped[name] = f"skipped: {reason}"
            continue
        rule = card.intensity
        info = {"path": str(path), "card_name": card.name, "version": card.version,
                "intensity": {"mode": rule.mode, "low": rule.low, "high": rule.high},
                "policy": enhancer.intensity.name, "input_modality": card.input_modality,
                "output_modality": card.output_modality, "input_pixel_size_um": card.input_pixel_size_um,
                "halo_px": enhancer.halo, "origin": "--model" if explicit else "default"}
        models.append(Model(name, path, enhancer, info))
    return models, skipped


def deconvolution_start(f: Field) -> np.ndarray:
    """What both Lucy–Richardson rows start from (``methods.deconvolution_input``)."""
    from srscope.training.evaluation.methods import deconvolution_input
    from srscope.training.evaluation.testset import EvalPair

    pair = EvalPair(name=f.name, lr=f.lr.astype(np.float32), hr=f.reference, lr_pixel_size_um=LR_PIXEL_UM,
                    hr_pixel_size_um=HR_PIXEL_UM, background_lr=f.background_lr)
    return deconvolution_input(pair)


def choose_lucy_richardson(hr_size: int, quick: bool) -> dict[str, Any]:
    """Iterations/damping maximising mean PSNR over validation fields (one per MIX structure) at nominal."""
    from srscope.training.evaluation.baselines import search_lucy_richardson
    from srscope.training.evaluation.metrics import score_image

    iterations = LR_ITERATIONS_QUICK if quick else LR_ITERATIONS
    dampings = LR_DAMPINGS_QUICK if quick else LR_DAMPINGS
    totals: dict[tuple[int, float], list[float]] = {}
    names = []
    for j in range(len(MIX)):
        f = simulated_field(NOMINAL, j, hr_size, seed0=VALIDATION_SEED)
        names.append(f.name)
        choice = search_lucy_richardson(deconvolution_start(f), f.reference, _psf(f.nominal_psf),
                                        lambda a, b: getattr(score_image(a, b), LR_SEARCH_METRIC),
                                        metric=LR_SEARCH_METRIC, iterations=iterations, dampings=dampings)
        for k, d, s in choice.grid:
            totals.setdefault((k, d), []).append(s)
    (k, d), scores = max(totals.items(), key=lambda kv: float(np.mean(kv[1])))
    return {"iterations": int(k), "damping": float(d), "metric": LR_SEARCH_METRIC,
            "validation_mean": round(float(np.mean(scores)), 4), "validation_fields": names,
            "validation_seeds": [VALIDATION_SEED + j for j in range(len(MIX))],
            "nominal_psf": {"model": "Born & Wolf", "na": NOMINAL["na"], "n_immersion": NOMINAL_N_IMMERSION,
                            "emission_nm": NOMINAL["emission_nm"], "pixel_size_um": HR_PIXEL_UM},
            "grid": [{"iterations": kk, "damping": dd, LR_SEARCH_METRIC: round(float(np.mean(v)), 4)}
                     for (kk, dd), v in totals.items()]}


def run_baselines(f: Field, lr_choice: dict[str, Any]) -> dict[str, np.ndarray]:
    from srscope.training.evaluation.baselines import bilinear_upsample, richardson_lucy

    start = deconvolution_start(f)
    out = {BILINEAR: bilinear_upsample(f.lr, SCALE)}
    results: dict[tuple, np.ndarray] = {}
    for method, key in ((LR_NOMINAL, f.nominal_psf), (LR_EXACT, f.exact_psf)):
        if key is None:
            continue
        if key not in results:  # the exact PSF is the nominal one on camera/specimen axes
            results[key] = richardson_lucy(start, _psf(key), lr_choice["iterations"], lr_choice["damping"])
        out[method] = results[key]
    return out


# ----------------------------------------------------------------------------------------------
# CARE peer
# ----------------------------------------------------------------------------------------------


def _care_normalisation(run_dir: Path) -> dict[str, Any]:
    """How the CARE run's dataset normalised its LR: per-field percentiles (randomised datasets) or fixed."""
    meta_path = run_dir / "care_peer.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    attrs: dict[str, Any] = {}
    dataset = meta.get("dataset")
    if dataset and (Path(dataset) / "zarr.json").is_file():
        with open(Path(dataset) / "zarr.json") as fh:
            attrs = json.load(fh).get("attributes", {}).get("srscope_dataset", {}) or {}
    intensity = attrs.get("intensity") or {}
    if intensity.get("mode") == "percentile":
        return {"mode": "percentile", "low": float(intensity.get("low", 1.0)),
                "high": float(intensity.get("high", 99.8)), "from": "dataset attributes"}
    norm = attrs.get("normalization") or meta.get("dataset_normalization")
    if attrs and norm:
        return {"mode": "fixed", "offset": float(norm["offset"]), "scale": float(norm["scale"]),
                "from": "dataset attributes"}
    return {"mode": "percentile", "low": 1.0, "high": 99.8, "from": "assumed (dataset attributes not found)"}


def care_status(run_dir: Path | None) -> str | None:
    """``None`` when the CARE peer can run, else ``"not available: <reason>"``."""
    if run_dir is None:
        return "not available: no --care-run given"
    if not CARE_PYTHON.exists():
        return f"not available: {CARE_PYTHON.relative_to(REPO)} missing (bash bench/peers/setup_care_env.sh)"
    if not (run_dir / "care_model.ckpt").is_file():
        return f"not available: {run_dir}/care_model.ckpt missing (care_peer.py train first)"
    return None


def run_care(run_dir: Path, settings: Sequence[Setting], work: Path) -> tuple[dict, dict[tuple[int, int], np.ndarray]]:
    """One ``care_peer.py predict`` call on every field's LR (normalised, on the HR grid); outputs in counts."""
    from srscope.runtime.card import AffineIntensity
    from srscope.runtime.intensity import percentile_affine
    from srscope.training.gan.simdataset import upsample_to_hr_grid

    norm = _care_normalisation(run_dir)
    inputs, mappings = {}, {}
    for si, s in enumerate(settings):
        for fi, f in enumerate(s.fields):
            mapping = (percentile_affine(f.lr, norm["low"], norm["high"]) if norm["mode"] == "percentile"
                       else AffineIntensity(offset=norm["offset"], scale=norm["scale"]))
            inputs[f"s{si:03d}f{fi:03d}"] = mapping.normalise(upsample_to_hr_grid(f.lr, SCALE)).astype(np.float32)
            mappings[(si, fi)] = mapping
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / "care_in.npz", work / "care_out.npz"
    np.savez(src, **inputs)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    done = subprocess.run([str(CARE_PYTHON), str(CARE_PEER), "predict", str(run_dir), str(src), str(dst),
                           "--threads", "1"], check=False, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise BenchError(f"care_peer.py predict failed (exit {done.returncode}): {tail}")
    outputs = {}
    with np.load(dst) as npz:
        for (si, fi), mapping in mappings.items():
            outputs[(si, fi)] = mapping.denormalise(npz[f"s{si:03d}f{fi:03d}"])  # the same affine back
    report: dict[str, Any] = {"run": str(run_dir), "normalisation": norm, "images": len(inputs),
                              "predict_wall_s": round(wall, 2)}
    try:
        report["peer"] = {k: v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()
                          if k in ("model_load_s", "threads", "versions")}
    except (ValueError, IndexError):
        pass
    return report, outputs


# ----------------------------------------------------------------------------------------------
# Aggregation, figure
# ----------------------------------------------------------------------------------------------


def _r(x: float, n: int = 4) -> float | None:
    return None if not np.isfinite(x) else round(float(x), n)


def aggregate(s: Setting, methods: Sequence[str]) -> dict[str, Any]:
    base = np.asarray(s.scores[BILINEAR])
    lrn = np.asarray(s.scores[LR_NOMINAL])
    out: dict[str, Any] = {}
    for m in methods:
        if m not in s.scores:
            continue
        sc = np.asarray(s.scores[m])
        per_field = []
        for j, f in enumerate(s.fields):
            per_field.append({**f.info, "psnr": _r(sc[j, 0]), "ssim": _r(sc[j, 1], 5),
                              "gain_over_bilinear_db": _r(sc[j, 0] - base[j, 0]),
                              "gain_over_lr_nominal_db": _r(sc[j, 0] - lrn[j, 0])})
        out[m] = {"psnr": _r(sc[:, 0].mean()), "ssim": _r(sc[:, 1].mean(), 5),
                  "gain_over_bilinear_db": _r((sc[:, 0] - base[:, 0]).mean()),
                  "gain_over_bilinear_ssim": _r((sc[:, 1] - base[:, 1]).mean(), 5),
                  "gain_over_lr_nominal_db": _r((sc[:, 0] - lrn[:, 0]).mean()),
                  "gain_over_lr_nominal_ssim": _r((sc[:, 1] - lrn[:, 1]).mean(), 5),
                  "fields": per_field}
    return out


def summarise(axes: dict[str, Any], methods: Sequence[str], models: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for m in methods:
        worst: tuple[float, str] | None = None
        spreads, ranges = {}, {}
        for axis, entry in axes.items():
            rows = [(s["label"], s["methods"][m]) for s in entry.get("settings", []) if m in s["methods"]]
            if not rows:
                continue
            psnrs = [r["psnr"] for _, r in rows]
            gains = [r["gain_over_bilinear_db"] for _, r in rows]
            spreads[axis] = _r(max(psnrs) - min(psnrs))
            ranges[axis] = [min(gains), max(gains)]
            for label, r in rows:
                if worst is None or r["gain_over_bilinear_db"] < worst[0]:
                    worst = (r["gain_over_bilinear_db"], f"{axis}={label}")
        if worst is None:
            continue
        entry = {"min_gain_over_bilinear_db": worst[0], "min_gain_setting": worst[1],
                 "offset_psnr_spread_db": spreads.get("offset"), "psnr_spread_db": spreads,
                 "gain_over_bilinear_range_db": ranges}
        if m in models:
            entry["intensity_mode"] = models[m]["intensity"]["mode"]
            if models[m]["intensity"]["mode"] == "percentile" and spreads.get("offset") is not None:
                entry[f"offset_spread_within_{OFFSET_SPREAD_LIMIT_DB:g}_db"] = bool(
                    spreads["offset"] <= OFFSET_SPREAD_LIMIT_DB)
        summary[m] = entry
    return summary


def _style(method: str, index: int) -> dict[str, Any]:
    if method == BILINEAR:
        return {"color": "0.5", "linestyle": "-", "marker": None, "linewidth": 1.0}
    if method == LR_NOMINAL:
        return {"color": "tab:green", "linestyle": "--", "marker": "s"}
    if method == LR_EXACT:
        return {"color": "tab:olive", "linestyle": ":", "marker": "^"}
    if method == CARE:
        return {"color": "tab:purple", "linestyle": "-.", "marker": "D"}
    palette = ("tab:red", "tab:blue", "tab:orange", "tab:cyan", "tab:brown", "tab:pink", "black")
    return {"color": palette[index % len(palette)], "linestyle": "-", "marker": "o", "linewidth": 2.0}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_data = {a: e for a, e in result["axes"].items() if e.get("settings")}
    methods = result["methods"]
    models = result["models"]
    nets = [m for m in methods if m in models]
    labels = {}
    for i, m in enumerate(methods):
        text = m
        if m in models:
            mode = models[m]["intensity"]["mode"]
            text = f"{m} (v{models[m]['version']}, {mode})"
        spread = result["summary"].get(m, {}).get("offset_psnr_spread_db")
        if spread is not None and m != BILINEAR:
            text += f" — offset spread {spread:.2f} dB"
        labels[m] = text
    fig = plt.figure(figsize=(18, 14))
    grid = fig.add_gridspec(3, 6, hspace=0.5, wspace=0.9, top=0.86, bottom=0.05)
    slots = {"photons": grid[0, 0:2], "offset": grid[0, 2:4], "gain": grid[0, 4:6], "na": grid[1, 0:2],
             "wavelength": grid[1, 2:4], "pixel_size": grid[1, 4:6], "structure": grid[2, 0:2],
             "semireal": grid[2, 2:6]}
    handles = {}
    for axis, slot in slots.items():
        ax = fig.add_subplot(slot)
        info = AXIS_INFO[axis]
        entry = axes_data.get(axis)
        ax.set_title(info["title"], fontsize=11)
        ax.axhline(0.0, color="0.5", linewidth=1.0)
        if entry is None:
            note = result["axes"].get(axis, {}).get("note", "not run")
            ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
            ax.set_xticks([])
            continue
        settings = entry["settings"]
        shown = [m for m in methods if m != BILINEAR and any(m in s["methods"] for s in settings)]
        if info.get("categorical"):
            x = np.arange(len(settings))
            width = 0.8 / max(len(shown), 1)
            for i, m in enumerate(shown):
                st = _style(m, nets.index(m) if m in nets else 0)
                ys = [s["methods"].get(m, {}).get("gain_over_bilinear_db", np.nan) for s in settings]
                h = ax.bar(x + (i - (len(shown) - 1) / 2) * width, ys, width, color=st["color"],
                           hatch="//" if m == LR_EXACT else None, edgecolor="white", linewidth=0.3)
                handles.setdefault(m, h)
            names = []
            for s in settings:
                label = s["label"].replace("-", " · ", 1) if axis == "semireal" else s["label"]
                if axis == "structure" and s["label"] in UNSEEN_STRUCTURES:
                    label += "\n(unseen)"
                names.append(label)
            if axis == "semireal":
                ax.set_xticks(x, names, fontsize=8, rotation=30, ha="right", rotation_mode="anchor")
            else:
                ax.set_xticks(x, names, fontsize=8)
        else:
            xs = [float(s["value"]) for s in settings]
            for m in shown:
                st = _style(m, nets.index(m) if m in nets else 0)
                ys = [s["methods"].get(m, {}).get("gain_over_bilinear_db", np.nan) for s in settings]
                (h,) = ax.plot(xs, ys, **st)
                handles.setdefault(m, h)
            if info["log"]:
                ax.set_xscale("log")
            ax.set_xticks(xs, [s["label"] for s in settings])
            ax.minorticks_off()
            nominal = {"photons": NOMINAL["peak_photons"], "offset": NOMINAL["offset"], "gain": NOMINAL["gain"],
                       "na": NOMINAL["na"], "wavelength": NOMINAL["emission_nm"],
                       "pixel_size": NOMINAL["pixel_factor"]}[axis]
            ax.axvline(nominal, color="0.8", linestyle=":", zorder=0)
            ax.set_xlabel(info["unit"] + " (dotted: nominal)", fontsize=9)
        ax.set_ylabel("PSNR gain over bilinear (dB)", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    order = [m for m in methods if m in handles]
    lr = result["lucy_richardson"]
    fig.suptitle(f"{TASK}: PSNR gain over bilinear (dB, vs the noise-free 20x/0.75 reference)\n"
                 f"{result['config']['fields']} field(s) of {result['config']['hr_size']}² per setting; "
                 f"Lucy–Richardson {lr['iterations']} it., damping {lr['damping']:g}, chosen once at the "
                 f"nominal setting; above 0 = better than bilinear", y=0.985, fontsize=12)
    fig.legend([handles[m] for m in order], [labels[m] for m in order], loc="upper center", ncol=2,
               fontsize=10, frameon=False, bbox_to_anchor=(0.5, 0.945))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def machine() -> dict[str, Any]:
    model = None
    try:
        text = subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), None)
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": model or platform.processor() or "unknown", "cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}


# ----------------------------------------------------------------------------------------------
# Run
# ----------------------------------------------------------------------------------------------


def run(out_dir: Path, models: Sequence[str] | None = None, *, care_run: Path | None = None, fields: int = 3,
        hr_size: int = 256, quick: bool = False, axes: Sequence[str] | None = None, tile: int = 512,
        threads: int = 1, progress: bool = True) -> dict:
    """Run the benchmark; writes the PNG into ``out_dir`` and returns the JSON-ready result."""
    from srscope.training.evaluation.metrics import score_image
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if quick:
        fields, hr_size = 1, 128
    if fields < 1:
        raise BenchError(f"--fields must be >= 1, not {fields}")
    if hr_size < 64 or hr_size % 16:
        raise BenchError(f"--hr-size must be a multiple of 16 and >= 64, not {hr_size}")
    axes = list(AXES if not axes else axes)
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise BenchError(f"unknown axis {', '.join(unknown)}; choose from {', '.join(AXES)}")

    loaded, skipped = load_models(parse_model_args(models), tile=tile, threads=threads)
    if care_run is None and not quick and (DEFAULT_CARE_RUN / "care_model.ckpt").is_file():
        care_run = DEFAULT_CARE_RUN   # what `make care-peer` trains
    care_note = care_status(care_run)
    method_names = [BILINEAR, LR_NOMINAL, LR_EXACT] + [m.name for m in loaded] + ([CARE] if care_note is None else [])

    lr_choice = choose_lucy_richardson(hr_size, quick)

    # settings and their fields (simulated lazily below so the bar shows the real work)
    settings: list[Setting] = []
    axis_notes: dict[str, str] = {}
    for axis in axes:
        if axis == "semireal":
            srf, note = semireal_fields(quick)
            if note:
                axis_notes[axis] = note
            for f in srf:
                settings.append(Setting(axis, f.name, f.name, {"source": f.info["source"],
                                                               "camera": f.info["camera"]}, [f]))
        else:
            settings.extend(axis_settings(axis, quick))
    total = sum(len(s.fields) or fields for s in settings)
    with tqdm(total=total, desc="robustness", unit="field", disable=not progress, leave=False) as bar:
        for s in settings:
            bar.set_postfix_str(f"{s.axis}={s.label}")
            if not s.fields:
                s.fields = [simulated_field(s.params, j, hr_size) for j in range(fields)]
            outputs: dict[str, list[np.ndarray]] = {}
            for f in s.fields:
                for m, img in run_baselines(f, lr_choice).items():
                    outputs.setdefault(m, []).append(img)
            for model in loaded:
                outputs[model.name] = model.enhancer.enhance_many([f.lr for f in s.fields])
            for m, images in outputs.items():
                s.scores[m] = [(sc.psnr, sc.ssim) for sc in (score_image(img, f.reference)
                                                             for img, f in zip(images, s.fields))]
            bar.update(len(s.fields))

    care: Any = care_note
    if care_note is None:
        assert care_run is not None
        work = Path(tempfile.mkdtemp(prefix="robustness_care_", dir=out_dir))
        try:
            if progress:
                print("[robustness] CARE peer: one predict call on all fields …", file=sys.stderr, flush=True)
            care, care_out = run_care(care_run, settings, work)
            for si, s in enumerate(settings):
                s.scores[CARE] = [(sc.psnr, sc.ssim) for sc in (score_image(care_out[(si, fi)], f.reference)
                                                                 for fi, f in enumerate(s.fields))]
        except BenchError as exc:
            care = f"not available: {exc}"
            method_names.remove(CARE)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    axes_out: dict[str, Any] = {}
    for axis in axes:
        info = AXIS_INFO[axis]
        rows = []
        for s in (s for s in settings if s.axis == axis):
            params = {k: v for k, v in s.params.items() if k != "structure" or v is not None}
            if axis != "semireal" and s.params.get("structure") is None:
                params["structure"] = "+".join(MIX) + " (alternating)"
            rows.append({"label": s.label, "value": s.value, "params": params,
                         "methods": aggregate(s, method_names)})
        entry: dict[str, Any] = {"title": info["title"], "unit": info["unit"], "settings": rows}
        if axis in axis_notes:
            entry["note"] = axis_notes[axis]
        axes_out[axis] = entry

    model_info = {m.name: m.info for m in loaded}
    result: dict[str, Any] = {
        "bench": "robustness",
        "task": TASK,
        "machine": machine(),
        "started": started,
        "config": {"quick": quick, "fields": fields, "hr_size": hr_size, "axes": axes, "tile": tile,
                   "intra_op_threads": threads, "test_seeds": [TEST_SEED, TEST_SEED + fields - 1],
                   "validation_seeds": [VALIDATION_SEED, VALIDATION_SEED + len(MIX) - 1],
                   "nominal": {**{k: v for k, v in NOMINAL.items() if k != "structure"},
                               "structure": "+".join(MIX) + " (alternating)", "hr_na": 0.75,
                               "read_noise_counts": "read_noise_e × gain", "hr_camera": "modality default",
                               "misregister": False},
                   "reference": "hr_clean (noise-free HR counts), after the least-squares affine intensity fit",
                   "trained_structures": list(TRAINED_STRUCTURES), "unseen_structures": list(UNSEEN_STRUCTURES)},
        "methods": method_names,
        "models": model_info,
        "skipped_models": skipped,
        "care": care,
        "lucy_richardson": lr_choice,
        "axes": axes_out,
    }
    result["summary"] = summarise(axes_out, method_names, model_info)
    png = out_dir / "bench_robustness.png"
    plot(result, png)
    result["png"] = str(png)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result


def headline(result: dict[str, Any]) -> str:
    """A text table: per method, the worst gain over bilinear and the PSNR spread per axis."""
    axes = [a for a in result["axes"] if result["axes"][a].get("settings")]
    head = f"{'method':<26}{'min gain vs bilinear':>36}" + "".join(f"{a[:10]:>11}" for a in axes)
    lines = ["PSNR spread (max−min, dB) per axis; min gain over bilinear (dB) over all settings",
             head, "-" * len(head)]
    for m, s in result["summary"].items():
        worst = f"{s['min_gain_over_bilinear_db']:+.2f} ({s['min_gain_setting']})"
        lines.append(f"{m:<26}{worst:>36}" + "".join(
            f"{s['psnr_spread_db'].get(a, float('nan')):>11.3f}" for a in axes))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", metavar="NAME=PATH",
                        help="a model to test (repeatable); default: "
                             + ", ".join(f"{n}={p}" for n, p in DEFAULT_MODELS) + " (those that exist)")
    parser.add_argument("--care-run", type=Path, default=None, metavar="DIR",
                        help="a bench/peers care_peer.py train OUT_DIR: adds the CARE peer")
    parser.add_argument("--fields", type=int, default=3, help="fields per setting (default 3)")
    parser.add_argument("--hr-size", type=int, default=256, help="HR field edge in pixels (default 256)")
    parser.add_argument("--axes", default=None, help=f"comma-separated subset of {','.join(AXES)}")
    parser.add_argument("--tile", type=int, default=512, help="Enhancer tile edge, input pixels (default 512)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: 1 field of 128², 2 settings per axis, semi-real 1 source × 1 camera")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    try:
        result = run(args.out, args.model, care_run=args.care_run, fields=args.fields, hr_size=args.hr_size,
                     quick=args.quick, axes=args.axes.split(",") if args.axes else None, tile=args.tile,
                     threads=args.threads, progress=not args.quiet)
    except Exception as exc:  # noqa: BLE001 - one line for the user, whatever went wrong
        text = str(exc).splitlines()[0] if str(exc) else ""
        if not isinstance(exc, BenchError):
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        print(f"bench_robustness: error: {text}", file=sys.stderr)
        return 1
    path = args.out / "bench_robustness.json"
    path.write_text(json.dumps(result, indent=2))
    if not args.quiet:
        print(headline(result))
        print(f"wrote {path} and {result['png']} in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
