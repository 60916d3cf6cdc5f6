"""Smoke test of ``bench/bench_robustness.py --quick`` on two small real ONNX models.

The percentile-card model is equivariant to camera offset (the runtime maps each plane by its own
percentiles and maps the output back through the same affine), so with identical photon noise its
PSNR must not move along the offset axis; the fixed-card one (schema 1, one camera's mapping) sees
different network inputs at each offset, so its PSNR must move.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from srscope.runtime.card import IntensityRule
from srscope.runtime.synthetic import build_test_model

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_robustness", REPO / "bench" / "bench_robustness.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("robustness")
    pct = build_test_model(work / "pct.onnx", name="pct-test", intensity=IntensityRule("percentile", 1.0, 99.8))
    fixed = build_test_model(work / "fixed.onnx", name="fixed-test")
    out = work / "results"
    code = _bench().main(["--quick", "--quiet", "--out", str(out), "--model", f"pct={pct}",
                          "--model", f"fixed={fixed}"])
    assert code == 0
    return json.loads((out / "bench_robustness.json").read_text()), out


def test_json_layout(quick_run: tuple[dict, Path]) -> None:
    result, _ = quick_run
    for key in ("machine", "config", "methods", "models", "skipped_models", "care", "lucy_richardson", "axes",
                "summary", "png", "wall_s"):
        assert key in result, key
    assert result["machine"]["cpu"]
    assert result["config"]["quick"] is True and result["config"]["fields"] == 1
    assert result["methods"] == ["bilinear", "lucy-richardson-nominal", "lucy-richardson-exact", "pct", "fixed"]
    assert result["models"]["pct"]["intensity"]["mode"] == "percentile"
    assert result["models"]["fixed"]["intensity"]["mode"] == "fixed"
    assert result["models"]["pct"]["card_name"] == "pct-test"
    assert result["care"].startswith("not available:")
    lr = result["lucy_richardson"]
    assert lr["iterations"] >= 1 and lr["damping"] >= 0 and lr["grid"]
    assert not set(lr["validation_seeds"]) & set(range(result["config"]["test_seeds"][0],
                                                       result["config"]["test_seeds"][1] + 1))

    assert set(result["axes"]) == {"photons", "offset", "gain", "na", "wavelength", "pixel_size", "structure",
                                   "semireal"}
    for axis, entry in result["axes"].items():
        if axis == "semireal" and not entry["settings"]:
            assert entry["note"].startswith("not available")
            continue
        assert len(entry["settings"]) == (1 if axis == "semireal" else 2), axis
        for setting in entry["settings"]:
            methods = setting["methods"]
            assert set(methods) == set(result["methods"]), (axis, setting["label"])
            assert methods["bilinear"]["gain_over_bilinear_db"] == 0.0
            assert methods["lucy-richardson-nominal"]["gain_over_lr_nominal_db"] == 0.0
            for m in methods.values():
                assert 5.0 < m["psnr"] < 80.0 and -1.0 <= m["ssim"] <= 1.0
                assert len(m["fields"]) == 1
                assert {"psnr", "ssim", "gain_over_bilinear_db", "gain_over_lr_nominal_db"} <= set(m["fields"][0])
                assert {"gain_over_bilinear_ssim", "gain_over_lr_nominal_ssim"} <= set(m)
    assert [s["value"] for s in result["axes"]["offset"]["settings"]] == [0.0, 1000.0]
    # the exact PSF differs from the nominal one only where the optics were jittered
    na = result["axes"]["na"]["settings"][0]["methods"]
    assert na["lucy-richardson-exact"]["psnr"] != na["lucy-richardson-nominal"]["psnr"]
    off = result["axes"]["offset"]["settings"][0]["methods"]
    assert off["lucy-richardson-exact"]["psnr"] == off["lucy-richardson-nominal"]["psnr"]


def test_offset_equivariance_shows_in_psnr(quick_run: tuple[dict, Path]) -> None:
    summary = quick_run[0]["summary"]
    for m in ("pct", "fixed", "bilinear", "lucy-richardson-nominal"):
        assert {"min_gain_over_bilinear_db", "min_gain_setting", "offset_psnr_spread_db", "psnr_spread_db"} <= set(
            summary[m])
    pct = summary["pct"]["offset_psnr_spread_db"]
    fixed = summary["fixed"]["offset_psnr_spread_db"]
    assert pct <= 0.1
    assert summary["pct"]["offset_spread_within_0.1_db"] is True
    assert fixed > pct + 0.05, (pct, fixed)
    # baselines are offset-equivariant too (known background subtracted, affine-fitted scores)
    assert summary["bilinear"]["offset_psnr_spread_db"] <= 1e-3
    assert summary["lucy-richardson-nominal"]["offset_psnr_spread_db"] <= 1e-3


def test_png_written(quick_run: tuple[dict, Path]) -> None:
    result, out = quick_run
    png = out / "bench_robustness.png"
    assert Path(result["png"]) == png
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_missing_default_model_is_skipped_and_bad_explicit_one_fails(tmp_path: Path, capsys) -> None:
    bench = _bench()
    models, skipped = bench.load_models([("v3.0", tmp_path / "absent.onnx", False)], tile=512, threads=1)
    assert models == [] and skipped["v3.0"].startswith("skipped:")
    code = bench.main(["--quick", "--quiet", "--out", str(tmp_path), "--model", f"x={tmp_path / 'absent.onnx'}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("bench_robustness: error:") and "\n" not in err
