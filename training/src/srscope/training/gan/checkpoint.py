"""Crash-safe checkpoints: written to a temporary file and atomically renamed into place.

A kill at any moment leaves either the previous complete checkpoint or the new complete one,
never a truncated file, so ``srtrain train`` can always resume from ``last.pt``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "srscope-gan-checkpoint/1"


class CheckpointError(ValueError):
    """The file is missing or is not a srscope GAN checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, **state}
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors come in many types
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a srscope GAN checkpoint")
    return state


def generator_state_from_onnx(path: str | Path) -> dict[str, Any]:
    """A checkpoint-like state (``generator``, ``generator_config``, ``provenance``) from a shipped
    ``.onnx`` file, so transfer learning can start from a released model whose training run is gone.

    The exported graph keeps the generator's parameter names (``generator.<name>``), so the
    initializers map one to one onto a fresh :class:`Generator`'s state dict; the card's provenance
    names the generator configuration. There is no discriminator: D starts fresh.
    """
    import onnx
    from onnx import numpy_helper
    from srscope.runtime.card import ModelCardError, read_card

    path = Path(path)
    try:
        card = read_card(path)
    except ModelCardError as exc:
        raise CheckpointError(str(exc)) from None
    config = card.provenance.get("generator_config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the model card does not name its generator configuration")
    if card.precision != "fp32":
        raise CheckpointError(f"{path}: transfer learning needs the fp32 model, not {card.precision}")
    model = onnx.load(str(path))
    prefix = "generator."
    weights = {init.name[len(prefix):]: torch.from_numpy(numpy_helper.to_array(init).copy())
               for init in model.graph.initializer if init.name.startswith(prefix)}
    return {"format": CHECKPOINT_FORMAT, "generator": weights, "generator_config": config,
            "discriminator": None, "iteration": card.provenance.get("selected_iteration"),
            "config": {"dataset": (card.provenance.get("dataset") or None)},
            "provenance": {"onnx": str(path), "name": card.name, "version": card.version,
                           "weights_sha256": card.weights_sha256, **card.provenance}}
