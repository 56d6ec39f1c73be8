import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from roadseg.errors import InputError
from roadseg.inference.stitch import StripStitcher
from roadseg.inference.tiling import blend_weights, check_tiling, plan_tiles, ramp
from roadseg.inference.tta import predict_tta, views
from roadseg.io.raster import reflect_index
from roadseg.models import RoadModel


@given(
    n=st.integers(1, 3000),
    tile=st.sampled_from([32, 64, 256, 512]),
    frac=st.sampled_from([0, 4, 8, 16, 32, 64, 128, 256]),
)
@settings(max_examples=300, deadline=None)
def test_every_pixel_gets_positive_weight(n, tile, frac):
    overlap = min(frac, tile // 2)
    grid = plan_tiles(n, n, tile, overlap)
    w = ramp(tile, overlap)
    total = np.zeros(n)
    for r in grid.rows:
        lo, hi = max(r, 0), min(r + tile, n)
        if hi > lo:
            total[lo:hi] += w[lo - r : hi - r]
    assert (total > 0).all()
    if len(grid.rows) > 1:  # partition of unity between the first and last tiles' ramps
        inner = total[grid.rows[0] + tile - grid.margin : grid.rows[-1] + grid.margin]
        inner = inner[: max(0, n - (grid.rows[0] + tile - grid.margin))]
        np.testing.assert_allclose(inner, 1.0, atol=1e-12)


def test_weights_vanish_in_margin_and_are_one_inside():
    w = blend_weights(64, 32)
    assert w[:8].max() == 0 and w[:, -8:].max() == 0
    assert np.all(w[24:40, 24:40] == 1)


def test_check_tiling():
    check_tiling(512, 128, 32)
    with pytest.raises(InputError, match="multiple of 32"):
        check_tiling(500, 128, 32)
    with pytest.raises(InputError, match="overlap"):
        check_tiling(512, 300, 32)


def test_reflect_index_matches_numpy_pad():
    a = np.arange(7)
    padded = np.pad(a, (20, 25), mode="reflect")
    np.testing.assert_array_equal(a[reflect_index(np.arange(-20, 7 + 25), 7)], padded)
    assert reflect_index(np.array([-3, 0, 5]), 1).tolist() == [0, 0, 0]


class _LocalNet(RoadModel):
    """Receptive-field radius 2 (two 3x3 convs), no padding effects inside the margin."""

    size_divisor = 1

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def _tiled(image, model, tile, overlap, tta="none"):
    h, w = image.shape[1:]
    grid = plan_tiles(h, w, tile, overlap)
    out = np.full((h, w), np.nan, np.float32)

    def sink(row0, probs):
        assert np.isnan(out[row0 : row0 + probs.shape[0]]).all(), "row emitted twice"
        out[row0 : row0 + probs.shape[0]] = probs

    stitcher = StripStitcher(grid, sink)
    for i, r in enumerate(grid.rows):
        for j, c in enumerate(grid.cols):
            rows = reflect_index(np.arange(r, r + tile), h)
            cols = reflect_index(np.arange(c, c + tile), w)
            x = torch.from_numpy(image[:, rows][:, :, cols])[None]
            with torch.no_grad():
                stitcher.add(i, j, predict_tta(lambda t: torch.sigmoid(model(t)), x, tta)[0, 0].numpy())
    stitcher.finish()
    assert not np.isnan(out).any()
    return out


def _whole_image(padded, model, tta):
    """Reference: the model on the whole reflect-padded image, views inverted and averaged."""
    outs = []
    for k, f in views(tta):
        v = np.flip(padded, -1) if f else padded
        v = np.rot90(v, k, (1, 2)).copy()
        with torch.no_grad():
            p = torch.sigmoid(model(torch.from_numpy(v)[None]))[0, 0].numpy()
        p = np.rot90(p, -k)
        outs.append(np.flip(p, -1) if f else p)
    return np.mean(outs, axis=0)


@pytest.mark.parametrize(("h", "w"), [(150, 230), (64, 64), (20, 300), (1, 5)])
@pytest.mark.parametrize("tta", ["none", "d4"])
def test_tiled_equals_whole_image(h, w, tta):
    rng = np.random.default_rng(0)
    image = rng.standard_normal((3, h, w)).astype(np.float32)
    model = _LocalNet().eval()
    tiled = _tiled(image, model, tile=64, overlap=32, tta=tta)
    pad = 8  # > receptive-field radius 2
    padded = image
    for axis, n in ((1, h), (2, w)):  # a 1-pixel axis reflects onto itself: edge mode
        widths = [(0, 0)] * 3
        widths[axis] = (pad, pad)
        padded = np.pad(padded, widths, mode="reflect" if n > 1 else "edge")
    whole = _whole_image(padded, model, tta)[pad:-pad, pad:-pad]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tta_views_invert_exactly():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    identity = lambda t: torch.sigmoid(t[:, :1])
    for mode in ("none", "flip", "d4"):
        out = predict_tta(identity, x, mode)
        np.testing.assert_allclose(out.numpy(), torch.sigmoid(x[:, :1]).numpy(), atol=1e-6)
        # the numpy path (ONNX Runtime, no torch) turns and averages the same way
        arr = predict_tta(lambda a: 1 / (1 + np.exp(-a[:, :1])), x.numpy(), mode)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float32
        np.testing.assert_allclose(arr, torch.sigmoid(x[:, :1]).numpy(), atol=1e-6)
    assert len(views("d4")) == 8 and len(set(views("d4"))) == 8


def test_d4_mean_matches_official_sum_over_4():
    """Official test code: sum of sigmoids over the 8 views, road where sum > 4.0."""
    torch.manual_seed(0)
    model = _LocalNet().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ours = predict_tta(lambda t: torch.sigmoid(model(t)), x, "d4")
        # numpy views of the same network (what ONNX Runtime is handed) give the same mean
        as_numpy = predict_tta(lambda a: torch.sigmoid(model(torch.from_numpy(a))).numpy(), x.numpy(), "d4")
        np.testing.assert_allclose(as_numpy, ours.numpy(), atol=1e-6)
        img90 = torch.rot90(x, 1, (2, 3))
        batch = torch.cat([x, img90, x.flip(2), img90.flip(2)])  # official: {id, rot90} x {-, v}
        a = torch.sigmoid(model(batch))
        b = torch.sigmoid(model(batch.flip(3)))  # and h flips of those
        s = a + b.flip(3)
        s = s[:2] + s[2:].flip(2)
        total = s[0] + torch.rot90(s[1], -1, (1, 2))
    np.testing.assert_allclose(ours[0].numpy(), (total / 8).numpy(), atol=1e-6)
    assert torch.equal(ours[0] > 0.5, total > 4.0)
