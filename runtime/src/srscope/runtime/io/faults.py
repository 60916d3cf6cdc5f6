"""Named fault points in the store's life, so a test can crash it at each step and prove it recovers.

Every step of creating, writing and finalising a store that leaves something on disk calls
:func:`fault_point` with its name (see :data:`STEPS`). Normally that costs one dictionary lookup.
With ``SRSCOPE_FAULT_AT=<step>:<count>[:<how>]`` in the environment, the ``count``-th time this
process reaches ``step`` it fails there: ``how`` is ``exit`` (the default: ``os._exit(137)``, the
closest a process can come to being SIGKILLed at that instant, nothing is flushed or cleaned up)
or ``raise`` (an :class:`InjectedFault`, so error handling and cleanup paths run). The step
``*`` counts every step and never fails (:func:`hit_counts`: how many hits a test can target).

Why an environment variable rather than monkeypatching: the fault must reach whichever process
does the work (a subprocess ``srrun``, a dask worker) without that process's code knowing tests
exist, and it must be able to fire between two writes that no patchable call separates.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

FAULT_ENV = "SRSCOPE_FAULT_AT"

#: The steps a store passes through, in order. Tests iterate over these.
STEPS = (
    "create.level",      # before each pyramid level array of a new store is made (in its hidden build)
    "create.rename",     # the new store is built and locked, not yet renamed into place
    "write.level",       # before each level of one plane is written (level 0 last)
    "record.mark",       # a plane's pixels are stored, its done-marker not yet renamed into place
    "finalize.metadata",  # every plane is stored; the NGFF metadata (and "complete") not yet written
    "publish",           # the finished work store is about to be swapped / converted into OUTPUT
    "collection.create",  # a live collection root is built, not yet renamed into place
    "collection.xml",    # before the collection's OME/METADATA.ome.xml is replaced
)


class InjectedFault(RuntimeError):
    """Raised at a fault point when ``SRSCOPE_FAULT_AT`` asks for ``raise``."""


_hits: dict[str, int] = {}
_lock = threading.Lock()


def _spec() -> tuple[str, int, str] | None:
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return None
    step, _, rest = raw.partition(":")
    count, _, how = rest.partition(":")
    return step, int(count or 1), how or "exit"


def fault_point(step: str) -> None:
    """Fail here if the environment asks for a fault at the current hit of ``step``."""
    spec = _spec()
    if spec is None or spec[0] not in (step, "*"):
        return
    with _lock:
        _hits[step] = _hits.get(step, 0) + 1
        hit = _hits[step]
    if spec[0] == "*" or hit != spec[1]:
        return
    if spec[2] == "raise":
        raise InjectedFault(f"injected fault at {step} #{hit}")
    os._exit(137)


def hit_counts() -> dict[str, int]:
    """Hits per step so far in this process (every step with ``SRSCOPE_FAULT_AT=*``)."""
    with _lock:
        return dict(_hits)


def reset_faults() -> None:
    """Forget the hit counts (an in-process test running several jobs under one setting)."""
    with _lock:
        _hits.clear()


class ForkedRunTimeout(RuntimeError):
    """:func:`run_forked` killed a child that did not finish in time."""


def run_forked(call: Callable[[], int], fault: str | None, *, timeout_s: float, poll_s: float = 0.005) -> int:
    """Run ``call`` in a forked child with ``SRSCOPE_FAULT_AT=fault``; its exit code (137: it died at
    the fault, 70: it raised). The fault loops of srrun and of the live writer share it, so every
    kill happens the same way: in a child that never returns into the caller, with fresh hit counts.
    A child still running after ``timeout_s`` is SIGKILLed and :class:`ForkedRunTimeout` raised."""
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller
        code = 70
        try:
            if fault:
                os.environ[FAULT_ENV] = fault
            reset_faults()
            code = call()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise ForkedRunTimeout(f"child hung with {FAULT_ENV}={fault}")
        time.sleep(poll_s)
