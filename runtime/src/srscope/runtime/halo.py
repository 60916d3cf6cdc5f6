"""Calibrate how much context a tile needs: the smallest halo whose tiled output matches whole-image output.

A 4-level U-Net's theoretical receptive field is 60–130 input pixels, but a trained generator's
output depends on far less: with the full receptive field as the halo, a 512² tile computes
~5× the pixels it keeps. This module measures, on the real ONNX graph, the smallest halo at which
tiled inference reproduces whole-image inference to a target PSNR (default 60 dB, 10 dB above the
runtime's tiling acceptance bar), so the card can carry a halo that is both fast and faithful.

Run it on an exported model to (re)write its card::

    python -m srscope.runtime.halo models/x.onnx --write
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from scipy import ndimage
from srscope.runtime.card import ModelCard, embed_card, read_card
from srscope.runtime.enhancer import Enhancer, default_overlap
from srscope.runtime.synthetic import structured_image
from srscope.runtime.tiling import round_up

DEFAULT_TARGET_PSNR_DB = 60.0
#: Candidate halos tried in order (input pixels); the receptive field is always the last resort.
CANDIDATES = (4, 8, 12, 16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256)


@dataclass(frozen=True)
class HaloCalibration:
    """The chosen halo and the PSNR (tiled vs whole image) measured for every halo tried."""

    halo_px: int
    receptive_field_px: int
    target_psnr_db: float
    psnr_db_by_halo: dict[int, float]

    def as_provenance(self) -> dict[str, object]:
        return {"target_psnr_db": self.target_psnr_db, "receptive_field_px": self.receptive_field_px,
                "psnr_db_by_halo": {str(k): round(v, 2) for k, v in self.psnr_db_by_halo.items()},
                "images": "srscope.runtime.synthetic.structured_image, sharp and Gaussian-smoothed (sigma 4 px), mapped onto the card's input range; worst PSNR of the two"}


def psnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR over the reference's dynamic range (inf when identical)."""
    span = float(reference.max() - reference.min()) or 1.0
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(span**2 / mse)


def calibration_images(card: ModelCard, side: int) -> list[np.ndarray]:
    """Filaments and puncta crossing every tile border, spanning the model's normalised input range 0–1.

    Two versions: sharp (structures ~2 px wide, as in 325 nm widefield) and smoothed (~10 px, as
    in 30 nm confocal), because how far a generator looks depends on the scale of what it sees.
    """
    raw = structured_image((side, side), seed=7).astype(np.float32)
    images = []
    for sigma in (0.0, 4.0):
        img = ndimage.gaussian_filter(raw, sigma) if sigma else raw
        unit = (img - img.min()) / max(float(img.max() - img.min()), 1.0)
        images.append(card.normalization.offset + card.normalization.scale * unit)
    return images


def calibrate_halo(model: str | Path, *, receptive_field_px: int | None = None,
                   target_psnr_db: float = DEFAULT_TARGET_PSNR_DB, side: int = 384) -> HaloCalibration:
    """Smallest candidate halo whose small-tile output is within ``target_psnr_db`` of whole-image output.

    Tiles are made as small as the halo allows, so the image has many tile borders; a halo that
    passes here passes with the runtime's larger default tiles too. Whole and tiled runs share one
    image-edge border (the receptive field, so the edge is as faithful as it gets): the halo is
    what *seams* need, and only seams may differ between the two; the edge's own context is
    :func:`srscope.runtime.enhancer.default_border`'s business.
    """
    card = read_card(model)
    limit = receptive_field_px if receptive_field_px is not None else (card.receptive_field_px or card.halo_px)
    whole = Enhancer.from_file(model, tile=None, border=limit)
    images = calibration_images(card, round_up(side, card.size_multiple))
    references = [whole.enhance(image) for image in images]
    results: dict[int, float] = {}
    for halo in [h for h in CANDIDATES if h < limit] + [limit]:
        tile = round_up(default_overlap(card, halo) + 8 * card.size_multiple, card.size_multiple)
        tiled = Enhancer(whole.session, card, whole.info, tile=tile, halo=halo, border=limit)
        results[halo] = min(psnr_db(ref, tiled.enhance(img)) for ref, img in zip(references, images))
        if results[halo] >= target_psnr_db:
            return HaloCalibration(halo, limit, target_psnr_db, results)
    return HaloCalibration(limit, limit, target_psnr_db, results)


def write_calibrated_card(model_path: str | Path, calibration: HaloCalibration) -> ModelCard:
    """Rewrite the card in place with the calibrated halo; weights (and so the checksum) are untouched."""
    model = onnx.load(str(model_path))
    card = read_card(model)
    card = dataclasses.replace(
        card, halo_px=calibration.halo_px, receptive_field_px=calibration.receptive_field_px,
        provenance={**card.provenance, "halo_calibration": calibration.as_provenance()})
    tmp = Path(str(model_path) + ".tmp")
    onnx.save(embed_card(model, card), str(tmp))
    tmp.replace(model_path)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="+")
    parser.add_argument("--target-psnr", type=float, default=DEFAULT_TARGET_PSNR_DB)
    parser.add_argument("--write", action="store_true", help="store the calibrated halo in the model's card")
    args = parser.parse_args(argv)
    for path in args.model:
        calibration = calibrate_halo(path, target_psnr_db=args.target_psnr)
        tried = ", ".join(f"{h}px {p:.1f}dB" for h, p in calibration.psnr_db_by_halo.items())
        print(f"{path}: halo {calibration.halo_px} px (receptive field {calibration.receptive_field_px} px; {tried})")
        if args.write:
            write_calibrated_card(path, calibration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
