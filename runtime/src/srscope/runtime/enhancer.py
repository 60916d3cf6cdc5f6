"""``Enhancer``: camera counts in, super-resolved physical intensities out, for images of any size.

This is the one object lab scripts, ``srrun`` and the live acquisition hook share. It owns the
ONNX Runtime session, applies the intensity policy's affine (de)normalisation in numpy so output
stays in physical counts (:mod:`srscope.runtime.intensity`: per plane, per series or fixed), and
runs the overlapping-tile plan from :mod:`srscope.runtime.tiling` with tiles batched together —
across frames too, which is what keeps a live camera stream cheap.

On request it also scores every plane for consistency with its input
(:meth:`Enhancer.enhance_with_scores`, :mod:`srscope.runtime.consistency`), when the card carries a
degradation model; :attr:`Enhancer.checks_consistency` says whether it does.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from srscope.runtime.card import AffineIntensity, ModelCard, ModelCardError, read_card
from srscope.runtime.consistency import (
    PlaneScore,
    error_map,
    score_plane,
    with_pixel_size,
)
from srscope.runtime.imagecheck import checked_image
from srscope.runtime.intensity import IntensityPolicy, intensity_policy
from srscope.runtime.providers import (
    BoundRunner,
    SessionInfo,
    activation_budget_bytes,
    create_session,
)
from srscope.runtime.tiling import Blender, TilePlan, choose_tile, round_up
from tqdm.auto import tqdm

#: Blend ramp (input pixels) added to the 2×halo that tiles discard: enough to hide the residual
#: seam of a generator whose true receptive field exceeds its card's halo, small enough to cost
#: only a few percent at the default tile size.
DEFAULT_BLEND_PX = 8

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}

#: ``tile="auto"`` without a model file to size activations from: the old fixed default.
FALLBACK_TILE = 512
#: ORT's working set over the live activations the graph walk counts (NCHWc reorder copies,
#: im2col scratch): measured peak RSS of whole-image runs is within this factor.
ACTIVATION_OVERHEAD = 2.0


def default_overlap(card: ModelCard, halo: int | None = None) -> int:
    """Tile overlap in input pixels: both halos plus a blend ramp, rounded to the size multiple."""
    return round_up(2 * (card.halo_px if halo is None else halo) + DEFAULT_BLEND_PX, card.size_multiple)


#: Mirrored context (input pixels) the image's outer edges get by default, for models whose
#: calibrated halo is below their receptive field; see :func:`default_border`.
BORDER_CONTEXT_PX = 8


def default_border(card: ModelCard, halo: int | None = None) -> int:
    """Mirrored context at the image's outer edges, in input pixels (the inter-tile halo stays ``halo``).

    Why not the halo: between tiles the output must reproduce whole-image output, which has true
    context there, so tiles keep the card's calibrated halo; at the image's own edge there is no
    true context to reproduce, only a mirror that keeps the network off its zero padding, and the
    full halo of mirror costs 1.10× the pixels of a 1024² frame at halo 24 (tiled ≤ 0.91× a raw
    single shot however lean the wrapper). Measured by ``bench/bench_border.py`` (simulator fields,
    PSNR against ground truth after the affine fit, change from the full-halo border; widefield
    8 fields of 256² and 4 of 1024² LR px, seeds 920 000+; TIRF-SIM 4 × 256², 940 000+; CNN-only
    4 × 256², 950 000+; STED 8 × 512², 930 000+)::

        model (halo)        border   Δ mean / worst field (dB)                          fraction, 1024²
        widefield v4.1 (24)   0      +0.002 / −0.048 (256²)   +0.004 / −0.003 (1024²)   1.000
                              8      −0.010 / −0.058 (256²)   −0.002 / −0.013 (1024²)   1.032
                             16      −0.003 / −0.026 (256²)   −0.000 / −0.003 (1024²)   1.064
        TIRF-SIM (24)         0      −0.031 / −0.080                                    1.000
                              8      +0.007 / −0.006                                    1.032
        CNN-only (16)         0      −0.040 / −0.123                                    1.000
                              8      −0.011 / −0.073                                    1.032
        confocal→STED (125)  13      −0.622 / −1.196                                    1.064
                             61      −0.043 / −0.069                                    1.266
                             77      +0.002 / −0.001                                    1.337

    Widefield-type models change only in their outer ~50 HR px, by amounts at the level of the
    field-to-field spread (a single 256² field moves up to ±0.07 dB either way; the means stay
    within 0.011 dB at border 8). Border 0 (the network's zero padding at the edge) costs TIRF-SIM
    and the CNN-only ablation 0.03–0.04 dB on average, border 8 nothing beyond 0.011 dB: hence
    :data:`BORDER_CONTEXT_PX` = 8 (the acceptance bound: mean change within 0.02 dB). The confocal → STED
    generator is different: its output depends on the mirror up to ~77 px in, and its halo
    calibration never reached its target below the receptive field (``halo_px ==
    receptive_field_px``). That equality is the rule's test: such a model keeps the full halo as
    its border (a card field carrying a measured border, 77 px for it, would save 14 % there).

    The border is rounded so it stays congruent to the halo modulo the size multiple: the pooling
    grid then sits where the full-halo border put it, and only the outer ring of the output moves
    (a shifted grid changes every pixel by ~0.05 dB of jitter, measured at border 128 on STED).
    Cards without a receptive field (synthetic test models) keep the full halo.
    """
    halo = card.halo_px if halo is None else halo
    rf = card.receptive_field_px
    if rf is None or halo >= rf:
        return halo
    m = card.size_multiple
    return halo - m * max(0, (halo - BORDER_CONTEXT_PX) // m)


class Enhancer:
    """Runs one srscope model on 2D images with overlapping, blended tiles.

    ``tile`` is the largest input tile edge in pixels (``None``: the whole image in one pass;
    ``"auto"``, the default: per image shape, :func:`srscope.runtime.tiling.choose_tile` with the
    device's activation budget, i.e. the whole image when it fits and otherwise the tile whose real
    plan computes the fewest halo pixels);
    ``overlap`` is how much neighbouring tiles share, by default :func:`default_overlap`.

    ``halo`` overrides ``card.halo_px`` (the context discarded where tiles meet). Exported
    models carry a *calibrated* halo (:mod:`srscope.runtime.halo`: the smallest context at which
    tiled output matches whole-image output to 60 dB), well below the theoretical receptive field
    (``card.receptive_field_px``, ~60–130 input pixels for the paper's 4-level U-Net), which would
    more than double the pixels computed on a 512² image; ``bench/bench_runtime.py`` reports the
    speed/PSNR trade-off. ``border`` is the mirrored context at the image's own edges, by default
    :func:`default_border` (8 px for the widefield and TIRF models, the full halo for confocal →
    STED): fewer pixels than the halo where measurement shows the edge does not need them.

    ``intensity`` picks how counts are normalised (:func:`srscope.runtime.intensity.intensity_policy`):
    ``"auto"`` (the card's mode), ``"plane"``, ``"series"``, ``"fixed"``, an explicit
    :class:`AffineIntensity`, or a policy object. The policy is kept for the enhancer's lifetime, so a
    ``"series"`` enhancer latches its mapping on the first frame it sees.
    """

    def __init__(self, session: ort.InferenceSession, card: ModelCard, info: SessionInfo, *,
                 tile: int | str | None = "auto", overlap: int | None = None, batch_size: int = 4,
                 progress: bool = False, source: Path | None = None, halo: int | None = None,
                 intensity: str | AffineIntensity | IntensityPolicy | None = "auto",
                 border: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if isinstance(tile, str) and tile != "auto":
            raise ValueError(f"tile must be a number of pixels, None or 'auto', not {tile!r}")
        if isinstance(tile, int) and tile < card.size_multiple:
            raise ValueError(f"tile {tile} is smaller than the model's size multiple {card.size_multiple}")
        if overlap is not None and overlap < 0:
            raise ValueError(f"overlap must be >= 0, not {overlap}")
        if halo is not None and halo < 0:
            raise ValueError(f"halo must be >= 0, not {halo}")
        if border is not None and border < 0:
            raise ValueError(f"border must be >= 0, not {border}")
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1 or len(inputs[0].shape) != 4:
            raise ModelCardError("model does not follow the srscope graph contract: one [N,1,H,W] input")
        if inputs[0].type not in _ORT_DTYPES:
            raise ModelCardError(f"model input type {inputs[0].type} is not float32/float16")
        self.session = session
        self.card = card
        self.info = info
        self.tile = tile
        self.halo = card.halo_px if halo is None else halo
        self.border = default_border(card, self.halo) if border is None else border
        self.overlap = default_overlap(card, self.halo) if overlap is None else overlap
        self.batch_size = batch_size
        self.progress = progress
        self.source = source
        self.scale = card.integer_scale
        self.intensity: IntensityPolicy = intensity_policy(card, intensity)
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        self._input_dtype = _ORT_DTYPES[inputs[0].type]
        self._auto_tiles: dict[tuple[int, int], int | None] = {}
        self._pixels_per_call: int | None = None
        # Reused per batch shape, per thread: the stacked input and the bound output.
        self._buffers = threading.local()
        expected = np.float16 if card.precision == "fp16" else np.float32
        if self._input_dtype != expected:
            raise ModelCardError(f"card says precision {card.precision} but the graph takes {inputs[0].type}")

    @classmethod
    def from_file(cls, path: str | Path, *, device: str = "auto", tile: int | str | None = "auto",
                  overlap: int | None = None, batch_size: int = 4, progress: bool = False,
                  intra_op_threads: int | None = None, halo: int | None = None,
                  trt_fp16: bool = False,
                  intensity: str | AffineIntensity | IntensityPolicy | None = "auto",
                  border: int | None = None) -> Enhancer:
        """Load a card-carrying ``.onnx`` file; a missing card or checksum mismatch is a ModelCardError.

        For fp16 on a GPU, pass the exported fp16 model file (fed float16 automatically), or
        ``trt_fp16=True`` with ``device="tensorrt"`` to let TensorRT lower an fp32 graph.
        """
        path = Path(path)
        card = read_card(path)  # verifies the weights checksum before anything runs
        session, info = create_session(path, device, intra_op_threads=intra_op_threads, trt_fp16=trt_fp16)
        return cls(session, card, info, tile=tile, overlap=overlap, batch_size=batch_size,
                   progress=progress, source=path, halo=halo, intensity=intensity, border=border)

    def with_intensity(self, intensity: str | AffineIntensity | IntensityPolicy | None) -> Enhancer:
        """A second enhancer on the same ONNX Runtime session with its own intensity policy, e.g. one
        ``series`` latch per channel of a live run without loading the model twice."""
        return Enhancer(self.session, self.card, self.info, tile=self.tile, overlap=self.overlap,
                        batch_size=self.batch_size, progress=self.progress, source=self.source, halo=self.halo,
                        intensity=intensity, border=self.border)

    @property
    def provider(self) -> str:
        """The execution provider actually running the model, e.g. ``CPUExecutionProvider``."""
        return self.info.provider

    @property
    def device(self) -> str:
        return self.info.device

    def __repr__(self) -> str:
        return (f"Enhancer({self.card.name!r} v{self.card.version}, ×{self.scale}, {self.provider}, "
                f"tile={self.tile}, overlap={self.overlap}, halo={self.halo}, border={self.border}, "
                f"batch={self.batch_size}, "
                f"intensity={self.intensity.name})")

    def plan(self, shape: tuple[int, int]) -> TilePlan:
        """The tile plan this enhancer uses for an image of ``shape`` (input pixels)."""
        tile = self.tile_for(tuple(shape)) if self.tile == "auto" else self.tile
        return TilePlan.for_image(shape, tile=tile, overlap=self.overlap, halo=self.halo,
                                  multiple=self.card.size_multiple, scale=self.scale, border=self.border)

    def tile_for(self, shape: tuple[int, int]) -> int | None:
        """The tile edge ``tile="auto"`` picks for ``shape`` (``None``: one pass), cached per shape."""
        if shape not in self._auto_tiles:
            self._auto_tiles[shape] = choose_tile(shape, overlap=self.overlap, halo=self.halo,
                                                  multiple=self.card.size_multiple,
                                                  max_pixels_per_call=self.pixels_per_call, border=self.border)
        return self._auto_tiles[shape]

    @property
    def pixels_per_call(self) -> int:
        """Input pixels one session call may take within the device's activation budget."""
        if self._pixels_per_call is None:
            if self.source is None:  # no graph to size: the old default's 4 × 512² per call
                self._pixels_per_call = 4 * FALLBACK_TILE ** 2
            else:
                from srscope.runtime.graph_cost import activation_bytes_per_input_pixel

                per_px = activation_bytes_per_input_pixel(self.source, probe=16 * self.card.size_multiple)
                self._pixels_per_call = max(self.card.size_multiple ** 2, int(
                    activation_budget_bytes(self.info) / (ACTIVATION_OVERHEAD * per_px)))
        return self._pixels_per_call

    def run_normalised(self, batch: np.ndarray) -> np.ndarray:
        """One session call on a normalised ``[N,1,H,W]`` batch; returns float32 ``[N,1,sH,sW]``."""
        feed = np.ascontiguousarray(batch, dtype=self._input_dtype)
        out = self.session.run([self._output_name], {self._input_name: feed})[0]
        return np.asarray(out, dtype=np.float32)

    def enhance(self, image: np.ndarray) -> np.ndarray:
        """Super-resolve one 2D image of counts; returns float32 ``(H*s, W*s)`` in physical units."""
        return self.enhance_many([image])[0]

    def enhance_many(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Super-resolve several frames, batching tiles across them (tiles of equal shape share a call)."""
        return self.enhance_many_with_mappings(images)[0]

    def enhance_many_with_mappings(self, images: Sequence[np.ndarray],
                                   ) -> tuple[list[np.ndarray], list[AffineIntensity]]:
        """:meth:`enhance_many`, plus the input affine each frame was normalised with (for records)."""
        arrays = [checked_image(im, what=f"image {i}" if len(images) > 1 else "image") for i, im in enumerate(images)]
        plans = [self.plan(a.shape) for a in arrays]
        mappings = [self.intensity.input_mapping(a) for a in arrays]
        blenders: list[Blender] = [plan.blender() for plan in plans]
        # Group tiles by shape: frames of one camera share one shape, so they batch together.
        jobs: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
        for frame, plan in enumerate(plans):
            for iy in range(len(plan.y.starts)):
                for ix in range(len(plan.x.starts)):
                    jobs[plan.tile_shape].append((frame, iy, ix))
        # A frame of several tiles is normalised and mirrored once, when its first tile is stacked,
        # and dropped after its last; a one-tile frame goes straight into the batch buffer.
        padded: dict[int, np.ndarray] = {}
        left = [plan.count for plan in plans]
        total = sum(left)
        with tqdm(total=total, unit="tile", desc="enhance", disable=not self.progress, leave=False) as bar:
            for (th, tw), group in jobs.items():
                step = self.batch_size if self.tile != "auto" else max(
                    1, min(self.batch_size, self.pixels_per_call // (th * tw)))
                for start in range(0, len(group), step):
                    chunk = group[start:start + step]
                    runner, stacks = self._thread_buffers()
                    key = (len(chunk), th, tw)
                    if key not in stacks:
                        stacks[key] = np.empty(key, dtype=self._input_dtype)
                    batch = stacks[key]
                    for slot, (frame, iy, ix) in zip(batch, chunk):
                        plan = plans[frame]
                        if plan.count == 1:
                            self._normalise_padded_into(slot, plan, mappings[frame], arrays[frame])
                            continue
                        if frame not in padded:
                            padded[frame] = np.empty(plan.padded_shape, dtype=np.float32)
                            self._normalise_padded_into(padded[frame], plan, mappings[frame], arrays[frame])
                        y0, x0 = plan.y.starts[iy], plan.x.starts[ix]
                        np.copyto(slot, padded[frame][y0:y0 + th, x0:x0 + tw], casting="same_kind")
                        left[frame] -= 1
                        if not left[frame]:
                            del padded[frame]
                    out = runner.run(batch[:, None])  # reused buffer: the blender copies what it keeps
                    for (frame, iy, ix), tile_out in zip(chunk, out):
                        blenders[frame].add(iy, ix, tile_out[0])
                    bar.update(len(chunk))
        outputs = [self._denormalise_in_place(b.result(), self.intensity.output_mapping(m))
                   for b, m in zip(blenders, mappings)]
        return outputs, mappings

    def _normalise_padded_into(self, target: np.ndarray, plan: TilePlan, mapping: AffineIntensity,
                               image: np.ndarray) -> None:
        """``plan.pad(mapping.normalise(image))`` written into ``target`` (a padded-shape buffer).

        The same float32 arithmetic as :meth:`AffineIntensity.normalise` (``(float32(x) − offset) /
        scale``), computed in the interior of the buffer the network reads, then mirrored in place:
        no normalised, padded or stacked copy of the frame. That saves two frame-sized temporaries
        per call; in time it is a wash (≈1.0 ms either way per 1024² frame, interleaved, beside a
        1.6 s run: ``bench_runtime``'s ``wrapper_stages_auto``). A float16 model's buffer is filled
        from a reused float32 scratch, so its input rounds once.
        """
        work = target
        if target.dtype != np.float32:
            work = self._scratch(target.shape)
        inner = plan.interior(work)
        np.copyto(inner, image, casting="unsafe")  # float32(x), as np.asarray(x, dtype=np.float32)
        np.subtract(inner, np.float32(mapping.offset), out=inner)
        np.divide(inner, np.float32(mapping.scale), out=inner)
        plan.mirror_edges(work)
        if work is not target:
            np.copyto(target, work, casting="same_kind")

    def _scratch(self, shape: tuple[int, ...]) -> np.ndarray:
        """This thread's float32 scratch of ``shape`` (float16 models normalise in float32 first)."""
        self._thread_buffers()
        scratch = self._buffers.scratch.get(shape)
        if scratch is None:
            scratch = self._buffers.scratch[shape] = np.empty(shape, dtype=np.float32)
        return scratch

    @property
    def checks_consistency(self) -> bool:
        """Whether the card carries a degradation model, so planes can be scored (older cards: no)."""
        return self.card.degradation is not None

    def score(self, image: np.ndarray, output: np.ndarray, *,
              pixel_size_um: float | Sequence[float] | None = None) -> PlaneScore | None:
        """The consistency score of ``output`` (this enhancer's result for ``image``); ``None``
        when the card has no degradation model (the check is off for such models).

        ``pixel_size_um`` (the plane's own, where the caller knows it) adds the reason
        ``pixel_size`` when it is off the card's by more than the house tolerance
        (:func:`srscope.runtime.consistency.with_pixel_size`).
        """
        if self.card.degradation is None:
            return None
        score = score_plane(image, output, self.card.degradation)
        return with_pixel_size(score, pixel_size_um, self.card.input_pixel_size_um)

    def error_map(self, image: np.ndarray, output: np.ndarray) -> np.ndarray | None:
        """The local error map on the output grid (:func:`srscope.runtime.consistency.error_map`),
        or ``None`` without a degradation model."""
        if self.card.degradation is None:
            return None
        return error_map(image, output, self.card.degradation)

    def enhance_with_scores(self, images: Sequence[np.ndarray],
                            ) -> tuple[list[np.ndarray], list[PlaneScore | None]]:
        """:meth:`enhance_many`, plus each plane's :class:`~srscope.runtime.consistency.PlaneScore`
        (``None`` for every plane when the card has no degradation model). A plane is ``flagged``
        when its input or its output leaves the range the model was calibrated on at export."""
        outputs = self.enhance_many(images)
        return outputs, [self.score(image, out) for image, out in zip(images, outputs)]

    def _thread_buffers(self) -> tuple[BoundRunner, dict[tuple[int, int, int], np.ndarray]]:
        """This thread's IO-bound runner and stacking buffers (one ORT session serves many threads)."""
        local = self._buffers
        if not hasattr(local, "runner"):
            local.runner, local.stacks, local.scratch = BoundRunner(self.session, self.info), {}, {}
        return local.runner, local.stacks

    @staticmethod
    def _denormalise_in_place(normalised: np.ndarray, mapping: AffineIntensity) -> np.ndarray:
        """The output affine applied in place on the blender's fresh array (saves a frame copy)."""
        normalised *= np.float32(mapping.scale)
        normalised += np.float32(mapping.offset)
        return normalised

    def enhance_stream(self, frames: Iterable[np.ndarray], *, group: int = 1) -> Iterator[np.ndarray]:
        """Lazily super-resolve a stream of frames, in order.

        ``group`` frames are collected before running (their tiles batched together): 1 gives the
        lowest latency for live display, larger values more throughput on a GPU.
        """
        if group < 1:
            raise ValueError(f"group must be >= 1, not {group}")
        pending: list[np.ndarray] = []
        for frame in frames:
            pending.append(frame)
            if len(pending) >= group:
                yield from self.enhance_many(pending)
                pending = []
        if pending:
            yield from self.enhance_many(pending)
