"""The D-LinkNet augmentation recipe in albumentations, seeded per sample.

Official code (data.py), each with p = 0.5: HSV shift (hue +-30, sat +-5, val +-15),
shift/scale/aspect within +-0.1 with a constant 0 border, horizontal flip, vertical flip,
rot90. Pixels that the shift brings in from outside the image are marked invalid here
(the official code counted them as background).

``strong`` (``data.augment``) is for very small datasets, where the model memorises the
images: it widens the scale range to 0.75-1.33 (also covering other ground sample distances),
rotates by any angle (with flips and rot90), and adds brightness/contrast and a slight blur.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np


def train_transform(preset: str = "dlinknet", gray_prob: float = 0.0) -> A.Compose:
    """The augmentation pipeline (``dlinknet`` or ``strong``); call ``set_random_seed`` before each sample.

    ``gray_prob`` turns crops grey, so that panchromatic scenes (one band repeated) look familiar.
    """
    border = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": 0}
    if preset == "dlinknet":
        geometric = [
            A.Affine(scale={"x": (0.9, 1.1), "y": (0.9, 1.1)}, translate_percent=(-0.1, 0.1), p=0.5, **border)
        ]
        photometric = []
    elif preset == "strong":
        geometric = [
            A.Affine(scale=(0.75, 1.33), rotate=(-45, 45), translate_percent=(-0.1, 0.1), p=0.8, **border)
        ]
        photometric = [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.GaussianBlur(sigma_limit=(0.3, 1.0), p=0.2),
        ]
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}")
    return A.Compose(
        [
            A.HueSaturationValue(hue_shift_limit=30, sat_shift_limit=5, val_shift_limit=15, p=0.5),
            *photometric,
            *([A.ToGray(num_output_channels=3, p=gray_prob)] if gray_prob > 0 else []),
            *geometric,
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
        ],
        seed=0,
    )


def augment(
    tf: A.Compose, image: np.ndarray, mask: np.ndarray, valid: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``tf`` with a fixed seed to an HxWx3 image and its HxW mask and valid arrays."""
    tf.set_random_seed(seed)
    out = tf(image=image, masks=[mask, valid])
    return out["image"], out["masks"][0], out["masks"][1]
