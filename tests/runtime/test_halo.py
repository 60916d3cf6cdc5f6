"""Halo calibration on a real ONNX graph: the chosen halo reproduces whole-image output."""

import numpy as np
from srscope.runtime import read_card
from srscope.runtime.enhancer import Enhancer
from srscope.runtime.halo import (
    calibrate_halo,
    calibration_images,
    psnr_db,
    write_calibrated_card,
)
from srscope.runtime.synthetic import build_test_model, test_model_halo


def test_calibrated_halo_is_written_and_reproduces_whole_image_output(tmp_path):
    path = build_test_model(tmp_path / "m.onnx", scale=2)
    rf = test_model_halo(2)
    calibration = calibrate_halo(path, receptive_field_px=rf)
    assert 0 < calibration.halo_px <= rf
    assert calibration.psnr_db_by_halo[calibration.halo_px] >= calibration.target_psnr_db

    card = write_calibrated_card(path, calibration)
    reread = read_card(path)  # verifies the weights checksum: only metadata changed
    assert reread.halo_px == card.halo_px == calibration.halo_px
    assert reread.receptive_field_px == rf

    image = calibration_images(reread, 192)[1]
    whole = Enhancer.from_file(path, tile=None).enhance(image)
    tiled = Enhancer.from_file(path, tile=64).enhance(image)
    assert psnr_db(whole, tiled) >= 50.0


def test_psnr_is_infinite_only_for_identical_images():
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert psnr_db(a, a) == float("inf")
    assert np.isfinite(psnr_db(a, a + 0.01))
