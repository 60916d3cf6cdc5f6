"""Data flows one way: the runtime never loads torch or training code; acquisition never loads training.

Checked by importing every module of a package in a fresh interpreter and inspecting
``sys.modules``, so an indirect import through a helper module is caught too.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, pkgutil, sys
import srscope.{package} as package
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
loaded = sorted(name for name in sys.modules
                if name.split(".")[0] == "torch" or name.startswith("srscope.training"))
print(",".join(sorted({{name.split(".")[0] if name.startswith("torch") else name for name in loaded}})))
"""


@pytest.mark.parametrize("package", ["runtime", "acquisition"])
def test_package_loads_neither_torch_nor_training(package):
    result = subprocess.run([sys.executable, "-c", PROBE.format(package=package)],
                            check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"srscope.{package} loaded: {result.stdout.strip()}"
