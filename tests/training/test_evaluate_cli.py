"""``srtrain evaluate`` end to end: real ONNX Runtime test models, simulated pairs, files read back."""

import json

import numpy as np
import pytest
from matplotlib.image import imread
from skimage.transform import rescale
from srscope.runtime.synthetic import build_test_model
from srscope.training.cli import main
from srscope.training.data.simulate import simulate_pair
from srscope.training.evaluation.cli import DEFAULT_TEST_SEED
from srscope.training.evaluation.metrics import score_image


@pytest.fixture(scope="module")
def widefield_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval-wf")
    gan = build_test_model(tmp / "gan.onnx", scale=2, seed=0)
    cnn = build_test_model(tmp / "cnn.onnx", scale=2, seed=1)
    out = tmp / "report"
    code = main(["evaluate", str(gan), str(out), "--ablation", str(cnn), "--modality", "widefield",
                 "--structure", "mitochondria", "-n", "2", "--hr-size", "128", "--examples", "1", "--quiet"])
    return code, out


def test_writes_report_figures_and_summary(widefield_run):
    code, out = widefield_run
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    methods = ["bilinear", "lucy-richardson", "nnls", "cnn-only", "gan"]
    assert list(summary["table"]) == methods
    for row in summary["table"].values():
        for key in ("psnr", "ssim", "nrmse", "seconds_per_megapixel", "squirrel_rse", "squirrel_rsp",
                    "decorrelation_resolution_nm", "spectral_support_per_um"):
            assert isinstance(row[key], float) and np.isfinite(row[key]), key
        assert 0 < row["ssim"] <= 1 and row["seconds_per_megapixel"] > 0
    assert summary["spread"]["gan"]["psnr"]["n"] == 2
    assert len(summary["per_image"]) == 2
    first = DEFAULT_TEST_SEED
    assert summary["test_set"]["images"] == [f"widefield-mitochondria-seed{first}",
                                             f"widefield-mitochondria-seed{first + 1}"]
    assert "misregister=False" in summary["test_set"]["source"]
    # The LR search ran on a pair outside the test set, over the whole grid.
    assert summary["test_set"]["validation_pair"].startswith(f"widefield-mitochondria-seed{1_000_000 + first}")
    assert len(summary["lr_search"]["grid"]) == 7 * 4
    assert summary["fwhm"] is None  # tubules: no spot analysis unless asked

    report = (out / "report.md").read_text()
    for name in summary["figures"]:
        image = imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.01  # not a blank canvas
        assert f"({name})" in report
    assert {"crops.png", "differences.png", "squirrel.png", "spectra.png", "lr_search.png"} <= set(summary["figures"])
    for method in methods:
        assert f"| {method} |" in report


def test_summary_scores_match_an_independent_recomputation(widefield_run):
    """Bilinear PSNR/SSIM recomputed from the simulator's pairs with scikit-image's own resize."""
    _, out = widefield_run
    summary = json.loads((out / "summary.json").read_text())
    for k, row in enumerate(summary["per_image"]):
        seed = DEFAULT_TEST_SEED + k
        pair = simulate_pair("widefield", "mitochondria", seed=seed, hr_shape=(128, 128), misregister=False)
        up = rescale(pair.lr.astype(float), 2, order=1, mode="edge", anti_aliasing=False, preserve_range=True)
        scores = score_image(up, pair.hr.astype(float))
        assert row["bilinear"]["psnr"] == pytest.approx(scores.psnr, rel=1e-6)
        assert row["bilinear"]["ssim"] == pytest.approx(scores.ssim, rel=1e-6)


def test_beads_get_fwhm_histograms(tmp_path):
    model = build_test_model(tmp_path / "conf.onnx", scale=1, input_pixel_size_um=0.03,
                             input_modality="confocal 1 AU", output_modality="STED")
    out = tmp_path / "beads"
    code = main(["evaluate", str(model), str(out), "--structure", "beads", "-n", "1", "--hr-size", "384",
                 "--examples", "1", "--search-size", "192", "--no-lr-search", "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_set"]["modality"] == "confocal-sted"  # read from the card
    fwhm = summary["fwhm"]
    assert set(fwhm) == {"input", "bilinear", "lucy-richardson", "nnls", "gan", "ground truth"}
    assert fwhm["ground truth"]["n_spots"] >= 2
    # STED ground truth is far sharper than the confocal input (~110 vs ~290 nm in the paper).
    assert fwhm["ground truth"]["median_fwhm_nm"] < 0.6 * fwhm["input"]["median_fwhm_nm"]
    assert fwhm["lucy-richardson"]["median_fwhm_nm"] < fwhm["input"]["median_fwhm_nm"]
    assert (out / "fwhm.png").is_file()
    assert "PSF FWHM" in (out / "report.md").read_text()


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    code = main(["evaluate", str(tmp_path / "missing.onnx"), str(tmp_path / "out"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srtrain evaluate: error:") and "missing.onnx" in err and "\n" not in err


def test_registered_pairs_from_a_directory(tmp_path):
    """OME-TIFF / OME-Zarr pairs written by the runtime's writer; calibration read from the files."""
    from srscope.runtime.io import Image, write_image
    from srscope.training.evaluation.testset import directory_pairs

    data = tmp_path / "pairs"
    data.mkdir()
    for seed in range(3):
        pair = simulate_pair("widefield", "actin", seed=seed, hr_shape=(128, 128), misregister=False)
        write_image(data / f"cell{seed}_lr.ome.tif", Image(pair.lr, "yx", (0.325, 0.325)))
        write_image(data / f"cell{seed}_hr.ome.zarr", Image(pair.hr, "yx", (0.1625, 0.1625)))
    pairs = directory_pairs(data, emission_wavelength_nm=630.0)
    assert [p.name for p in pairs] == ["cell0", "cell1", "cell2"]
    assert pairs[0].emission_wavelength_nm == 630.0
    assert pairs[0].scale == 2 and pairs[0].hr.shape == (128, 128)

    model = build_test_model(tmp_path / "gan.onnx", scale=2)
    out = tmp_path / "report"
    code = main(["evaluate", str(model), str(out), "--data", str(data), "--emission-nm", "630",
                 "--examples", "1", "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_set"]["validation_pair"].startswith("cell0")  # tuned on the pair left out
    assert summary["test_set"]["images"] == ["cell1", "cell2"]
    assert summary["test_set"]["lr_pixel_size_um"] == pytest.approx(0.325)
    assert "630 nm emission" in (out / "report.md").read_text()

    (data / "cell2_hr.ome.zarr").rename(data / "lonely_hr.ome.zarr")
    with pytest.raises(ValueError, match="no matching"):
        directory_pairs(data)
