"""``make demo-live``: a simulated live acquisition with super-resolution on.

Runs a real pymmcore-plus MDA (UniMMCore + srscope's pure-Python camera and stages: 3
positions × 4 time points × 3 channels) with DAPI and FITC super-resolved live by the shipped
default model (the runtime's test model if no model has been shipped yet; the demo says which)
and TxRed passed through without SR. Writes, under ``--out``::

    run.ome.zarr          SR store            run.raw.ome.zarr   raw store
    sequence.json         the MDA sequence    summary.json       the run summary
    preview.png           raw vs SR of one frame

and prints the run summary (frames in / super-resolved / skipped, latency, callback time).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import useq
import zarr
from srscope.acquisition.channels import ChannelModels
from srscope.acquisition.session import run_session

DEFAULT_MODEL_NAME = "widefield-10x0.4-to-20x0.75.onnx"


def find_default_model() -> Path | None:
    """The shipped default model in the repository's ``models/`` (or the current directory's)."""
    for root in (Path(__file__).resolve().parents[4], Path.cwd()):
        candidate = root / "models" / DEFAULT_MODEL_NAME
        if candidate.is_file():
            return candidate
    return None


def demo_sequence(loops: int = 4) -> useq.MDASequence:
    return useq.MDASequence(
        stage_positions=[(0.0, 0.0, 0.0), (120.0, 40.0, 0.0), (60.0, 150.0, 0.0)],
        channels=["DAPI", "FITC", "TxRed"],
        time_plan={"interval": 0.2, "loops": loops},
        axis_order="tpc",
    )


def save_preview(raw_store: Path, sr_store: Path, png: Path) -> None:
    """Raw vs SR of position 0, last time point, first channel (same display range)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = np.asarray(zarr.open_group(str(raw_store), mode="r")["0/0"][-1, 0]).astype(np.float32)
    sr = np.asarray(zarr.open_group(str(sr_store), mode="r")["0/0"][-1, 0, 0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, image, title in ((axes[0], raw, f"raw {raw.shape[1]}×{raw.shape[0]}"),
                             (axes[1], sr, f"live SR {sr.shape[1]}×{sr.shape[0]}")):
        lo, hi = np.percentile(image, [1, 99.7])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"{title}  (counts {lo:.0f}–{hi:.0f})")
        ax.axis("off")
    fig.suptitle("srscope live SR: position 0, last time point, DAPI")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/demo-live"))
    p.add_argument("--model", type=Path, help=f"model to use (default: models/{DEFAULT_MODEL_NAME})")
    p.add_argument("--loops", type=int, default=4, help="time points (default 4)")
    p.add_argument("--policy", default="block", choices=["block", "drop-oldest"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymmcore-plus").setLevel(logging.ERROR)
    args.out.mkdir(parents=True, exist_ok=True)

    model = args.model or find_default_model()
    if model is None:
        from srscope.runtime.synthetic import build_test_model

        model = build_test_model(args.out / "test-model.onnx", name="runtime-test-model")
        print(f"no shipped model in models/{DEFAULT_MODEL_NAME}: using the runtime's test model {model}")
    else:
        print(f"model: {model}")
    models = ChannelModels.from_files(by_channel={"DAPI": model, "FITC": model}, device="auto", tile=512)
    card = models.by_channel["DAPI"].card
    print(f"  {card.name} v{card.version}: {card.input_modality} → {card.output_modality}, ×{models.scale}, "
          f"provider {getattr(models.by_channel['DAPI'], 'provider', '?')}")

    sequence = demo_sequence(args.loops)
    (args.out / "sequence.json").write_text(sequence.model_dump_json(exclude_unset=True, indent=2))
    # Like a microscopist following the model card: camera offset and exposure chosen so the
    # frames span the input counts the model was trained on (offset + ~scale at bright filaments).
    exposure_ms = float(np.clip(20.0 * card.normalization.scale / 900.0, 5.0, 100.0))
    result = run_session("simulated", sequence, models, args.out / "run.ome.zarr", policy=args.policy,
                         overwrite=True, exposure_ms=exposure_ms, camera_roi=(128, 128, 256, 256),
                         properties={("Camera", "Offset"): card.normalization.offset})
    (args.out / "summary.json").write_text(json.dumps(result.summary.to_dict(), indent=2))
    print(result.summary.format())
    save_preview(result.raw_store, result.sr_store, args.out / "preview.png")
    sr = zarr.open_group(str(result.sr_store), mode="r")
    raw = zarr.open_group(str(result.raw_store), mode="r")
    print(f"\nSR store  {result.sr_store}: images {sr['OME'].attrs['ome']['series']}, "
          f"each (t, c, z, y, x) = {sr['0/0'].shape} float32, channels "
          f"{[c['label'] for c in sr['0'].attrs['ome']['omero']['channels']]}")
    print(f"raw store {result.raw_store}: each {raw['0/0'].shape} {raw['0/0'].dtype}")
    print(f"preview   {args.out / 'preview.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
