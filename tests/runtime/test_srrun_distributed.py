"""``--scheduler``: planes run as tasks on a dask.distributed cluster on loopback, same result as local."""

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.image import Image as NgffImage05
from srscope.runtime.cli import main
from srscope.runtime.io import Image, write_image

distributed = pytest.importorskip("distributed")


def _input(tmp_path: Path) -> Path:
    data = np.random.default_rng(2).integers(100, 3000, (2, 3, 40, 40)).astype(np.uint16)
    return write_image(tmp_path / "in.ome.zarr", Image(data, "czyx", (0.325, 0.325), z_step_um=1.0))


def _local_reference(tmp_path: Path, model: Path, src: Path) -> np.ndarray:
    out = tmp_path / "local.ome.zarr"
    assert main([str(model), str(src), str(out), "--quiet"]) == 0
    return zarr.open_group(out, mode="r")["0"][...]


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_scheduler_run_equals_local_run(tmp_path: Path, model_x2: Path, processes: bool) -> None:
    src = _input(tmp_path)
    expected = _local_reference(tmp_path, model_x2, src)
    out = tmp_path / "cluster.ome.zarr"
    with distributed.LocalCluster(host="127.0.0.1", protocol="tcp", n_workers=2, threads_per_worker=1, processes=processes,
                                  dashboard_address=None) as cluster:
        code = main([str(model_x2), str(src), str(out), "--quiet", "--scheduler", cluster.scheduler_address,
                     "--log-json", str(tmp_path / "log.json")])
        assert code == 0
    assert json.loads((tmp_path / "log.json").read_text())["planes_computed"] == 6
    group = zarr.open_group(out, mode="r")
    NgffImage05.from_zarr(group)
    np.testing.assert_array_equal(group["0"][...], expected)


def test_unreachable_scheduler_is_a_one_line_error(tmp_path: Path, model_x2: Path, capsys) -> None:
    src = _input(tmp_path)
    code = main([str(model_x2), str(src), str(tmp_path / "out.zarr"), "--quiet",
                 "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("srrun: error: cannot reach the dask scheduler") and "\n" not in err
    assert not (tmp_path / "out.zarr").exists()


def test_long_lived_cluster_does_not_reuse_handles_of_a_replaced_job(tmp_path: Path, model_x2: Path) -> None:
    """Workers cache the input/model/output per run: a second job at the same paths must not see the first's."""
    src, out = tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr"
    small = np.random.default_rng(3).integers(100, 3000, (2, 32, 32)).astype(np.uint16)
    large = np.random.default_rng(4).integers(100, 3000, (3, 48, 40)).astype(np.uint16)
    with distributed.LocalCluster(host="127.0.0.1", protocol="tcp", n_workers=1, threads_per_worker=1,
                                  processes=False, dashboard_address=None) as cluster:
        for data in (small, large):
            write_image(src, Image(data, "zyx", (0.325, 0.325)), overwrite=True)
            assert main([str(model_x2), str(src), str(out), "--quiet", "--overwrite",
                         "--scheduler", cluster.scheduler_address]) == 0
    result = zarr.open_group(out, mode="r")["0"][...]
    assert result.shape == (3, 96, 80)
    local = tmp_path / "local.ome.zarr"
    assert main([str(model_x2), str(src), str(local), "--quiet"]) == 0
    np.testing.assert_array_equal(result, zarr.open_group(local, mode="r")["0"][...])
