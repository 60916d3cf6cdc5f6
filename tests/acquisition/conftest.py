"""Fixtures: a real tiny ONNX model (runtime's build_test_model) and a real UniMMCore loaded
from srscope's simulated-microscope config (pure-Python camera, XY and Z stages, shutter)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from pymmcore_plus.experimental.unicore import UniMMCore
from srscope.acquisition.simulated import SIMULATED_CONFIG
from srscope.runtime import Enhancer
from srscope.runtime.synthetic import build_test_model

FRAME = 64  # camera ROI edge in tests: small frames keep the suite fast


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("models") / "test-x2.onnx", scale=2, name="test-x2")


@pytest.fixture(scope="session")
def enhancer(model_path: Path) -> Enhancer:
    return Enhancer.from_file(model_path, tile=None, batch_size=4, intra_op_threads=1)


@pytest.fixture()
def core() -> Iterator[UniMMCore]:
    """A UniMMCore with the simulated microscope; torn down so Python does not abort at exit."""
    logging.getLogger("pymmcore-plus").setLevel(logging.ERROR)
    mmc = UniMMCore()
    mmc.loadSystemConfiguration(str(SIMULATED_CONFIG))
    mmc.setROI(0, 0, FRAME, FRAME)
    mmc.setExposure(2.0)
    yield mmc
    mmc.unloadAllDevices()
    del mmc
    gc.collect()


class SlowEnhancer:
    """The real Enhancer, made artificially slow: sleeps before each (real) inference call."""

    def __init__(self, inner: Enhancer, delay_s: float) -> None:
        self.inner, self.delay_s, self.card = inner, delay_s, inner.card
        self.calls = 0

    def enhance_many(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        time.sleep(self.delay_s * len(frames))
        return self.inner.enhance_many(frames)


class FailingEnhancer:
    """The real Enhancer until call ``fail_on``, then raises like a GPU that fell over."""

    def __init__(self, inner: Enhancer, fail_on: int) -> None:
        self.inner, self.fail_on, self.card = inner, fail_on, inner.card
        self.calls = 0

    def enhance_many(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        if self.calls >= self.fail_on:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.enhance_many(frames)


@pytest.fixture()
def slow() -> type[SlowEnhancer]:
    return SlowEnhancer


@pytest.fixture()
def failing() -> type[FailingEnhancer]:
    return FailingEnhancer
