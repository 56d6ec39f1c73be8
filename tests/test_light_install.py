"""The default install has no PyTorch: predict, vectorize, evaluate and info run through ONNX
Runtime alone, and train/export say what to install. Simulated by making ``import torch`` fail
in a fresh interpreter (sys.modules['torch'] = None: find_spec answers None, import raises)."""

import subprocess
import sys

import rasterio

BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "


def _run(code, cwd):
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code], capture_output=True, text=True, cwd=cwd, check=False
    )


def test_predict_vectorize_info_without_torch(tmp_path, paris_crop):
    code = (
        "from roadseg.cli import main; "
        f"rc = main(['predict', {str(paris_crop)!r}, '--out', 'roads.gpkg', '--prob-out', 'p.tif', '-q']); "
        "assert rc == 0, rc; "
        "assert main(['info']) == 0; "
        "assert main(['vectorize', 'p.tif', '--out', 'again.geojson', '-q']) == 0; "
        "assert main(['evaluate', '--pred', 'p.tif', '--truth', 'p.tif']) == 0; "
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "default.onnx" in out.stdout and "source             onnx" in out.stdout
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert ds.read(1).max() > 128  # the model found roads


def test_torch_commands_say_what_to_install(tmp_path, paris_crop):
    code = (
        "from roadseg.cli import main; "
        "assert main(['train', '--data', '.']) == 2; "
        "assert main(['export', '--out', 'm.onnx']) == 2; "
        f"assert main(['predict', {str(paris_crop)!r}, '--out', 'r.gpkg', '--device', 'cuda']) == 2; "
        f"assert main(['predict', {str(paris_crop)!r}, '--out', 's.gpkg', '--checkpoint', 'm.pt']) == 2"
    )
    (tmp_path / "m.pt").write_bytes(b"PK")
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("pip install 'roadseg[") >= 4
    assert not (tmp_path / "r.gpkg").exists() and not (tmp_path / "s.gpkg").exists()
    assert "Traceback" not in out.stderr
