"""Run one useq MDA on a Micro-Manager configuration with live SR: the engine behind
``sracquire`` and the live demo.

Two stores come out of a run, side by side::

    run.ome.zarr        super-resolved images (srscope writer, float32, output pixel size)
    run.raw.ome.zarr    raw camera frames (pymmcore-plus's own ome-writers sink, uint16)

They are separate because raw and SR images differ in shape, pixel size and dtype, and because
the raw store is written by the microscope software's own writer on the acquisition thread,
independently of SR: nothing that happens to inference or the SR store can touch raw data.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import useq
from srscope.acquisition.channels import ChannelModels
from srscope.acquisition.pipeline import Backpressure
from srscope.acquisition.pymmcore import LiveSRHandler
from srscope.acquisition.simulated import SIMULATED_CONFIG
from srscope.acquisition.summary import RunSummary
from srscope.runtime.pixelsize import check_pixel_size
from tqdm import tqdm

log = logging.getLogger("srscope.acquisition")

#: CONFIG value that selects srscope's simulated pure-Python microscope.
SIMULATED = "simulated"


class SessionError(RuntimeError):
    """The configuration or sequence cannot be used (one-line message for the CLI)."""


@dataclass(frozen=True)
class SessionResult:
    summary: RunSummary
    sr_store: Path
    raw_store: Path


def raw_store_for(sr_store: Path) -> Path:
    """``run.ome.zarr`` → ``run.raw.ome.zarr`` (the raw store sits beside the SR store)."""
    name = sr_store.name
    stem = name[: -len(".ome.zarr")] if name.endswith(".ome.zarr") else name.removesuffix(".zarr")
    return sr_store.with_name(f"{stem}.raw.ome.zarr")


def raw_dimension_overrides(sequence: useq.MDASequence) -> dict[str, dict[str, object]] | None:
    """Overrides for pymmcore-plus's ome-writers raw sink: a positive time scale when the sequence has none.

    ome-writers takes the raw store's time scale from the sequence's interval, so an "as fast as
    possible" sequence (interval 0) gets time scale 0: NGFF requires scales to be positive and
    napari refuses such a layer ("scale values of 0"), so the raw store would not open. The
    runtime's stores write an unknown or zero step as 1 without a unit; the raw store gets the same,
    so raw and SR time axes line up in a viewer. The frames' real times stay in ome-writers'
    frame metadata (``delta_t``). Pass the result as ``core.mda.run(..., dimension_overrides=...)``.
    """
    interval = getattr(sequence.time_plan, "interval", None) if sequence.time_plan is not None else None
    if interval is None or interval.total_seconds() > 0:
        return None
    return {"t": {"scale": 1.0, "unit": None}}


def load_sequence(path: str | Path) -> useq.MDASequence:
    path = Path(path)
    if not path.is_file():
        raise SessionError(f"sequence file not found: {path}")
    try:
        return useq.MDASequence.from_file(path)
    except Exception as exc:  # noqa: BLE001 - pydantic/yaml/json raise many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SessionError(f"{path} is not a valid useq MDA sequence: {first}") from None


def run_session(config: str | Path, sequence: useq.MDASequence, models: ChannelModels, out: str | Path, *,
                raw_out: str | Path | None = None, policy: Backpressure | str = "block",
                max_queued: int = 64, batch_size: int = 4, pixel_size_um: float | None = None,
                overwrite: bool = False, progress: bool = True,
                camera_roi: tuple[int, int, int, int] | None = None,
                exposure_ms: float | None = None,
                properties: Mapping[tuple[str, str], object] | None = None,
                ignore_pixel_size: bool = False) -> SessionResult:
    """Load ``config`` into a UniMMCore, run ``sequence`` with raw + SR outputs, tear down.

    The configuration's pixel size (or ``pixel_size_um``) is checked against every model before
    the first frame: a refusal by :mod:`srscope.runtime.pixelsize` is a :class:`SessionError`.
    The run uses :meth:`LiveSRHandler.bounded`, so ``block`` backpressure bounds memory.
    """
    from pymmcore_plus.experimental.unicore import UniMMCore

    out = Path(out)
    raw_path = Path(raw_out) if raw_out is not None else raw_store_for(out)
    for p in (out, raw_path):
        if p.exists() and not overwrite:
            raise SessionError(f"{p} already exists (use --overwrite to replace it)")
    simulated = str(config) == SIMULATED
    cfg = SIMULATED_CONFIG if simulated else Path(config)
    if not cfg.is_file():
        raise SessionError(f"Micro-Manager config not found: {cfg}")

    mm_log = logging.getLogger("pymmcore-plus")
    level = mm_log.level
    if simulated:  # pure-Python devices need no Micro-Manager install: silence its "not found" error
        mm_log.setLevel(logging.CRITICAL)
    try:
        core = UniMMCore()
    finally:
        mm_log.setLevel(level)
    try:
        try:
            core.loadSystemConfiguration(str(cfg))
        except Exception as exc:  # noqa: BLE001 - the core raises RuntimeError/ValueError/OSError
            msg = str(exc).strip().splitlines()
            raise SessionError(f"cannot load Micro-Manager config {cfg}: {msg[-1] if msg else exc!r}") from None
        if camera_roi is not None:
            core.setROI(*camera_roi)
        if exposure_ms is not None:
            core.setExposure(exposure_ms)
        for (device, prop), value in (properties or {}).items():
            core.setProperty(device, prop, value)
        _check_pixel_size(pixel_size_um or core.getPixelSizeUm(), models, ignore=ignore_pixel_size)
        handler = LiveSRHandler(models, out, policy=policy, max_queued=max_queued, batch_size=batch_size,
                                pixel_size_um=pixel_size_um, overwrite=overwrite, raw_store=str(raw_path),
                                progress=progress, ignore_pixel_size=ignore_pixel_size)
        n_events = sum(1 for _ in sequence)
        bar = tqdm(total=n_events, unit="frame", desc="acquiring", disable=not progress)

        def tick(*_: object) -> None:
            bar.update(1)
            if handler.pipeline is not None:
                bar.set_postfix(sr_queue=handler.pipeline.queued, refresh=False)

        core.mda.events.frameReady.connect(tick)
        try:
            with handler.bounded(core):
                core.mda.run(sequence, output=[str(raw_path), handler], overwrite=overwrite,
                             dimension_overrides=raw_dimension_overrides(sequence))
        finally:
            core.mda.events.frameReady.disconnect(tick)
            bar.close()
        if handler.summary is None:  # the run errored before sequenceFinished reached the handler
            handler.summary = handler.pipeline.abort(drain=True) if handler.pipeline else RunSummary(status="failed")
        return SessionResult(handler.summary, out, raw_path)
    finally:
        # UniMMCore must be torn down explicitly, or Python aborts at interpreter exit.
        core.unloadAllDevices()
        del core
        gc.collect()


def _check_pixel_size(pixel_um: float, models: ChannelModels, *, ignore: bool) -> None:
    """Refuse before the first frame when the camera's pixel size does not suit a model."""
    if not pixel_um or pixel_um <= 0:
        return  # uncalibrated: the pipeline assumes the card's size and records a warning
    for model in models.models():
        card = model.card
        check = check_pixel_size(pixel_um, card.input_pixel_size_um, model=card.name, what="camera",
                                 ignore=ignore)
        if check.refused:
            raise SessionError(check.message)
