"""The local ``srrun`` loop with its I/O overlapped: read ahead and write behind on two threads.

Serially, every plane waits for its own read, and the next inference waits for the previous
plane's pyramid, compression and done-marker. Here the three stages of
:mod:`srscope.runtime.planework` run side by side: a reader thread reads the next planes while the
calling thread runs ONNX Runtime on the current one, and a writer thread stores finished planes
(error map, pyramid levels, then the done-marker) while the next one is enhanced. ONNX Runtime,
zarr's codecs and file I/O release the GIL, so the stages really do overlap.

What stays exactly as in the serial loop:

* **Values**: the same three functions run on the same planes; only where they run differs.
* **Memory is bounded**: at most :data:`READ_AHEAD` planes read ahead, one being enhanced and
  :data:`WRITE_BEHIND` waiting for or in the writer, i.e. at most :data:`MAX_IN_FLIGHT` planes in
  memory however many the dataset has.
* **Nothing is marked done before its data is written**: one writer, in plane order, and
  :func:`~srscope.runtime.planework.store_plane` renames the marker into place only after the
  plane's last level is stored. A kill anywhere loses at most the planes in flight, which have
  no marker and are computed again on resume.
* **Errors come in plane order, on the calling thread**: a read error of plane k is raised only
  when plane k's turn comes, after the planes before it are stored, exactly where the serial loop
  would have raised it; a write error is raised on the calling thread (the planes after it are
  not stored). Either way it is the same exception (a one-line :class:`BatchError`, an
  ``OSError`` for a full disk, ...) that the serial loop raises. When anything fails, including
  Ctrl-C, the writes already handed over are finished first (or, for a write error, the ones not
  yet started are dropped), and no thread is left running when the call returns or raises.
* ``on_done`` is called on the calling thread, in plane order, once a plane's marker exists
  (progress bars, counts); ``after_store`` is called on the thread that stored the plane,
  right after its marker, and blocks further stores while it runs (a test seam pauses there).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from srscope.runtime.planes import Plane
from srscope.runtime.planework import (
    EnhancedPlane,
    PlaneResult,
    PlaneTask,
    enhance_plane,
    read_plane,
    store_plane,
)

#: Planes read ahead of the one being enhanced (read or being read).
READ_AHEAD = 2
#: Enhanced planes handed to the writer and not yet stored (being written or waiting).
WRITE_BEHIND = 2
#: The most planes in memory at once: read ahead + being enhanced + behind.
MAX_IN_FLIGHT = READ_AHEAD + 1 + WRITE_BEHIND


def _timed_read(task: PlaneTask, plane: Plane) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    raw = read_plane(task, plane)
    return raw, time.perf_counter() - start


def run_planes(task: PlaneTask, planes: Iterable[Plane], on_done: Callable[[PlaneResult], None], *,
               overlap: bool = True, after_store: Callable[[int], None] | None = None) -> None:
    """Read, enhance and store ``planes`` in order; ``overlap=False``: one after the other, no threads.

    ``on_done(result)``: on this thread, in plane order, after the plane is marked done.
    ``after_store(n)``: after the n-th plane of this call is marked done, on the thread that stored it.
    """
    if not overlap:
        for count, plane in enumerate(planes, start=1):
            raw, seconds = _timed_read(task, plane)
            result = store_plane(task, enhance_plane(task, plane, raw, read_seconds=seconds))
            if after_store is not None:
                after_store(count)
            on_done(result)
        return
    _Overlapped(task, planes, on_done, after_store).run()


class _NotStored(Exception):
    """A plane queued for the writer behind one whose write failed (never reaches the caller:
    the earlier failure is raised first)."""


class _Overlapped:
    """One overlapped run: the two single-thread pools and the futures in flight."""

    def __init__(self, task: PlaneTask, planes: Iterable[Plane], on_done: Callable[[PlaneResult], None],
                 after_store: Callable[[int], None] | None) -> None:
        self.task = task
        self.upcoming = iter(planes)
        self.on_done = on_done
        self.after_store = after_store
        self.stored = 0  # this and store_failed: only the writer thread touches them
        self.store_failed = False
        self.reads: deque[tuple[Plane, Future[tuple[np.ndarray, float]]]] = deque()
        self.writes: deque[Future[PlaneResult]] = deque()
        self.write_failed = False

    def _store(self, enhanced: EnhancedPlane) -> PlaneResult:
        if self.store_failed:  # queued before the failure was seen: not stored, as serially
            raise _NotStored(enhanced.plane.number)
        try:
            result = store_plane(self.task, enhanced)
        except BaseException:
            self.store_failed = True
            raise
        self.stored += 1
        if self.after_store is not None:
            self.after_store(self.stored)
        return result

    def _read_ahead(self, pool: ThreadPoolExecutor) -> None:
        while len(self.reads) < READ_AHEAD:
            plane = next(self.upcoming, None)
            if plane is None:
                return
            self.reads.append((plane, pool.submit(_timed_read, self.task, plane)))

    def _deliver(self, keep: int) -> None:
        """Hand finished writes to ``on_done`` in order, waiting while more than ``keep`` are outstanding."""
        while self.writes and (len(self.writes) > keep or self.writes[0].done()):
            writing = self.writes[0]
            try:
                result = writing.result()  # a write's exception is raised here
            except BaseException:
                # the write itself failed (not, say, Ctrl-C while waiting for it)
                self.write_failed = writing.done() and writing.exception() is not None
                raise
            self.writes.popleft()
            self.on_done(result)

    def _enhance_next(self, reader: ThreadPoolExecutor) -> EnhancedPlane:
        plane, reading = self.reads.popleft()
        raw, seconds = reading.result()  # a read's exception is raised here, at this plane's turn
        self._read_ahead(reader)  # the next reads start before the inference
        return enhance_plane(self.task, plane, raw, read_seconds=seconds)

    def run(self) -> None:
        reader = ThreadPoolExecutor(1, thread_name_prefix="srrun-read")
        writer = ThreadPoolExecutor(1, thread_name_prefix="srrun-write")
        try:
            self._read_ahead(reader)
            while self.reads:
                enhanced = self._enhance_next(reader)
                self._deliver(WRITE_BEHIND - 1)  # room for this plane
                self.writes.append(writer.submit(self._store, enhanced))
                del enhanced  # the writer's queue holds it now; keep no second reference
                self._deliver(WRITE_BEHIND)  # whatever is already stored, without waiting
            self._deliver(0)
        except BaseException as exc:
            for _, reading in self.reads:
                reading.cancel()
            if self.write_failed:
                for writing in self.writes:  # planes after the failed one: not stored, as serially
                    writing.cancel()
            else:
                self._finish_writes(exc)
            raise
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)

    def _finish_writes(self, exc: BaseException) -> None:
        """Store the planes enhanced before ``exc`` (the serial loop had stored them by then).

        A write that fails meanwhile is an earlier plane's error, so it replaces ``exc`` (unless
        ``exc`` is Ctrl-C, which always wins: the run was interrupted).
        """
        try:
            self._deliver(0)
        except BaseException as write_exc:
            for writing in self.writes:
                writing.cancel()
            if isinstance(exc, KeyboardInterrupt) and not isinstance(write_exc, KeyboardInterrupt):
                return
            raise write_exc from None
