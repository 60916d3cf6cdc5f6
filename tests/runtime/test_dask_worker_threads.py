"""dask workers size ONNX Runtime to their own thread count, so N single-thread workers on one host
use N cores instead of N × all of them (issue 12 item 13; speed-up measured in bench_srrun)."""

from pathlib import Path

import pytest
from srscope.runtime import planework
from srscope.runtime.planework import PlaneTask, RunOptions
from srscope.runtime.providers import usable_cores

distributed = pytest.importorskip("distributed")


def _session_threads(model: str, threads: int | None, token: str) -> tuple[int | None, int]:
    task = PlaneTask(input_path="", store_path="", models=(model,), scale=2,
                     options=RunOptions(tile=None, threads=threads), run_token=token)
    enhancer = planework._enhancer(task, model, 0)
    planework.forget_cached()
    return planework.dask_worker_threads(), enhancer.info.intra_op_threads


def test_workers_honour_their_thread_count(model_x2: Path) -> None:
    model = str(model_x2)
    assert _session_threads(model, None, "local") == (None, usable_cores())  # outside dask: the usable cores
    with distributed.LocalCluster(host="127.0.0.1", protocol="tcp", n_workers=1, threads_per_worker=3,
                                  processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert client.submit(_session_threads, model, None, "w", pure=False).result() == (3, 3)
        assert client.submit(_session_threads, model, 1, "w1", pure=False).result() == (3, 1)  # --threads wins
