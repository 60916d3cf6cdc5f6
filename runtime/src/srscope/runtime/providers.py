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
                   trt_fp16: bool = False) -> tuple[ort.InferenceSession, SessionInfo]:
    """Create an inference session on ``device`` and verify ORT really used it.

    ``intra_op_threads`` defaults to the usable core count: ORT's own default can pick all
    logical CPUs of the host even inside a CPU-limited container, which oversubscribes.

    fp16: the normal route is an exported fp16 model file (``card.precision == "fp16"``), which
    runs on any provider. ``trt_fp16=True`` additionally lets TensorRT build fp16 engines from an
    fp32 graph (its ``trt_fp16_enable`` option, free to ask for); ORT's CUDA provider has no such
    switch, so asking for it anywhere but TensorRT is an error rather than a silent no-op.
    """
    requested = _requested_providers(device)
    if trt_fp16 and requested[0] != DEVICE_PROVIDERS["tensorrt"]:
        raise DeviceUnavailableError(
            f"fp16 conversion of an fp32 graph needs TensorRT, but device {device!r} resolves to "
            f"{requested[0]}; export an fp16 model file instead")
    chain: list[str | tuple[str, dict[str, str]]] = list(requested)
    if trt_fp16:
        chain[0] = (requested[0], {"trt_fp16_enable": "True"})
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
