"""bf16 autocast and NHWC training: same recipe, same losses (NHWC) or close ones (bf16)."""

import math

import pytest
from srscope.training.gan.toydata import write_toy_dataset
from srscope.training.gan.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.zarr"
    write_toy_dataset(path, n_train=8, n_val=4, n_test=2, size=64)
    return path


def _losses(toy, tmp_path, **kw) -> list[dict[str, float]]:
    cfg = TrainConfig(dataset=str(toy), out=str(tmp_path / "run"), iterations=100, width=4, batch_size=4,
                      patch_size=32, progress=False, resume=False, device="cpu", **kw)
    trainer = Trainer(cfg)
    return [trainer.step() for _ in range(3)]


def test_channels_last_trains_the_same_network(toy, tmp_path):
    nchw = _losses(toy, tmp_path / "a")
    nhwc = _losses(toy, tmp_path / "b", channels_last=True)
    for a, b in zip(nchw, nhwc, strict=True):
        assert a["mse"] == pytest.approx(b["mse"], rel=1e-3)
        assert a["d_loss"] == pytest.approx(b["d_loss"], rel=1e-3)


def test_bf16_autocast_keeps_losses_float32_and_close(toy, tmp_path):
    fp32 = _losses(toy, tmp_path / "a")
    bf16 = _losses(toy, tmp_path / "b", precision="bf16", channels_last=True)
    for a, b in zip(fp32, bf16, strict=True):
        assert all(math.isfinite(v) for v in b.values())
        # bf16 has an 8-bit mantissa: the first steps' losses agree to a few per cent
        assert b["mse"] == pytest.approx(a["mse"], rel=0.05)


def test_unknown_precision_is_refused(toy, tmp_path):
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(dataset=str(toy), out=str(tmp_path), precision="fp8")
