"""BioImage Model Zoo export (``srscope-bmz``): the package passes bioimageio.core's own tests and
its blockwise prediction reproduces srscope's whole-image output."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("bioimageio.core")

from bioimageio.core import predict
from bioimageio.core import test_model as bmz_test_model
from bioimageio.spec import load_description
from bioimageio.spec.model import v0_5
from srscope.runtime.bmz import (
    bmz_halo,
    bmz_min_size,
    bmz_name,
    export_bmz,
    main,
    wrap_graph,
)
from srscope.runtime.card import IntensityRule, ModelCardError, read_card
from srscope.runtime.enhancer import Enhancer
from srscope.runtime.halo import psnr_db
from srscope.runtime.intensity import percentile_affine
from srscope.runtime.synthetic import build_test_model, structured_image

REPO = Path(__file__).resolve().parents[2]
PERCENTILE = IntensityRule("percentile", 1.0, 99.8)
# A dotted card name, as the shipped models have: BMZ names may not contain dots.
DOTTED_NAME = "test-10x0.4-to-20x0.75"


def _failures(summary: object) -> list[tuple[str, list[str]]]:
    return [(d.name, [e.msg[:500] for e in d.errors]) for d in summary.details if d.status == "failed"]


def _load(package: Path) -> v0_5.ModelDescr:
    descr = load_description(package, perform_io_checks=True)
    assert isinstance(descr, v0_5.ModelDescr), descr.validation_summary.display() or descr
    return descr


def _enhancer(model: Path) -> Enhancer:
    return Enhancer.from_file(model, device="cpu", tile=None, intra_op_threads=1)


@pytest.fixture(scope="module")
def percentile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("bmz") / "pct.onnx", name=DOTTED_NAME, intensity=PERCENTILE)


@pytest.fixture(scope="module")
def percentile_package(percentile_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bmz(percentile_model, tmp_path_factory.mktemp("bmz") / "pct.zip")


def test_bioimageio_test_model_passes(percentile_package: Path) -> None:
    summary = bmz_test_model(str(percentile_package))
    assert summary.status == "passed", _failures(summary)


#: Every model srscope ships (models/, not models/legacy/): each must package and pass BMZ's own test.
SHIPPED = sorted(p.relative_to(REPO / "models").as_posix() for p in (REPO / "models").rglob("*.onnx")
                 if "legacy" not in p.relative_to(REPO / "models").parts)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_passes_bioimageio_test(name: str, tmp_path: Path) -> None:
    model = REPO / "models" / name
    package = export_bmz(model, tmp_path / "shipped.zip")
    summary = bmz_test_model(str(package))
    assert summary.status == "passed", (name, _failures(summary))
    assert "." not in _load(package).name


def test_blockwise_prediction_matches_srscope_whole_image(percentile_model: Path, percentile_package: Path) -> None:
    image = structured_image((1024, 1000), seed=5)  # uint16 counts
    result = predict(model=_load(percentile_package), inputs=image[None, None],
                     input_block_shape={"input": {"y": 256, "x": 256}})
    out = result.members["output"].data.to_numpy()
    assert out.shape == (1, 1, 2048, 2000) and out.dtype == np.float32
    # The package outputs input-normalised units; map srscope's counts into them to compare.
    mapping = percentile_affine(image, PERCENTILE.low, PERCENTILE.high)
    reference = mapping.normalise(_enhancer(percentile_model).enhance(image))
    assert psnr_db(reference, out[0, 0]) >= 50.0


def test_rdf_validates_and_describes_the_card(percentile_model: Path, percentile_package: Path) -> None:
    card = read_card(percentile_model)
    descr = _load(percentile_package)
    assert descr.validation_summary.status in ("valid-format", "passed")
    assert descr.name == bmz_name(DOTTED_NAME) == "test-10x0p4-to-20x0p75" and "." not in descr.name
    assert str(descr.license) == "BSD-3-Clause"
    assert any(str(c.doi) == "10.1038/s41592-018-0239-0" for c in descr.cite)
    assert descr.weights.onnx is not None and descr.weights.onnx.opset_version == 17

    (ipt,), (out,) = descr.inputs, descr.outputs
    assert [a.id for a in ipt.axes] == ["batch", "channel", "y", "x"]
    y_in = ipt.axes[2]
    assert isinstance(y_in.size, v0_5.ParameterizedSize)
    assert y_in.size.step == card.size_multiple and y_in.size.min == bmz_min_size(card)
    assert y_in.size.min % card.size_multiple == 0
    y_out = out.axes[2]
    assert isinstance(y_out, v0_5.SpaceOutputAxisWithHalo)
    assert y_out.halo == bmz_halo(card) * card.integer_scale
    assert y_out.size.get_size(y_out, y_in, n=3) == card.integer_scale * y_in.size.get_size(3)
    assert ipt.data.type == out.data.type == "float32"

    pre = [p.id for p in ipt.preprocessing]
    assert pre == ["ensure_dtype", "scale_range", "ensure_dtype"]
    kwargs = ipt.preprocessing[1].kwargs
    assert (kwargs.min_percentile, kwargs.max_percentile) == (PERCENTILE.low, PERCENTILE.high)
    assert list(kwargs.axes) == ["y", "x"] and kwargs.reference_tensor is None
    # BMZ cannot map back through the input's affine: the output stays normalised, and says so.
    assert [p.id for p in out.postprocessing] == ["ensure_dtype"]
    assert "normalised" in descr.description and "normalised" in out.description

    with zipfile.ZipFile(percentile_package) as zf:
        readme = zf.read("README.md").decode()
        card_json = json.loads(zf.read("srscope-card.json"))
        cover = zf.read(str(descr.covers[0].source.path))
    assert "## Validation" in readme and "input-normalised" in readme and "Not trained" in readme
    assert card_json["weights_sha256"] == card.weights_sha256
    assert cover[:8] == b"\x89PNG\r\n\x1a\n"
    import imageio.v3 as iio

    height, width = iio.imread(cover).shape[:2]
    assert width == 2 * height  # input | output side by side, BMZ's recommended 2:1


def test_uint16_input_runs_through_float32_declaration(percentile_model: Path, percentile_package: Path) -> None:
    card = read_card(percentile_model)
    side = bmz_min_size(card) + 4 * card.size_multiple
    image = structured_image((side, side), seed=9)
    assert image.dtype == np.uint16
    out = predict(model=_load(percentile_package), inputs=image[None, None]).members["output"].data.to_numpy()
    assert out.dtype == np.float32 and out.shape == (1, 1, 2 * side, 2 * side)
    reference = percentile_affine(image, PERCENTILE.low, PERCENTILE.high).normalise(_enhancer(percentile_model)
                                                                                     .enhance(image))
    # Whole-image prediction: bioimageio.core takes the percentiles after padding by the halo.
    assert psnr_db(reference, out[0, 0]) >= 40.0


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_fixed_card_package_passes_and_outputs_counts(tmp_path: Path, precision: str) -> None:
    model = build_test_model(tmp_path / "fixed.onnx", precision=precision, halo_px=3)
    card = read_card(model)
    package = export_bmz(model, tmp_path / "fixed.zip")
    summary = bmz_test_model(str(package))
    assert summary.status == "passed", _failures(summary)
    descr = _load(package)
    (ipt,), (out,) = descr.inputs, descr.outputs
    norm, gain = ipt.preprocessing[1], out.postprocessing[0]
    assert norm.id == "fixed_zero_mean_unit_variance"
    assert (norm.kwargs.mean, norm.kwargs.std) == (card.normalization.offset, card.normalization.scale)
    assert gain.id == "scale_linear"
    assert (gain.kwargs.gain, gain.kwargs.offset) == (card.denormalization.scale, card.denormalization.offset)
    # halo_px 3 is rounded up to the size multiple 4 so that blocks stay on the pooling grid.
    assert out.axes[2].halo == 4 * card.integer_scale
    with zipfile.ZipFile(package) as zf:
        weights = onnx.load_from_string(zf.read(str(descr.weights.onnx.source.path)))
    types = {v.type.tensor_type.elem_type for v in (*weights.graph.input, *weights.graph.output)}
    assert types == {onnx.TensorProto.FLOAT}  # format 0.5 has no float16: fp16 runs inside float32 I/O


@pytest.mark.parametrize("shape", [(61, 97), (64, 72)])
def test_wrapped_graph_equals_enhancer_whole_image(percentile_model: Path, shape: tuple[int, int]) -> None:
    card = read_card(percentile_model)
    wrapped = wrap_graph(onnx.load(str(percentile_model)), card)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(wrapped.SerializeToString(), options, providers=["CPUExecutionProvider"])
    image = structured_image(shape, seed=2)
    outputs, mappings = _enhancer(percentile_model).enhance_many_with_mappings([image])
    got = session.run(None, {session.get_inputs()[0].name: mappings[0].normalise(image)[None, None]})[0][0, 0]
    np.testing.assert_allclose(got, mappings[0].normalise(outputs[0]), atol=1e-5)
    # The wrapped file pads itself: srscope must not take it for a native model and pad twice.
    with pytest.raises(ModelCardError):
        read_card(wrapped)


def test_cli(percentile_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(percentile_model), str(tmp_path / "cli.zip")]) == 0
    assert (tmp_path / "cli.zip").is_file()
    assert main([str(tmp_path / "missing.onnx"), str(tmp_path / "x.zip")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srscope-bmz: error:") and "\n" not in err
