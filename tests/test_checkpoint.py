import os
import pickle

import pytest
import torch
import torchvision
from torch import nn

import roadseg
from roadseg.errors import CheckpointError
from roadseg.normalization import IMAGENET, OFFICIAL_DLINKNET, Normalization


# --- an independent copy of the official DinkNet34 layout (names as in the released file) ----
class _OfficialDecoderBlock(nn.Module):
    def __init__(self, in_channels, n_filters):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels // 4, 1)
        self.norm1 = nn.BatchNorm2d(in_channels // 4)
        self.deconv2 = nn.ConvTranspose2d(
            in_channels // 4, in_channels // 4, 3, stride=2, padding=1, output_padding=1
        )
        self.norm2 = nn.BatchNorm2d(in_channels // 4)
        self.conv3 = nn.Conv2d(in_channels // 4, n_filters, 1)
        self.norm3 = nn.BatchNorm2d(n_filters)

    def forward(self, x):
        x = torch.relu(self.norm1(self.conv1(x)))
        x = torch.relu(self.norm2(self.deconv2(x)))
        return torch.relu(self.norm3(self.conv3(x)))


class _OfficialDblock(nn.Module):
    def __init__(self, channel):
        super().__init__()
        for i, d in enumerate((1, 2, 4, 8), start=1):
            setattr(self, f"dilate{i}", nn.Conv2d(channel, channel, 3, dilation=d, padding=d))

    def forward(self, x):
        d1 = torch.relu(self.dilate1(x))
        d2 = torch.relu(self.dilate2(d1))
        d3 = torch.relu(self.dilate3(d2))
        d4 = torch.relu(self.dilate4(d3))
        return x + d1 + d2 + d3 + d4


class _OfficialDinkNet34(nn.Module):
    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet34(weights=None)
        self.firstconv, self.firstbn = resnet.conv1, resnet.bn1
        self.firstmaxpool = resnet.maxpool
        self.encoder1, self.encoder2 = resnet.layer1, resnet.layer2
        self.encoder3, self.encoder4 = resnet.layer3, resnet.layer4
        self.dblock = _OfficialDblock(512)
        self.decoder4 = _OfficialDecoderBlock(512, 256)
        self.decoder3 = _OfficialDecoderBlock(256, 128)
        self.decoder2 = _OfficialDecoderBlock(128, 64)
        self.decoder1 = _OfficialDecoderBlock(64, 64)
        self.finaldeconv1 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.finalconv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.finalconv3 = nn.Conv2d(32, 1, 3, padding=1)

    def forward(self, x):
        x = self.firstmaxpool(torch.relu(self.firstbn(self.firstconv(x))))
        e1 = self.encoder1(x)
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        e4 = self.dblock(self.encoder4(e3))
        d4 = self.decoder4(e4) + e3
        d3 = self.decoder3(d4) + e2
        d2 = self.decoder2(d3) + e1
        d1 = self.decoder1(d2)
        out = torch.relu(self.finaldeconv1(d1))
        out = torch.relu(self.finalconv2(out))
        return torch.sigmoid(self.finalconv3(out))


def _official_file(tmp_path):
    torch.manual_seed(0)
    net = _OfficialDinkNet34()
    with torch.no_grad():  # non-trivial BN statistics so a mis-mapped buffer would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.01, 0.01)
    state = {
        f"module.{k}": v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")
    }  # nn.DataParallel prefix; PyTorch 0.2 had no num_batches_tracked
    path = tmp_path / "log01_dink34.th"
    torch.save(state, path)
    return net.eval(), path


def test_official_dlinknet_weights_compute_the_same_function(tmp_path):
    official, path = _official_file(tmp_path)
    model, info = roadseg.load_model(path)
    assert info.arch == "dlinknet34"
    assert info.normalization == OFFICIAL_DLINKNET
    assert info.normalization.channel_order == "BGR"
    assert info.gsd_m == 0.5 and info.threshold == 0.5
    assert not model.training
    torch.manual_seed(1)
    x = torch.rand(2, 3, 128, 96) * 3.2 - 1.6
    with torch.no_grad():
        ours = torch.sigmoid(model(x))
        ref = official(x)
    diff = float((ours - ref).abs().max())
    print(f"official equivalence: max |sigmoid diff| = {diff:.3e}")
    assert diff < 1e-5


def test_official_preprocessing_is_bgr_affine():
    rgb = torch.tensor([[[[10.0]], [[100.0]], [[200.0]]]])
    out = OFFICIAL_DLINKNET.apply(rgb)
    expected = torch.tensor([200.0, 100.0, 10.0]) / 255 * 3.2 - 1.6
    assert torch.allclose(out.flatten(), expected, atol=1e-6)


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = roadseg.create_model("linknet18", in_channels=4)
    norm = Normalization(mean=(0.1, 0.2, 0.3, 0.4), std=(0.5, 0.5, 0.5, 0.5))
    path = roadseg.save_model(
        model, tmp_path / "m.pt", normalization=norm, gsd_m=0.3, threshold=0.42, epochs=7
    )
    loaded, info = roadseg.load_model(path)
    assert info.arch == "linknet18" and info.in_channels == 4
    assert info.normalization == norm and info.gsd_m == 0.3 and info.threshold == 0.42
    assert info.meta == {"epochs": 7}
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not loaded.training
    assert not list(tmp_path.glob(".*part*")), "temporary file left behind"


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    model = roadseg.create_model("linknet18")
    target = tmp_path / "m.pt"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        roadseg.save_model(model, target)
    assert list(tmp_path.iterdir()) == []


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('ROADSEG_PWNED', '/tmp/roadseg_pwned')}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("ROADSEG_PWNED", str(marker))
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "roadseg-checkpoint", "payload": _Evil()}, f)
    with (
        pytest.warns(UserWarning, match="pickle protocol"),
        pytest.raises(CheckpointError, match="never executed") as info,
    ):
        roadseg.load_model(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        (b"this is not a checkpoint", "cannot load checkpoint"),
        (bytes(range(218, 256)) * 30, "neither a PyTorch zip archive nor a pickle"),  # random-looking bytes
    ],
)
def test_corrupt_files(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        roadseg.load_model(path)


def test_truncated_file(tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "trunc.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError, match=r"cannot load checkpoint .*zip archive is damaged or truncated"
    ):
        roadseg.load_model(path)


def test_foreign_files(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        roadseg.load_model(tmp_path / "list.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a roadseg checkpoint nor an official D-LinkNet"):
        roadseg.load_model(tmp_path / "other.pt")


def test_mismatched_state_dict(tmp_path):
    model = roadseg.create_model("linknet18")
    path = roadseg.save_model(model, tmp_path / "m.pt", arch="linknet34", arch_kwargs={})
    with pytest.raises(CheckpointError, match="does not fit architecture linknet34"):
        roadseg.load_model(path)


def test_default_normalization_is_imagenet(tiny_checkpoint):
    _, info = roadseg.load_model(tiny_checkpoint)
    assert info.normalization == IMAGENET
