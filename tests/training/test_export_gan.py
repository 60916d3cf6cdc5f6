"""Export: ONNX graph contract, model card, parity with PyTorch, fp16 variant, halo correctness."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from srscope.runtime.card import read_card
from srscope.training.cli import main as srtrain
from srscope.training.gan.checkpoint import load_checkpoint
from srscope.training.gan.export import ExportGraph, ParityError, export_checkpoint
from srscope.training.gan.networks import Generator, GeneratorConfig
from srscope.training.gan.toydata import write_toy_dataset
from srscope.training.gan.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    toy = write_toy_dataset(root / "toy.zarr", n_train=8, n_val=4, n_test=4)
    train(TrainConfig(dataset=str(toy), out=str(root / "run"), iterations=6, width=4, batch_size=2,
                      val_every=3, val_patches=4, progress=False))
    return root / "run"


@pytest.fixture(scope="module")
def exported(run_dir):
    report = export_checkpoint(run_dir, run_dir.parent / "m.onnx")
    return report


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_meets_the_graph_contract_and_matches_pytorch(run_dir, exported):
    out = exported.path
    assert exported.max_abs_diff < 1e-4
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    card = read_card(out)  # verifies the weights checksum
    assert card.integer_scale == 2 and card.size_multiple == 8 and card.precision == "fp32"
    assert card.normalization.offset == 100.0 and card.denormalization.scale == 2000.0
    assert card.provenance["iterations_run"] == 6 and card.provenance["generator_width"] == 4
    sess = _session(out)
    x = np.random.default_rng(1).random((3, 1, 24, 40), dtype=np.float32)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert y.shape == (3, 1, 48, 80) and y.dtype == np.float32
    # independent reference: the checkpoint's generator behind torch's bilinear ×2
    state = load_checkpoint(run_dir)
    g = Generator(GeneratorConfig(**state["generator_config"]))
    g.load_state_dict(state["generator"])
    with torch.no_grad():
        ref = g(torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear",
                                                align_corners=False)).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-4)


def test_halo_covers_everything_that_influences_an_output_pixel(exported):
    out = exported.path
    card = read_card(out)
    h = card.receptive_field_px
    assert h is not None and card.halo_px <= h
    n = 2 * h + 3 * card.size_multiple
    n -= n % card.size_multiple
    rng = np.random.default_rng(0)
    x = rng.random((1, 1, n, n), dtype=np.float32)
    x2 = x.copy()
    c = n // 2
    keep = np.zeros_like(x2, dtype=bool)
    keep[..., c - h:c + h + 1, c - h:c + h + 1] = True
    x2[~keep] = rng.random(int((~keep).sum()), dtype=np.float32)
    sess = _session(out)
    name = sess.get_inputs()[0].name
    y1, y2 = sess.run(None, {name: x})[0], sess.run(None, {name: x2})[0]
    s = card.integer_scale
    assert np.array_equal(y1[..., c * s, c * s], y2[..., c * s, c * s])


def test_card_halo_is_calibrated_so_tiles_match_the_whole_image(exported):
    """The card's (smaller) halo is the one whose tiled output reproduces whole-image output."""
    card = read_card(exported.path)
    calibration = card.provenance["halo_calibration"]
    assert calibration["receptive_field_px"] == card.receptive_field_px
    assert calibration["psnr_db_by_halo"][str(card.halo_px)] >= calibration["target_psnr_db"]


def test_fp16_variant_runs_in_half_precision(run_dir, exported, tmp_path):
    out = tmp_path / "m16.onnx"
    report = export_checkpoint(run_dir, out, fp16=True)
    card = read_card(out)
    assert card.precision == "fp16" and report.max_abs_diff < 5e-2
    sess = _session(out)
    assert sess.get_inputs()[0].type == "tensor(float16)"
    y = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 1, 16, 16), np.float16)})[0]
    assert y.dtype == np.float16 and y.shape == (1, 1, 32, 32)
    assert out.stat().st_size < 0.6 * exported.path.stat().st_size


def test_parity_failure_blocks_the_file(run_dir, tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ParityError, match="tolerance"):
        export_checkpoint(run_dir, out, fp16=True, tolerance=0.0)
    assert not out.exists()


def test_export_cli_reports_parity(run_dir, tmp_path, capsys):
    assert srtrain(["export", str(run_dir / "best.pt"), str(tmp_path / "cli.onnx")]) == 0
    assert "max |diff|" in capsys.readouterr().out
    assert srtrain(["export", str(tmp_path / "nothing.pt"), str(tmp_path / "x.onnx")]) == 2


def test_export_graph_without_scale_is_the_generator_alone():
    g = Generator(GeneratorConfig(width=2)).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(ExportGraph(g, 1)(x), g(x))


def test_in_graph_resize_equals_the_data_pipelines_lr_to_hr_resampling():
    """Training saw LR resampled by the data package; the exported graph must do the same."""
    from srscope.training.data.resample import resample_to_hr

    x = np.random.default_rng(0).random((37, 53)).astype(np.float32)
    with torch.no_grad():
        in_graph = ExportGraph(torch.nn.Identity(), 2)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(in_graph, resample_to_hr(x, 0.325, 0.1625), atol=1e-6)


def test_markdown_card_states_the_training_recipe_of_a_transfer_run(run_dir, tmp_path):
    """The human-readable card says how the shipped weights were made: transfer from a parent,
    λ/ν calibrated on the starting generator, the learning-rate decay and the weight average."""
    from srscope.training.evaluation.modelcard import card_markdown

    torch.set_num_threads(1)
    toy = load_checkpoint(run_dir)["config"]["dataset"]
    child = tmp_path / "child"
    train(TrainConfig(dataset=toy, out=str(child), iterations=6, width=4, batch_size=2, val_every=3,
                      val_patches=4, progress=False, init_from=str(run_dir), lr_decay="cosine", ema_decay=0.9,
                      reg_share=0.1))
    model = export_checkpoint(child, tmp_path / "child.onnx").path
    scores = {"seeds": [1], "fov_hr_px": 64, "bilinear_psnr_mean": 20.0, "bilinear_ssim_mean": 0.5,
              "network_psnr_mean": 21.0, "network_ssim_mean": 0.6}
    text = card_markdown(model, scores, note="lineage")
    assert "each term 10% of L(G;D) at the starting generator's agreement" in text
    assert "cosine decay to 1 %" in text
    assert "moving average of G (decay 0.9)" in text
    assert "initialised from `run`" in text
    assert "| this model | 21.00 | 0.600 |" in text and text.rstrip().endswith("lineage")


def test_heldout_scores_take_several_structures_in_turn(run_dir, tmp_path, capsys):
    """A mixed-structure model's card scores each test seed on the structure its dataset gave it;
    ``srtrain card`` writes MODEL.md and MODEL.metrics.json beside the file."""
    model = export_checkpoint(run_dir, tmp_path / "mixed.onnx").path
    args = ["card", str(model), "--modality", "widefield", "--seeds", "5", "6", "7", "--fov", "64"]
    assert srtrain([*args, "--structure", "filaments,nuclei", "--note", "lineage"]) == 0
    scores = json.loads(model.with_suffix(".metrics.json").read_text())
    assert [p["structure"] for p in scores["per_image"]] == ["filaments", "nuclei", "filaments"]
    assert scores["structures"] == ["filaments", "nuclei"]
    assert np.isfinite(scores["network_psnr_mean"]) and np.isfinite(scores["bilinear_psnr_mean"])
    card = model.with_suffix(".md").read_text()
    assert "seeds [5, 6, 7] (filaments, nuclei in turn; 64² HR px" in card and card.rstrip().endswith("lineage")
    assert f"| this model | {scores['network_psnr_mean']:.2f} |" in card
    capsys.readouterr()
    assert srtrain([*args, "--structure", "filaments,filaments"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("srtrain card: ") and "distinct names" in err and len(err.strip().splitlines()) == 1


def test_runtime_border_padding_stays_a_mirror_on_the_field_edge_through_the_in_graph_resize():
    """The runtime pads LR tiles; the model resizes them in-graph. Only if the padded, up-sampled
    tile is mirror-symmetric about the HR field's edge do border pixels see the context a field
    continuing past its edge would most plausibly give ("reflect" padding fails this)."""
    from srscope.runtime.tiling import TilePlan

    halo, s = 6, 2
    x = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    plan = TilePlan.for_image(x.shape, tile=64, overlap=0, halo=halo, multiple=8, scale=s)
    with torch.no_grad():
        up = ExportGraph(torch.nn.Identity(), s)(torch.from_numpy(plan.pad(x))[None, None])[0, 0].numpy()
    edge = halo * s  # HR index of the field's first pixel
    inside = up[edge:edge + 8, edge + 10:edge + 30]
    outside = up[edge - 8:edge, edge + 10:edge + 30][::-1]
    np.testing.assert_allclose(outside, inside, atol=1e-6)


def test_checkpoint_probe_scores_what_the_exported_model_scores_through_the_runtime(run_dir, exported, capsys):
    """The development-set probe (PyTorch, no export) must agree with the shipped path: the exported
    file run by the runtime Enhancer with the same border margin, scored by the evaluation metrics."""
    from srscope.runtime.enhancer import Enhancer
    from srscope.training.evaluation.metrics import score_image
    from srscope.training.evaluation.probe import score_checkpoints
    from srscope.training.evaluation.testset import simulated_pairs

    torch.set_num_threads(1)
    pairs = list(simulated_pairs("widefield", "mitochondria", 2, seed=500000, hr_shape=(96, 96)))
    (probe,) = score_checkpoints([run_dir], pairs, margin=24)
    enhancer = Enhancer.from_file(exported.path, device="cpu", tile=None, halo=24)
    runtime_psnr = [score_image(enhancer.enhance(p.lr), np.asarray(p.hr, np.float64)).psnr for p in pairs]
    np.testing.assert_allclose(probe.per_image_psnr, runtime_psnr, atol=1e-3)
    assert probe.iteration == load_checkpoint(run_dir)["iteration"]

    assert srtrain(["probe", str(run_dir), "-n", "1", "--hr-size", "64"]) == 0
    assert "PSNR" in capsys.readouterr().out
    assert srtrain(["probe", str(run_dir.parent / "missing")]) == 2
    assert capsys.readouterr().err.startswith("srtrain probe: ")
