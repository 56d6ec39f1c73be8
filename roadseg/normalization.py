"""How pixel values become model input, recorded in every checkpoint.

``x_model = (x[order] / scale - mean) / std`` per channel. The official D-LinkNet scaling
``x / 255 * 3.2 - 1.6`` on BGR is the special case mean 0.5, std 0.3125, order BGR.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from roadseg.errors import CheckpointError

ChannelOrder = Literal["RGB", "BGR"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine normalization applied to 8-bit input."""

    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channel_order: ChannelOrder = "RGB"
    scale: float = 255.0

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise CheckpointError(
                f"normalization needs one positive std per mean, got mean={self.mean} std={self.std}"
            )
        if self.channel_order not in ("RGB", "BGR"):
            raise CheckpointError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")

    def apply(self, x: Any) -> Any:
        """Normalize a ``(N, C, H, W)`` batch of raw (0..scale) values given in RGB order: a
        torch tensor (on its device) or a numpy array (float32 out, for ONNX Runtime)."""
        c = x.shape[1]
        if self.channel_order == "BGR" and c >= 3:
            x = x[:, [2, 1, 0, *range(3, c)]]
        if len(self.mean) not in (1, c):
            raise CheckpointError(
                f"normalization has {len(self.mean)} channel(s) but the input has {c}; "
                "select matching bands with --bands"
            )
        if isinstance(x, np.ndarray):
            mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
            std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
            return (x.astype(np.float32) / np.float32(self.scale) - mean) / std
        import torch

        mean_t = torch.tensor(self.mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(self.std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
        return (x.float() / self.scale - mean_t) / std_t

    def describe(self) -> str:
        """Human-readable form, naming the official D-LinkNet scaling when that is what it is."""
        if self == OFFICIAL_DLINKNET:
            return "official D-LinkNet: BGR, x/255*3.2-1.6"
        return f"{self.channel_order}, (x/{self.scale:g} - mean {list(self.mean)}) / std {list(self.std)}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        try:
            return cls(
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                channel_order=d.get("channel_order", "RGB"),
                scale=float(d.get("scale", 255.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint normalization is malformed ({exc}): {d!r}") from None


IMAGENET = Normalization()
OFFICIAL_DLINKNET = Normalization(mean=(0.5, 0.5, 0.5), std=(0.3125, 0.3125, 0.3125), channel_order="BGR")
