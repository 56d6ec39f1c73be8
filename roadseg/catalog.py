"""The architectures roadseg builds, as data: names, one-line descriptions and parameter counts
at default arguments (3 input channels, 1 class).

A leaf module without torch, so ``roadseg models`` answers at once; ``models.registry`` builds
them and a test checks every count here against the built model.
"""

from __future__ import annotations

#: name -> (description, parameters at default arguments)
ARCHITECTURES: dict[str, tuple[str, int]] = {
    "dlinknet101": (
        "D-LinkNet, ResNet101 encoder, dilated center (DeepGlobe 2018 winner's design)",
        236637217,
    ),
    "dlinknet18": ("D-LinkNet, ResNet18 encoder, dilated center (DeepGlobe 2018 winner's design)", 20987969),
    "dlinknet34": ("D-LinkNet, ResNet34 encoder, dilated center (DeepGlobe 2018 winner's design)", 31096129),
    "dlinknet50": ("D-LinkNet, ResNet50 encoder, dilated center (DeepGlobe 2018 winner's design)", 217645089),
    "dlinknet_lite0": (
        "D-LinkNet, EfficientNet-Lite0 encoder, dilated center (DeepGlobe 2018 winner's design)",
        6783449,
    ),
    "dlinknet_lite1": (
        "D-LinkNet, EfficientNet-Lite1 encoder, dilated center (DeepGlobe 2018 winner's design)",
        7548121,
    ),
    "dlinknet_lite2": (
        "D-LinkNet, EfficientNet-Lite2 encoder, dilated center (DeepGlobe 2018 winner's design)",
        8976761,
    ),
    "linknet101": ("LinkNet, ResNet101 encoder (D-LinkNet without its center)", 47883297),
    "linknet18": ("LinkNet, ResNet18 encoder (D-LinkNet without its center)", 11548737),
    "linknet34": ("LinkNet, ResNet34 encoder (D-LinkNet without its center)", 21656897),
    "linknet50": ("LinkNet, ResNet50 encoder (D-LinkNet without its center)", 28891169),
    "linknet_lite0": ("LinkNet, EfficientNet-Lite0 encoder (D-LinkNet without its center)", 3095769),
    "linknet_lite1": ("LinkNet, EfficientNet-Lite1 encoder (D-LinkNet without its center)", 3860441),
    "linknet_lite2": ("LinkNet, EfficientNet-Lite2 encoder (D-LinkNet without its center)", 4514809),
    "resunet34": ("U-Net decoder on a ResNet34 encoder (SpaceNet-3 winners)", 24521697),
    "unetpp101": (
        "UNet++, ResNet101 encoder: nested dense skips, deep supervision, prunable (Zhou et al. 2018)",
        43379524,
    ),
    "unetpp18": (
        "UNet++, ResNet18 encoder: nested dense skips, deep supervision, prunable (Zhou et al. 2018)",
        11736388,
    ),
    "unetpp34": (
        "UNet++, ResNet34 encoder: nested dense skips, deep supervision, prunable (Zhou et al. 2018)",
        21844548,
    ),
    "unetpp50": (
        "UNet++, ResNet50 encoder: nested dense skips, deep supervision, prunable (Zhou et al. 2018)",
        24387396,
    ),
    "unetpp_lite0": (
        "UNet++, EfficientNet-Lite0 encoder: nested dense skips, deep supervision, prunable (Zhou et al. 2018)",
        3100388,
    ),
    "unetpp_lite1": (
        "UNet++, EfficientNet-Lite1 encoder: nested dense skips, deep supervision, prunable (Zhou et al. 2018)",
        3865060,
    ),
    "unetpp_lite2": (
        "UNet++, EfficientNet-Lite2 encoder: nested dense skips, deep supervision, prunable (Zhou et al. 2018)",
        4519268,
    ),
    "unet": ("classic U-Net, kwargs depth (4) and base_channels (64), trained from scratch", 31037633),
}
