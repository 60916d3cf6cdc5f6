"""``sracquire fill RUN.ome.zarr``: finish the SR store of a live run that was killed.

A live run that dies (SIGKILL, power loss, a crashed GUI) leaves its SR store valid but
unfinished: ``srscope.status`` stays ``acquiring`` and every frame still queued for SR is gone,
while the raw store holds the camera frames. ``fill`` super-resolves exactly the missing planes
(NaN planes: never written) from the raw store, with the run's own models, and completes the
status, so the store ends as if the run had drained normally.

How, and why this way:

* The models are reloaded from the paths recorded in the store's provenance (or from
  ``--model``/``--channel-model``), and their weights checksum must match the one recorded: a
  plane filled by another model would be silently different from its neighbours.
* The filled store is built beside the old one through :class:`SRStoreWriter` (finished planes
  copied, missing ones computed) and swapped in only when complete, so a fill that is itself
  killed leaves the old store untouched and can simply be run again.
* A raw plane that is entirely 0 was never acquired (the raw store is pre-sized for the whole
  sequence; a camera frame with its offset is never all 0). If some were never acquired, the
  run stopped early and the status becomes ``canceled`` (every acquired frame has its SR plane),
  otherwise ``complete``; the ``fill`` record says what was done.
* With the ``series`` intensity policy each channel's mapping is latched again on that channel's
  first raw frame, which is the frame the live run latched on.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from srscope.acquisition.channels import ChannelModels, SupportsEnhance
from srscope.acquisition.writer import PositionGeometry, SRStoreWriter
from srscope.runtime.errors import UserError
from srscope.runtime.pixelsize import check_pixel_size
from tqdm import tqdm

#: the status a live run keeps until it ends by itself: only such a store has planes to fill
ACQUIRING = "acquiring"


class FillError(UserError):
    """The store cannot be filled (not an srscope SR store, raw store gone, models differ); one line."""


@dataclass
class FillReport:
    store: Path
    status: str
    planes_copied: int = 0
    planes_filled: int = 0
    planes_never_acquired: int = 0
    planes_failed: int = 0
    already_finished: bool = False
    failed: list[dict[str, Any]] = field(default_factory=list)

    def format(self) -> str:
        if self.already_finished:
            return f"{self.store}: run already finished ({self.status}); nothing to fill"
        return (f"{self.store}: {self.status}; SR planes filled {self.planes_filled}, kept {self.planes_copied}, "
                f"raw planes never acquired {self.planes_never_acquired}, failed {self.planes_failed}")


@dataclass(frozen=True)
class _RawPlane:
    position: int
    t: int
    channel: str | None
    z: int
    data: np.ndarray


def fill_run(store: str | Path, *, default_model: str | Path | None = None,
             channel_models: Mapping[str, str | Path] | None = None, frame_batch: int = 4,
             progress: bool = False, ignore_pixel_size: bool = False, **enhancer_options: Any) -> FillReport:
    """Fill the missing SR planes of the killed live run in ``store`` and complete its status.

    ``default_model``/``channel_models`` replace the recorded model paths (same weights only);
    ``enhancer_options`` (device, tile, ...) replace the recorded inference options. The raw
    store's pixel size is judged against every model by the runtime's policy, as the live run did.
    Run it once the acquisition process is gone: a live run still writing would race the swap.
    """
    store = _find_store(Path(store))
    root = zarr.open_group(str(store), mode="r")
    meta = dict(root.attrs.get("srscope", {}))
    status = str(meta.get("status"))
    if status != ACQUIRING:
        return FillReport(store, status, already_finished=True)
    provenance = dict(meta.get("provenance") or {})
    models = _load_models(provenance.get("models") or {}, default_model, channel_models, enhancer_options)
    raw_path = meta.get("raw_store")
    if not raw_path or not Path(raw_path).exists():
        raise FillError(f"{store}: its raw store {raw_path!r} is gone; nothing to fill from")
    channel_names = _sequence_channels(provenance.get("sequence"))
    _check_pixel_sizes(Path(raw_path), models, ignore=ignore_pixel_size)

    partial = store.with_name(f".{store.name}.fill-partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by a fill that was itself killed
    old_positions = _positions(root)
    sizes = {"t": 1, "z": 1}
    for arr in old_positions.values():
        sizes = {"t": max(sizes["t"], arr.shape[0]), "z": max(sizes["z"], arr.shape[2])}
    channels = _channel_labels(root, old_positions) or models.sr_channels(channel_names)
    writer = SRStoreWriter(partial, provenance=provenance, raw_store=str(raw_path), size_hints=sizes,
                           channels=channels)
    report = FillReport(store, status)
    try:
        done = _copy_finished(root, old_positions, writer, models, report)
        _fill_missing(Path(raw_path), channel_names, done, writer, models, report,
                      frame_batch=frame_batch, progress=progress,
                      geometry_of=lambda plane: _new_geometry(plane, Path(raw_path), provenance, models))
        acquired_all = report.planes_never_acquired == 0
        report.status = ("complete" if acquired_all else "canceled") + ("_with_errors" if report.planes_failed else "")
        previous = {k: v for k, v in meta.items() if k not in ("status", "provenance", "raw_store")}
        writer.close(report.status, **previous, fill={
            "by": "sracquire fill", "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "status_before": status, "planes_filled": report.planes_filled, "planes_kept": report.planes_copied,
            "raw_planes_never_acquired": report.planes_never_acquired, "planes_failed": report.planes_failed,
            "failed_planes": report.failed})
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _swap(partial, store)
    return report


# --------------------------------------------------------------------------- the stores
def _find_store(path: Path) -> Path:
    """The SR store itself, or a run directory holding exactly one srscope SR store."""
    if (path / "zarr.json").is_file():
        return path
    if path.is_dir():
        found = [p for p in sorted(path.glob("*.zarr")) if _is_sr_store(p)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise FillError(f"{path} holds {len(found)} srscope SR stores; name one of them")
    raise FillError(f"{path} is not an srscope SR store (or a directory holding one)")


def _is_sr_store(path: Path) -> bool:
    try:
        return "srscope" in zarr.open_group(str(path), mode="r").attrs
    except Exception:  # noqa: BLE001 - not a zarr group at all
        return False


def _positions(root: zarr.Group) -> dict[int, zarr.Array]:
    out: dict[int, zarr.Array] = {}
    for key in root.group_keys():
        if key.isdigit() and "0" in root[key]:
            out[int(key)] = root[key]["0"]
    return dict(sorted(out.items()))


def _channel_labels(root: zarr.Group, positions: Mapping[int, zarr.Array]) -> list[str]:
    """The SR channel axis of the old store (every position shares it)."""
    for p in positions:
        channels = root[str(p)].attrs.get("ome", {}).get("omero", {}).get("channels")
        if channels:
            return [str(c["label"]) for c in channels]
    return []


def _raw_images(raw: zarr.Group) -> dict[int, tuple[zarr.Array, list[str], list[float]]]:
    """Raw position index → (array, axis names, scale), for ome-writers' one- and many-position layouts."""
    def image(group: zarr.Group) -> tuple[zarr.Array, list[str], list[float]]:
        ms = group.attrs["ome"]["multiscales"][0]
        dataset = ms["datasets"][0]
        scale = next((t["scale"] for t in dataset.get("coordinateTransformations", []) if t["type"] == "scale"),
                     [1.0] * len(ms["axes"]))
        return group[dataset["path"]], [a["name"] for a in ms["axes"]], [float(s) for s in scale]

    if "multiscales" in raw.attrs.get("ome", {}):
        return {0: image(raw)}
    keys = sorted((k for k in raw.group_keys() if k.isdigit()), key=int)
    return {int(k): image(raw[k]) for k in keys}


def _sequence_channels(sequence: Any) -> list[str]:
    if not isinstance(sequence, Mapping):
        return []
    return [str(c.get("config")) if isinstance(c, Mapping) else str(c) for c in sequence.get("channels") or []]


def _sequence_stage(sequence: Any, position: int) -> tuple[float, float, float]:
    stages = sequence.get("stage_positions") if isinstance(sequence, Mapping) else None
    if not stages or position >= len(stages):
        return (0.0, 0.0, 0.0)
    s = stages[position]
    if isinstance(s, Mapping):
        return tuple(float(s.get(k) or 0.0) for k in ("x", "y", "z"))  # type: ignore[return-value]
    return tuple(float(v or 0.0) for v in list(s)[:3]) + (0.0,) * (3 - len(list(s)[:3]))  # type: ignore[return-value]


def _check_pixel_sizes(raw_path: Path, models: ChannelModels, *, ignore: bool) -> None:
    """Refuse, as the live run did, to run a model on raw frames of a pixel size it was not made for."""
    for _, axes, scale in _raw_images(zarr.open_group(str(raw_path), mode="r")).values():
        pixel = scale[axes.index("x")] if "x" in axes else 0.0
        if not pixel > 0:
            continue  # uncalibrated: the live run assumed the card's size
        for model in models.models():
            check = check_pixel_size(pixel, model.card.input_pixel_size_um, model=model.card.name,
                                     what="raw", ignore=ignore)
            if check.refused:
                raise FillError(check.message)


def _swap(partial: Path, store: Path) -> None:
    """Replace ``store`` by ``partial``: old store aside, new in place, old deleted."""
    aside = store.with_name(f".{store.name}.fill-old-{os.getpid()}")
    os.replace(store, aside)
    os.replace(partial, store)
    shutil.rmtree(aside, ignore_errors=True)


# --------------------------------------------------------------------------- the models
def _load_models(recorded: Mapping[str, Any], default_model: str | Path | None,
                 channel_models: Mapping[str, str | Path] | None,
                 enhancer_options: Mapping[str, Any]) -> ChannelModels:
    """The run's models again: recorded paths (or the given ones), checked against the recorded weights."""
    default_rec = recorded.get("default")
    by_channel_rec: Mapping[str, Any] = recorded.get("by_channel") or {}
    default_path = default_model or (default_rec or {}).get("path")
    paths = {name: (channel_models or {}).get(name) or rec.get("path") for name, rec in by_channel_rec.items()}
    paths.update({k: v for k, v in (channel_models or {}).items() if k not in paths})
    if default_rec is not None and not default_path:
        raise FillError("the store does not record the default model's file; pass --model")
    missing = [name for name, p in paths.items() if not p]
    if missing:
        raise FillError(f"the store does not record the model file of channel(s) {', '.join(missing)}; "
                        "pass --channel-model NAME=MODEL")
    options = {k: v for k, v in (recorded.get("options") or {}).items() if v is not None}
    options.update(enhancer_options)
    if isinstance(options.get("intensity"), str):
        from srscope.runtime.intensity import parse_intensity

        options["intensity"] = parse_intensity(options["intensity"])
    from srscope.runtime import DeviceUnavailableError, ModelCardError

    try:
        models = ChannelModels.from_files(default_path if default_rec is not None else None, paths, **options)
    except (ModelCardError, DeviceUnavailableError, OSError) as exc:
        raise FillError(f"cannot load the run's models: {exc}") from None
    for name, rec, model in ([("default", default_rec, models.default)] if default_rec else []) + [
            (n, r, models.by_channel.get(n)) for n, r in by_channel_rec.items()]:
        if model is not None and rec.get("weights_sha256") not in (None, model.card.weights_sha256):
            raise FillError(f"model for {name} ({model.card.name}) is not the one the run used "
                            "(weights checksum differs): fill with the run's own model")
    return models


# --------------------------------------------------------------------------- the planes
def _copy_finished(root: zarr.Group, positions: Mapping[int, zarr.Array], writer: SRStoreWriter,
                   models: ChannelModels, report: FillReport) -> set[tuple[int, int, str, int]]:
    """Copy every written SR plane into the new store; return their (position, t, channel, z)."""
    done: set[tuple[int, int, str, int]] = set()
    for p, array in positions.items():
        group = root[str(p)]
        info = dict(group.attrs.get("srscope", {}))
        ms = group.attrs["ome"]["multiscales"][0]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        # a step the run did not know is written as 1 without a unit: keep it unknown
        known = {a["name"]: "unit" in a for a in ms["axes"]}
        geometry = PositionGeometry(
            input_shape=tuple(info.get("input_shape") or (array.shape[3] // models.scale, array.shape[4] // models.scale)),
            input_pixel_size_um=float(info.get("input_pixel_size_um") or scale[3] * models.scale),
            scale=models.scale, stage_um=tuple(info.get("stage_um_at_first_frame") or (0.0, 0.0, 0.0)),
            z_step_um=float(scale[2]) if known.get("z") else None,
            t_interval_s=float(scale[0]) if known.get("t") else None)
        writer.open_position(p, geometry, name=info.get("position_name"))
        labels = [c["label"] for c in group.attrs["ome"].get("omero", {}).get("channels", [])]
        for t in range(array.shape[0]):
            for c in range(array.shape[1]):
                for z in range(array.shape[2]):
                    plane = np.asarray(array[t, c, z])
                    if np.isnan(plane).all():
                        continue
                    channel = labels[c] if c < len(labels) else "sr"
                    writer.write(p, t, channel, z, plane.astype(np.float32, copy=False))
                    done.add((p, t, channel, z))
                    report.planes_copied += 1
    return done


def _raw_planes(raw_path: Path, channel_names: list[str]) -> Iterator[_RawPlane | None]:
    """Every raw plane in acquisition order (t, then position, then channel, then z); ``None`` for
    one that was never acquired (all 0)."""
    images = _raw_images(zarr.open_group(str(raw_path), mode="r"))
    for p, (array, axes, _) in images.items():
        sizes = dict(zip(axes, array.shape))
        for t in range(sizes.get("t", 1)):
            for c in range(sizes.get("c", 1)):
                for z in range(sizes.get("z", 1)):
                    index = tuple({"t": t, "c": c, "z": z}.get(a, slice(None)) for a in axes)
                    plane = np.asarray(array[index])
                    name = channel_names[c] if c < len(channel_names) else None
                    if not plane.any():
                        yield None
                        continue
                    yield _RawPlane(p, t, name, z, plane)


def _fill_missing(raw_path: Path, channel_names: list[str], done: set[tuple[int, int, str, int]],
                  writer: SRStoreWriter, models: ChannelModels, report: FillReport, *, frame_batch: int,
                  progress: bool, geometry_of) -> None:
    todo: list[_RawPlane] = []
    primed: set[str | None] = set()
    for plane in _raw_planes(raw_path, channel_names):
        if plane is None:
            report.planes_never_acquired += 1
            continue
        model = models.model_for(plane.channel)
        if model is None:
            continue  # passed through live too: raw only
        if plane.channel not in primed:  # a series view latches on its channel's first frame
            primed.add(plane.channel)
            if (plane.position, plane.t, plane.channel or "sr", plane.z) in done and _is_series(model):
                model.enhance_many([plane.data])
        if (plane.position, plane.t, plane.channel or "sr", plane.z) not in done:
            todo.append(plane)
    groups: dict[int, tuple[SupportsEnhance, list[_RawPlane]]] = {}
    for plane in todo:
        model = models.model_for(plane.channel)
        groups.setdefault(id(model), (model, []))[1].append(plane)
    with tqdm(total=len(todo), unit="plane", desc="filling SR planes", disable=not progress) as bar:
        for model, planes in groups.values():
            for start in range(0, len(planes), max(1, frame_batch)):
                batch = planes[start:start + max(1, frame_batch)]
                try:
                    outputs = model.enhance_many([p.data for p in batch])
                except Exception as exc:  # noqa: BLE001 - record, keep going with other planes
                    report.planes_failed += len(batch)
                    report.failed.extend({"position": p.position, "t": p.t, "channel": p.channel, "z": p.z,
                                          "error": repr(exc)} for p in batch)
                    bar.update(len(batch))
                    continue
                for plane, sr in zip(batch, outputs):
                    if plane.position not in writer.positions:
                        writer.open_position(plane.position, geometry_of(plane))
                    writer.write(plane.position, plane.t, plane.channel or "sr", plane.z, sr)
                    report.planes_filled += 1
                bar.update(len(batch))


def _is_series(model: SupportsEnhance) -> bool:
    return getattr(getattr(model, "intensity", None), "name", None) == "series"


def _new_geometry(plane: _RawPlane, raw_path: Path, provenance: Mapping[str, Any],
                  models: ChannelModels) -> PositionGeometry:
    """Geometry of a position the live run never reached: raw pixel size, the sequence's stage."""
    _, axes, scale = _raw_images(zarr.open_group(str(raw_path), mode="r"))[plane.position]
    pixel = scale[axes.index("x")] if "x" in axes else 0.0
    model = models.model_for(plane.channel)
    if not pixel > 0 and model is not None:
        pixel = model.card.input_pixel_size_um
    sequence = provenance.get("sequence")
    return PositionGeometry(input_shape=tuple(plane.data.shape[-2:]), input_pixel_size_um=float(pixel),
                            scale=models.scale, stage_um=_sequence_stage(sequence, plane.position),
                            z_step_um=scale[axes.index("z")] if "z" in axes else None,
                            t_interval_s=scale[axes.index("t")] if "t" in axes else None)
