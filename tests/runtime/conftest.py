"""Shared fixtures for runtime tests: real ONNX test generators built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from srscope.runtime.synthetic import build_test_model


@pytest.fixture(scope="session")
def model_x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("models") / "x2.onnx", scale=2)


@pytest.fixture(scope="session")
def model_x1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("models") / "x1.onnx", scale=1, seed=3)
