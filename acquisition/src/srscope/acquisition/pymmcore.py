"""pymmcore-plus hook: an MDA handler (``mda.run(seq, output=[raw, handler])``) that
super-resolves frames live.

The raw frames are stored by pymmcore-plus's own writer (the ``raw`` output, an OME-Zarr
written by ome-writers), untouched; the handler copies each frame into the SR pipeline and
returns at once. Use it either way:

* ``with handler.bounded(core): core.mda.run(seq, output=["raw.ome.zarr", handler])``:
  pymmcore-plus calls the handler on its relay thread. An exception there would only be logged
  and later frames silently lost, so the handler never raises; errors land in the run summary.
  The relay's own queue is unbounded, so ``block`` backpressure waiting on the relay thread
  would not bound memory (frames pile up in the relay instead); :meth:`LiveSRHandler.bounded`
  adds a gate on the acquisition thread that waits while the relay backlog plus the SR queue
  holds ``max_queued`` frames. Without it a ``block`` run records a warning saying so.
* ``with handler.connected(core): core.mda.run(seq, output="raw.ome.zarr")``: the handler is
  connected straight to ``core.mda.events`` and runs on the acquisition thread itself, which
  is fine because it only enqueues; ``block`` waits right there, so memory is bounded too.

Either way ``sequenceFinished`` waits until the SR backlog is written, so ``mda.run`` returns
with both stores complete; frame timing during the run is unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import useq
from srscope.acquisition.channels import ChannelModels
from srscope.acquisition.pipeline import Backpressure, FrameKey, LiveFrame, LivePipeline
from srscope.acquisition.summary import RunSummary
from srscope.acquisition.writer import SRStoreWriter

log = logging.getLogger("srscope.acquisition")


def sequence_layout(sequence: useq.MDASequence) -> dict[str, Any]:
    """Sizes, channel names, z step and time interval of a sequence, for the SR store."""
    sizes = dict(sequence.sizes)
    channels = [c.config for c in sequence.channels]
    z_step = getattr(sequence.z_plan, "step", None) if sequence.z_plan is not None else None
    interval = getattr(sequence.time_plan, "interval", None) if sequence.time_plan is not None else None
    interval_s = interval.total_seconds() if interval is not None else None
    return {"t": max(1, sizes.get("t", 1)), "z": max(1, sizes.get("z", 1)), "channels": channels,
            "z_step_um": z_step, "t_interval_s": interval_s}


class LiveSRHandler:
    """Super-resolves every frame of a pymmcore-plus MDA into an OME-Zarr store.

    One handler serves one run (``sequenceStarted`` → ``sequenceFinished``); the final
    :class:`RunSummary` is in :attr:`summary` afterwards, and in the store's metadata.
    """

    def __init__(self, models: ChannelModels, out: str | Path, *, policy: Backpressure | str = "block",
                 max_queued: int = 64, batch_size: int = 4, pixel_size_um: float | None = None,
                 overwrite: bool = False, raw_store: str | Path | None = None,
                 progress: bool = False, ignore_pixel_size: bool = False) -> None:
        self.models = models
        self.out = Path(out)
        self.policy = Backpressure(policy)
        self.max_queued = max_queued
        self.batch_size = batch_size
        self.pixel_size_um = pixel_size_um
        self.overwrite = overwrite
        self.raw_store = str(raw_store) if raw_store is not None else None
        self.progress = progress
        self.ignore_pixel_size = ignore_pixel_size
        self.pipeline: LivePipeline | None = None
        self.summary: RunSummary | None = None
        self._positions: dict[tuple[int, int], int] = {}
        self._canceled = False
        # Frames the acquisition-thread gate let through vs frames this handler received: their
        # difference is the relay thread's backlog (see :meth:`bounded`).
        self._flow = threading.Condition()
        self._gated = 0
        self._received = 0
        self._gates = 0
        self._gate_active = False
        self._handler_started = False

    # -- pymmcore-plus MDA signals (names fixed by pymmcore-plus) --------------------------
    def sequenceStarted(self, sequence: useq.MDASequence, meta: Mapping | None = None) -> None:
        layout = sequence_layout(sequence) if isinstance(sequence, useq.MDASequence) else {
            "t": 1, "z": 1, "channels": [], "z_step_um": None, "t_interval_s": None}
        self.pipeline = None
        try:
            writer = SRStoreWriter(
                self.out, overwrite=self.overwrite, raw_store=self.raw_store,
                channels=self.models.sr_channels(layout["channels"]),
                size_hints={"t": layout["t"], "z": layout["z"]},
                provenance={"models": self.models.provenance(), "hook": "pymmcore-plus MDA handler",
                            "backpressure": self.policy.value, "max_queued": self.max_queued,
                            "worker_batch_size": self.batch_size,
                            "sequence": _sequence_json(sequence)},
            )
        except Exception as exc:  # noqa: BLE001 - e.g. the store exists: SR off, acquisition unaffected
            message = f"live SR disabled for this run: cannot create {self.out}: {exc}"
            log.error("%s", message)
            self.summary = RunSummary(status="failed", errors=[message])
            self._mark_started()
            return
        self._positions.clear()
        self.summary = None
        self._canceled = False
        self.pipeline = LivePipeline(self.models, writer, policy=self.policy, max_queued=self.max_queued,
                                     batch_size=self.batch_size, pixel_size_um=self.pixel_size_um,
                                     z_step_um=layout["z_step_um"], t_interval_s=layout["t_interval_s"],
                                     ignore_pixel_size=self.ignore_pixel_size)
        self._mark_started()

    def _mark_started(self) -> None:
        with self._flow:
            self._handler_started = True
            self._flow.notify_all()

    def frameReady(self, image: np.ndarray, event: useq.MDAEvent, meta: Mapping | None = None) -> None:
        try:
            self._frame_ready(image, event, meta)
        finally:  # counted once the frame is queued (or dropped): until then the gate counts it as held
            with self._flow:
                self._received += 1
                self._flow.notify_all()

    def _frame_ready(self, image: np.ndarray, event: useq.MDAEvent, meta: Mapping | None) -> None:
        t0 = time.perf_counter()
        pipeline = self.pipeline
        if pipeline is None:
            return
        if (self._gates == 0 and self.policy is Backpressure.BLOCK
                and type(threading.current_thread()).__name__ == "MDARelayThread"):
            pipeline.warn_once("relay-unbounded",
                               "frames reach srscope on pymmcore-plus's relay thread, whose queue is unbounded: "
                               "'block' bounds only srscope's own queue; run inside handler.bounded(core) "
                               "(or handler.connected(core)) to bound memory")
        try:
            frame = self._frame(image, event, meta or {}, t0)
        except Exception as exc:  # noqa: BLE001 - never raise into pymmcore-plus: it drops later frames
            log.error("srscope: could not read frame metadata of %s: %r", event, exc)
            return
        pipeline.submit(frame)
        pipeline.record_callback(time.perf_counter() - t0)

    def sequenceFinished(self, sequence: Any = None) -> None:
        if self.pipeline is not None and self.summary is None:
            self.summary = self.pipeline.finish(canceled=self._canceled, progress=self.progress)
            log.info("%s", self.summary.format())

    def sequenceCanceled(self, sequence: Any = None) -> None:
        """Canceled runs still drain (every acquired frame is super-resolved); the store says canceled."""
        self._canceled = True

    # -- helpers ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def connected(self, core: Any) -> Iterator[LiveSRHandler]:
        """Connect directly to ``core.mda.events`` (callbacks on the acquisition thread)."""
        events = core.mda.events
        pairs = [(events.sequenceStarted, self.sequenceStarted), (events.frameReady, self.frameReady),
                 (events.sequenceCanceled, self.sequenceCanceled), (events.sequenceFinished, self.sequenceFinished)]
        for signal, slot in pairs:
            signal.connect(slot)
        try:
            yield self
        finally:
            for signal, slot in pairs:
                with contextlib.suppress(Exception):
                    signal.disconnect(slot)

    def attach(self, core: Any) -> Callable[[], None]:
        """:meth:`connected` without a ``with`` block, for a GUI's console (napari-micromanager,
        pymmcore-gui): the MDA runs the GUI starts are super-resolved until the returned
        function is called. One handler writes one store: attach a new one for each run."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.connected(core))
        return stack.close

    @contextlib.contextmanager
    def bounded(self, core: Any) -> Iterator[LiveSRHandler]:
        """Bound memory in the ``core.mda.run(seq, output=[raw, handler])`` form.

        pymmcore-plus delivers that handler's frames on a relay thread through an unbounded
        deque, so a handler waiting there (``block`` policy, full queue) only moves the pile-up
        into the relay. Inside this context a gate on ``core.mda.events.frameReady`` runs on the
        acquisition thread and, before each frame is relayed, waits while the frames held between
        camera and SR worker (relay backlog plus SR queue) already number ``max_queued``: the
        acquisition slows down instead of memory growing. The wait is reported as ``blocked_s``;
        ``drop-oldest`` never waits. If the handler never starts (it was not passed to ``output``),
        the gate stops gating after 5 s instead of stalling the acquisition.
        """
        events = core.mda.events
        pairs = [(events.sequenceStarted, self._gate_run_started), (events.frameReady, self._gate)]
        for signal, slot in pairs:
            signal.connect(slot)
        self._gates += 1
        try:
            yield self
        finally:
            self._gates -= 1
            for signal, slot in pairs:
                with contextlib.suppress(Exception):
                    signal.disconnect(slot)

    def _gate_run_started(self, *_: Any) -> None:
        """Acquisition thread: a run starts; the handler hears of it later, through the relay."""
        with self._flow:
            self._handler_started = False
            self._gate_active = True

    def _gate(self, *_: Any) -> None:
        """Acquisition thread, before the frame is relayed: wait for room (block policy only)."""
        waited = 0.0
        with self._flow:
            if self.policy is Backpressure.BLOCK and self._gate_active:
                t0 = time.perf_counter()
                while True:
                    pipeline = self.pipeline if self._handler_started and self.summary is None else None
                    queued = pipeline.queued if pipeline is not None and pipeline.accepting else 0
                    if self._gated - self._received + queued < self.max_queued:
                        break
                    if not self._handler_started and time.perf_counter() - t0 > 5.0:
                        self._gate_active = False  # not in this run's outputs: never stall the acquisition
                        log.warning("srscope: handler.bounded(core) is active but the handler is not receiving "
                                    "frames (is it in mda.run(output=[...])?); not gating this run")
                        break
                    self._flow.wait(0.005)  # woken by frameReady; the timeout sees the worker take frames
                waited = time.perf_counter() - t0
            self._gated += 1
        pipeline = self.pipeline
        if waited > 1e-4 and pipeline is not None:
            pipeline.record_blocked(waited)

    @property
    def relay_backlog(self) -> int:
        """Frames the gate let through that this handler has not received yet (0 without a gate)."""
        with self._flow:
            return max(0, self._gated - self._received) if self._gates else 0

    def _frame(self, image: np.ndarray, event: useq.MDAEvent, meta: Mapping, t0: float) -> LiveFrame:
        index = event.index
        p, g = int(index.get("p", 0)), int(index.get("g", 0))
        position = self._positions.setdefault((p, g), len(self._positions))
        channel = event.channel.config if event.channel is not None else None
        stage = meta.get("position") or {}
        stage_um = (float(stage.get("x", event.x_pos or 0.0) or 0.0),
                    float(stage.get("y", event.y_pos or 0.0) or 0.0),
                    float(stage.get("z", event.z_pos or 0.0) or 0.0))
        pixel = meta.get("pixel_size_um")
        return LiveFrame(key=FrameKey(position, int(index.get("t", 0)), channel, int(index.get("z", 0))),
                         data=np.array(image, copy=True), t_in=t0, stage_um=stage_um,
                         pixel_size_um=float(pixel) if pixel else None, position_name=event.pos_name)


def _sequence_json(sequence: Any) -> Any:
    try:
        return sequence.model_dump(mode="json", exclude_unset=True)
    except Exception:  # noqa: BLE001 - provenance is best-effort
        return None
