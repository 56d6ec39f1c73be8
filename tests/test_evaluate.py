import json
import time

import geopandas as gpd
import numpy as np
import pytest
from conftest import write_raster
from shapely import affinity
from shapely.geometry import LineString

from roadseg.cli import main
from roadseg.errors import InputError
from roadseg.evaluate.graph import apls, lines_to_graph, topo, topo_dense
from roadseg.evaluate.pixel import Confusion, RelaxedCurve
from roadseg.evaluate.tool import evaluate, sample_id

LEFT, BRIDGE, RIGHT = (
    LineString([(0, 0), (200, 0)]),
    LineString([(200, 0), (300, 0)]),
    LineString([(300, 0), (500, 0)]),
)


def test_apls_identical_is_one():
    truth = [LEFT, BRIDGE, RIGHT, LineString([(250, 0), (250, 300)])]
    assert apls(truth, truth)["apls"] == pytest.approx(1.0)
    assert topo(truth, truth)["topo"] == pytest.approx(1.0)
    assert topo_dense(truth, truth)["topo_dense"] == pytest.approx(1.0)


def test_apls_removed_bridge_loses_the_crossing_paths():
    # truth: 11 control nodes 0..500 m; prediction lacks the bridge (and node 250 m):
    # 110 ordered pairs, 40 within a side survive, 70 cross the gap and score 1.
    r = apls([LEFT, BRIDGE, RIGHT], [LEFT, RIGHT])
    assert r["apls_gt_to_prop"] == pytest.approx(1 - 70 / 110)
    assert r["apls_prop_to_gt"] == pytest.approx(1.0)
    assert r["apls"] == pytest.approx(2 * (40 / 110) / (1 + 40 / 110))


# A hand graph: two roads between junctions A(0, 0) and B(30, 0) (straight 30 m, bent 34 m),
# 30 m stubs to E and F at A and to G at B (so A and B stay junctions without the straight road),
# B-C 30 m north, and a 40 m loop at C whose midpoint D (20 m round the loop) is its one control
# point (the 37.5-50 m rule). Every other edge is under 37.5 m: no other control point.
A_B = LineString([(0, 0), (30, 0)])
A_B_BENT = LineString([(0, 0), (15, 8), (30, 0)])
STUBS = [LineString([(0, 0), (-30, 0)]), LineString([(0, 0), (0, -30)]), LineString([(30, 0), (60, 0)])]
B_C = LineString([(30, 0), (30, 30)])
LOOP_C = LineString([(30, 30), (40, 30), (40, 40), (30, 40), (30, 30)])
HAND = [A_B, A_B_BENT, *STUBS, B_C, LOOP_C]


def test_graph_keeps_parallel_roads_and_loops_apart():
    """Every edge's geometry starts and ends at its own nodes: no phantom shortcut from a
    parallel road's or loop's node being merged with an unrelated point."""
    g = lines_to_graph(HAND)
    assert (g.number_of_nodes(), g.number_of_edges()) == (6, 7)  # D is a control point, not a node
    for u, v, data in g.edges(data=True):
        ends = {tuple(np.round(data["geom"].coords[0], 6)), tuple(np.round(data["geom"].coords[-1], 6))}
        assert ends == {g.nodes[u]["xy"], g.nodes[v]["xy"]}
        assert data["length"] == pytest.approx(data["geom"].length)


def test_apls_loop_and_parallel_roads_minus_one_road_by_hand():
    # 7 nodes, 42 ordered pairs each way. Without the straight road, the paths from A, E, F to
    # B, G, C, D are 4 m longer (the bent road); every other path is unchanged.
    r = apls(HAND, [g for g in HAND if g is not A_B])
    truth_from = {"A": [30, 60, 60, 80], "E": [60, 90, 90, 110], "F": [60, 90, 90, 110]}
    lengths = [d for ds in truth_from.values() for d in ds]
    gt_to_prop = 1 - 2 * sum(4 / d for d in lengths) / 42
    prop_to_gt = 1 - 2 * sum(4 / (d + 4) for d in lengths) / 42
    assert r["apls_gt_to_prop"] == pytest.approx(gt_to_prop, abs=1e-9)
    assert r["apls_prop_to_gt"] == pytest.approx(prop_to_gt, abs=1e-9)
    assert r["apls"] == pytest.approx(2 * gt_to_prop * prop_to_gt / (gt_to_prop + prop_to_gt), abs=1e-9)
    assert apls(HAND, HAND)["apls"] == pytest.approx(1.0)


def test_apls_crossing_with_a_dropped_road_by_hand():
    # truth: a crossing of two 80 m roads, four 40 m arms, each with its midpoint control point
    # (the 37.5-50 m rule): 9 nodes, 72 ordered pairs; the prediction lacks the vertical road,
    # so the 52 pairs that touch one of its 4 nodes score 1. The prediction's one 80 m edge gets
    # its control point at the crossing: 3 nodes, all found in the truth.
    h = LineString([(-40, 0), (40, 0)])
    v = LineString([(0, -40), (0, 40)])
    r = apls([h, v], [h])
    assert r["apls_gt_to_prop"] == pytest.approx(20 / 72, abs=1e-9)
    assert r["apls_prop_to_gt"] == pytest.approx(1.0)
    assert r["apls"] == pytest.approx(10 / 23, abs=1e-9)


def _street_grid(n=6, block=100.0):
    lines = []
    for i in range(n + 1):
        lines.append(LineString([(0, i * block), (n * block, i * block)]))
        lines.append(LineString([(i * block, 0), (i * block, n * block)]))
    return lines


def test_topo_of_a_2m_shift_is_near_one():
    """Each origin is matched on its own: other origins' snapped points are no extra marbles."""
    truth = _street_grid()
    shifted = [affinity.translate(g, 2.0, 0) for g in truth]
    spacenet = topo(truth, shifted)
    dense = topo_dense(truth, shifted)
    assert spacenet["topo_precision"] >= 0.98 and spacenet["topo_recall"] >= 0.98
    assert dense["topo_dense_precision"] >= 0.98 and dense["topo_dense_recall"] >= 0.95
    far = [affinity.translate(g, 10.0, 10.0) for g in truth]  # beyond the 4 m holes
    assert topo(truth, far)["topo"] == 0.0


def test_topo_missing_road_costs_recall_not_precision():
    truth = _street_grid()
    pred = truth[:-2]  # the last horizontal and vertical streets are missing
    r = topo(truth, pred)
    # marbles restart every 30 m on the longer merged edges, so a few miss their holes
    assert r["topo_precision"] > 0.95
    assert 0.5 < r["topo_recall"] < r["topo_precision"] - 0.05


def test_apls_empty_prediction_is_zero():
    assert apls([LEFT, BRIDGE], [])["apls"] == 0.0
    assert topo([LEFT, BRIDGE], [])["topo"] == 0.0
    assert topo_dense([LEFT, BRIDGE], [])["topo_dense"] == 0.0


def test_apls_node_snapping_tolerance():
    truth = [LEFT, BRIDGE, RIGHT]
    near = [affinity.translate(g, 0, 3.0) for g in truth]  # within the 4 m snap
    far = [affinity.translate(g, 0, 6.0) for g in truth]
    assert apls(truth, near)["apls"] == pytest.approx(1.0, abs=1e-6)
    assert apls(truth, far)["apls"] == 0.0


def test_apls_detour_scores_length_difference():
    truth = [LineString([(0, 0), (100, 0)])]
    detour = [LineString([(0, 0), (0, 25), (100, 25), (100, 0)])]  # 150 m instead of 100 m
    r = apls(truth, detour, None)
    assert 0 < r["apls_gt_to_prop"] < 1


def test_apls_10000_edges_is_fast():
    rng = np.random.default_rng(0)
    lines = []
    n = 50  # a 50 x 50 street grid, 100 m blocks: ~10 000 edges after noding
    for i in range(n + 1):
        lines.append(LineString([(0, i * 100), (n * 100, i * 100)]))
        lines.append(LineString([(i * 100, 0), (i * 100, n * 100)]))
    pred = [affinity.translate(g, float(rng.normal(0, 1)), float(rng.normal(0, 1))) for g in lines[:-10]]
    t0 = time.perf_counter()
    r = apls(lines, pred)
    assert time.perf_counter() - t0 < 60
    assert 0.5 < r["apls"] < 1.0


def test_confusion_and_relaxed():
    truth = np.zeros((50, 50), bool)
    truth[20:23, :] = True
    pred = np.roll(truth, 2, axis=0)  # 2 px off
    c = Confusion()
    c.update(pred, truth)
    assert (c.tp, c.fp, c.fn) == (50, 100, 100) and c.iou == pytest.approx(50 / 250)
    curve = RelaxedCurve(3)
    curve.update(pred.astype(np.uint8) * 255, truth)
    assert curve.at(128) == (1.0, 1.0)
    strict = RelaxedCurve(0)
    strict.update(pred.astype(np.uint8) * 255, truth)
    assert strict.at(128) == pytest.approx((1 / 3, 1 / 3))


def test_breakeven_of_a_probability_map():
    truth = np.zeros((64, 64), bool)
    truth[30:34, :] = True
    prob = np.where(truth, 200, 20).astype(np.uint8)
    prob[0:4, :] = 150  # a false road at 150: precision drops below t=150
    curve = RelaxedCurve(3)
    curve.update(prob, truth)
    assert curve.at(151) == (1.0, 1.0)
    assert curve.breakeven() == pytest.approx(1.0)
    assert curve.breakeven_threshold() == pytest.approx(
        151 / 255
    )  # the lowest level that drops the false road


def test_evaluate_raster_folders(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "truth").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        t = (rng.random((40, 40)) > 0.8).astype(np.uint8) * 255
        write_raster(tmp_path / "truth" / f"{i}_mask.png", t, crs=None)
        write_raster(tmp_path / "pred" / f"{i}_prob.tif", t)
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "pred"),
                "--truth",
                str(tmp_path / "truth"),
                "--json",
                "--per-image",
                str(tmp_path / "rows.csv"),
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["iou"] == 1.0 and out["f1"] == 1.0 and out["relaxed_precision"] == 1.0
    assert out["relaxed_f1"] == 1.0
    assert set(out) == {
        "iou",
        "precision",
        "recall",
        "f1",
        "relaxed_precision",
        "relaxed_recall",
        "relaxed_f1",
    }
    assert len((tmp_path / "rows.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("where", ["pred", "truth"])
def test_evaluate_leaves_out_masked_pixels(tmp_path, where):
    """A mask band (as predict writes for no-data) on either raster takes its pixels out of the scores."""
    import rasterio

    truth = np.zeros((40, 40), np.uint8)
    truth[:, 10:14] = 255
    pred = truth.copy()
    pred[:, 30:] = 255  # wrong, but only inside the masked area
    valid = np.ones((40, 40), np.uint8) * 255
    valid[:, 28:] = 0
    for name, data in (("pred", pred), ("truth", truth)):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=1, dtype="uint8") as dst:
            dst.write(data, 1)
            if name == where:
                dst.write_mask(valid)
    res = evaluate(tmp_path / "pred.tif", tmp_path / "truth.tif")
    assert res.metrics["iou"] == 1.0 and res.metrics["precision"] == 1.0
    assert res.metrics["relaxed_precision"] == 1.0


def test_evaluate_errors(tmp_path):
    write_raster(tmp_path / "a.tif", np.zeros((10, 10), np.uint8))
    write_raster(tmp_path / "b.tif", np.zeros((12, 10), np.uint8))
    with pytest.raises(InputError, match="is \\(10, 10\\) but"):
        evaluate(tmp_path / "a.tif", tmp_path / "b.tif")
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    write_raster(tmp_path / "p" / "1.tif", np.zeros((10, 10), np.uint8))
    write_raster(tmp_path / "p" / "2.tif", np.zeros((10, 10), np.uint8))
    write_raster(tmp_path / "t" / "1_mask.tif", np.zeros((10, 10), np.uint8))
    write_raster(tmp_path / "t" / "3_mask.tif", np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match=r"no prediction for \['3'\], no truth for \['2'\]"):
        evaluate(tmp_path / "p", tmp_path / "t")
    (tmp_path / "e").mkdir()
    with pytest.raises(InputError, match="holds no files"):
        evaluate(tmp_path / "e", tmp_path / "t")
    assert sample_id(tmp_path / "104_sat_mask.png") == "104"


def test_spacenet_labels_against_shifted_copy(tmp_path, shared_data, capsys):
    """Real case: SpaceNet Vegas labels against themselves shifted by 2 m and by 6 m."""
    src = (
        shared_data / "spacenet3_roads_vegas" / "labels_only" / "spacenetroads" / "AOI_2_Vegas_img99.geojson"
    )
    df = gpd.read_file(src)
    utm = df.estimate_utm_crs()
    scores = {}
    for shift in (0.0, 2.0, 6.0):
        moved = df.to_crs(utm)
        moved["geometry"] = moved.geometry.translate(shift, 0)
        moved.to_crs(4326).to_file(tmp_path / f"p{shift}.geojson")
        assert (
            main(["evaluate", "--pred", str(tmp_path / f"p{shift}.geojson"), "--truth", str(src), "--json"])
            == 0
        )
        scores[shift] = json.loads(capsys.readouterr().out)
    print("SpaceNet img99 shifted:", {k: (v["apls"], v["topo"]) for k, v in scores.items()})
    assert scores[0.0]["apls"] == pytest.approx(1.0) and scores[0.0]["topo"] == pytest.approx(1.0)
    assert scores[2.0]["apls"] > 0.9
    assert scores[6.0]["apls"] < scores[2.0]["apls"] and scores[6.0]["topo"] < scores[2.0]["topo"]


def test_rasters_on_other_grids_are_refused_not_scored(tmp_path, capsys):
    """A prediction in another CRS, or 1 km east of the truth, used to score IoU 1.0."""
    from affine import Affine

    m = np.zeros((50, 50), np.uint8)
    m[20:25, :] = 1
    t = Affine(1, 0, 500000, 0, -1, 5400000)
    for d in ("t", "p1", "p2", "p3"):
        (tmp_path / d).mkdir()
    truth = write_raster(tmp_path / "t" / "a_mask.tif", m, transform=t, crs="EPSG:32631")
    shifted = t * Affine.translation(1000, 0)
    cases = {
        "crs": write_raster(tmp_path / "p1" / "a.tif", m, transform=t, crs="EPSG:32632"),
        "shift": write_raster(tmp_path / "p2" / "a.tif", m, transform=shifted, crs="EPSG:32631"),
    }
    for what, pred in cases.items():
        assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 2, what
        err = capsys.readouterr().err
        assert "'a.tif'" in err and "a_mask.tif" in err and "reproject" in err, err
        assert len(err.strip().splitlines()) == 1, err
    # the same grid, or a plain mask with only a pixel grid (DeepGlobe's PNGs), is scored
    same = write_raster(tmp_path / "p3" / "a.tif", m, transform=t, crs="EPSG:32631")
    assert evaluate(same, truth).metrics["iou"] == pytest.approx(1.0)
    plain = write_raster(tmp_path / "p3" / "b.tif", m, crs=None)
    assert evaluate(plain, truth).metrics["iou"] == pytest.approx(1.0)
