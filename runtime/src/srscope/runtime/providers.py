"""Choosing the ONNX Runtime execution provider explicitly, and refusing silent CPU fall-backs.

ONNX Runtime quietly drops a requested provider it cannot load (missing CUDA libraries, a CPU-only
wheel) and runs everything on the CPU. For a microscope that is the difference between live
super-resolution and a frame every few seconds, so srscope compares the providers the session
actually got with the ones it asked for: an explicit device that is not honoured is an error, and
an ``auto`` choice that degrades is reported with a :class:`ProviderFallbackWarning`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

#: Device names accepted by :func:`create_session`, best first for ``auto``.
DEVICE_PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

#: Providers that execute on a GPU, where float16 models pay off.
GPU_PROVIDERS = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
                           "DmlExecutionProvider"})


class DeviceUnavailableError(RuntimeError):
    """The requested device cannot run the model here (provider missing or dropped by ORT)."""


class ProviderFallbackWarning(RuntimeWarning):
    """ORT ran on a lesser provider than the best one this machine advertises."""


@dataclass(frozen=True)
class SessionInfo:
    """What a created session really runs on; ``provider`` is the first (primary) provider."""

    device: str
    provider: str
    providers: tuple[str, ...]
    intra_op_threads: int
    fallback: str | None = None  # why ``auto`` ended on a lesser provider, if it did

    @property
    def on_gpu(self) -> bool:
        return self.provider in GPU_PROVIDERS


def available_devices() -> list[str]:
    """Device names usable with this onnxruntime build, best first (always ends with ``"cpu"``)."""
    present = set(ort.get_available_providers())
    return [name for name, provider in DEVICE_PROVIDERS.items() if provider in present]


def trt_engine_cache_dir() -> Path:
    """Where TensorRT engines are cached: ``$SRSCOPE_TRT_CACHE``, else ``$XDG_CACHE_HOME/srscope/tensorrt``
    (``~/.cache/srscope/tensorrt``); created on first use."""
    explicit = os.environ.get("SRSCOPE_TRT_CACHE")
    base = Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srscope" / "tensorrt"
    base.mkdir(parents=True, exist_ok=True)
    return base


def usable_cores() -> int:
    """Cores this process may run on (respects CPU affinity / container limits where visible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _requested_providers(device: str) -> list[str]:
    name = device.lower().strip()
    if name == "auto":
        # Everything available except the CPU first, CPU last as the natural tail.
        chosen = [DEVICE_PROVIDERS[d] for d in available_devices()]
        return chosen
    if name not in DEVICE_PROVIDERS:
        raise ValueError(f"unknown device {device!r}; choose one of: auto, {', '.join(DEVICE_PROVIDERS)}")
    provider = DEVICE_PROVIDERS[name]
    if provider not in ort.get_available_providers():
        raise DeviceUnavailableError(
            f"device {name!r} needs {provider}, which this onnxruntime build does not have "
            f"(available: {', '.join(available_devices())}); install onnxruntime-gpu for cuda/tensorrt"
        )
    # TensorRT hands nodes it cannot compile to CUDA; CPU stays last so shape ops can run, and the
    # primary provider check below still catches a wholesale fall-back.
    chain = [provider]
    if name == "tensorrt" and "CUDAExecutionProvider" in ort.get_available_providers():
        chain.append("CUDAExecutionProvider")
    if provider != "CPUExecutionProvider":
        chain.append("CPUExecutionProvider")
    return chain


def create_session(model: str | Path | bytes, device: str = "auto", *,
                   intra_op_threads: int | None = None,
                   trt_fp16: bool = False, cuda_graph: bool = False,
                   ) -> tuple[ort.InferenceSession, SessionInfo]:
    """Create an inference session on ``device`` and verify ORT really used it.

    ``intra_op_threads`` defaults to the usable core count: ORT's own default can pick all
    logical CPUs of the host even inside a CPU-limited container, which oversubscribes.

    fp16: the normal route is an exported fp16 model file (``card.precision == "fp16"``), which
    runs on any provider. ``trt_fp16=True`` additionally lets TensorRT build fp16 engines from an
    fp32 graph (its ``trt_fp16_enable`` option, free to ask for); ORT's CUDA provider has no such
    switch, so asking for it anywhere but TensorRT is an error rather than a silent no-op.

    TensorRT always gets an engine cache in :func:`trt_engine_cache_dir` (building engines takes
    minutes; the cache makes the second start take seconds). ``cuda_graph=True`` asks the CUDA or
    TensorRT provider to capture and replay CUDA graphs: only for fixed input shapes run through
    :class:`BoundRunner` (IO binding); it is ignored on the CPU, which has no such thing.
    """
    requested = _requested_providers(device)
    if trt_fp16 and requested[0] != DEVICE_PROVIDERS["tensorrt"]:
        raise DeviceUnavailableError(
            f"fp16 conversion of an fp32 graph needs TensorRT, but device {device!r} resolves to "
            f"{requested[0]}; export an fp16 model file instead")
    chain: list[str | tuple[str, dict[str, str]]] = list(requested)
    if requested[0] == DEVICE_PROVIDERS["tensorrt"]:
        trt = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(trt_engine_cache_dir()),
               "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(trt_engine_cache_dir())}
        if trt_fp16:
            trt["trt_fp16_enable"] = "True"
        if cuda_graph:
            trt["trt_cuda_graph_enable"] = "True"
        chain[0] = (requested[0], trt)
    elif cuda_graph and requested[0] == DEVICE_PROVIDERS["cuda"]:
        chain[0] = (requested[0], {"enable_cuda_graph": "1"})
    threads = intra_op_threads or usable_cores()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle ORT workers otherwise spin-wait for the next run, burning the cores that the camera
    # thread, the Zarr writer or a second channel's session need; measured no slower here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    fallback: str | None = None
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=chain)
    except Exception as exc:  # ORT raises its own exception hierarchy (Fail, InvalidGraph, ...)
        if requested[0] == "CPUExecutionProvider":
            raise
        if device.lower() != "auto":
            raise DeviceUnavailableError(f"could not start a session on {device!r}: {exc}") from exc
        # auto: a GPU provider that is installed but broken (driver/library mismatch) degrades
        # to the CPU, loudly; the SessionInfo below then records the CPU.
        fallback = (f"{requested[0]} failed to start ({exc.__class__.__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''})")
        warnings.warn(f"auto device: {fallback}; running on the CPU", ProviderFallbackWarning, stacklevel=2)
        session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    got = tuple(session.get_providers())
    primary = got[0] if got else "CPUExecutionProvider"
    if device.lower() == "auto":
        if primary != requested[0] and fallback is None:
            fallback = f"wanted {requested[0]} but ONNX Runtime runs on {primary} (provider libraries missing?)"
            warnings.warn(f"auto device: {fallback}", ProviderFallbackWarning, stacklevel=2)
        name = next((d for d, p in DEVICE_PROVIDERS.items() if p == primary), primary)
    else:
        if primary != requested[0]:
            raise DeviceUnavailableError(
                f"device {device!r} requested but ONNX Runtime fell back to {primary} "
                "(check the CUDA/cuDNN/TensorRT libraries on this machine)")
        name = device.lower()
    return session, SessionInfo(device=name, provider=primary, providers=got, intra_op_threads=threads,
                                fallback=fallback)


#: Activation memory one inference call may use on the CPU, at most: large tiles compute fewer
#: halo pixels, and a lab PC next to a microscope has RAM to spare, but not all of it.
CPU_ACTIVATION_BUDGET_BYTES = 4 * 2**30
#: The same on a GPU, where ORT cannot tell srscope the free device memory before a run; 2 GiB
#: fits every current CUDA card next to a display, and larger tiles buy little there.
GPU_ACTIVATION_BUDGET_BYTES = 2 * 2**30


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), else ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def activation_budget_bytes(info: SessionInfo) -> int:
    """Bytes of activations one call may use: a quarter of free RAM on the CPU (at most
    :data:`CPU_ACTIVATION_BUDGET_BYTES`), :data:`GPU_ACTIVATION_BUDGET_BYTES` on a GPU."""
    if info.on_gpu:
        return GPU_ACTIVATION_BUDGET_BYTES
    free = available_memory_bytes()
    return CPU_ACTIVATION_BUDGET_BYTES if free is None else max(2**28, min(CPU_ACTIVATION_BUDGET_BYTES, free // 4))


class BoundRunner:
    """Repeated ``session.run`` calls through ONNX Runtime's IO binding, reusing their buffers.

    Why: a tiled job runs the same few shapes over and over. Binding a preallocated output buffer
    per shape saves ORT an output allocation (and, on this project's VMs, the page faults of a
    fresh multi-MB block) per call. On a GPU provider the input and output live on the device
    (``OrtValue``s bound once per shape, updated in place), so a tile crosses the bus once each
    way and nothing else does; ``cuda_graph=True`` (with a session created with
    ``create_session(..., cuda_graph=True)``) then replays the captured graph for a fixed shape.
    On the CPU the numpy arrays are bound directly: no copies at all.

    :meth:`run` returns a host array that the *next* call with the same shape overwrites; copy
    what must outlive it.
    """

    def __init__(self, session: ort.InferenceSession, info: SessionInfo, *, cuda_graph: bool = False) -> None:
        self.session = session
        self.info = info
        self.cuda_graph = cuda_graph
        inp, out = session.get_inputs()[0], session.get_outputs()[0]
        self._input_name, self._output_name = inp.name, out.name
        self._dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self._out_dtype = np.float16 if out.type == "tensor(float16)" else np.float32
        self._device = "cuda" if info.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        self._bound: dict[tuple[int, ...], tuple[ort.IOBinding, object, object, np.ndarray]] = {}
        self.scale: int | None = None

    @property
    def device(self) -> str:
        """Where the bound buffers live: ``"cuda"`` or ``"cpu"``."""
        return self._device

    def _binding(self, shape: tuple[int, ...]) -> tuple[ort.IOBinding, object, object, np.ndarray]:
        found = self._bound.get(shape)
        if found is not None:
            return found
        if self.scale is None:  # output grid from one unbound probe call (the contract: ×s per axis)
            probe = np.zeros((1, 1, shape[2], shape[3]), dtype=self._dtype)
            got = self.session.run([self._output_name], {self._input_name: probe})[0]
            self.scale = got.shape[2] // shape[2]
        out_shape = (shape[0], 1, shape[2] * self.scale, shape[3] * self.scale)
        host_out = np.empty(out_shape, dtype=self._out_dtype)
        binding = self.session.io_binding()
        if self._device == "cpu":
            host_in = np.empty(shape, dtype=self._dtype)
            binding.bind_cpu_input(self._input_name, host_in)
            binding.bind_output(self._output_name, "cpu", 0, self._out_dtype, out_shape, host_out.ctypes.data)
            found = (binding, host_in, host_out, host_out)
        else:
            dev_in = ort.OrtValue.ortvalue_from_shape_and_type(shape, self._dtype, "cuda", 0)
            dev_out = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, self._out_dtype, "cuda", 0)
            binding.bind_ortvalue_input(self._input_name, dev_in)
            binding.bind_ortvalue_output(self._output_name, dev_out)
            found = (binding, dev_in, dev_out, host_out)
        self._bound[shape] = found
        return found

    def run_bound(self, shape: tuple[int, ...]) -> None:
        """One call on whatever the bound input of ``shape`` holds (device-resident timing)."""
        binding = self._binding(shape)[0]
        self.session.run_with_iobinding(binding)

    def write_input(self, batch: np.ndarray) -> None:
        """Copy ``batch`` into the bound input buffer of its shape (host → device on a GPU)."""
        _, inp, _, _ = self._binding(tuple(batch.shape))
        if isinstance(inp, np.ndarray):
            np.copyto(inp, batch, casting="same_kind")
        else:
            inp.update_inplace(np.ascontiguousarray(batch, dtype=self._dtype))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` in, the model output out (host array, reused per shape; float32 or float16)."""
        self.write_input(batch)
        binding, _, out, host = self._binding(tuple(batch.shape))
        self.session.run_with_iobinding(binding)
        if not isinstance(out, np.ndarray):
            np.copyto(host, out.numpy())
        return host
