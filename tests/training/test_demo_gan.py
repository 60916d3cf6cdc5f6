"""``make demo``: the demo runs end to end on a model it did not train, and on the shipped default."""

import json

import numpy as np
import pytest
import torch
import zarr
from PIL import Image as PILImage
from srscope.training.demo import DEFAULT_MODEL, main, run_demo
from srscope.training.gan.export import export_checkpoint
from srscope.training.gan.toydata import write_toy_dataset
from srscope.training.gan.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def widefield_like_model(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("demo")
    toy = write_toy_dataset(root / "toy.zarr", n_train=8, n_val=4, n_test=4, input_pixel_size_um=0.325,
                            output_pixel_size_um=0.1625, input_modality="widefield 10x/0.4NA",
                            output_modality="widefield 20x/0.75NA", structures=["filaments"])
    train(TrainConfig(dataset=str(toy), out=str(root / "run"), iterations=4, width=2, batch_size=2,
                      val_every=2, val_patches=4, progress=False))
    return export_checkpoint(root / "run", root / "tiny.onnx").path


def _check_outputs(out, summary, shape):
    png = PILImage.open(out / "demo.png")
    assert png.size[0] > 3 * png.size[1]  # panels side by side
    group = zarr.open_group(str(out / "demo_sr.ome.zarr"), mode="r")
    ms = group.attrs["ome"]["multiscales"][0] if "ome" in group.attrs else group.attrs["multiscales"][0]
    level0 = ms["datasets"][0]
    scale = next(t["scale"] for t in level0["coordinateTransformations"] if t["type"] == "scale")
    assert scale[-2:] == pytest.approx([0.1625, 0.1625])
    data = np.asarray(group[level0["path"]][...])
    assert data.shape[-2:] == shape and np.isfinite(data).all()
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["scores_vs_ground_truth"] == summary["scores_vs_ground_truth"]


def test_demo_runs_any_card_carrying_model(widefield_like_model, tmp_path):
    summary = run_demo(tmp_path / "demo", widefield_like_model, size=64, device="cpu")
    assert summary["input_shape"] == [32, 32] and summary["output_shape"] == [64, 64]
    _check_outputs(tmp_path / "demo", summary, (64, 64))


def test_demo_with_shipped_default_beats_bilinear(tmp_path, capsys):
    assert DEFAULT_MODEL.is_file(), "the shipped default model is missing from models/"
    assert main(["--out", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    net, bil = summary["scores_vs_ground_truth"]["network"], summary["scores_vs_ground_truth"]["bilinear"]
    assert net["psnr"] > bil["psnr"] and net["ssim"] > bil["ssim"]
    assert "PSNR" in capsys.readouterr().out
    _check_outputs(tmp_path / "demo", summary, (256, 256))


def test_demo_reports_missing_model(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--model", str(tmp_path / "none.onnx")]) == 2
    assert "model not found" in capsys.readouterr().err
