"""The dock widget: model, card, intensity policy, image layer, Run / Cancel, progress.

Plain Qt (qtpy) rather than magicgui: the widget needs a live progress bar, a Cancel button that
is enabled only while a run is going, and items of the intensity menu that are disabled for a
fixed-mapping card, which are one line each in Qt and awkward in a magicgui form.

The run happens in a napari generator ``thread_worker`` over :func:`srscope.napari.engine.enhance_planes`:
it yields after every ONNX Runtime call (a batch of up to ``batch_size`` tiles), so the bar counts
tiles — for a single 2D frame too — and Cancel takes effect at the next batch boundary (one session
call at most; ONNX Runtime cannot be interrupted inside a call). A cancelled run adds **no** layer:
a half-filled SR stack next to a complete raw one is too easy to mistake for a result; the status
line says how many planes were done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Layer
from napari.qt.threading import thread_worker
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from srscope.napari.engine import EnhanceResult, Progress, enhance_planes, tiles_total
from srscope.napari.layers import (
    LayerSnapshot,
    consistency_record,
    error_layer_name,
    extra_layers,
    output_layer,
    pixel_size_note,
    sr_geometry,
)
from srscope.napari.models import ModelEntry, card_text, discover_models, load_entry
from srscope.runtime.card import ModelCardError
from srscope.runtime.enhancer import Enhancer
from srscope.runtime.intensity import POLICY_NAMES

if TYPE_CHECKING:
    import napari

CHOOSE_FILE = "Choose a file…"

#: ``make_enhancer(path, tile, intensity) -> Enhancer``: the widget's one seam to the runtime.
EnhancerFactory = Callable[[Path, int | None, str], Enhancer]


#: Flagged planes the status line names before "and N more".
FLAGGED_SHOWN = 3


def _plane_name(number: int, lead: tuple[int, ...]) -> str:
    """``"plane (2, 0)"``: a plane's index along the leading axes, as napari's sliders count."""
    if not lead:
        return "the image"
    return f"plane ({', '.join(str(int(i)) for i in np.unravel_index(number, lead))})"


def consistency_note(layer_name: str, result: EnhanceResult) -> str:
    """The consistency check's verdict for the status line ("" when the card cannot check).

    A flag means the input or the output left what the model was calibrated on (another sample,
    camera, defocus, saturation, noise): the SR planes named there should not be trusted as is.
    """
    if not result.scores:
        return ""
    flagged, n = result.flagged, len(result.scores)
    if not flagged:
        return f"\nConsistency check: no plane flagged ({n} checked); error map in '{error_layer_name(layer_name)}'."
    lead = result.data.shape[:-2]
    named = [f"{_plane_name(k, lead)} ({', '.join(result.scores[k].reasons)})" for k in flagged[:FLAGGED_SHOWN]]
    more = f", and {len(flagged) - FLAGGED_SHOWN} more" if len(flagged) > FLAGGED_SHOWN else ""
    return (f"\nWarning: {len(flagged)} of {n} plane{'s' if n != 1 else ''} flagged by the consistency check "
            f"(outside what the model was calibrated on): {'; '.join(named)}{more}. "
            f"Error map: '{error_layer_name(layer_name)}'.")


class RunFailed(Exception):
    """A ``RuntimeError`` of the run (ONNX Runtime raises those), re-raised as another type.

    superqt reads a ``RuntimeError`` out of a worker as "the worker object was deleted" and then
    emits neither ``errored`` nor ``finished``: the widget would stay "running" for ever.
    """


class _SessionCache:
    """One ONNX Runtime session per model file and tile size, shared by runs with different
    intensity policies (:meth:`Enhancer.with_intensity`): reloading a model per click would cost
    seconds and verify its checksum every time."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[Path, int | None], Enhancer] = {}

    def __call__(self, path: Path, tile: int | None, intensity: str) -> Enhancer:
        key = (Path(path).resolve(), tile)
        if key not in self._loaded:
            self._loaded[key] = Enhancer.from_file(path, tile=tile)
        return self._loaded[key].with_intensity(intensity)


class EnhanceWidget(QWidget):
    """Super-resolve the chosen image layer with the chosen srscope model into a new layer.

    ``model_dirs`` overrides where shipped models are looked for
    (:func:`srscope.napari.models.default_model_dirs`); ``tile`` is the Enhancer's largest tile
    edge. ``make_enhancer`` is public so a script or a test can substitute a configured (or
    deliberately slow) :class:`Enhancer`.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, *, model_dirs: list[Path] | None = None,
                 tile: int | None = 512) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.tile = tile
        self.make_enhancer: EnhancerFactory = _SessionCache()
        self.worker: Any = None
        self.last_progress: Progress | None = None
        self._entries: list[ModelEntry] = []
        self._layers: list[Image] = []
        self._started = 0.0

        self.model_box = QComboBox()
        self.card_label = QLabel()
        self.card_label.setWordWrap(True)
        self.card_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.intensity_box = QComboBox()
        self.intensity_box.addItems(list(POLICY_NAMES))
        self.intensity_box.setToolTip(
            "auto: the card's mode · plane: each plane its own percentiles · series: one mapping "
            "latched on the first plane (time-lapse, measurements) · fixed: the card's stored mapping")
        self.layer_box = QComboBox()
        self.layer_label = QLabel()
        self.layer_label.setWordWrap(True)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m tiles")
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("model", self.model_box)
        form.addRow("", self.card_label)
        form.addRow("intensity", self.intensity_box)
        form.addRow("image", self.layer_box)
        form.addRow("", self.layer_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self._fill_models(discover_models(model_dirs))
        self.model_box.activated.connect(self._model_activated)
        self.model_box.currentIndexChanged.connect(self._model_changed)
        self.layer_box.currentIndexChanged.connect(self._layer_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        layer_events = self.viewer.layers.events
        layer_events.inserted.connect(self._layers_changed)
        layer_events.removed.connect(self._layers_changed)
        layer_events.reordered.connect(self._layers_changed)
        self._layers_changed()
        self._model_changed()

    # --- model -------------------------------------------------------------------------------

    def _fill_models(self, entries: list[ModelEntry]) -> None:
        self._entries = list(entries)
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for entry in self._entries:
            self.model_box.addItem(entry.label)
            self.model_box.setItemData(self.model_box.count() - 1, str(entry.path), Qt.ToolTipRole)
        self.model_box.addItem(CHOOSE_FILE)
        self.model_box.setCurrentIndex(0)
        self.model_box.blockSignals(False)

    @property
    def model(self) -> ModelEntry | None:
        """The selected model, or ``None`` while only "Choose a file…" is there."""
        i = self.model_box.currentIndex()
        return self._entries[i] if 0 <= i < len(self._entries) else None

    def select_model(self, path: str | Path) -> ModelEntry:
        """Select the model at ``path``, adding it to the list first if it is new.

        What "Choose a file…" does after its dialog, callable directly by scripts and tests. A file
        without a valid card raises :class:`ModelCardError` and leaves the selection as it was.
        """
        path = Path(path)
        for i, entry in enumerate(self._entries):
            if entry.path.resolve() == path.resolve():
                self.model_box.setCurrentIndex(i)
                return entry
        entry = load_entry(path)
        self._fill_models([*self._entries, entry])
        self.model_box.setCurrentIndex(len(self._entries) - 1)
        self._model_changed()
        return entry

    def _model_activated(self, index: int) -> None:
        if self.model_box.itemText(index) != CHOOSE_FILE:
            return
        path, _ = QFileDialog.getOpenFileName(self, "srscope model", "", "ONNX models (*.onnx)")
        if not path:
            self.model_box.setCurrentIndex(0 if self._entries else index)
            return
        try:
            self.select_model(path)
        except ModelCardError as exc:
            self.status_label.setText(f"Not an srscope model: {exc}")
            self.model_box.setCurrentIndex(0)

    def _model_changed(self, *_: Any) -> None:
        entry = self.model
        self.card_label.setText(card_text(entry.card) if entry else "No model: choose an .onnx file.")
        percentile = entry is not None and entry.card.intensity.mode == "percentile"
        items = self.intensity_box.model()
        for i, name in enumerate(POLICY_NAMES):  # plane/series need a percentile card
            items.item(i).setEnabled(percentile or name in ("auto", "fixed"))
        if not items.item(self.intensity_box.currentIndex()).isEnabled():
            self.intensity_box.setCurrentIndex(0)
        self._layer_changed()

    # --- layer -------------------------------------------------------------------------------

    @property
    def layer(self) -> Image | None:
        """The selected image layer, or ``None``."""
        i = self.layer_box.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def select_layer(self, layer: Image | str) -> None:
        """Select an image layer by object or name (for scripts and tests)."""
        name = layer if isinstance(layer, str) else layer.name
        names = [candidate.name for candidate in self._layers]
        if name not in names:
            raise ValueError(f"no single-channel image layer named {name!r} (have {names})")
        self.layer_box.setCurrentIndex(names.index(name))

    def _layers_changed(self, event: Any = None) -> None:
        current = self.layer
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._layers_changed)
        # RGB layers mix three channels the model never saw; multiscale pyramids are left out
        # (their level 0 could be run, but the output would be one level of a pyramid).
        self._layers = [layer for layer in self.viewer.layers
                        if isinstance(layer, Image) and not layer.rgb and not layer.multiscale]
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        self.layer_box.addItems([layer.name for layer in self._layers])
        if current in self._layers:
            self.layer_box.setCurrentIndex(self._layers.index(current))
        self.layer_box.blockSignals(False)
        self._layer_changed()

    def _layer_changed(self, *_: Any) -> None:
        layer, entry = self.layer, self.model
        ready = layer is not None and entry is not None and self.worker is None
        self.run_button.setEnabled(ready)
        if layer is None or entry is None:
            self.layer_label.setText("" if layer else "No single-channel image layer.")
            return
        scale, translate = sr_geometry(layer.scale, layer.translate, entry.card.integer_scale)
        shape = tuple(layer.data.shape)
        self.layer_label.setText(
            f"{'×'.join(map(str, shape))} → {'×'.join(map(str, shape[:-2]))}{'×' if shape[:-2] else ''}"
            f"{shape[-2] * entry.card.integer_scale}×{shape[-1] * entry.card.integer_scale}; "
            f"output scale {tuple(round(v, 6) for v in scale[-2:])}, translate "
            f"{tuple(round(v, 6) for v in translate[-2:])}\n{pixel_size_note(layer, entry.card)}")

    # --- run -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a run is in progress (Run disabled, Cancel enabled)."""
        return self.worker is not None

    def run(self) -> None:
        """Start super-resolving the selected layer in a worker thread; returns at once.

        The layer's data, scale and translation are captured now, so editing or deleting the layer
        during the run changes nothing. Errors (model, intensity choice, bad pixels) end up in the
        status line, not in a traceback dialog.
        """
        layer, entry = self.layer, self.model
        if self.worker is not None or layer is None or entry is None:
            return
        policy = self.intensity_box.currentText()
        try:
            enhancer = self.make_enhancer(entry.path, self.tile, policy)
            total = tiles_total(enhancer, tuple(layer.data.shape))
        except Exception as exc:  # noqa: BLE001 - any load failure (card, device, ORT) belongs in the status line
            self.status_label.setText(f"Cannot run: {exc}")
            return
        self.last_progress = None
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(0)
        self.status_label.setText(f"Running {entry.card.name} on {layer.name} ({total} tiles)…")
        self._started = time.perf_counter()
        data, snapshot = layer.data, LayerSnapshot.of(layer)

        def work() -> Any:
            try:
                return (yield from enhance_planes(enhancer, data))
            except RuntimeError as exc:
                raise RunFailed(f"{type(exc).__name__}: {exc}") from exc

        # Our own "errored" handler replaces superqt's re-raise; napari still relays the error to
        # its notification area (with the traceback), the status line keeps the one-line reason.
        worker = thread_worker(work, start_thread=False, connect={
            "yielded": self._on_progress,
            "returned": lambda result: self._on_returned(snapshot, entry, enhancer, result),
            "errored": self._on_error,
            "aborted": self._on_aborted,
            "finished": self._on_finished,
        })()
        self.worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()

    def cancel(self) -> None:
        """Ask the running worker to stop at its next tile batch; no output layer will be added."""
        if self.worker is not None:
            self.cancel_button.setEnabled(False)
            self.status_label.setText("Cancelling…")
            self.worker.quit()

    def _on_progress(self, progress: Progress) -> None:
        self.last_progress = progress
        self.progress_bar.setValue(progress.tiles_done)

    def _on_returned(self, layer: LayerSnapshot, entry: ModelEntry, enhancer: Enhancer, result: EnhanceResult) -> None:
        output = output_layer(layer, result.data, entry.card, policy=enhancer.intensity.name,
                              mappings=result.mappings, source=entry.path,
                              consistency=consistency_record(result) if result.scores else None)
        for data, kwargs, kind in [output, *extra_layers(layer, result, entry.card, output)]:
            self.viewer.add_layer(Layer.create(data, kwargs, kind))
        seconds = time.perf_counter() - self._started
        planes = len(result.mappings)
        self.status_label.setText(f"Done: {planes} plane{'s' if planes != 1 else ''} in {seconds:.1f} s "
                                  f"→ {output[1]['name']}{consistency_note(layer.name, result)}")

    def _on_error(self, exc: BaseException) -> None:
        self.status_label.setText(f"Failed: {exc}")

    def _on_aborted(self) -> None:
        p = self.last_progress
        done = f"{p.planes_done} of {p.planes_total} planes" if p else "no plane"
        self.status_label.setText(f"Cancelled after {done}; no layer added.")

    def _on_finished(self) -> None:
        self.worker = None
        self.cancel_button.setEnabled(False)
        self._layer_changed()
