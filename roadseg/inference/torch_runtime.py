"""PyTorch models behind the :class:`~roadseg.inference.runtime.Predictor` interface.

BatchNorm is folded into the convolutions, the model sits on its device (channels_last where
that is faster, cudnn autotuning on CUDA), tiles are normalized and turned by TTA on the
device, and a CUDA out-of-memory error halves the images per pass and retries.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from roadseg.devices import amp_dtype, autocast, channels_last, resolve_device
from roadseg.inference.tta import predict_tta, views
from roadseg.model_info import ModelInfo
from roadseg.models.base import RoadModel
from roadseg.models.fuse import fold_batchnorm

log = logging.getLogger(__name__)

#: side of the probe image that measures a model's activations per pixel
_PROBE = 128


class TorchPredictor:
    """A PyTorch network, prepared for inference on one device."""

    fixed_size: int | None = None

    def __init__(self, model: RoadModel, info: ModelInfo, *, device: str = "auto", amp: bool | None = None):
        self.device = resolve_device(device)
        self.device_type = self.device.type
        # the network's own input multiple (32 for roadseg's encoders, 2**depth for the U-Net)
        self.info = replace(info, size_divisor=model.size_divisor)
        self.model = prepare_model(model, self.device)
        self.dtype = amp_dtype(self.device, self.device.type == "cuda" if amp is None else amp)
        self._per_pixel: int | None = None
        #: images per pass after a CUDA out-of-memory error, kept for the following batches
        self._pass_cap: int | None = None

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: str = "auto", amp: bool | None = None
    ) -> TorchPredictor:
        from roadseg.checkpoint import load_model

        model, info = load_model(Path(path))
        return cls(model, info, device=device, amp=amp)

    def set_threads(self, threads: int | None) -> None:
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)

    def free_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.mem_get_info(self.device)[0])
        from roadseg.inference.memory import free_host_bytes

        return free_host_bytes()

    def image_bytes(self, tile: int) -> int:
        """The float32 outputs of every leaf module on a small probe image (as if all were
        alive at once; in-place ones counted twice), scaled by area: 1.5 GB for the bundled
        model and 1.9 GB for dlinknet34 at 1024 px, against measured peaks well under that."""
        if self._per_pixel is None:
            total = 0

            def count(_m: nn.Module, _i: object, out: object) -> None:
                nonlocal total
                if isinstance(out, torch.Tensor):
                    total += out.numel() * 4

            leaves = [m for m in self.model.modules() if not any(True for _ in m.children())]
            hooks = [m.register_forward_hook(count) for m in leaves]
            try:
                with torch.inference_mode():
                    self.model(torch.zeros(1, self.info.in_channels, _PROBE, _PROBE, device=self.device))
            finally:
                for h in hooks:
                    h.remove()
            self._per_pixel = max(total, (self.info.in_channels + 1) * 4 * _PROBE**2) // _PROBE**2
        return self._per_pixel * tile * tile

    def _probs(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(images).float())

    def probabilities(self, tiles: np.ndarray, tta: str, per_pass: int | None) -> np.ndarray:
        cuda = self.device.type == "cuda"
        with torch.inference_mode(), autocast(self.device, self.dtype):
            x = torch.from_numpy(tiles)
            if cuda:
                x = x.pin_memory()
            x = self.info.normalization.apply(x.to(self.device, non_blocking=cuda))
            if channels_last(self.device):
                x = x.contiguous(memory_format=torch.channels_last)
            while True:
                if self._pass_cap is not None:
                    per_pass = min(per_pass or self._pass_cap, self._pass_cap)
                try:
                    return predict_tta(self._probs, x, tta, per_pass)[:, 0].float().cpu().numpy()
                except torch.cuda.OutOfMemoryError:
                    per_pass = (per_pass or x.shape[0] * len(views(tta))) // 2
                    if per_pass < 1:
                        raise
                    self._pass_cap = per_pass
                    torch.cuda.empty_cache()
                    log.warning("out of GPU memory: retrying with %d images per pass", per_pass)


def prepare_model(model: nn.Module, device: torch.device, threads: int | None = None) -> nn.Module:
    """Eval mode with BatchNorm folded into the convolutions, on the device: channels_last where
    it is faster, cudnn autotuning on CUDA, ``threads`` CPU threads (None: every core)."""
    model = fold_batchnorm(model.cpu()).to(device)
    if channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    elif device.type == "cpu":
        torch.set_num_threads(threads or os.cpu_count() or 1)
    return model
