"""``srtrain simulate``: write simulated LR/HR pairs as image files that ``srtrain prepare`` reads
exactly like real data.

Layout of OUT: ``lr/fovNNNN.ome.tif`` and ``hr/fovNNNN.ome.tif`` (pixel sizes in the OME
metadata), ``truth/fovNNNN.json`` (ground-truth misregistration, backgrounds, bead positions),
and with ``--with-clean`` the noise-free ``hr_clean/`` and ``lr_on_hr_clean/`` images (float32).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .modalities import MODALITIES
from .simulate import SimulatedPair, simulate_pair
from .sources import PAIR_META_KEY, simulated_meta
from .structures import STRUCTURES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (lr/, hr/, truth/ are created inside)")
    parser.add_argument("--modality", choices=sorted(MODALITIES), default="widefield")
    parser.add_argument("--structure", default="filaments",
                        help=f"one of {', '.join(STRUCTURES)}, or several comma-separated (cycled over FOVs)")
    parser.add_argument("-n", "--count", type=int, default=10, help="number of fields of view")
    parser.add_argument("--size", type=int, default=512, help="HR image size in pixels (square)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first FOV (FOV i uses seed+i)")
    parser.add_argument("--format", choices=("tif", "zarr"), default="tif", help="OME-TIFF or OME-Zarr files")
    parser.add_argument("--no-misregister", action="store_true", help="perfectly aligned pairs (for tests of the model alone)")
    parser.add_argument("--with-clean", action="store_true", help="also write the noise-free images")
    parser.add_argument("--overwrite", action="store_true")


def write_pair(pair: SimulatedPair, out: Path, name: str, fmt: str = "tif", *, with_clean: bool = False,
               overwrite: bool = False) -> None:
    from srscope.runtime.io import Image, write_image

    suffix = ".ome.tif" if fmt == "tif" else ".ome.zarr"
    meta = simulated_meta(pair)
    for role, data, px in (("lr", pair.lr, pair.lr_pixel_size_um), ("hr", pair.hr, pair.hr_pixel_size_um)):
        (out / role).mkdir(parents=True, exist_ok=True)
        write_image(out / role / f"{name}{suffix}",
                    Image(data, "yx", (px, px), metadata={PAIR_META_KEY: {**meta, "role": role}}), overwrite=overwrite)
    if with_clean:
        for role, data in (("hr_clean", pair.hr_clean), ("lr_on_hr_clean", pair.truth_lr_on_hr)):
            (out / role).mkdir(parents=True, exist_ok=True)
            write_image(out / role / f"{name}{suffix}",
                        Image(data.astype(np.float32), "yx", (pair.hr_pixel_size_um,) * 2,
                              metadata={PAIR_META_KEY: {**meta, "role": role}}), overwrite=overwrite)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    truth = {
        **meta,
        "lr_pixel_size_um": pair.lr_pixel_size_um, "hr_pixel_size_um": pair.hr_pixel_size_um,
        "background_lr": pair.background_lr, "background_hr": pair.background_hr,
        "transform": pair.transform.to_dict(),
        "transform_convention": "registered_lr(x) = lr_on_hr_grid(x + u(x)), x and u in HR pixels",
        "bead_positions_hr_px": None if pair.bead_positions_hr_px is None else pair.bead_positions_hr_px.tolist(),
    }
    (out / "truth" / f"{name}.json").write_text(json.dumps(truth))


def run(args: argparse.Namespace) -> int:
    structures = [s.strip() for s in args.structure.split(",") if s.strip()]
    bad = [s for s in structures if s not in STRUCTURES]
    if bad or not structures:
        print(f"srtrain simulate: unknown structure(s) {bad}; choose from {', '.join(STRUCTURES)}", file=sys.stderr)
        return 2
    if args.count < 1:
        print("srtrain simulate: -n must be >= 1", file=sys.stderr)
        return 2
    out: Path = args.out
    if (out / "lr").exists() and any((out / "lr").iterdir()) and not args.overwrite:
        print(f"srtrain simulate: {out / 'lr'} is not empty (use --overwrite)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    try:
        for i in tqdm(range(args.count), desc=f"simulate {args.modality}", unit="fov"):
            pair = simulate_pair(args.modality, structures[i % len(structures)], seed=args.seed + i,
                                 hr_shape=(args.size, args.size), misregister=not args.no_misregister)
            write_pair(pair, out, f"fov{i:04d}", args.format, with_clean=args.with_clean, overwrite=args.overwrite)
    except ValueError as err:
        print(f"srtrain simulate: {err}", file=sys.stderr)
        return 2
    (out / "simulation.json").write_text(json.dumps({
        "modality": args.modality, "structures": structures, "count": args.count, "size": args.size,
        "seed": args.seed, "misregistered": not args.no_misregister, "format": args.format}, indent=2))
    print(f"wrote {args.count} pairs to {out} (lr/, hr/, truth/)")
    return 0
