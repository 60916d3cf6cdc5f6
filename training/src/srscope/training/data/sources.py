"""Where pairs come from: simulated pairs in memory, or matched LR/HR image files on disk.

Files are matched by name (``lr/fov0001.ome.tif`` ↔ ``hr/fov0001.ome.tif``), read with
``srscope.runtime.io.read_image`` so simulated and real data take exactly the same path, and the
pixel sizes come from the files, never from a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .simulate import SimulatedPair

PAIR_META_KEY = "srscope_pair"
IMAGE_SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".ome.zarr", ".zarr")


@dataclass
class PairSource:
    name: str
    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    lr_pixel_size_um: float
    hr_pixel_size_um: float
    meta: dict = field(default_factory=dict)  # modality, structure, emission_wavelength_nm, ...


def from_simulated(pair: SimulatedPair, name: str) -> PairSource:
    return PairSource(name, lambda: (pair.lr, pair.hr), pair.lr_pixel_size_um, pair.hr_pixel_size_um,
                      simulated_meta(pair))


def simulated_meta(pair: SimulatedPair) -> dict:
    from .modalities import MODALITIES

    spec = MODALITIES[pair.modality]
    return {"modality": pair.modality, "structure": pair.structure, "seed": pair.seed,
            "emission_wavelength_nm": pair.emission_wavelength_nm,
            "input_modality": spec.lr.name, "output_modality": spec.hr.name,
            "drift_only": spec.elastic_amplitude_px == 0 and spec.max_rotation_deg == 0}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    found = {}
    for p in sorted(folder.iterdir()):
        if p.name.lower().endswith(IMAGE_SUFFIXES):
            found[_stem(p)] = p
    return found


def from_directories(lr_dir: Path, hr_dir: Path) -> list[PairSource]:
    """One source per file name present in both folders; unmatched files are an error."""
    from srscope.runtime.io import read_image

    lr_files, hr_files = _image_files(Path(lr_dir)), _image_files(Path(hr_dir))
    only_lr = sorted(set(lr_files) - set(hr_files))
    only_hr = sorted(set(hr_files) - set(lr_files))
    if only_lr or only_hr:
        raise ValueError(f"unmatched files: LR only {only_lr[:5]}, HR only {only_hr[:5]}")
    if not lr_files:
        raise ValueError(f"{lr_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    sources = []
    for name in sorted(lr_files):
        lr_img, hr_img = read_image(lr_files[name]), read_image(hr_files[name])
        for img, path in ((lr_img, lr_files[name]), (hr_img, hr_files[name])):
            if img.metadata.get("pixel_size_unknown"):
                raise ValueError(f"{path}: no pixel size in the file; registration needs it")
            if any(s != 1 for s in img.shape[:-2]):
                raise ValueError(f"{path}: expected a single 2D plane, got shape {img.shape} ({img.axes})")

        def load(lr_img=lr_img, hr_img=hr_img) -> tuple[np.ndarray, np.ndarray]:
            return (np.asarray(lr_img.data).reshape(lr_img.shape[-2:]),
                    np.asarray(hr_img.data).reshape(hr_img.shape[-2:]))

        meta = dict(hr_img.metadata.get(PAIR_META_KEY, {}))
        sources.append(PairSource(name, load, float(lr_img.pixel_size_um[0]), float(hr_img.pixel_size_um[0]), meta))
    return sources
