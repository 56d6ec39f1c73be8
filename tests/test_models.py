import hashlib
import subprocess
import sys
import urllib.error

import pytest
import torch
import torchvision

import roadseg
from roadseg.catalog import ARCHITECTURES
from roadseg.errors import InputError, WeightsUnavailableError
from roadseg.models import Architecture, count_parameters, create_model, list_models
from roadseg.models.encoders import resnet as encoders

# Measured once and pinned: a change to any architecture shows up here.
PARAMS = {
    "dlinknet18": 20_987_969,
    "dlinknet34": 31_096_129,
    "dlinknet50": 217_645_089,
    "dlinknet101": 236_637_217,
    "linknet18": 11_548_737,
    "linknet34": 21_656_897,
    "linknet50": 28_891_169,
    "linknet101": 47_883_297,
    "resunet34": 24_521_697,
    "unet": 31_037_633,
    "dlinknet_lite0": 6_783_449,
    "linknet_lite0": 3_095_769,
    "dlinknet_lite1": 7_548_121,
    "linknet_lite1": 3_860_441,
    "dlinknet_lite2": 8_976_761,
    "linknet_lite2": 4_514_809,
    "unetpp18": 11_736_388,
    "unetpp34": 21_844_548,
    "unetpp50": 24_387_396,
    "unetpp101": 43_379_524,
    "unetpp_lite0": 3_100_388,
    "unetpp_lite1": 3_865_060,
    "unetpp_lite2": 4_519_268,
}


def test_registry_lists_every_model():
    assert set(list_models()) == set(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    assert count_parameters(create_model(name)) == PARAMS[name]
    assert ARCHITECTURES[name][1] == PARAMS[name]  # what `roadseg models` prints without building


def test_models_and_version_answer_without_torch():
    code = (
        "import sys; from roadseg.cli import main; "
        "assert main(['models']) == 0 and main(['--version']) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dlinknet_lite0" in out.stdout and "roadseg 0." in out.stdout


def test_dlinknet34_matches_paper_size():
    assert round(count_parameters(create_model("dlinknet34")) / 1e6, 2) == 31.10


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_shapes_return_logits(name, size):
    torch.manual_seed(0)
    model = create_model(name, classes=2).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 2, *size)
    # logits: sigmoid belongs to inference and losses
    assert not any(isinstance(m, (torch.nn.Sigmoid, torch.nn.Softmax)) for m in model.modules())


def test_unetpp_deep_supervision_and_pruning():
    """Training returns one logits map per head X[0][1..4]; a model pruned to level L (same
    weights) answers what head L answers, computing only the nodes i + j <= L."""
    torch.manual_seed(0)
    full = create_model("unetpp_lite0")
    x = torch.randn(2, 3, 64, 96)
    full.train()
    for m in full.modules():  # batch statistics aside, training and inference agree
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        heads = full(x)
    assert isinstance(heads, list) and [h.shape for h in heads] == [(2, 1, 64, 96)] * 4
    assert not torch.allclose(heads[0], heads[3])
    for level in (1, 2, 4):
        pruned = create_model("unetpp_lite0", level=level).eval()
        pruned.load_state_dict(full.state_dict())  # pruning drops computation, not weights
        ran = []
        for row in pruned.nodes:
            for node in row:
                node.register_forward_hook(lambda *_, seen=ran: seen.append(1))
        with torch.no_grad():
            torch.testing.assert_close(pruned(x), heads[level - 1])
        assert len(ran) == level * (level + 1) // 2  # X[0][1..L], X[1][1..L-1], ...
    with pytest.raises(InputError, match=r"level must be 1\.\.4"):
        create_model("unetpp_lite0", level=5)


def test_dlinknet_is_linknet_plus_center():
    d = create_model("dlinknet34")
    lk = create_model("linknet34")
    d_keys = {k for k in d.state_dict() if not k.startswith("center.")}
    assert d_keys == set(lk.state_dict())
    assert len(d.center.convs) == 4
    assert [c.dilation[0] for c in d.center.convs] == [1, 2, 4, 8]
    assert [c.dilation[0] for c in create_model("dlinknet50").center.convs] == [1, 2, 4, 8, 16]
    assert all(float(c.bias.detach().abs().sum()) == 0 for c in d.center.convs)


def test_center_sums_input_and_every_stage():
    from roadseg.models.blocks import DilatedCenter

    torch.manual_seed(0)
    block = DilatedCenter(8, (1, 2))
    x = torch.randn(1, 8, 8, 8)
    d1 = torch.relu(block.convs[0](x))
    d2 = torch.relu(block.convs[1](d1))
    assert torch.allclose(block(x), x + d1 + d2)


def test_unet_kwargs():
    m = create_model("unet", depth=2, base_channels=8).eval()
    assert m.size_divisor == 4
    with torch.no_grad():
        assert m(torch.randn(1, 3, 20, 12)).shape == (1, 1, 20, 12)


def test_unknown_name_lists_valid_names():
    with pytest.raises(InputError, match="valid names: dlinknet101, dlinknet18"):
        create_model("deeplab")


def test_bad_input_size_names_nearest_valid():
    model = create_model("linknet18").eval()
    with pytest.raises(InputError, match=r"100x70 is not a multiple of 32; the nearest valid size is 96x64"):
        model(torch.randn(1, 3, 100, 70))


def test_in_channels_adapts_pretrained_first_conv(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    m4 = create_model("linknet18", in_channels=4, encoder_weights=path)
    w = ref.conv1.weight.detach()
    got = m4.encoder.conv1.weight.detach()
    assert got.shape == (64, 4, 7, 7)
    assert torch.allclose(got[:, 3], w[:, 0] * 3 / 4)
    assert torch.allclose(got[:, 1], w[:, 1] * 3 / 4)
    m1 = create_model("dlinknet18", in_channels=1, encoder_weights=path)
    assert torch.allclose(m1.encoder.conv1.weight[:, 0], w.sum(1))
    # the rest of the encoder is the pretrained one
    assert torch.equal(m1.encoder.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    with torch.no_grad():
        assert m1.eval()(torch.randn(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_imagenet_weights_offline_error_names_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        create_model("dlinknet34", encoder_weights="imagenet")
    msg = str(info.value)
    assert "resnet34-b627a593.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth") in msg
    assert "encoder_weights=/path/to/resnet34-b627a593.pth" in msg
    assert "\n" not in msg


def test_imagenet_weights_load_from_torch_cache(tmp_path, monkeypatch):
    """With the file in the torch hub cache, 'imagenet' loads it through torchvision's API."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    ref = torchvision.models.resnet18(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    torch.save(ref.state_dict(), cached)
    # a stand-in for the official file: its own hash plays the official one
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(encoders, "official_hash_prefix", lambda url: digest)
    m = create_model("linknet18", encoder_weights="imagenet")
    assert torch.equal(m.encoder.conv1.weight, ref.conv1.weight)


def test_official_weights_file_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    state = torchvision.models.resnet18(weights=None).state_dict()
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    torch.save(state, cached)  # right name, wrong bytes: as a corrupted download
    with pytest.raises(
        InputError, match=r"SHA-256 starts with [0-9a-f]{8}, not f37072fd: the file is corrupt"
    ):
        create_model("linknet18", encoder_weights="imagenet")
    with pytest.raises(InputError, match="not f37072fd"):
        create_model("linknet18", encoder_weights=cached)
    assert encoders.official_hash_prefix(torchvision.models.ResNet34_Weights.IMAGENET1K_V1.url) == "b627a593"
    # the user's own encoder file, under another name, is not checked
    own = tmp_path / "my_resnet18.pth"
    own.write_bytes(cached.read_bytes())
    assert torch.equal(
        create_model("linknet18", encoder_weights=own).encoder.conv1.weight, state["conv1.weight"]
    )


def test_missing_encoder_weights_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        create_model("linknet18", encoder_weights=tmp_path / "nope.pth")


def test_public_api():
    assert roadseg.create_model("linknet18", classes=2).architecture == Architecture(
        "linknet18", {"classes": 2}
    )
    assert callable(roadseg.load_model) and callable(roadseg.save_model)
