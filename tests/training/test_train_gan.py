"""Training on a toy dataset: the loss falls, a killed run resumes to the same state, transfer
learning starts from the parent's weights, and the CLI writes the log and curves."""

import csv
import itertools
import math

import pytest
import torch
from srscope.training.cli import main as srtrain
from srscope.training.gan.checkpoint import load_checkpoint
from srscope.training.gan.toydata import write_toy_dataset
from srscope.training.gan.trainer import (
    LR_FLOOR,
    TrainConfig,
    Trainer,
    learning_rate_factor,
    train,
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy") / "toy.zarr", n_train=16, n_val=6, n_test=4)


def _cfg(toy, out, **kw):
    base = {"dataset": str(toy), "out": str(out), "width": 4, "batch_size": 4, "val_every": 10, "val_patches": 6,
                "log_every": 5, "progress": False}
    base.update(kw)
    return TrainConfig(**base)


def _val_rows(out):
    with (out / "log.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == "val"]


def _killed_and_resumed(toy, out, **cfg):
    """Checkpoint at iteration 10, do work that the "crash" then loses, and resume to the end."""
    first = Trainer(_cfg(toy, out, **cfg))
    for _ in range(10):
        first.step()
    first._validate_and_checkpoint()  # what the loop does at iteration 10
    for _ in range(4):
        first.step()  # work after the checkpoint is lost in the "crash"
    del first
    resumed = Trainer(_cfg(toy, out, **cfg))
    assert resumed.iteration == 10
    resumed.run()
    return resumed


def test_gan_training_reduces_the_loss_and_selects_by_validation(toy, tmp_path):
    torch.set_num_threads(1)
    result = train(_cfg(toy, tmp_path / "run", iterations=60, lr_g=1e-3))
    rows = _val_rows(tmp_path / "run")
    mse = [float(r["g_mse"]) for r in rows]
    assert mse[-1] < 0.5 * mse[0]
    totals = [float(r["g_total"]) for r in rows]
    assert result.best_val == pytest.approx(min(totals))
    best = load_checkpoint(tmp_path / "run")
    assert best["iteration"] == result.best_iteration == 10 * (1 + totals.index(min(totals)))
    assert (tmp_path / "run" / "curves.png").stat().st_size > 10_000


def test_killed_run_resumes_to_exactly_the_uninterrupted_state(toy, tmp_path):
    torch.set_num_threads(1)
    straight = Trainer(_cfg(toy, tmp_path / "a", iterations=20))
    straight.run()
    resumed = _killed_and_resumed(toy, tmp_path / "b", iterations=20)
    for k, v in straight.G.state_dict().items():
        assert torch.equal(v, resumed.G.state_dict()[k]), k
    for k, v in straight.D.state_dict().items():
        assert torch.equal(v, resumed.D.state_dict()[k]), k
    assert [r["iteration"] for r in _val_rows(tmp_path / "b")] == ["10", "20"]


def test_transfer_learning_starts_from_the_parent_weights(toy, tmp_path):
    torch.set_num_threads(1)
    train(_cfg(toy, tmp_path / "parent", iterations=10))
    parent = load_checkpoint(tmp_path / "parent")
    child = Trainer(_cfg(toy, tmp_path / "child", iterations=10, init_from=str(tmp_path / "parent")))
    for k, v in parent["generator"].items():
        assert torch.equal(v, child.G.state_dict()[k]), k
    assert child.iteration == 0 and child.parent["checkpoint"] == str(tmp_path / "parent")
    with pytest.raises(ValueError, match="differs"):
        Trainer(_cfg(toy, tmp_path / "c2", iterations=10, width=8, init_from=str(tmp_path / "parent")))


def test_transfer_learning_calibrates_the_regularisers_on_the_starting_generator(toy, tmp_path):
    """λ, ν keep each regulariser at its share of L(G;D) where the child starts, not where the
    input is: calibrated on the input, a trained parent's smaller MSE would leave the MSE term
    short of the share asked for."""
    torch.set_num_threads(1)
    train(_cfg(toy, tmp_path / "parent", iterations=60, lr_g=1e-3))
    parent = Trainer(_cfg(toy, tmp_path / "parent", iterations=60))  # resumes the finished run
    child = Trainer(_cfg(toy, tmp_path / "child", iterations=10, init_from=str(tmp_path / "parent")))
    assert parent.weights.reference == "input" and child.weights.reference == "initial generator"
    lr, hr = child.sampler.batch(-1, 64)
    with torch.no_grad():
        starting_mse = float(torch.nn.functional.mse_loss(child.G.eval()(lr), hr))
    input_mse = float(torch.nn.functional.mse_loss(lr, hr))
    assert abs(starting_mse - input_mse) > 0.1 * input_mse  # so the next line tells the two apart
    assert child.weights.reference_mse == pytest.approx(starting_mse, rel=1e-4)
    assert parent.weights.reference_mse == pytest.approx(input_mse, rel=1e-4)
    assert child.weights.lam * child.weights.reference_mse == pytest.approx(
        parent.weights.lam * parent.weights.reference_mse, rel=1e-6)


def test_cosine_decay_runs_from_the_starting_rates_to_the_floor_and_survives_a_resume(toy, tmp_path):
    factors = [learning_rate_factor(i, 100, "cosine") for i in range(1, 101)]
    assert factors[0] == 1.0 and factors[-1] == pytest.approx(LR_FLOOR)
    assert all(a >= b for a, b in itertools.pairwise(factors))
    assert learning_rate_factor(37, 100, "none") == 1.0
    with pytest.raises(ValueError, match="lr_decay"):
        _cfg(toy, tmp_path / "bad", lr_decay="step")

    torch.set_num_threads(1)
    cfg = {"iterations": 20, "lr_decay": "cosine", "lr_g": 1e-3, "lr_d": 1e-4}
    straight = Trainer(_cfg(toy, tmp_path / "a", **cfg))
    straight.run()
    assert straight.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * LR_FLOOR)
    assert straight.opt_d.param_groups[0]["lr"] == pytest.approx(1e-4 * LR_FLOOR)
    resumed = _killed_and_resumed(toy, tmp_path / "b", **cfg)
    for k, v in straight.G.state_dict().items():
        assert torch.equal(v, resumed.G.state_dict()[k]), k


def test_weight_average_is_what_gets_validated_and_shipped_and_resumes_exactly(toy, tmp_path):
    torch.set_num_threads(1)
    cfg = {"iterations": 20, "ema_decay": 0.9}
    start = Trainer(_cfg(toy, tmp_path / "one", iterations=1, ema_decay=0.9))
    w0 = {k: v.clone() for k, v in start.G.state_dict().items()}
    start.step()
    for k, v in start.G_ema.state_dict().items():  # one step: 0.9·w0 + 0.1·w1
        assert torch.allclose(v, 0.9 * w0[k] + 0.1 * start.G.state_dict()[k], atol=1e-6), k

    straight = Trainer(_cfg(toy, tmp_path / "a", **cfg))
    straight.run()
    best, last = load_checkpoint(tmp_path / "a" / "best.pt"), load_checkpoint(tmp_path / "a" / "last.pt")
    for k, v in straight.G_ema.state_dict().items():
        assert torch.equal(last["generator"][k], v), k
        assert torch.equal(last["generator_train"][k], straight.G.state_dict()[k]), k
    assert any(not torch.equal(last["generator"][k], last["generator_train"][k]) for k in last["generator"])
    assert "generator_train" not in best  # best.pt carries only the weights export ships

    resumed = _killed_and_resumed(toy, tmp_path / "b", **cfg)
    for k, v in straight.G_ema.state_dict().items():
        assert torch.equal(v, resumed.G_ema.state_dict()[k]), k
        assert torch.equal(straight.G.state_dict()[k], resumed.G.state_dict()[k]), k


def test_cnn_only_ablation_has_no_discriminator(toy, tmp_path):
    torch.set_num_threads(1)
    train(_cfg(toy, tmp_path / "cnn", iterations=10, adversarial=False))
    state = load_checkpoint(tmp_path / "cnn")
    assert state["discriminator"] is None
    assert float(_val_rows(tmp_path / "cnn")[-1]["g_adversarial"]) == 0.0


def test_cli_trains_and_reports_bad_input(toy, tmp_path, capsys):
    rc = srtrain(["train", str(toy), str(tmp_path / "cli"), "--iterations", "10", "--width", "4",
                  "--batch-size", "4", "--val-every", "5", "--no-ssim", "--no-progress", "--threads", "1"])
    assert rc == 0
    state = load_checkpoint(tmp_path / "cli" / "last.pt")
    assert state["iteration"] == 10 and state["loss_weights"]["nu"] == 0.0
    assert "srtrain train" in state["provenance"]["command"]
    rc = srtrain(["train", str(tmp_path / "missing.zarr"), str(tmp_path / "x"), "--no-progress"])
    assert rc == 2
    assert "dataset not found" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_processes_with_torchrun(toy, tmp_path):
    """Two CPU ranks (gloo) train together through torchrun; rank 0 validates and checkpoints."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "srscope.training.cli", "train", str(toy), str(tmp_path / "ddp"), "--iterations", "6",
           "--width", "4", "--batch-size", "2", "--val-every", "3", "--no-progress", "--threads", "1",
           "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert state["iteration"] == 6 and state["provenance"]["world_size"] == 2
    assert [r["iteration"] for r in _val_rows(tmp_path / "ddp")] == ["3", "6"]


def test_discriminator_learns_to_separate_real_from_generated(toy, tmp_path):
    torch.set_num_threads(1)
    trainer = Trainer(_cfg(toy, tmp_path / "d", iterations=40, lr_d=1e-3))
    d_losses = [trainer.step()["d_loss"] for _ in range(40)]
    assert sum(d_losses[-10:]) / 10 < 0.9 * 2 * math.log(2)  # below chance (2 ln 2)


def test_simulator_dataset_is_in_the_prepared_format_and_normalised_globally(tmp_path):
    import numpy as np
    from srscope.training.data.simulate import simulate_pair
    from srscope.training.gan.patches import load_split, read_attrs
    from srscope.training.gan.simdataset import (
        build_simulated_dataset,
        upsample_to_hr_grid,
    )

    path = build_simulated_dataset(tmp_path / "wf.zarr", "widefield", "filaments", n_train=1, n_val=1, n_test=1,
                                   fov=(64, 64), patch=32)
    attrs = read_attrs(path)
    assert attrs["input_pixel_size_um"] == 0.325 and attrs["output_pixel_size_um"] == 0.1625
    assert attrs["splits"] == {"train": 4, "val": 4, "test": 4}
    lr, hr = load_split(path, "train")
    assert lr.shape == hr.shape == (4, 32, 32)
    pair = simulate_pair("widefield", "filaments", seed=0, hr_shape=(64, 64), misregister=False)
    norm, denorm = attrs["normalization"], attrs["denormalization"]
    expected_lr = (upsample_to_hr_grid(pair.lr, 2) - norm["offset"]) / norm["scale"]
    np.testing.assert_allclose(lr[0], expected_lr[:32, :32], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hr[0], (pair.hr[:32, :32] - denorm["offset"]) / denorm["scale"], rtol=1e-5, atol=1e-6)
    assert norm["offset"] == pair.background_lr


def test_simulator_dataset_interleaves_several_structures_field_by_field(tmp_path):
    import numpy as np
    import pytest
    from srscope.training.data.simulate import simulate_pair
    from srscope.training.gan.patches import load_split, read_attrs
    from srscope.training.gan.simdataset import build_simulated_dataset

    path = build_simulated_dataset(tmp_path / "mix.zarr", "widefield", "filaments,nuclei", n_train=2, n_val=2,
                                   n_test=1, fov=(64, 64), patch=64, seed=7)
    attrs = read_attrs(path)
    assert attrs["structures"] == ["filaments", "nuclei"]
    assert attrs["splits"] == {"train": 2, "val": 2, "test": 1}
    _, hr = load_split(path, "val")
    denorm = attrs["denormalization"]
    for field, structure in enumerate(("filaments", "nuclei")):
        pair = simulate_pair("widefield", structure, seed=7 + 100_000 + field, hr_shape=(64, 64), misregister=False)
        np.testing.assert_allclose(hr[field] * denorm["scale"] + denorm["offset"], pair.hr, rtol=1e-5, atol=1e-3)

    with pytest.raises(ValueError, match="no field"):
        build_simulated_dataset(tmp_path / "x.zarr", "widefield", "filaments,actin,ccps", n_train=2, n_val=2,
                                n_test=0, fov=(64, 64), patch=64)
    with pytest.raises(ValueError, match="distinct names"):
        build_simulated_dataset(tmp_path / "y.zarr", "widefield", "filaments,spaghetti", n_train=2, n_val=2,
                                n_test=0, fov=(64, 64), patch=64)
