"""Prepared-dataset contract: what the GAN engineer reads back, via zarr directly and via the
readers; split by FOV; normalisation from the training split; empty patches skipped."""

import json

import numpy as np
import pytest
import zarr
from srscope.training.data.dataset import dataset_attrs, load_split
from srscope.training.data.prepare import (
    assign_splits,
    extract_patches,
    prepare_dataset,
)
from srscope.training.data.simulate import simulate_pair


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    pairs = [simulate_pair("tirf-sim", "ccps", seed=s, hr_shape=(160, 160)) for s in range(4)]
    out = tmp_path_factory.mktemp("ds") / "ds.zarr"
    summary = prepare_dataset(pairs, out, patch_size=32, progress=False,
                              plots_dir=out.parent / "plots", max_plots=1)
    return out, summary, pairs


def test_layout_read_back_with_plain_zarr(prepared):
    out, _summary, _ = prepared
    root = zarr.open_group(str(out), mode="r")
    assert root.metadata.zarr_format == 3
    attrs = root.attrs.asdict()["srscope_dataset"]
    json.dumps(attrs)  # attributes are plain JSON
    for split in ("train", "val", "test"):
        lr, hr, fov = root[f"{split}/lr"], root[f"{split}/hr"], root[f"{split}/fov"]
        assert lr.dtype == np.float32 and hr.dtype == np.float32 and fov.dtype == np.int32
        assert lr.shape == hr.shape and lr.shape[1:] == (32, 32) and fov.shape == (lr.shape[0],)
        assert attrs["patches"][split] == lr.shape[0]
    assert attrs["splits"] == {"train": 2, "val": 1, "test": 1}
    assert attrs["input_pixel_size_um"] == pytest.approx(0.065)
    assert attrs["output_pixel_size_um"] == pytest.approx(0.0325)
    assert attrs["emission_wavelength_nm"] == pytest.approx(510.0)
    assert attrs["structures"] == ["ccps"]


def test_splits_never_share_a_field_of_view(prepared):
    out, _, _ = prepared
    root = zarr.open_group(str(out), mode="r")
    fovs = {s: set(np.unique(root[f"{s}/fov"][...]).tolist()) for s in ("train", "val", "test")}
    assert not (fovs["train"] & fovs["val"]) and not (fovs["train"] & fovs["test"]) and not (fovs["val"] & fovs["test"])


def test_normalisation_is_global_and_quantitative(prepared):
    """Denormalising a stored HR patch returns the camera counts of the HR image."""
    out, _summary, pairs = prepared
    attrs = dataset_attrs(out)
    lr, hr = load_split(out, "train")
    assert lr.shape[0] > 0
    den = attrs["denormalization"]
    # the bright end maps near 1 and the background near 0
    assert 0.5 < np.percentile(hr, 99.9) < 3.0
    assert abs(float(np.median(hr))) < 0.2
    # exactly invertible: find the stored patch inside its source HR image
    root = zarr.open_group(str(out), mode="r")
    fov = int(root["train/fov"][0])
    counts = hr[0] * den["scale"] + den["offset"]
    source = pairs[fov].hr.astype(np.float32)[10:-10, 10:-10]
    p = 32
    ny, nx = source.shape[0] // p, source.shape[1] // p
    oy, ox = (source.shape[0] - ny * p) // 2, (source.shape[1] - nx * p) // 2
    tiles = [source[oy + i * p: oy + (i + 1) * p, ox + j * p: ox + (j + 1) * p] for i in range(ny) for j in range(nx)]
    assert min(np.max(np.abs(t - counts)) for t in tiles) < 1e-2
    # offset/scale came from the background estimate and bright end of the training FOVs
    assert abs(den["offset"] - np.median([pairs[i].background_hr for i in range(4)])) < 10


def test_registration_summary_and_plot(prepared):
    out, summary, _ = prepared
    reg = dataset_attrs(out)["registration"]
    assert reg["pairs"] == 4 and reg["accepted"] == 4
    assert reg["median_correlation"] > reg["median_correlation_before"]
    assert "fov0000" in summary.table()
    pngs = list((out.parent / "plots").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_empty_patches_are_skipped():
    rng = np.random.default_rng(0)
    hr = rng.normal(0, 0.01, (128, 128)).astype(np.float32)
    hr[70:80, 70:80] = 1.0  # one bright object in one 64-px tile
    _lr_p, hr_p = extract_patches(hr.copy(), hr, 64, min_signal=0.1)
    assert len(hr_p) == 1 and hr_p[0].max() == pytest.approx(1.0)


def test_split_assignment():
    labels = assign_splits(10, seed=1)
    assert labels.count("val") == 1 and labels.count("test") == 1 and labels.count("train") == 8
    assert assign_splits(10, seed=1) == labels
    assert set(assign_splits(3)) == {"train", "val", "test"}


def test_refuses_to_overwrite(prepared, tmp_path):
    out, _, pairs = prepared
    with pytest.raises(FileExistsError):
        prepare_dataset(pairs[:1], out, progress=False)
    with pytest.raises(ValueError, match="not a finished srscope dataset"):
        zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
        dataset_attrs(tmp_path / "empty.zarr")


@pytest.mark.parametrize("fmt", ["tif", "zarr"])
def test_cli_simulate_then_prepare_reads_files_like_real_data(tmp_path, fmt, capsys):
    """``srtrain simulate OUT`` then ``srtrain prepare OUT/lr OUT/hr DS.zarr``: pixel sizes and
    modality come from the image files (read back by srscope.runtime.io), not from memory."""
    from srscope.runtime.io import read_image
    from srscope.training.cli import main

    sim = tmp_path / "sim"
    assert main(["simulate", str(sim), "--modality", "tirf-sim", "--structure", "ccps", "-n", "3",
                 "--size", "96", "--format", fmt]) == 0
    lr_file = next((sim / "lr").iterdir())
    assert read_image(lr_file).pixel_size_um == pytest.approx((0.065, 0.065))
    truth = json.loads((sim / "truth" / "fov0000.json").read_text())
    assert truth["transform"]["shape"] == [96, 96]
    ds = tmp_path / "ds.zarr"
    assert main(["prepare", str(sim / "lr"), str(sim / "hr"), str(ds), "--patch-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "fov0002" in out and "normalization" in out
    attrs = dataset_attrs(ds)
    assert attrs["input_pixel_size_um"] == pytest.approx(0.065)
    assert attrs["input_modality"] == "TIRF 100x/1.49NA"
    # a second run refuses to clobber the dataset
    assert main(["prepare", str(sim / "lr"), str(sim / "hr"), str(ds)]) == 2
