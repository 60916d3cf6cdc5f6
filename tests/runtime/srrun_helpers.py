"""Small shared helpers of the srrun tests: deterministic stacks, input files, an in-process run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from srscope.runtime.cli import main
from srscope.runtime.io import Image, write_image

SRRUN = Path(sys.executable).with_name("srrun")


def _stack(shape, seed=0, dtype=np.uint16):
    return np.random.default_rng(seed).integers(100, 3000, shape).astype(dtype)


def _write_input(path: Path, data, axes, px=0.325, **kw) -> Path:
    return write_image(path, Image(data, axes, (px, px), **kw))


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv] + ["--quiet"])
    return code, capsys.readouterr().err
