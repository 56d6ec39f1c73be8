"""ONNX export and the ONNX Runtime backend: the same probabilities as PyTorch through the whole
predict pipeline (tiling, d4 TTA, GSD resampling) for the bundled model, dlinknet34 and an
official D-LinkNet .th, plus the metadata QGIS Deepness reads."""

import json

import numpy as np
import pytest
import rasterio
import torch
from test_checkpoint import _official_file

from roadseg import create_model, save_model
from roadseg.checkpoint import load_model
from roadseg.cli import main
from roadseg.errors import CheckpointError, InputError
from roadseg.inference.onnx_runtime import OnnxPredictor, read_info
from roadseg.inference.predict import PredictOptions, predict_raster
from roadseg.normalization import IMAGENET, OFFICIAL_DLINKNET
from roadseg.weights import default_checkpoint

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
TOLERANCE = 1e-4


def _spread(conv, model, scene, norm):
    """Random weights give nearly one probability everywhere: scale the last convolution and
    centre its logits on the scene, so a wrong channel or pixel would show."""
    with rasterio.open(scene) as ds:
        x = norm.apply(torch.from_numpy(ds.read()[:, :256, :256])[None])
    with torch.no_grad():
        conv.weight.mul_(300)
        conv.bias.zero_()
        conv.bias.sub_(model(x).median())


def _probs(scene, ckpt, out, **kw):
    kw = {"tile_size": 256, **kw}
    opts = PredictOptions(tta="d4", overlap=64, prob_dtype="float32", progress=False, **kw)
    predict_raster(scene, checkpoint=ckpt, prob_out=out, options=opts)
    with rasterio.open(out) as ds:
        return ds.read(1)


def _export(ckpt, out, *args):
    assert main(["export", str(ckpt), "--out", str(out), "-q", *args]) == 0
    return out


@pytest.mark.parametrize(
    "which",
    [
        "bundled",
        *(pytest.param(w, marks=pytest.mark.heavy) for w in ("dlinknet34", "official", "unetpp_lite0")),
    ],
)
def test_onnx_predicts_what_pytorch_predicts(which, tmp_path, paris_crop):
    if which == "bundled":
        ckpt = default_checkpoint()
    elif which == "unetpp_lite0":  # the nested decoder, pruned to level 3: fewer nodes exported
        torch.manual_seed(0)
        model = create_model("unetpp_lite0", level=3).eval()
        _spread(model.heads[2], model, paris_crop, model.encoder.normalization)
        ckpt = save_model(model, tmp_path / "upp.pt", gsd_m=0.5)
    elif which == "dlinknet34":
        torch.manual_seed(0)
        model = create_model("dlinknet34").eval()
        _spread(model.head[-1], model, paris_crop, IMAGENET)
        ckpt = save_model(model, tmp_path / "d34.pt", gsd_m=0.5)
    else:
        _, ckpt = _official_file(tmp_path)  # BGR input: the swap is inside the graph
        model, _ = load_model(ckpt)
        _spread(model.head[-1], model, paris_crop, OFFICIAL_DLINKNET)
        state = torch.load(ckpt, weights_only=True)
        state["module.finalconv3.weight"] = model.head[-1].weight.detach().clone()
        state["module.finalconv3.bias"] = model.head[-1].bias.detach().clone()
        torch.save(state, ckpt)
    onnx_path = _export(ckpt, tmp_path / "m.onnx", "--dynamic")
    torch_p = _probs(paris_crop, ckpt, tmp_path / "torch.tif")
    onnx_p = _probs(paris_crop, onnx_path, tmp_path / "onnx.tif")
    assert torch_p.std() > 0.02  # not a constant picture
    np.testing.assert_allclose(onnx_p, torch_p, atol=TOLERANCE, rtol=0)
    # roadseg's own metadata round-trips
    _, a = load_model(ckpt)
    b = read_info(onnx_path)
    assert (b.arch, b.gsd_m, b.threshold, b.in_channels) == (a.arch, a.gsd_m, a.threshold, a.in_channels)
    assert b.normalization.channel_order == "RGB"


@pytest.mark.heavy  # an ONNX export
def test_onnx_metadata_is_what_deepness_reads(tmp_path, capsys):
    onnx_path = _export(default_checkpoint(), tmp_path / "m.onnx")
    capsys.readouterr()
    assert main(["info", str(onnx_path)]) == 0
    shown = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.strip())
    _, info = load_model(default_checkpoint())
    assert shown["source"].strip() == "onnx" and shown["architecture"].strip() == info.arch
    assert int(shown["parameters"].replace(",", "")) > 1_000_000
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["model_type"] == "Segmentor" and meta["class_names"] == {"0": "road"}
    assert meta["resolution"] == pytest.approx(info.gsd_m * 100)  # cm per pixel
    assert (meta["tiles_size"], meta["tile_size"], meta["tiles_overlap"]) == (512, 512, 12)
    assert meta["seg_thresh"] == pytest.approx(info.threshold)
    assert meta["seg_small_segment"] == 0  # no 9 x 9 median filter in Deepness
    assert meta["standardization_mean"] == pytest.approx(list(info.normalization.mean))
    assert meta["standardization_std"] == pytest.approx(list(info.normalization.std))
    assert meta["roadseg"]["arch"] == info.arch
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "image" and out.name == "probability"
    # Deepness reads the tile size from the input: only the batch may be symbolic
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 512, 512]
    import onnx

    proto = onnx.load(str(onnx_path))
    # Deepness's onnxruntime (<= 1.17.0) reads IR versions up to 9
    assert proto.opset_import[0].version == 18 and proto.ir_version == 9


@pytest.mark.heavy  # an ONNX export
def test_fixed_size_onnx_predicts_what_pytorch_predicts(tmp_path, paris_crop):
    """The Deepness layout (one tile size, dynamic batch) through predict: the same tiles as
    PyTorch at that size, the same probabilities; another --tile-size is refused."""
    ckpt = default_checkpoint()
    onnx_path = _export(ckpt, tmp_path / "fixed.onnx", "--tile-size", "256")
    with pytest.raises(InputError, match="only 256-px tiles"):
        _probs(paris_crop, onnx_path, tmp_path / "x.tif", gsd="native", tile_size=512)
    assert not (tmp_path / "x.tif").exists()
    torch_p = _probs(paris_crop, ckpt, tmp_path / "torch.tif", gsd="native")
    onnx_p = _probs(paris_crop, onnx_path, tmp_path / "onnx.tif", gsd="native", tile_size=None)
    assert torch_p.std() > 0.02
    np.testing.assert_allclose(onnx_p, torch_p, atol=TOLERANCE, rtol=0)


def test_export_options_are_checked(tmp_path, capsys):
    for args, says in (
        (["--tile-size", "0"], "--tile-size must be a positive multiple of 32"),
        (["--tile-size", "500"], "--tile-size must be a positive multiple of 32"),
        (["--overlap", "-64"], "--overlap must be at least 0"),
        (["--overlap", "256"], "--overlap must be at least 0 and under half"),
    ):
        assert main(["export", "--out", str(tmp_path / "m.onnx"), *args]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


def test_onnx_errors(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path / "m.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(CheckpointError, match="no roadseg metadata"):
        read_info(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not an ONNX model"):
        OnnxPredictor(tmp_path / "junk.onnx")
    with pytest.raises(CheckpointError, match="is an ONNX file"):
        load_model(tmp_path / "junk.onnx")


def test_shipped_onnx_is_the_bundled_checkpoint(tmp_path, paris_crop):
    """predict runs roadseg/weights/default.onnx on a CPU: it must be default.pt, exported."""
    from roadseg.weights import default_onnx

    torch_p = _probs(paris_crop, default_checkpoint(), tmp_path / "torch.tif")
    onnx_p = _probs(paris_crop, default_onnx(), tmp_path / "onnx.tif")
    assert torch_p.std() > 0.02
    np.testing.assert_allclose(onnx_p, torch_p, atol=TOLERANCE, rtol=0)
    a, b = load_model(default_checkpoint())[1], read_info(default_onnx())
    assert (a.arch, a.gsd_m, a.threshold, a.normalization) == (b.arch, b.gsd_m, b.threshold, b.normalization)


@pytest.fixture(scope="module")
def dynamic_bundled():
    """The bundled model's shipped ONNX twin (dynamic size)."""
    from roadseg.weights import default_onnx

    return default_onnx()


def _with_meta(src, dst, **changes):
    """A copy of an exported file with roadseg's metadata changed (what a hand edit does)."""
    import onnx

    proto = onnx.load(src)
    for entry in proto.metadata_props:
        if entry.key == "roadseg":
            entry.value = json.dumps({**json.loads(entry.value), **changes})
    onnx.save(proto, dst)
    return dst


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"threshold": 7}, "threshold 7"),
        ({"gsd_m": -1}, "gsd_m -1"),
        ({"size_divisor": 0}, "size_divisor 0"),
        ({"in_channels": 4}, "takes 4"),
        ({"normalization": {"mean": [0.5], "std": [0.0]}}, "positive std"),
    ],
)
def test_onnx_metadata_is_validated_as_a_checkpoints_is(tmp_path, dynamic_bundled, changes, match):
    """The .pt path refuses these values; an ONNX file carrying them is refused the same way,
    before any scene is read (they ran before: threshold 7 wrote an empty mask, divisor 0
    raised ZeroDivisionError)."""
    bad = _with_meta(dynamic_bundled, tmp_path / "bad.onnx", **changes)
    with pytest.raises(CheckpointError, match=match):
        OnnxPredictor(bad)
    assert main(["info", str(bad)]) == 2


def test_an_identity_graph_with_our_metadata_is_no_road_model(tmp_path, dynamic_bundled):
    import onnx
    from onnx import TensorProto, helper

    meta = {e.key: e.value for e in onnx.load(dynamic_bundled).metadata_props}
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["probability"])],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    model = helper.make_model(graph)
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, tmp_path / "identity.onnx")
    with pytest.raises(CheckpointError, match="one probability out"):
        OnnxPredictor(tmp_path / "identity.onnx")


@pytest.mark.heavy  # an ONNX export
def test_export_says_two_lines_not_the_exporters_notes(tmp_path, capsys):
    """onnxscript/onnx_ir print ~70 graph-rewrite notes; without -v the user sees the check and
    what was written."""
    assert main(["export", "--out", str(tmp_path / "m.onnx"), "--tile-size", "256"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("ONNX export checked") and lines[1].startswith("wrote ")
