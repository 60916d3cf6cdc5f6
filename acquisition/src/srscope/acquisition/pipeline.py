"""Bounded queue + inference worker: the acquisition callback only enqueues, a worker thread
batches frames through the model and writes SR planes.

Why a worker: acquisition callbacks run on the acquisition (or relay) thread, and a handler
that blocks there stalls the acquisition; inference on a CPU takes tens to hundreds of ms.

Backpressure when inference is slower than the camera:

``block`` (default, never drops)
    The queue holds at most ``max_queued`` frames (bounded memory). When it is full the
    callback waits for a free slot, so no SR frame is ever lost; the waiting time is reported
    as ``blocked_s``. Size the queue for the burst you expect (a 512×512 uint16 frame is 0.5 MB),
    so that in normal runs the callback never waits.
``drop-oldest`` (preview use)
    The callback never waits: a full queue evicts its oldest frame, which is counted, its
    (position, t, c, z) recorded in the summary and store metadata, and left as a NaN plane.

Every SR frame whose model's card carries a degradation model is scored by the runtime's
consistency check (:func:`srscope.runtime.consistency.score_plane`: is the SR plane, degraded
back, still the frame it came from, and is the frame like those the model was calibrated on?).
The scores are in the run summary per frame; the flagged frames' (position, t, c, z) go into the
SR store's metadata as they are written, so a person watching the run (or reading a crashed
run's store) sees which frames not to trust. The first flagged frame is also a warning.

Raw frames are never touched: the hook copies the frame before queueing and the microscope
software stores the original. A model or writer failure is logged once with context, disables
that model (or the writer) for the rest of the run and counts the affected frames as failed;
the acquisition keeps running and the store stays valid up to the last good plane.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from srscope.acquisition.channels import ChannelModels, SupportsEnhance
from srscope.acquisition.summary import RunSummary
from srscope.acquisition.writer import PositionGeometry, SRStoreWriter
from srscope.runtime.consistency import PlaneScore, score_plane
from srscope.runtime.pixelsize import check_pixel_size
from tqdm import tqdm

log = logging.getLogger("srscope.acquisition")



class Backpressure(str, enum.Enum):
    BLOCK = "block"
    DROP_OLDEST = "drop-oldest"


@dataclass(frozen=True)
class FrameKey:
    """Where a frame belongs: position index, time point, channel name, z plane."""

    position: int
    t: int
    channel: str | None
    z: int


@dataclass
class LiveFrame:
    key: FrameKey
    data: np.ndarray
    t_in: float
    stage_um: tuple[float, float, float] | None = None
    pixel_size_um: float | None = None
    position_name: str | None = None


def describe_key(key: FrameKey) -> str:
    """``"position 0 t=3 FITC z=1"``: a frame as a person names it."""
    return f"position {key.position} t={key.t} {key.channel or 'sr'} z={key.z}"


class _FrameQueue:
    """A deque with a capacity, blocking or evicting when full; ``close`` wakes everyone."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[LiveFrame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dead = False  # the worker is gone: never block producers again

    def put(self, frame: LiveFrame, policy: Backpressure) -> tuple[LiveFrame | None, float, bool]:
        """Returns (evicted frame or None, seconds blocked, accepted)."""
        with self._cond:
            if self._dead or self._closed:
                return None, 0.0, False
            waited = 0.0
            evicted = None
            if len(self._items) >= self.capacity:
                if policy is Backpressure.DROP_OLDEST:
                    evicted = self._items.popleft()
                else:
                    t0 = time.perf_counter()
                    while len(self._items) >= self.capacity and not (self._dead or self._closed):
                        self._cond.wait()
                    waited = time.perf_counter() - t0
                    if self._dead or self._closed:
                        return None, waited, False
            self._items.append(frame)
            self._cond.notify_all()
            return evicted, waited, True

    def get_batch(self, n: int) -> list[LiveFrame]:
        """Wait for at least one frame; take up to ``n`` already queued. Empty list: closed and drained."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            batch = [self._items.popleft() for _ in range(min(n, len(self._items)))]
            self._cond.notify_all()
            return batch

    def take_all(self) -> list[LiveFrame]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def mark_dead(self) -> None:
        with self._cond:
            self._dead = True
            self._cond.notify_all()

    @property
    def accepting(self) -> bool:
        with self._cond:
            return not (self._dead or self._closed)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class LivePipeline:
    """Accepts frames from any acquisition hook and turns them into SR planes in ``writer``.

    ``pixel_size_um`` overrides the camera pixel size reported with each frame (needed when the
    microscope has no pixel-size calibration); without either, the model card's input pixel
    size is assumed and a warning is recorded. A pixel size off the model's is judged by the
    runtime's one policy (:mod:`srscope.runtime.pixelsize`): a warning above 5 %; above 20 % the
    model is not run on those frames (they count as failed, with one error) unless
    ``ignore_pixel_size``. ``z_step_um``/``t_interval_s`` go into the NGFF scale of each image.
    """

    def __init__(self, models: ChannelModels, writer: SRStoreWriter, *,
                 policy: Backpressure | str = Backpressure.BLOCK, max_queued: int = 64,
                 batch_size: int = 4, pixel_size_um: float | None = None,
                 z_step_um: float | None = None, t_interval_s: float | None = None,
                 ignore_pixel_size: bool = False) -> None:
        if max_queued < 1 or batch_size < 1:
            raise ValueError("max_queued and batch_size must be >= 1")
        self.models = models
        self.writer = writer
        self.policy = Backpressure(policy)
        self.batch_size = batch_size
        self.pixel_size_um = pixel_size_um
        self.z_step_um = z_step_um
        self.t_interval_s = t_interval_s
        self.ignore_pixel_size = ignore_pixel_size
        self._pixel_refused: dict[tuple[int, float], bool] = {}
        self._queue = _FrameQueue(max_queued)
        self._lock = threading.Lock()
        self._summary = RunSummary(policy=self.policy.value)
        self._latencies: list[float] = []
        self._inference_s = 0.0
        self._inferred = 0
        self._write_s = 0.0
        self._score_s = 0.0
        self._scored = 0
        self._callbacks: list[float] = []
        self._t_first: float | None = None
        self._t_last_out: float | None = None
        self._failed_models: set[int] = set()
        self._writer_failed = False
        self._warned: set[str] = set()
        self._abort = threading.Event()
        self._finished = False
        self._worker = threading.Thread(target=self._run_worker, name="srscope-sr-worker", daemon=True)
        self._worker.start()

    # ---------------------------------------------------------------- producer side
    def submit(self, frame: LiveFrame) -> None:
        """Hand one frame to SR. Never raises: a hook must not break the acquisition."""
        try:
            with self._lock:
                self._summary.frames_in += 1
                if self._t_first is None:
                    self._t_first = frame.t_in
            if self.models.model_for(frame.key.channel) is None:
                with self._lock:
                    self._summary.frames_passed_through += 1
                return
            evicted, waited, accepted = self._queue.put(frame, self.policy)
            with self._lock:
                self._summary.blocked_s += waited
                if evicted is not None:
                    self._summary.frames_skipped += 1
                    self._summary.skipped_frames.append(asdict(evicted.key))
                if not accepted:
                    self._summary.frames_failed += 1
                    self._summary.failed_frames.append(asdict(frame.key))
        except Exception as exc:  # pragma: no cover - defensive: never raise into the acquisition  # noqa: BLE001 - isolate the acquisition from SR failures
            self._warn_once("submit", f"could not queue frame {frame.key}: {exc!r}", error=True)

    def record_callback(self, seconds: float) -> None:
        """Hooks report how long their callback took (measured around the whole callback)."""
        with self._lock:
            self._callbacks.append(seconds)

    def record_blocked(self, seconds: float) -> None:
        """A hook's own gate (see :meth:`LiveSRHandler.bounded`) made the acquisition wait this long."""
        with self._lock:
            self._summary.blocked_s += seconds

    def warn_once(self, kind: str, message: str) -> None:
        """Record a warning in the run summary (once per ``kind``) and log it."""
        self._warn_once(kind, message)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def accepting(self) -> bool:
        """False once the run is closing or the worker died: nobody should wait for room then."""
        return self._queue.accepting

    # ---------------------------------------------------------------- ending a run
    def finish(self, timeout: float | None = None, *, canceled: bool = False,
               progress: bool = False) -> RunSummary:
        """No more frames: drain the queue, write everything, close the store as complete
        (or ``canceled``: the acquisition was stopped early, every frame it took is still SR'd).
        ``progress`` shows a bar while a backlog is being worked off."""
        self._queue.close()
        backlog = len(self._queue)
        if progress and backlog:
            deadline = None if timeout is None else time.monotonic() + timeout
            with tqdm(total=backlog, unit="frame", desc="SR backlog") as bar:
                while self._worker.is_alive() and (deadline is None or time.monotonic() < deadline):
                    self._worker.join(0.2)
                    bar.update(backlog - len(self._queue) - bar.n)
            timeout = 0.0 if deadline is not None else None
        self._worker.join(timeout)
        if self._worker.is_alive():
            self._warn_once("finish-timeout", f"SR worker still busy after {timeout} s; aborting", error=True)
            return self.abort()
        status = "canceled" if canceled else "complete"
        return self._close(status if self._summary.frames_failed == 0 else f"{status}_with_errors")

    def abort(self, *, drain: bool = False, timeout: float | None = 30.0) -> RunSummary:
        """Stop now; frames still queued are counted unprocessed (or processed with ``drain``)."""
        if not drain:
            self._abort.set()
        self._queue.close()
        self._worker.join(timeout)
        left = self._queue.take_all()
        with self._lock:
            self._summary.frames_unprocessed += len(left)
        return self._close("aborted")

    def summary(self) -> RunSummary:
        """A snapshot of the counts so far (final once :meth:`finish` or :meth:`abort` returned)."""
        with self._lock:
            s = RunSummary(**{k: (list(v) if isinstance(v, list) else v)
                              for k, v in self._summary.__dict__.items()})
            s.set_latencies(list(self._latencies), list(self._callbacks))
            if self._inferred:
                s.inference_ms_per_frame = 1e3 * self._inference_s / self._inferred
            if s.frames_super_resolved:
                s.write_ms_per_frame = 1e3 * self._write_s / s.frames_super_resolved
            if self._scored:
                s.consistency_ms_per_frame = 1e3 * self._score_s / self._scored
            s.intensity = self.models.intensity_mappings()
            if self._t_first is not None:
                end = self._t_last_out if self._t_last_out is not None else time.perf_counter()
                s.wall_s = max(0.0, end - self._t_first)
        return s

    def _close(self, status: str) -> RunSummary:
        with self._lock:
            self._summary.status = status
            self._finished = True
        summary = self.summary()
        try:
            self.writer.close(status, summary=summary.to_dict())
        except Exception as exc:  # noqa: BLE001 - isolate the acquisition from SR failures
            self._warn_once("close", f"could not finalise SR store metadata: {exc!r}", error=True)
        return summary

    # ---------------------------------------------------------------- worker side
    def _run_worker(self) -> None:
        try:
            while not self._abort.is_set():
                batch = self._queue.get_batch(self.batch_size)
                if not batch:
                    return
                self._process(batch)
        except BaseException as exc:  # the worker must never die silently with producers blocked  # noqa: BLE001 - isolate the acquisition from SR failures
            self._warn_once("worker", f"SR worker crashed: {exc!r}", error=True)
            self._queue.mark_dead()
            left = self._queue.take_all()
            with self._lock:
                self._summary.frames_failed += len(left)
                self._summary.failed_frames.extend(asdict(f.key) for f in left)

    def _process(self, batch: list[LiveFrame]) -> None:
        groups: dict[int, tuple[SupportsEnhance, list[LiveFrame]]] = {}
        for frame in batch:
            model = self.models.model_for(frame.key.channel)
            assert model is not None  # pass-through frames are never queued
            groups.setdefault(id(model), (model, []))[1].append(frame)
        for model, frames in groups.values():
            if id(model) in self._failed_models or self._writer_failed:
                self._fail(frames)
                continue
            refused = [f for f in frames if self._pixel_refused_for(f, model)]
            if refused:
                self._fail(refused)
                frames = [f for f in frames if f not in refused]
                if not frames:
                    continue
            try:
                t0 = time.perf_counter()
                outputs = model.enhance_many([f.data for f in frames])
                with self._lock:
                    self._inference_s += time.perf_counter() - t0
                    self._inferred += len(frames)
            except Exception as exc:  # noqa: BLE001 - isolate the acquisition from SR failures
                self._failed_models.add(id(model))
                self._warn_once(f"model-{id(model)}",
                                f"model {model.card.name!r} failed on frame {frames[0].key} "
                                f"(shape {frames[0].data.shape}, {frames[0].data.dtype}): {exc!r}; "
                                "SR disabled for its channels for the rest of the run, raw data unaffected",
                                error=True)
                self._fail(frames)
                continue
            for frame, plane in zip(frames, outputs):
                self._write(frame, plane, model, self._score(frame, plane, model))

    def _score(self, frame: LiveFrame, plane: np.ndarray, model: SupportsEnhance) -> PlaneScore | None:
        """The frame's consistency score, ``None`` when its model's card has no degradation model
        (or the frame cannot be scored: warned once, the SR plane is still written)."""
        degradation = getattr(model.card, "degradation", None)
        if degradation is None:
            return None
        t0 = time.perf_counter()
        try:
            score = score_plane(frame.data, plane, degradation)
        except Exception as exc:  # noqa: BLE001 - a check must never cost the SR plane itself
            self._warn_once(f"score-{id(model)}", f"consistency check failed on frame {describe_key(frame.key)}: "
                            f"{exc}; such frames are written unchecked")
            return None
        with self._lock:
            self._score_s += time.perf_counter() - t0
            self._scored += 1
        return score

    def _record_score(self, key: FrameKey, score: PlaneScore, model: SupportsEnhance) -> None:
        where = {"position": key.position, "t": key.t, "channel": key.channel or "sr", "z": key.z}
        with self._lock:
            self._summary.frames_checked += 1
            self._summary.frame_scores.append({
                **where, "rsp": score.rsp, "rse": score.rse, "error_fraction": score.error_fraction,
                "flagged": score.flagged, "reasons": list(score.reasons)})
            if score.flagged:
                self._summary.frames_flagged += 1
                self._summary.flagged_frames.append({**where, "c": self.writer.channel_index(where["channel"]),
                                                     "reasons": list(score.reasons)})
        if score.flagged:
            self._warn_once("consistency-flagged",
                            f"frame {describe_key(key)} flagged by the consistency check ({', '.join(score.reasons)}): "
                            f"outside what model {model.card.name!r} was calibrated on; flagged frames are listed "
                            "in the run summary and the SR store's srscope.consistency")
        try:
            self.writer.record_score(key.position, key.t, where["channel"], key.z, flagged=score.flagged,
                                     reasons=score.reasons)
        except Exception as exc:  # noqa: BLE001 - isolate the acquisition from SR failures
            self._warn_once("record-score", f"could not record consistency scores in {self.writer.path}: {exc!r}")

    def _write(self, frame: LiveFrame, plane: np.ndarray, model: SupportsEnhance,
               score: PlaneScore | None = None) -> None:
        if self._writer_failed:
            self._fail([frame])
            return
        key = frame.key
        t0 = time.perf_counter()
        try:
            self.writer.open_position(key.position, self._geometry(frame, model), name=frame.position_name)
            self.writer.write(key.position, key.t, key.channel or "sr", key.z, plane)
        except Exception as exc:  # noqa: BLE001 - isolate the acquisition from SR failures
            self._writer_failed = True
            self._warn_once("writer", f"writing SR frame {key} to {self.writer.path} failed: {exc!r}; "
                            "SR writing stopped, the store is valid up to the previous frame", error=True)
            self._fail([frame])
            return
        done = time.perf_counter()
        with self._lock:
            self._write_s += done - t0
            self._summary.frames_super_resolved += 1
            self._latencies.append(done - frame.t_in)
            self._t_last_out = done
        if score is not None:
            self._record_score(key, score, model)

    def _fail(self, frames: Sequence[LiveFrame]) -> None:
        with self._lock:
            self._summary.frames_failed += len(frames)
            self._summary.failed_frames.extend(asdict(f.key) for f in frames)

    def _pixel_size(self, frame: LiveFrame, model: SupportsEnhance) -> float:
        """The input pixel size of ``frame``: the override, the frame's calibration, or the card's."""
        pixel = self.pixel_size_um or frame.pixel_size_um
        if pixel and pixel > 0:
            return float(pixel)
        self._warn_once("pixel-unknown", "camera pixel size unknown (no pixel-size calibration): "
                        f"assuming the model's input pixel size {model.card.input_pixel_size_um} µm")
        return float(model.card.input_pixel_size_um)

    def _pixel_refused_for(self, frame: LiveFrame, model: SupportsEnhance) -> bool:
        """Judge ``frame``'s pixel size against ``model`` once per (model, size): warn or refuse."""
        pixel = self._pixel_size(frame, model)
        key = (id(model), pixel)
        if key not in self._pixel_refused:
            card = model.card
            check = check_pixel_size(pixel, card.input_pixel_size_um, model=card.name, what="frames",
                                     ignore=self.ignore_pixel_size)
            if check.refused:
                self._warn_once(f"pixel-refused-{key}", f"{check.message}: not super-resolving these frames",
                                error=True)
            elif check.message is not None:
                self._warn_once(f"pixel-mismatch-{key}", check.message)
            self._pixel_refused[key] = check.refused
        return self._pixel_refused[key]

    def _geometry(self, frame: LiveFrame, model: SupportsEnhance) -> PositionGeometry:
        return PositionGeometry(input_shape=tuple(frame.data.shape[-2:]),
                                input_pixel_size_um=self._pixel_size(frame, model), scale=self.models.scale,
                                stage_um=frame.stage_um or (0.0, 0.0, 0.0),
                                z_step_um=self.z_step_um, t_interval_s=self.t_interval_s)

    def _warn_once(self, kind: str, message: str, *, error: bool = False) -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
            (self._summary.errors if error else self._summary.warnings).append(message)
        (log.error if error else log.warning)(message)
