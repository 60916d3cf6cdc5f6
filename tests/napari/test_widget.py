"""The napari plugin on a real, headless napari ``Viewer`` with real ONNX models.

Qt tests need a display: pytest-xvfb starts Xvfb when it is installed (``apt-get install xvfb``);
without one they skip (Qt's ``offscreen`` platform has no OpenGL, which napari's canvas needs).
Set ``SRSCOPE_NAPARI_SCREENSHOT=/some/file.png`` to keep the screenshot the first run takes
(with ``-o xvfb_colordepth=24``: pytest-xvfb's default 16-bit display bands smooth gradients).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari", minversion="0.5")  # minversion: not tests/napari itself
pytest.importorskip("pytestqt")

from srscope.napari import discover_models, run_to_end, sr_geometry
from srscope.napari._widget import EnhanceWidget
from srscope.runtime import Enhancer
from srscope.runtime.card import IntensityRule
from srscope.runtime.synthetic import build_test_model, structured_image

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "widefield-10x0.4-to-20x0.75.onnx"
SCALE, TRANSLATE = (0.325, 0.325), (10.0, 20.0)
#: The geometry rule at ×2: a quarter of an input pixel up and left.
EXPECTED_TRANSLATE = (10.0 - 0.25 * 0.325, 20.0 - 0.25 * 0.325)

#: napari's Qt5 event loop warns that it cannot detect the desktop theme (Qt6 only): not ours.
pytestmark = pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")

needs_display = pytest.mark.skipif(
    sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
    reason="napari's canvas needs a display: apt-get install xvfb (pytest-xvfb then starts it)")


@pytest.fixture(scope="module")
def percentile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("napari-models") / "pct.onnx", name="test-pct",
                            intensity=IntensityRule("percentile", 1.0, 99.8))


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("napari-models") / "fixed.onnx", name="test-fixed", seed=1)


def open_widget(viewer, tmp_path: Path) -> EnhanceWidget:
    """The widget as a user gets it (Plugins menu, through the npe2 manifest) when the
    distribution is installed, else constructed directly; model list limited to ``tmp_path``."""
    try:
        metadata.distribution("srscope-napari")
    except metadata.PackageNotFoundError:
        widget = EnhanceWidget(viewer, model_dirs=[tmp_path])
        viewer.window.add_dock_widget(widget, name="Super-resolution (srscope)")
        return widget
    _, widget = viewer.window.add_plugin_dock_widget("srscope-napari", "Super-resolution (srscope)")
    assert isinstance(widget, EnhanceWidget)
    return widget


def run_and_wait(qtbot, widget: EnhanceWidget, timeout_ms: int = 30_000) -> list:
    """Click Run, record every progress signal, wait for the worker to end."""
    seen: list = []
    widget.run_button.click()
    assert widget.running, widget.status_label.text()
    widget.worker.yielded.connect(seen.append)  # queued signals: connecting now misses none
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout_ms)
    return seen


def shipped_or_skip() -> Path:
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.name} not in this checkout")
    return SHIPPED


@needs_display
@pytest.mark.parametrize("which", ["test-percentile", "shipped-widefield"])
def test_2d_run_matches_enhancer_with_pixel_centred_geometry(which, make_napari_viewer, qtbot, tmp_path,
                                                             percentile_model):
    path, tile = (percentile_model, 48) if which == "test-percentile" else (shipped_or_skip(), 96)
    viewer = make_napari_viewer(show=which == "test-percentile")
    raw = structured_image((96, 128), seed=4)
    layer = viewer.add_image(raw, name="raw", scale=SCALE, translate=TRANSLATE, units=("um", "um"))
    widget = open_widget(viewer, tmp_path)
    entry = widget.select_model(path)
    widget.tile = tile  # several tiles per frame: progress moves inside a single 2D plane
    widget.select_layer(layer)
    widget.intensity_box.setCurrentText("auto")
    assert "µm" in widget.card_label.text() and f"×{entry.card.integer_scale}" in widget.card_label.text()
    assert "matches the model" in widget.layer_label.text()

    seen = run_and_wait(qtbot, widget)

    out = viewer.layers[f"raw SR ({entry.card.name})"]
    expected = Enhancer.from_file(path, tile=tile, intensity="auto").enhance(raw)
    assert out.data.shape == (192, 256) and out.data.dtype == np.float32
    np.testing.assert_allclose(out.data, expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(out.scale, (0.1625, 0.1625))
    np.testing.assert_allclose(out.translate, EXPECTED_TRANSLATE)
    total = Enhancer.from_file(path, tile=tile).plan(raw.shape).count
    assert total > 1 and seen[-1].tiles_done == seen[-1].tiles_total == total
    assert [p.tiles_done for p in seen] == sorted(p.tiles_done for p in seen) and len(seen) >= 3
    assert widget.progress_bar.value() == widget.progress_bar.maximum() == total
    record = out.metadata["srscope"]
    assert record["name"] == entry.card.name and record["scale"] == 2
    assert record["input_pixel_size_um"] == 0.325 and record["output_pixel_size_um"] == 0.1625
    assert record["intensity"]["mode"] == entry.card.intensity.mode
    assert record["intensity_policy"] == ("plane" if entry.card.intensity.mode == "percentile" else "fixed")
    assert len(record["intensity_mappings"]) == 1 and record["model_file"] == str(path)
    assert "Done: 1 plane" in widget.status_label.text()

    if which == "test-percentile":  # one screenshot of the whole window, widget docked
        viewer.window.resize(1400, 820)
        viewer.reset_view()
        shot = tmp_path / "napari_srscope.png"
        image = viewer.screenshot(path=str(shot), canvas_only=False)
        assert image.ndim == 3 and image[..., :3].std() > 5  # not a blank window
        if os.environ.get("SRSCOPE_NAPARI_SCREENSHOT"):
            shutil.copy(shot, os.environ["SRSCOPE_NAPARI_SCREENSHOT"])


@needs_display
def test_stack_gives_stack_with_leading_axes_kept_and_series_latched_once(make_napari_viewer, qtbot, tmp_path,
                                                                           percentile_model):
    viewer = make_napari_viewer()
    stack = np.stack([structured_image((40, 48), seed=s) * (1 + s) for s in range(4)])  # brightening
    layer = viewer.add_image(stack, name="movie", scale=(2.0, *SCALE), translate=(1.0, *TRANSLATE))
    widget = open_widget(viewer, tmp_path)
    widget.select_model(percentile_model)
    widget.intensity_box.setCurrentText("series")
    assert "(no unit set: read as µm) matches" in widget.layer_label.text()
    seen: list = []
    widget.run_button.click()
    widget.worker.yielded.connect(seen.append)
    layer.name, layer.translate = "renamed", (0.0, 0.0, 0.0)  # the run took its snapshot at the click
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)

    out = viewer.layers["movie SR (test-pct)"]
    assert out.data.shape == (4, 80, 96)
    np.testing.assert_allclose(out.scale, (2.0, 0.1625, 0.1625))
    np.testing.assert_allclose(out.translate, (1.0, *EXPECTED_TRANSLATE))
    expected = Enhancer.from_file(percentile_model, intensity="series").enhance_many(list(stack))
    np.testing.assert_allclose(out.data, np.stack(expected), rtol=1e-6, atol=1e-3)
    mappings = out.metadata["srscope"]["intensity_mappings"]
    assert len(mappings) == 4 and all(m == mappings[0] for m in mappings)  # latched on plane 0
    assert [p.planes_done for p in seen][-1] == 4


@needs_display
def test_cancel_stops_a_long_stack_and_adds_no_layer(make_napari_viewer, qtbot, tmp_path, percentile_model):
    """Defined behaviour: Cancel stops at the next tile batch and no output layer is added
    (the status line says how far it got); the widget is ready for the next run."""
    viewer = make_napari_viewer()
    viewer.add_image(structured_image((32, 32))[None].repeat(20, axis=0), name="long")
    widget = open_widget(viewer, tmp_path)
    widget.select_model(percentile_model)
    calls: list[int] = []

    def slow_enhancer(path, tile, intensity):  # the real Enhancer, 50 ms slower per session call
        enhancer = Enhancer.from_file(path, tile=tile, intensity=intensity)
        inner = enhancer.run_normalised

        def run_normalised(batch):
            calls.append(len(batch))
            time.sleep(0.05)
            return inner(batch)

        enhancer.run_normalised = run_normalised
        return enhancer

    real_factory, widget.make_enhancer = widget.make_enhancer, slow_enhancer
    widget.run_button.click()
    widget.worker.yielded.connect(lambda p: p.tiles_done and widget.cancel_button.click())
    qtbot.waitUntil(lambda: not widget.running, timeout=20_000)

    assert 1 <= len(calls) < 20, calls
    assert [layer.name for layer in viewer.layers] == ["long"]
    assert widget.status_label.text().startswith("Cancelled after")
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()

    widget.make_enhancer = real_factory  # and the next run goes through
    run_and_wait(qtbot, widget)
    assert viewer.layers["long SR (test-pct)"].data.shape == (20, 64, 64)


@needs_display
def test_runtime_failure_and_bad_pixels_end_in_the_status_line(make_napari_viewer, qtbot, tmp_path,
                                                               percentile_model):
    viewer = make_napari_viewer()
    viewer.add_image(structured_image((32, 32))[None].repeat(3, axis=0), name="frames")
    widget = open_widget(viewer, tmp_path)
    widget.select_model(percentile_model)

    def failing(path, tile, intensity):
        enhancer = Enhancer.from_file(path, tile=tile, intensity=intensity)
        enhancer.run_normalised = lambda batch: (_ for _ in ()).throw(RuntimeError("CUDA error: illegal access"))
        return enhancer

    real_factory, widget.make_enhancer = widget.make_enhancer, failing
    run_and_wait(qtbot, widget)
    assert "CUDA error" in widget.status_label.text() and len(viewer.layers) == 1
    widget.make_enhancer = real_factory

    bad = structured_image((32, 32)).astype(np.float32)
    bad[3, 4] = np.nan
    viewer.add_image(bad, name="nan")
    widget.select_layer("nan")
    run_and_wait(qtbot, widget)
    assert "NaN" in widget.status_label.text() and len(viewer.layers) == 2


@needs_display
def test_fixed_card_offers_only_auto_and_fixed_and_pixel_units_are_explained(make_napari_viewer, tmp_path,
                                                                               fixed_model, percentile_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16), np.uint16), name="plain")  # napari default: scale 1, pixels
    widget = open_widget(viewer, tmp_path)
    items = widget.intensity_box.model()
    widget.select_model(fixed_model)
    assert [items.item(i).isEnabled() for i in range(4)] == [True, False, False, True]
    assert "fixed" in widget.card_label.text()
    assert "default scale 1" in widget.layer_label.text() and "(0.5, 0.5)" in widget.layer_label.text()
    widget.select_model(percentile_model)
    assert all(items.item(i).isEnabled() for i in range(4))


def test_geometry_puts_each_input_pixel_centre_on_its_output_block_centre():
    for s in (1, 2, 3, 4):
        scale, translate = sr_geometry((3.0, 0.325, 0.5), (7.0, 10.0, -20.0), s)
        assert scale[0] == 3.0 and translate[0] == 7.0
        for axis, (a, t) in enumerate(((0.325, 10.0), (0.5, -20.0)), start=1):
            for i in (0, 5, 17):
                block = [translate[axis] + j * scale[axis] for j in range(i * s, (i + 1) * s)]
                assert np.isclose(np.mean(block), t + i * a)
    assert sr_geometry((0.325, 0.325), TRANSLATE, 2) == ((0.1625, 0.1625), EXPECTED_TRANSLATE)


def test_engine_equals_enhancer_plane_by_plane(percentile_model):
    enhancer = Enhancer.from_file(percentile_model, tile=32)
    stack = np.stack([structured_image((40, 56), seed=s) for s in range(2)])[:, None]  # (t, c, y, x)
    result = run_to_end(enhancer.with_intensity("plane"), stack)
    assert result.data.shape == (2, 1, 80, 112)
    for t in range(2):
        np.testing.assert_array_equal(result.data[t, 0], enhancer.with_intensity("plane").enhance(stack[t, 0]))


def test_discovery_lists_cards_and_skips_other_onnx_files(tmp_path, percentile_model, monkeypatch):
    shutil.copy(percentile_model, tmp_path / "a.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert [e.path.name for e in discover_models([tmp_path])] == ["a.onnx"]
    monkeypatch.setenv("SRSCOPE_MODELS", str(tmp_path))
    names = [e.path.name for e in discover_models()]
    assert names[0] == "a.onnx"
    if SHIPPED.is_file():
        assert SHIPPED.name in names  # the checkout's models/ (editable install)


def test_manifest_is_valid_and_points_at_the_widget():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(ROOT / "napari" / "src" / "srscope" / "napari" / "napari.yaml")
    assert manifest.name == "srscope-napari"
    (command,) = manifest.contributions.commands
    assert manifest.contributions.widgets[0].command == command.id
    module, _, attr = command.python_name.partition(":")
    assert getattr(__import__(module, fromlist=[attr]), attr) is EnhanceWidget


PROBE = """
import importlib, pkgutil, sys
import srscope.napari as package
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
print(",".join(sorted({n.split(".")[0] if n.split(".")[0] == "torch" else n for n in sys.modules
                       if n.split(".")[0] == "torch" or n.startswith("srscope.training")})))
"""


def test_plugin_loads_neither_torch_nor_training():
    """Same rule as tests/test_dependency_direction.py for runtime/acquisition: the plugin (widget
    and napari included) runs on the lean runtime only."""
    result = subprocess.run([sys.executable, "-c", PROBE], check=False, capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"srscope.napari loaded: {result.stdout.strip()}"


@needs_display
def test_consistency_error_layer_and_flag_with_a_degradation_model(make_napari_viewer, qtbot, tmp_path):
    """The shipped widefield card carries a degradation model: the run adds the error map as a
    second layer on the SR layer's grid and names the flagged planes; plane 1 is pure noise."""
    path = shipped_or_skip()
    card = Enhancer.from_file(path).card
    assert card.degradation is not None
    viewer = make_napari_viewer(show=False)
    stack = np.stack([structured_image((64, 64), seed=2), np.random.default_rng(3).poisson(400, (64, 64))])
    stack = stack.astype(np.uint16)
    viewer.add_image(stack, name="raw", scale=(1.0, *SCALE), translate=(0.0, *TRANSLATE), units=("um",) * 3)
    widget = open_widget(viewer, tmp_path)
    widget.select_model(path)
    widget.select_layer("raw")
    widget.intensity_box.setCurrentText("auto")
    run_and_wait(qtbot, widget)

    sr = viewer.layers[f"raw SR ({card.name})"]
    error = viewer.layers["raw consistency error"]
    assert error.data.shape == sr.data.shape and error.data.dtype == np.float32
    np.testing.assert_allclose(error.scale, sr.scale)
    np.testing.assert_allclose(error.translate, sr.translate)
    assert tuple(str(u) for u in error.units) == tuple(str(u) for u in sr.units)
    enhancer = Enhancer.from_file(path, intensity="auto")
    scores = [enhancer.score(stack[k], sr.data[k]) for k in range(2)]
    for k in range(2):  # the map and score of each plane, recomputed from the layers' own data
        np.testing.assert_allclose(error.data[k], enhancer.error_map(stack[k], sr.data[k]), rtol=1e-5, atol=1e-7)
    assert sr.metadata["srscope"]["consistency"] == [s.as_dict() for s in scores]
    assert scores[1].flagged  # pure noise
    flagged = [k for k, s in enumerate(scores) if s.flagged]
    assert error.metadata["srscope"]["flagged_planes"] == flagged
    status = widget.status_label.text()
    assert f"Warning: {len(flagged)} of 2 planes flagged by the consistency check" in status
    assert f"plane (1) ({', '.join(scores[1].reasons)})" in status and "'raw consistency error'" in status


@needs_display
def test_cards_without_a_degradation_model_add_no_error_layer(make_napari_viewer, qtbot, tmp_path, percentile_model):
    viewer = make_napari_viewer(show=False)
    viewer.add_image(structured_image((40, 48), seed=1), name="raw")
    widget = open_widget(viewer, tmp_path)
    widget.select_model(percentile_model)
    run_and_wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["raw", "raw SR (test-pct)"]
    assert "consistency" not in viewer.layers["raw SR (test-pct)"].metadata["srscope"]
    assert "onsistency" not in widget.status_label.text()
