"""Build a training dataset straight from the simulator, in the prepared-dataset format.

Used for the shipped CPU-trained models: pairs are simulated *without* misregistration
(``simulate_pair(..., misregister=False)``), so the LR needs no registration, only resampling to
the HR grid. The resampling is the data package's :func:`resample_to_hr` (the one ``srtrain
prepare`` uses), bilinear with LR pixel ``i`` centred on HR coordinate ``i·s + (s − 1)/2``; the
exported ONNX graph's in-graph resize is tested to equal it.

Intensities are normalised globally and affinely (offset = the simulated camera offset plus mean
background; scale = the bright end of the training stack above it), never per image, so outputs
stay quantitative and the card's mapping applies to any new image from the same instrument.

    python -m srscope.training.gan.simdataset widefield filaments out.zarr --train 12
    python -m srscope.training.gan.simdataset widefield filaments,actin,ccps,nuclei mixed.zarr --train 64

Several structures (comma-separated) are interleaved field by field in every split, so a model
and its discriminator learn a prior that is not one specimen's, and validation-loss model
selection rewards what generalises across them.

``--randomise`` draws every field's camera, sample and optics from
:class:`~srscope.training.data.randomise.DomainRandomisation` and normalises each field by its own
percentiles (``--intensity percentile``, the card-schema-2 mode the runtime applies per plane): the
LR by the percentiles of its native-pixel plane, exactly what the runtime computes, and the HR by
its own. Such a model cannot learn one camera's offset or gain, because it never sees them::

    python -m srscope.training.gan.simdataset widefield filaments,actin,ccps,nuclei rand.zarr \
        --train 96 --val 12 --test 4 --fov 512 --randomise
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from srscope.training.data.resample import resample_to_hr
from tqdm import tqdm

from .dataset_writer import write_dataset

SPLIT_SEED_BASE = {"train": 0, "val": 100_000, "test": 200_000}


def upsample_to_hr_grid(lr: np.ndarray, scale: int) -> np.ndarray:
    """Bilinear ×scale onto the HR grid (pixel sizes only matter through their ratio)."""
    return resample_to_hr(lr, float(scale), 1.0)


def _tiles(img: np.ndarray, patch: int) -> list[np.ndarray]:
    h, w = img.shape
    return [img[y:y + patch, x:x + patch] for y in range(0, h - patch + 1, patch) for x in range(0, w - patch + 1, patch)]


def bright_end(values: np.ndarray) -> float:
    """99.9th percentile, or half the maximum for sparse samples (beads) where it is still background."""
    return float(max(np.percentile(values, 99.9), 0.5 * values.max(), 1e-6))


def structure_of_field(structures: tuple[str, ...], index: int) -> str:
    """Field ``index`` of every split shows ``structures[index % len(structures)]``."""
    return structures[index % len(structures)]


def simulate_split(modality: str, structures: tuple[str, ...], n: int, seed0: int, fov: tuple[int, int]) -> list:
    from srscope.training.data.simulate import simulate_pair

    return [simulate_pair(modality, structure_of_field(structures, i), seed=seed0 + i, hr_shape=fov,
                          misregister=False)
            for i in tqdm(range(n), desc=f"simulate {'+'.join(structures)} {seed0}", leave=False)]


def parse_structures(structure: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    from srscope.training.data.structures import STRUCTURES

    names = tuple(s.strip() for s in structure.split(",")) if isinstance(structure, str) else tuple(structure)
    unknown = [s for s in names if s not in STRUCTURES]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"structures must be distinct names from {', '.join(STRUCTURES)}; got {structure!r}")
    return names


def percentile_normalised(pair, scale: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(LR on the HR grid, HR), each normalised by its own percentiles, and the two mappings.

    The LR percentiles are taken on the native LR plane, as the runtime does before the graph's
    in-graph resize; bilinear resampling is linear, so normalising before or after it is the same.
    """
    from srscope.runtime.intensity import percentile_affine

    lr_map = percentile_affine(pair.lr, low, high)
    hr_map = percentile_affine(pair.hr, low, high)
    lr = lr_map.normalise(upsample_to_hr_grid(pair.lr, scale))
    hr = hr_map.normalise(pair.hr.astype(np.float32))
    return lr, hr, {"lr": [lr_map.offset, lr_map.scale], "hr": [hr_map.offset, hr_map.scale]}


def build_randomised_dataset(out: str | Path, modality: str, structure: str | list[str] | tuple[str, ...], *,
                             n_train: int, n_val: int, n_test: int, fov: tuple[int, int] = (512, 512),
                             patch: int = 128, seed: int = 0, low: float = 1.0, high: float = 99.8,
                             randomisation=None) -> Path:
    """A dataset of domain-randomised fields, each normalised by its own percentiles (see module doc)."""
    from srscope.training.data.randomise import defaults_for, draw_field
    from srscope.training.data.simulate import simulate_pair

    structures = parse_structures(structure)
    randomisation = randomisation or defaults_for(modality)
    splits, fov_ids, fields, mappings = {}, {}, {}, []
    first = None
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        seed0 = seed + SPLIT_SEED_BASE[split]
        lrs, hrs, ids, records = [], [], [], []
        for i in tqdm(range(n), desc=f"simulate {split} (randomised)", leave=False):
            draw = draw_field(modality, np.random.default_rng([seed0 + i, 1]), randomisation)
            name = structure_of_field(structures, i)
            pair = simulate_pair(modality, name, seed=seed0 + i, hr_shape=fov, misregister=draw.misregister,
                                 **draw.overrides)
            first = first or pair
            lr, hr, mapping = percentile_normalised(pair, pair.scale, low, high)
            if split == "train":
                mappings.append(mapping["lr"])
            for a, b in zip(_tiles(lr, patch), _tiles(hr, patch)):
                lrs.append(a)
                hrs.append(b)
                ids.append(i)
            records.append({"seed": seed0 + i, "structure": name, **draw.record, "mapping": mapping})
        splits[split] = (np.stack(lrs), np.stack(hrs))
        fov_ids[split] = np.asarray(ids)
        fields[split] = records
    reference = np.median(np.asarray(mappings), axis=0)
    spec_lr, spec_hr = first.modality, first.modality
    attrs = {
        "version": 1,
        "input_modality": spec_lr.split("-")[0] if "-" in spec_lr else spec_lr,
        "output_modality": spec_hr.split("-")[-1] if "-" in spec_hr else spec_hr,
        "structures": list(structures),
        "input_pixel_size_um": _nominal(modality, "lr"),
        "output_pixel_size_um": _nominal(modality, "hr"),
        "emission_wavelength_nm": first.emission_wavelength_nm if modality not in ("widefield", "tirf-sim") else
        _nominal_emission_nm(modality),
        "intensity": {"mode": "percentile", "low": low, "high": high},
        # the training set's median LR mapping: what the card's "fixed" policy applies; in percentile
        # mode the output is mapped back through the input's own affine, so both are the same
        "normalization": {"offset": float(reference[0]), "scale": float(reference[1])},
        "denormalization": {"offset": float(reference[0]), "scale": float(reference[1])},
        "patch_size": patch,
        "splits": {k: len(v[0]) for k, v in splits.items()},
        "registration": "none: residual misregistration is part of the randomisation; LR bilinear (half-pixel) "
                        "to HR grid",
        "randomisation": randomisation.to_dict(),
        "source": {"simulator": "srscope.training.data.simulate.simulate_pair", "modality": modality,
                   "structure": ",".join(structures), "fov_hr_px": list(fov), "randomised": True,
                   "structure_of_field": "structures[i % len(structures)] for field i of every split",
                   "field_rng": "draw_field(modality, default_rng([seed, 1])) for a field simulated with seed",
                   "seeds": {k: [seed + SPLIT_SEED_BASE[k], seed + SPLIT_SEED_BASE[k] + len(v) - 1]
                             for k, v in fields.items()}},
        "fields": fields,
    }
    if modality == "widefield":
        attrs["input_modality"], attrs["output_modality"] = "widefield 10x/0.4NA", "widefield 20x/0.75NA"
    return write_dataset(out, splits, attrs, fov_ids)


def _nominal(modality: str, side: str) -> float:
    from srscope.training.data.modalities import MODALITIES

    return float(getattr(MODALITIES[modality], side).pixel_size_um)


def _nominal_emission_nm(modality: str) -> float:
    from srscope.training.data.modalities import MODALITIES

    return float(MODALITIES[modality].hr.emission_wavelength_um * 1000.0)


def build_simulated_dataset(out: str | Path, modality: str, structure: str | list[str] | tuple[str, ...], *,
                            n_train: int, n_val: int, n_test: int, fov: tuple[int, int] = (512, 512),
                            patch: int = 128, seed: int = 0) -> Path:
    structures = parse_structures(structure)
    for split, n in (("train", n_train), ("val", n_val)):
        if n < len(structures):
            raise ValueError(f"--{split} {n} gives some of the {len(structures)} structures no field")
    pairs = {split: simulate_split(modality, structures, n, seed + SPLIT_SEED_BASE[split], fov)
             for split, n in (("train", n_train), ("val", n_val), ("test", n_test))}
    first = pairs["train"][0]
    scale = first.scale
    lr_offset, hr_offset = first.background_lr, first.background_hr
    lr_scale = bright_end(np.stack([upsample_to_hr_grid(p.lr, scale) for p in pairs["train"]]) - lr_offset)
    hr_scale = bright_end(np.stack([p.hr.astype(np.float32) for p in pairs["train"]]) - hr_offset)

    splits, fov_ids = {}, {}
    for split, plist in pairs.items():
        lrs, hrs, ids = [], [], []
        for i, p in enumerate(plist):
            lr = (upsample_to_hr_grid(p.lr, scale) - lr_offset) / lr_scale
            hr = (p.hr.astype(np.float32) - hr_offset) / hr_scale
            for a, b in zip(_tiles(lr, patch), _tiles(hr, patch)):
                lrs.append(a)
                hrs.append(b)
                ids.append(i)
        splits[split] = (np.stack(lrs), np.stack(hrs))
        fov_ids[split] = np.asarray(ids)
    attrs = {
        "version": 1,
        "input_modality": first.modality.split("-")[0] if "-" in first.modality else first.modality,
        "output_modality": first.modality.split("-")[-1] if "-" in first.modality else first.modality,
        "structures": list(structures),
        "input_pixel_size_um": first.lr_pixel_size_um,
        "output_pixel_size_um": first.hr_pixel_size_um,
        "emission_wavelength_nm": first.emission_wavelength_nm,
        "normalization": {"offset": lr_offset, "scale": lr_scale},
        "denormalization": {"offset": hr_offset, "scale": hr_scale},
        "patch_size": patch,
        "splits": {k: len(v[0]) for k, v in splits.items()},
        "registration": "none needed: simulate_pair(misregister=False); LR bilinear (half-pixel) to HR grid",
        "source": {"simulator": "srscope.training.data.simulate.simulate_pair", "modality": modality,
                   "structure": ",".join(structures), "fov_hr_px": list(fov),
                   "structure_of_field": "structures[i % len(structures)] for field i of every split",
                   "seeds": {k: [seed + SPLIT_SEED_BASE[k], seed + SPLIT_SEED_BASE[k] + len(v) - 1]
                             for k, v in pairs.items()}},
    }
    if modality == "widefield":
        attrs["input_modality"], attrs["output_modality"] = "widefield 10x/0.4NA", "widefield 20x/0.75NA"
    return write_dataset(out, splits, attrs, fov_ids)


def build_parser() -> argparse.ArgumentParser:
    """The command line; :class:`~srscope.training.gan.degradation_fit.SimRecipe` parses recipes with it too."""
    p = argparse.ArgumentParser(prog="python -m srscope.training.gan.simdataset", description=__doc__.splitlines()[0])
    p.add_argument("modality")
    p.add_argument("structure", help="a structure, or several comma-separated (interleaved field by field)")
    p.add_argument("out")
    p.add_argument("--train", type=int, default=12, help="training fields of view")
    p.add_argument("--val", type=int, default=2)
    p.add_argument("--test", type=int, default=2)
    p.add_argument("--fov", type=int, default=512, help="HR field-of-view side in pixels")
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--randomise", action="store_true",
                   help="domain-randomised camera, sample and optics per field, per-field percentile normalisation")
    p.add_argument("--percentiles", default="1,99.8", help="with --randomise: low,high percentiles (default 1,99.8)")
    p.add_argument("--emission-nm", metavar="LO,HI",
                   help="with --randomise: the emission band drawn from (default: the modality's, e.g. 450,700); "
                        "a narrower band trains a model for one dye family, whose PSF it can then learn exactly")
    return p


def randomisation_of(args: argparse.Namespace):
    """The ranges a parsed command line draws its fields from (``None``: the modality's defaults)."""
    if not args.emission_nm:
        return None
    from dataclasses import replace

    from srscope.training.data.randomise import Span, defaults_for

    lo_nm, hi_nm = (float(v) for v in args.emission_nm.split(","))
    if not 300.0 <= lo_nm <= hi_nm <= 1000.0:
        raise ValueError(f"--emission-nm {args.emission_nm!r}: need 300 <= LO <= HI <= 1000 (nm)")
    return replace(defaults_for(args.modality), emission_nm=Span(lo_nm, hi_nm))


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.randomise:
            low, high = (float(v) for v in a.percentiles.split(","))
            randomisation = randomisation_of(a)
            path = build_randomised_dataset(a.out, a.modality, a.structure, n_train=a.train, n_val=a.val,
                                            n_test=a.test, fov=(a.fov, a.fov), patch=a.patch, seed=a.seed,
                                            low=low, high=high, randomisation=randomisation)
        else:
            path = build_simulated_dataset(a.out, a.modality, a.structure, n_train=a.train, n_val=a.val,
                                           n_test=a.test, fov=(a.fov, a.fov), patch=a.patch, seed=a.seed)
    except ValueError as exc:
        print(f"simdataset: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
