"""``bench/gpu_check.sh --dry-run``: the whole GPU script on the CPU provider at tiny sizes.

A GPU machine runs the same Python end to end, so what breaks here would break there first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_writes_bench_json_for_fp32_and_fp16_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "bench_runtime_gpu.json").read_text())
    assert result["dry_run"] is True
    frames = result["gpu_ms_per_1024_frame"]
    precisions = {key.split("/")[1] for key in frames}
    assert precisions == {"fp32", "fp16"} and any(k.startswith("paper_width") for k in frames)
    for key, entry in frames.items():
        assert "error" not in entry, (key, entry)
        assert entry["provider"] == "CPUExecutionProvider" and entry["bound_on"] == "cpu"
        assert entry["precision"] == key.split("/")[1]
        placed = entry["conv_nodes_on_provider"]
        assert set(placed) == {"CPUExecutionProvider"} and placed["CPUExecutionProvider"] > 0
        for figure in ("whole_bound_ms", "tiled_bound_ms", "enhancer_whole_ms", "enhancer_tiled_ms"):
            assert entry[figure] > 0
        assert entry["whole_cuda_graph_ms"].startswith("unavailable")
        # IO binding computes exactly what session.run does; tiles blend back to the whole image
        assert entry["bound_vs_session_run_max_abs"] == 0.0
        assert entry["tiles"]["count"] > 1
        assert entry["tiled_vs_whole_psnr_db"] is None or entry["tiled_vs_whole_psnr_db"] >= 50
