"""Which models the widget offers, and what of each card it shows: no Qt, no napari.

A shipped srscope model is one self-describing ``.onnx`` file, so "the model list" is just the
``.onnx`` files of some folders whose card reads. Folders come from, in order: the
``SRSCOPE_MODELS`` environment variable (``os.pathsep``-separated, for a lab's own model
store), then the ``models/`` folder of the srscope repository this package is installed from
(editable/development installs); a user can always pick any other file in the widget.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srscope.runtime.card import ModelCard, ModelCardError, read_card

#: Environment variable naming extra model folders (``os.pathsep``-separated), searched first.
MODELS_ENV = "SRSCOPE_MODELS"


@dataclass(frozen=True)
class ModelEntry:
    """One offered model: its file and its card (checksum verified when the model is loaded)."""

    path: Path
    card: ModelCard

    @property
    def label(self) -> str:
        """What the model chooser shows: name, version and scale, e.g. ``widefield-… v3.0 (×2)``."""
        return f"{self.card.name} v{self.card.version} (×{self.card.integer_scale})"


def repo_models_dir() -> Path | None:
    """The ``models/`` folder of the srscope checkout this package runs from, if it has one.

    Only an editable install sits inside the repository (``napari/src/srscope/napari/``); a wheel
    install lands in site-packages, where the check on ``runtime/pyproject.toml`` fails and
    ``None`` is returned rather than a random folder named ``models``.
    """
    root = Path(__file__).resolve().parents[4]
    folder = root / "models"
    if folder.is_dir() and (root / "runtime" / "pyproject.toml").is_file():
        return folder
    return None


def default_model_dirs() -> list[Path]:
    """``$SRSCOPE_MODELS`` folders, then the repository's ``models/``: where the widget looks."""
    dirs = [Path(p).expanduser() for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p.strip()]
    repo = repo_models_dir()
    if repo is not None:
        dirs.append(repo)
    return dirs


def discover_models(folders: Iterable[str | Path] | None = None) -> list[ModelEntry]:
    """Every ``*.onnx`` directly in ``folders`` (default :func:`default_model_dirs`) with a card.

    Cards are read without the weights checksum (listing should be instant); the checksum is
    verified when the model is loaded to run. Files without a readable card (not srscope models,
    or truncated downloads) are left out rather than failing the whole list; a file present in
    two folders is listed once.
    """
    entries: list[ModelEntry] = []
    seen: set[Path] = set()
    for folder in default_model_dirs() if folders is None else folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.onnx")):
            resolved = path.resolve()
            if resolved in seen:
                continue
            try:
                card = read_card(path, verify=False)
            except ModelCardError:
                continue
            seen.add(resolved)
            entries.append(ModelEntry(path=path, card=card))
    return entries


def load_entry(path: str | Path) -> ModelEntry:
    """A model the user picked by file: its card is read and verified now, so a bad file is
    refused with the card's own reason before it ever joins the list."""
    path = Path(path)
    return ModelEntry(path=path, card=read_card(path, verify=True))


def card_summary(card: ModelCard) -> dict[str, Any]:
    """The part of a card a viewer user needs, as plain JSON-able values.

    Shown in the widget and stored in the output layer's ``metadata["srscope"]``, so a saved
    session or an exported layer still says which model, at which pixel sizes and with which
    intensity rule, produced it.
    """
    return {
        "name": card.name,
        "version": card.version,
        "input_modality": card.input_modality,
        "output_modality": card.output_modality,
        "input_pixel_size_um": card.input_pixel_size_um,
        "output_pixel_size_um": card.output_pixel_size_um,
        "scale": card.integer_scale,
        "intensity": {"mode": card.intensity.mode, "low": card.intensity.low, "high": card.intensity.high},
        "weights_sha256": card.weights_sha256,
    }


def card_text(card: ModelCard) -> str:
    """The card as the widget shows it: a few lines, modalities, pixel sizes, scale, intensity."""
    rule = card.intensity
    if rule.mode == "percentile":
        intensity = f"percentile {rule.low:g}–{rule.high:g} % (auto = per plane)"
    else:
        intensity = (f"fixed: offset {card.normalization.offset:g}, scale {card.normalization.scale:g} counts "
                     "(plane/series need a percentile card)")
    return "\n".join([
        f"{card.name}  v{card.version}",
        f"{card.input_modality} → {card.output_modality}",
        f"pixel {card.input_pixel_size_um:g} µm → {card.output_pixel_size_um:g} µm  (×{card.integer_scale})",
        f"intensity: {intensity}",
    ])
