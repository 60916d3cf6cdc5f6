"""``srrun`` reads ahead and writes behind on threads (issue 15), and nothing else changes.

Real srrun runs (real ONNX Runtime sessions, real zarr stores read back) with overlapped I/O and
with ``--no-overlap-io`` must agree on everything a user sees: the pixels, the error map, the
per-plane consistency scores in plane order, the one-line error of a failing plane, and which
planes are marked done when a read or a write fails half-way. The stage functions are wrapped
(calling the real ones) to observe where and when each stage runs: a plane's write is held back
until the planes behind it are enhanced and the planes ahead of them read, which a serial loop
could never do, and the planes in memory never exceed :data:`~srscope.runtime.pipeline.MAX_IN_FLIGHT`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from srrun_helpers import _run, _stack, _write_input
from srscope.runtime import pipeline
from srscope.runtime.io import read_image
from srscope.runtime.io.faults import FAULT_ENV, reset_faults
from srscope.runtime.io.pyramid import level_shapes
from srscope.runtime.progressrecord import ProgressRecord
from srscope.runtime.synthetic import structured_image

WIDEFIELD = Path(__file__).resolve().parents[2] / "models" / "widefield-10x0.4-to-20x0.75.onnx"
MODES = {"overlap": (), "serial": ("--no-overlap-io",)}


class _Watch:
    """Wraps the pipeline's three stages (the real ones run) to see which thread runs each, how
    many planes are in memory, and to hold plane 0's write until the planes around it moved on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n_planes: int) -> None:
        self.lock = threading.Lock()
        self.live = self.peak = 0
        self.threads: dict[str, set[str]] = {"read": set(), "enhance": set(), "store": set()}
        self.read_started = [threading.Event() for _ in range(n_planes)]
        self.enhanced = [threading.Event() for _ in range(n_planes)]
        self.held: dict[str, object] = {}
        read, enhance, store = pipeline.read_plane, pipeline.enhance_plane, pipeline.store_plane

        def watched_read(task, plane):
            with self.lock:
                self.threads["read"].add(threading.current_thread().name)
                self.live += 1
                self.peak = max(self.peak, self.live)
            self.read_started[plane.number].set()
            return read(task, plane)

        def watched_enhance(task, plane, raw, **kwargs):
            self.threads["enhance"].add(threading.current_thread().name)
            result = enhance(task, plane, raw, **kwargs)
            self.enhanced[plane.number].set()
            return result

        def watched_store(task, enhanced):
            self.threads["store"].add(threading.current_thread().name)
            if enhanced.plane.number == 0 and len(self.threads["store"] | self.threads["enhance"]) > 1:
                # plane 0 is not written yet: the run must still read and enhance the next planes
                # (a deadlock guard, not a timing: with a serial loop these events never come)
                self.held["read_ahead"] = self.read_started[pipeline.MAX_IN_FLIGHT - 1].wait(60)
                self.held["write_behind"] = self.enhanced[pipeline.WRITE_BEHIND].wait(60)
                with self.lock:
                    self.held["live"] = self.live
            result = store(task, enhanced)
            with self.lock:
                self.live -= 1
            return result

        monkeypatch.setattr(pipeline, "read_plane", watched_read)
        monkeypatch.setattr(pipeline, "enhance_plane", watched_enhance)
        monkeypatch.setattr(pipeline, "store_plane", watched_store)


def test_reads_ahead_and_writes_behind_with_bounded_planes_in_flight(tmp_path: Path, model_x2: Path, capsys,
                                                                    monkeypatch) -> None:
    n = 10
    src = _write_input(tmp_path / "in.ome.zarr", _stack((n, 32, 32), seed=21), "tyx")
    reference = tmp_path / "serial.ome.zarr"
    code, err = _run(capsys, model_x2, src, reference, "--no-overlap-io")
    assert code == 0, err

    watch = _Watch(monkeypatch, n)
    out = tmp_path / "overlap.ome.zarr"
    code, err = _run(capsys, model_x2, src, out)
    assert code == 0, err
    assert watch.threads == {"read": {"srrun-read_0"}, "enhance": {"MainThread"}, "store": {"srrun-write_0"}}
    # while plane 0 was still unwritten, planes up to MAX_IN_FLIGHT - 1 were read and up to
    # WRITE_BEHIND enhanced: the whole bound in use, and not one plane more
    assert watch.held == {"read_ahead": True, "write_behind": True, "live": pipeline.MAX_IN_FLIGHT}
    assert watch.peak == pipeline.MAX_IN_FLIGHT
    assert watch.live == 0
    np.testing.assert_array_equal(np.asarray(read_image(out).data), np.asarray(read_image(reference).data))


def test_no_overlap_io_runs_every_stage_on_the_calling_thread(tmp_path: Path, model_x2: Path, capsys,
                                                              monkeypatch) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((4, 32, 32), seed=22), "tyx")
    watch = _Watch(monkeypatch, 4)
    code, err = _run(capsys, model_x2, src, tmp_path / "out.ome.zarr", "--no-overlap-io")
    assert code == 0, err
    assert watch.threads == {"read": {"MainThread"}, "enhance": {"MainThread"}, "store": {"MainThread"}}
    assert watch.peak == 1 and watch.held == {}


def test_scores_and_error_map_are_the_same_in_plane_order(tmp_path: Path, capsys) -> None:
    n = 5
    stack = np.stack([structured_image((64, 64), seed=40 + k) for k in range(n)])
    src = _write_input(tmp_path / "in.ome.zarr", stack, "zyx")
    stored = {}
    for mode, flags in MODES.items():
        out = tmp_path / f"{mode}.ome.zarr"
        code, err = _run(capsys, WIDEFIELD, src, out, "--error-map", *flags)
        assert code == 0, err
        group = zarr.open_group(out, mode="r")
        stored[mode] = (np.asarray(read_image(out).data), np.asarray(group["error_map/0"]),
                        group.attrs["srscope"]["metadata"]["consistency"])
    (image, emap, scores), (serial_image, serial_emap, serial_scores) = stored["overlap"], stored["serial"]
    assert [p["plane"] for p in scores["planes"]] == list(range(n))
    assert scores == serial_scores
    np.testing.assert_array_equal(image, serial_image)
    np.testing.assert_array_equal(emap, serial_emap)
    assert np.isfinite(emap).all()

    # the option changes no value, so it is not part of the job: the other mode finds it finished
    code, err = _run(capsys, WIDEFIELD, src, tmp_path / "overlap.ome.zarr", "--error-map", "--no-overlap-io")
    assert code == 0 and "already complete" in err, err


def _done(store: Path) -> set[int]:
    return set(ProgressRecord(store).done())


def test_a_bad_plane_read_ahead_fails_at_its_turn_after_the_planes_before_it(tmp_path: Path, model_x2: Path,
                                                                             capsys) -> None:
    data = _stack((6, 32, 32), seed=23).astype(np.float32)
    data[3, 5, 7] = np.nan
    src = _write_input(tmp_path / "in.ome.zarr", data, "tyx")
    errors = {}
    for mode, flags in MODES.items():
        out = tmp_path / f"{mode}.ome.zarr"
        code, errors[mode] = _run(capsys, model_x2, src, out, *flags)
        assert code == 2
        assert _done(out) == {0, 1, 2}  # the planes before it are stored; none after it
    assert errors["overlap"] == errors["serial"]
    assert errors["overlap"].strip() == "srrun: error: input plane t=3 contains 1 NaN/Inf pixel(s)"


def test_a_failed_write_stops_the_run_with_the_same_error_and_resumes_bit_exact(tmp_path: Path, model_x2: Path,
                                                                                capsys, monkeypatch) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((6, 32, 32), seed=24), "tyx")
    reference = tmp_path / "reference.ome.zarr"
    code, err = _run(capsys, model_x2, src, reference, "--no-overlap-io")
    assert code == 0, err
    per_plane = len(level_shapes((64, 64)))  # every pyramid level of a plane is one write.level step
    errors = {}
    for mode, flags in MODES.items():
        out = tmp_path / f"{mode}.ome.zarr"
        monkeypatch.setenv(FAULT_ENV, f"write.level:{2 * per_plane + 1}:raise")  # plane 2's first level
        reset_faults()
        code, errors[mode] = _run(capsys, model_x2, src, out, *flags)
        monkeypatch.delenv(FAULT_ENV)
        assert code == 1
        # planes after the failed one (enhanced, perhaps queued for the writer) are never stored or marked
        assert _done(out) == {0, 1}
        code, err = _run(capsys, model_x2, src, out, *flags)
        assert code == 0, err
        np.testing.assert_array_equal(np.asarray(read_image(out).data), np.asarray(read_image(reference).data))
    assert errors["overlap"] == errors["serial"]
    assert "injected fault at write.level" in errors["overlap"]
