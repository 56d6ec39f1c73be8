import pytest
import torch

from roadseg import devices
from roadseg.errors import InputError


def test_cpu_amp_only_with_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda: True)
    assert devices.amp_dtype(cpu, True) is torch.bfloat16
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda: False)
    assert devices.amp_dtype(cpu, True) is None  # emulated bf16 is slower than float32
    assert devices.amp_dtype(cpu, False) is None


def test_autocast_runs_in_the_chosen_dtype():
    cpu = torch.device("cpu")
    conv = torch.nn.Conv2d(3, 4, 3)
    with devices.autocast(cpu, torch.bfloat16):
        assert conv(torch.randn(1, 3, 8, 8)).dtype is torch.bfloat16
    with devices.autocast(cpu, None):
        assert conv(torch.randn(1, 3, 8, 8)).dtype is torch.float32


def test_channels_last_on_cpu_matches_contiguous():
    torch.manual_seed(0)
    from roadseg.models import create_model

    model = create_model("unet", depth=2, base_channels=8).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        assert devices.channels_last(torch.device("cpu"))
        out = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_resolve_device_errors():
    with pytest.raises(InputError, match="must be auto, cpu"):
        devices.resolve_device("tpu9")
    assert devices.resolve_device("cpu") == torch.device("cpu")
