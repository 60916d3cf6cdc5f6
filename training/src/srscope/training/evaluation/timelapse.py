"""Held-out TIRF time-lapse: the paper's live-cell TIRF → TIRF-SIM experiment, at many cameras.

Wang et al. super-resolve TIRF time-lapses of live cells (AP2-eGFP pits, microtubules) frame by
frame with a TIRF → TIRF-SIM model. A time-lapse differs from the independent fields a model is
trained and scored on in three ways that matter for a user: the specimen *moves* (stage or cell
drift), it *changes* (pits appear and fade while the field stays), and it *bleaches*, so later
frames have fewer photons. This module builds such sequences from the simulator without a
dynamic specimen model:

* two specimens ``A`` and ``B`` of the same structure (seeds ``seed`` and ``seed + 1``) are imaged
  noise-free through both sides of the ``tirf-sim`` modality; frame ``t`` shows
  ``(1 − w_t)·A + w_t·B`` with ``w_t`` rising from 0 to ``turnover`` over the sequence (imaging is
  linear in the specimen, so the mixture of images *is* the image of the mixed specimen: pits of
  ``A`` fade while those of ``B`` appear, as clathrin pits turn over in ~1 min);
* the field drifts by ``drift_lr_px`` LR pixels per frame (a crop that moves over a larger field;
  whole LR pixels, so the HR reference moves by exactly ``s`` times as much);
* photons fall by ``bleach`` per frame (``peak · (1 − bleach)^t``);
* each frame is exposed anew through one camera (:class:`TimelapseCamera`): its offset, gain, read
  noise, kind (sCMOS per-pixel pattern fixed for the whole sequence, EMCCD excess noise, CCD),
  with its own Poisson and read noise.

The clean LR image is the simulator's LR-optics image sampled at the LR pixel centres (the mean of
each ``s × s`` block of ``truth_lr_on_hr``, exact for the band-limited LR image, whose cut-off
2NA/λ is far below the HR grid's Nyquist rate). The reference is the noise-free HR image
(``hr_clean``) of the same mixture, scored after the affine intensity fit
(:func:`~srscope.training.evaluation.metrics.score_image`), so bleaching and camera gain do not
enter the score.

Seeds 800 000+ are used (training fields use 0+, validation 100 000+, dataset test 200 000+), so
no frame shares a specimen with the model's data.

    python -m srscope.training.evaluation.timelapse models/tirf-to-tirf-sim.onnx out/eval-timelapse
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.modalities import MODALITIES, Detector
from ..data.simulate import expose, simulate_pair
from .baselines import bilinear_upsample
from .metrics import score_image

MODALITY = "tirf-sim"
SEED = 800_000
STRUCTURES: tuple[str, ...] = ("ccps", "filaments")


@dataclass(frozen=True)
class TimelapseCamera:
    """One camera setting of the sequence (LR side): what a user's microscope may have."""

    name: str
    kind: str = "scmos"              # scmos | emccd | ccd
    offset: float = 100.0            # counts
    gain: float = 2.0                # counts per photo-electron
    read_noise_e: float = 1.5        # electrons RMS
    peak_photons: float = 1000.0     # photons at the bright end of the first frame
    pattern_seed: int = 11

    def detector(self, background_photons: float) -> Detector:
        extra = {"offset_sd": 3.0, "gain_sd": 0.02} if self.kind == "scmos" else {}
        return Detector(gain=self.gain, offset=self.offset, read_noise=self.gain * self.read_noise_e, bit_depth=16,
                        peak_photons=self.peak_photons, background_photons=background_photons,
                        kind=self.kind, pattern_seed=self.pattern_seed, **extra)  # type: ignore[arg-type]


#: The grid the acceptance criterion is measured on: the nominal sCMOS, then one knob at a time
#: (photons 300–5,000, offset 0–1,000, gain 0.25–4), and the other two camera kinds.
CAMERAS: tuple[TimelapseCamera, ...] = (
    TimelapseCamera("nominal sCMOS"),
    TimelapseCamera("photons 300", peak_photons=300.0),
    TimelapseCamera("photons 5000", peak_photons=5000.0),
    TimelapseCamera("offset 0", offset=0.0),
    TimelapseCamera("offset 1000", offset=1000.0),
    TimelapseCamera("gain 0.25", gain=0.25),
    TimelapseCamera("gain 4", gain=4.0),
    TimelapseCamera("EMCCD", kind="emccd", gain=8.0, read_noise_e=0.05, offset=200.0),
    TimelapseCamera("CCD", kind="ccd", gain=1.0, read_noise_e=6.0),
)


@dataclass
class TimelapseFrame:
    """Frame ``t``: LR camera counts (uint16) and the noise-free HR reference of the same moment."""

    t: int
    lr: np.ndarray
    reference: np.ndarray


def _clean_sides(structure: str, seed: int, hr_size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(LR photons on the LR grid, HR photons, LR background photons) of one noise-free field."""
    pair = simulate_pair(MODALITY, structure, seed=seed, hr_shape=(hr_size, hr_size), misregister=False)
    spec = MODALITIES[MODALITY]
    ld, hd, s = spec.lr.detector, spec.hr.detector, pair.scale
    lr_on_hr = (pair.truth_lr_on_hr - ld.offset) / ld.gain
    lr = lr_on_hr.reshape(hr_size // s, s, hr_size // s, s).mean(axis=(1, 3))
    hr = (pair.hr_clean - hd.offset) / hd.gain
    return lr.astype(np.float64), hr.astype(np.float64), float(ld.background_photons)


def simulate_timelapse(structure: str, seed: int, camera: TimelapseCamera, *, frames: int = 8,
                       hr_size: int = 256, drift_lr_px: int = 2, bleach: float = 0.04,
                       turnover: float = 0.6) -> list[TimelapseFrame]:
    """A ``frames``-long drifting, changing, bleaching sequence of ``structure`` (see the module text)."""
    scale = MODALITIES[MODALITY].scale
    margin_lr = drift_lr_px * (frames - 1)
    big = hr_size + scale * margin_lr
    big += (-big) % scale
    lr_a, hr_a, bg = _clean_sides(structure, seed, big)
    lr_b, hr_b, _ = _clean_sides(structure, seed + 1, big)
    nominal_peak = MODALITIES[MODALITY].lr.detector.peak_photons
    photons_scale = camera.peak_photons / nominal_peak
    detector = camera.detector(bg * photons_scale)
    rng = np.random.default_rng([seed, 17])
    lr_size = hr_size // scale
    out = []
    for t in range(frames):
        w = turnover * t / max(frames - 1, 1)
        keep = (1.0 - bleach) ** t
        o = drift_lr_px * t
        lr_clean = ((1 - w) * lr_a + w * lr_b)[o:o + lr_size, o:o + lr_size] * photons_scale * keep
        hr_clean = ((1 - w) * hr_a + w * hr_b)[o * scale:o * scale + hr_size, o * scale:o * scale + hr_size] * keep
        out.append(TimelapseFrame(t=t, lr=expose(lr_clean, detector, rng), reference=hr_clean.astype(np.float32)))
    return out


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 4)


def evaluate(model: Path, out_dir: Path, *, cameras: Sequence[TimelapseCamera] = CAMERAS,
             structures: Sequence[str] = STRUCTURES, frames: int = 8, hr_size: int = 256,
             seed: int = SEED, progress: bool = True) -> dict:
    """Score ``model`` (runtime ``Enhancer``, its card's intensity policy) and bilinear on every camera."""
    from srscope.runtime.enhancer import Enhancer
    from tqdm import tqdm

    enhancer = Enhancer.from_file(model, device="cpu", tile=None)
    scale = enhancer.card.integer_scale
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    example = None
    jobs = [(c, s) for c in cameras for s in structures]
    for camera, structure in tqdm(jobs, desc="time-lapse", disable=not progress):
        index = structures.index(structure)
        sequence = simulate_timelapse(structure, seed + 10 * index, camera, frames=frames, hr_size=hr_size)
        outputs = enhancer.enhance_many([f.lr for f in sequence])
        for frame, sr in zip(sequence, outputs, strict=True):
            model_score = score_image(sr, frame.reference)
            bilinear_score = score_image(bilinear_upsample(frame.lr, scale), frame.reference)
            rows.append({"camera": camera.name, "structure": structure, "t": frame.t,
                         "bilinear_psnr": bilinear_score.psnr, "bilinear_ssim": bilinear_score.ssim,
                         "model_psnr": model_score.psnr, "model_ssim": model_score.ssim})
        if example is None:
            example = (sequence[-1], outputs[-1])
    per_camera = {}
    for camera in cameras:
        mine = [r for r in rows if r["camera"] == camera.name]
        gains = [r["model_psnr"] - r["bilinear_psnr"] for r in mine]
        per_camera[camera.name] = {
            "camera": asdict(camera),
            "bilinear_psnr": _mean([r["bilinear_psnr"] for r in mine]),
            "model_psnr": _mean([r["model_psnr"] for r in mine]),
            "bilinear_ssim": _mean([r["bilinear_ssim"] for r in mine]),
            "model_ssim": _mean([r["model_ssim"] for r in mine]),
            "gain_db": _mean(gains), "worst_frame_gain_db": round(float(np.min(gains)), 4),
        }
    gains = [v["gain_db"] for v in per_camera.values()]
    result = {
        "model": str(model), "model_name": enhancer.card.name, "model_version": enhancer.card.version,
        "modality": MODALITY, "structures": list(structures), "frames": frames, "hr_size": hr_size,
        "seed": seed, "per_camera": per_camera,
        "summary": {"worst_camera_gain_db": round(float(np.min(gains)), 4),
                    "mean_gain_db": round(float(np.mean(gains)), 4),
                    "ssim_ahead_everywhere": all(v["model_ssim"] > v["bilinear_ssim"] for v in per_camera.values())},
        "frames_scored": rows,
    }
    (out_dir / "timelapse.json").write_text(json.dumps(result, indent=2))
    _plot(result, example, scale, out_dir / "timelapse.png")
    return result


def _plot(result: dict, example: tuple[TimelapseFrame, np.ndarray] | None, scale: int, path: Path) -> None:
    """Gain over bilinear per camera (bars) beside the last frame of the first sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["per_camera"])
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), gridspec_kw={"width_ratios": [2.2, 1, 1, 1]})
    gains = [result["per_camera"][n]["gain_db"] for n in names]
    axes[0].barh(names, gains, color="#3a7bd5")
    axes[0].axvline(1.0, color="k", ls="--", lw=1, label="+1 dB criterion")
    axes[0].invert_yaxis()
    axes[0].set_xlabel("PSNR gain over bilinear (dB), mean over frames")
    axes[0].legend(loc="lower right")
    axes[0].set_title(f"{result['model_name']} {result['model_version']}: held-out time-lapse")
    if example is not None:
        frame, sr = example
        crop = slice(0, 96)
        lo, hi = np.percentile(frame.reference, [0.5, 99.8])
        for ax, img, title in ((axes[1], bilinear_upsample(frame.lr, scale), f"TIRF (bilinear), t={frame.t}"),
                               (axes[2], sr, "network"), (axes[3], frame.reference, "TIRF-SIM (noise-free)")):
            fitted = img if img is frame.reference else _fit_to(img, frame.reference)
            ax.imshow(fitted[crop, crop], cmap="magma", vmin=lo, vmax=hi)
            ax.set_title(title)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fit_to(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    from .metrics import fit_affine_intensity

    return fit_affine_intensity(image, reference).apply(image)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srscope.training.evaluation.timelapse",
                                     description="score a TIRF → TIRF-SIM model on held-out time-lapses at many cameras")
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--hr-size", type=int, default=256)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"error: no model file {args.model}", file=sys.stderr)
        return 2
    result = evaluate(args.model, args.out, frames=args.frames, hr_size=args.hr_size, progress=not args.no_progress)
    for name, row in result["per_camera"].items():
        print(f"{name:>14}: bilinear {row['bilinear_psnr']:.2f} dB → model {row['model_psnr']:.2f} dB "
              f"(gain {row['gain_db']:+.2f}), SSIM {row['bilinear_ssim']:.3f} → {row['model_ssim']:.3f}")
    print(f"worst camera gain {result['summary']['worst_camera_gain_db']:+.2f} dB; report in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
