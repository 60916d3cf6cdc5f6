"""``prepare_dataset``: register every field of view, normalise globally, cut training patches.

Two passes. Pass 1 registers each FOV and parks the registered, cropped float32 pair in a work
folder beside the output (so memory holds one FOV at a time, and the statistics of pass 2 can
be computed from the training split before anything is normalised). Pass 2 normalises with the
training-split statistics and writes patches. Splits are by field of view, never by patch, so
no validation patch has a neighbour from the same image in training.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from .dataset import FORMAT_VERSION, SPLITS, DatasetWriter
from .register import QualityGate, register_pair
from .simulate import SimulatedPair
from .sources import PairSource, from_directories, from_simulated


@dataclass
class PreparedSummary:
    path: Path
    attrs: dict
    per_fov: list[dict] = field(default_factory=list)

    def table(self) -> str:
        """Human-readable per-FOV summary (the CLI prints it)."""
        head = f"{'fov':<16}{'split':<7}{'shift y,x px':>16}{'r before':>10}{'r global':>10}{'r final':>9}{'resid px':>10}{'patches':>9}  status"
        rows = [head, "-" * len(head)]
        for f in self.per_fov:
            sy, sx = f["global_shift_yx_px"]
            status = "ok" if f["accepted"] else "REJECTED: " + "; ".join(f["reasons"])
            rows.append(f"{f['name']:<16}{f['split']:<7}{sy:>8.2f},{sx:>7.2f}{f['correlation_before']:>10.3f}"
                        f"{f['correlation_global']:>10.3f}{f['correlation']:>9.3f}{f['residual_shift_px']:>10.3f}"
                        f"{f['patches']:>9}  {status}")
        s = self.attrs["splits"]
        rows.append(f"patches: train {self.attrs['patches']['train']}, val {self.attrs['patches']['val']}, "
                    f"test {self.attrs['patches']['test']} (FOVs {s['train']}/{s['val']}/{s['test']})")
        return "\n".join(rows)


def assign_splits(n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> list[str]:
    """Split labels per FOV: a seeded shuffle, at least one val and one test FOV when n ≥ 3."""
    if n <= 0:
        raise ValueError("no fields of view to split")
    order = np.random.default_rng(seed).permutation(n)
    total = sum(fractions)
    n_val = round(n * fractions[1] / total)
    n_test = round(n * fractions[2] / total)
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_val = min(n_val, max(n - 1, 0))
    n_test = min(n_test, max(n - 1 - n_val, 0))
    labels = ["train"] * n
    for i in order[:n_val]:
        labels[i] = "val"
    for i in order[n_val:n_val + n_test]:
        labels[i] = "test"
    return labels


def extract_patches(lr: np.ndarray, hr: np.ndarray, patch_size: int, *, min_signal: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping P×P patches on a grid, skipping empty background: a patch is kept when
    its (slightly smoothed, to ignore single noisy pixels) normalised HR reaches ``min_signal``."""
    h, w = hr.shape
    p = patch_size
    ny, nx = h // p, w // p
    if ny == 0 or nx == 0:
        return np.empty((0, p, p), np.float32), np.empty((0, p, p), np.float32)
    oy, ox = (h - ny * p) // 2, (w - nx * p) // 2
    def tiles(img: np.ndarray) -> np.ndarray:
        t = img[oy:oy + ny * p, ox:ox + nx * p].reshape(ny, p, nx, p).swapaxes(1, 2)
        return t.reshape(-1, p, p)
    lr_t, hr_t = tiles(lr), tiles(hr)
    smooth = tiles(ndimage.gaussian_filter(hr, 1.0))
    keep = smooth.reshape(len(smooth), -1).max(axis=1) >= min_signal
    return lr_t[keep].astype(np.float32), hr_t[keep].astype(np.float32)


def _as_sources(pairs) -> list[PairSource]:
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, (str, Path)) for p in pairs):
        return from_directories(Path(pairs[0]), Path(pairs[1]))
    out = []
    for i, p in enumerate(pairs):
        if isinstance(p, SimulatedPair):
            out.append(from_simulated(p, f"fov{i:04d}"))
        elif isinstance(p, PairSource):
            out.append(p)
        else:
            raise TypeError(f"cannot prepare a {type(p).__name__}; pass SimulatedPair, PairSource or (lr_dir, hr_dir)")
    return out


def prepare_dataset(pairs: Iterable[SimulatedPair | PairSource] | tuple[str | Path, str | Path], out: Path, *,
                    patch_size: int = 64, split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                    seed: int = 0, elastic: bool | None = None, gate: QualityGate | None = None,
                    reject: bool = True, min_signal: float = 0.1, crop: int = 10,
                    plots_dir: Path | None = None, max_plots: int = 8, overwrite: bool = False,
                    progress: bool = True, bright_percentile: float = 99.9) -> PreparedSummary:
    """Register, normalise and patch LR/HR pairs into the zarr dataset described in
    :mod:`.dataset`. ``elastic=None`` decides per pair: drift correction only for drift-only
    modalities (confocal → STED, sequential scans on one stand), the full pyramid otherwise."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (use --overwrite to replace it)")
    sources = _as_sources(pairs)
    if not sources:
        raise ValueError("no pairs to prepare")
    if patch_size < 8:
        raise ValueError(f"patch size {patch_size} is too small")
    labels = assign_splits(len(sources), split_fractions, seed)
    work = out.with_name(out.name + ".work")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    gate = gate or QualityGate()
    per_fov: list[dict] = []
    try:
        for i, (src, split) in enumerate(tqdm(list(zip(sources, labels)), desc="register", unit="fov", disable=not progress)):
            lr, hr = src.load()
            use_elastic = (not src.meta.get("drift_only", False)) if elastic is None else elastic
            reg = register_pair(lr, hr, src.lr_pixel_size_um, src.hr_pixel_size_um, elastic=use_elastic,
                                crop=crop, gate=gate)
            np.save(work / f"{i:05d}_lr.npy", reg.lr)
            np.save(work / f"{i:05d}_hr.npy", reg.hr)
            info = {"name": src.name, "index": i, "split": split, "elastic": use_elastic, **reg.summary()}
            if not reject:
                info["accepted"] = True
            per_fov.append(info)
            if plots_dir is not None and i < max_plots:
                from .plots import registration_figure

                Path(plots_dir).mkdir(parents=True, exist_ok=True)
                registration_figure(reg, resample_for_plot(lr, src, hr.shape), hr, Path(plots_dir) / f"{src.name}_registration.png")
        stats = _normalisation(work, per_fov, bright_percentile, seed)
        if out.exists():
            shutil.rmtree(out)
        writer = DatasetWriter(out, patch_size)
        counts = dict.fromkeys(SPLITS, 0)
        for info in tqdm(per_fov, desc="patches", unit="fov", disable=not progress):
            info["patches"] = 0
            if not info["accepted"]:
                continue
            i = info["index"]
            lr = (np.load(work / f"{i:05d}_lr.npy") - stats["lr"][0]) / stats["lr"][1]
            hr = (np.load(work / f"{i:05d}_hr.npy") - stats["hr"][0]) / stats["hr"][1]
            lr_p, hr_p = extract_patches(lr, hr, patch_size, min_signal=min_signal)
            writer.append(info["split"], lr_p, hr_p, i)
            info["patches"] = len(lr_p)
            counts[info["split"]] += len(lr_p)
        attrs = _attrs(sources, per_fov, stats, patch_size, counts, gate, reject, bright_percentile)
        writer.finish(attrs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return PreparedSummary(out, attrs, per_fov)


def resample_for_plot(lr: np.ndarray, src: PairSource, hr_shape: tuple[int, int]) -> np.ndarray:
    from .resample import resample_to_hr

    return resample_to_hr(lr, src.lr_pixel_size_um, src.hr_pixel_size_um, hr_shape)


def _normalisation(work: Path, per_fov: list[dict], percentile: float, seed: int) -> dict[str, tuple[float, float]]:
    """Global (offset, scale) per side from accepted training FOVs: offset = median background
    estimate, scale = the ``percentile`` of background-subtracted pixels pooled across FOVs."""
    train = [f for f in per_fov if f["accepted"] and f["split"] == "train"] or [f for f in per_fov if f["accepted"]]
    if not train:
        raise ValueError("every pair was rejected by the quality gate; nothing to train on")
    rng = np.random.default_rng(seed)
    stats = {}
    for side in ("lr", "hr"):
        offset = float(np.median([f[f"background_{side}"] for f in train]))
        pooled = []
        for f in train:
            values = np.load(work / f"{f['index']:05d}_{side}.npy").ravel()
            take = min(values.size, 200_000)
            pooled.append(values[rng.choice(values.size, take, replace=False)] if take < values.size else values)
        bright = float(np.percentile(np.concatenate(pooled) - offset, percentile))
        stats[side] = (offset, bright if bright > 0 else 1.0)
    return stats


def _attrs(sources: Sequence[PairSource], per_fov: list[dict], stats: dict, patch_size: int, counts: dict,
           gate: QualityGate, reject: bool, percentile: float) -> dict:
    meta = sources[0].meta
    accepted = [f for f in per_fov if f["accepted"]]
    def med(key: str) -> float | None:
        vals = [f[key] for f in accepted]
        return float(np.median(vals)) if vals else None
    return {
        "version": FORMAT_VERSION,
        "input_modality": meta.get("input_modality", meta.get("modality", "unknown")),
        "output_modality": meta.get("output_modality", meta.get("modality", "unknown")),
        "modality": meta.get("modality"),
        "structures": sorted({s.meta.get("structure", "unknown") for s in sources}),
        "input_pixel_size_um": sources[0].lr_pixel_size_um,
        "output_pixel_size_um": sources[0].hr_pixel_size_um,
        "emission_wavelength_nm": float(meta.get("emission_wavelength_nm", 0.0)) or None,
        "normalization": {"offset": stats["lr"][0], "scale": stats["lr"][1]},
        "denormalization": {"offset": stats["hr"][0], "scale": stats["hr"][1]},
        "normalization_rule": f"offset = median background (dimmest-tile mean) of training FOVs; "
                              f"scale = {percentile}th percentile above it",
        "patch_size": patch_size,
        "splits": {s: len({f['index'] for f in accepted if f['split'] == s}) for s in SPLITS},
        "patches": counts,
        "fovs": [{"name": f["name"], "split": f["split"], "accepted": f["accepted"]} for f in per_fov],
        "registration": {
            "pairs": len(per_fov),
            "accepted": len(accepted),
            "rejected": [{"name": f["name"], "reasons": f["reasons"]} for f in per_fov if not f["accepted"]],
            "gate": {"min_correlation": gate.min_correlation, "max_residual_shift_px": gate.max_residual_shift_px,
                     "reject": reject},
            "median_correlation_before": med("correlation_before"),
            "median_correlation_global": med("correlation_global"),
            "median_correlation": med("correlation"),
            "median_residual_shift_px": med("residual_shift_px"),
            "median_abs_global_shift_px": float(np.median([np.hypot(*f["global_shift_yx_px"]) for f in accepted])) if accepted else None,
        },
    }
