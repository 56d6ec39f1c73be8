"""roadseg conflate: missing roads, unsupported mapped roads, completeness, and the .osm for JOSM
(read back by pyosmium and by GDAL's OSM driver)."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from shapely.geometry import LineString

from roadseg.cli import main
from roadseg.conflate.match import MatchOptions, match
from roadseg.conflate.tool import conflate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PARIS = Path(__file__).resolve().parents[1] / "examples" / "paris_spacenet_img1447.tif"
UTM = "EPSG:32631"


def _grid():
    """Mapped: two east-west streets and one north-south, 300 m long (UTM metres)."""
    return [
        LineString([(0, 0), (300, 0)]),
        LineString([(0, 100), (300, 100)]),
        LineString([(150, 0), (150, 100)]),
    ]


def test_missing_unsupported_and_completeness_in_metres():
    mapped = _grid()
    # predicted: the first street 4 m off (as OSM often is), the cross street, and a new road
    # from (150, 100) north to (150, 220) that the map lacks; the second street is not seen
    predicted = [
        LineString([(0, 4), (300, 4)]),
        LineString([(152, 0), (152, 100)]),
        LineString([(151, 104), (151, 220)]),
    ]
    area = shapely.box(-20, -20, 320, 240)
    res = match(predicted, [0.9, 0.8, 0.7], mapped, ["a", "b", "c"], area, UTM, MatchOptions(cell_m=120))
    (missing,) = res.missing
    # the new road minus the 12 m around the mapped street, drawn up to that street
    assert missing["length_m"] == pytest.approx(220 - 112, abs=0.5)
    assert missing["mean_prob"] == 0.7 and missing["joins"] == "b" and missing["join_ends"] == "start"
    start = missing["geometry"].coords[0]
    assert start == pytest.approx((151, 100), abs=1e-6)  # on the mapped street it joins
    (unsupported,) = res.unsupported
    assert unsupported["id"] == "b" and unsupported["support"] < 0.2
    s = res.summary
    assert s["missing_roads"] == 1 and s["unsupported_roads"] == 1
    assert s["mapped_km"] == pytest.approx(0.7, abs=1e-3)
    assert s["completeness"] == pytest.approx(s["matched_km"] / s["predicted_km"])
    assert sum(c["predicted_km"] for c in res.cells) == pytest.approx(s["predicted_km"], rel=1e-6)
    assert sum(c["mapped_km"] for c in res.cells) == pytest.approx(s["mapped_km"], rel=1e-6)
    # a complete map reports nothing missing
    full = match(
        predicted,
        [0.9, 0.8, 0.7],
        [*mapped, LineString([(150, 100), (150, 220)])],
        list("abcd"),
        area,
        UTM,
        MatchOptions(),
    )
    assert full.missing == [] and full.summary["completeness"] == pytest.approx(1.0)


def test_osm_file_round_trips_through_pyosmium_and_gdal(tmp_path):
    osmium = pytest.importorskip("osmium")
    from roadseg.conflate.osm import write_osm

    a = [(2.28, 48.98), (2.281, 48.98), (2.282, 48.981)]
    b = [(2.281, 48.98), (2.281, 48.979)]  # starts on a's node: one shared node
    path = write_osm(
        tmp_path / "m.osm", [a, b], [{"highway": "road", "note": "x & <y>"}] * 2, {(2.282, 48.981)}
    )

    class Reader(osmium.SimpleHandler):
        def __init__(self):
            super().__init__()
            self.nodes, self.ways, self.fixme = {}, [], []

        def node(self, n):
            self.nodes[n.id] = (n.location.lon, n.location.lat)
            if "fixme" in n.tags:
                self.fixme.append(n.id)

        def way(self, w):
            self.ways.append(([n.ref for n in w.nodes], dict(w.tags)))

    r = Reader()
    r.apply_file(str(path))
    assert all(i < 0 for i in r.nodes) and len(r.nodes) == 4  # 3 + 1, the junction shared
    assert [w[1]["note"] for w in r.ways] == ["x & <y>"] * 2
    assert r.ways[0][0][1] == r.ways[1][0][0]
    np.testing.assert_allclose([r.nodes[i] for i in r.ways[0][0]], a, atol=1e-7)
    assert len(r.fixme) == 1 and r.nodes[r.fixme[0]] == pytest.approx((2.282, 48.981))
    from roadseg.conflate.osm import read_osm_lines  # GDAL's OSM driver (negative ids allowed)

    gdal = read_osm_lines(path)
    assert sorted(gdal["highway"]) == ["road", "road"]
    got = sorted(np.asarray(g.coords).round(7).tolist() for g in gdal.geometry)
    assert got == sorted(np.asarray(c).round(7).tolist() for c in (a, b))
    assert "upload='never'" in path.read_text()


def _paris_map(tmp_path, drop):
    m = gpd.read_file(SHARED / "spacenet_paris_osm_roads" / "OSMroads_img1447.geojson")
    kept = m.drop(index=list(drop))
    kept.to_file(tmp_path / "map.geojson")
    return m, kept


@pytest.mark.skipif(not (SHARED / "spacenet_paris_osm_roads").is_dir(), reason="../shared data absent")
def test_paris_two_removed_roads_come_back(tmp_path):
    """Two OSM roads removed from the Paris sample's map: conflate (from the scene) reports both
    where the model sees them (>= 80 % of their predicted length), and at most 10 % of the
    reported missing length is already on the map. The .osm parses in GDAL."""
    m, kept = _paris_map(tmp_path, (0, 2))
    out = tmp_path / "out"
    assert (
        main(["conflate", str(PARIS), "--map", str(tmp_path / "map.geojson"), "--out-dir", str(out), "-q"])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    utm = m.estimate_utm_crs()
    missing = pyogrio.read_dataframe(out / "missing.gpkg", layer="missing").to_crs(utm)
    pieces = []
    for geom, ends in zip(missing.geometry, missing["join_ends"], strict=True):
        coords = list(geom.coords)  # strip the connectors drawn up to the mapped roads
        coords = coords[1:] if "start" in ends else coords
        coords = coords[:-1] if "end" in ends else coords
        pieces.append(LineString(coords))
    found = shapely.union_all(pieces).buffer(12)
    roads_gpkg = out / ".." / "roads.gpkg"
    assert main(["predict", str(PARIS), "--out", str(roads_gpkg), "-q"]) == 0
    predicted = shapely.union_all(
        list(pyogrio.read_dataframe(roads_gpkg, layer="roads").to_crs(utm).geometry)
    )
    for i in (0, 2):
        road = m.to_crs(utm).geometry.iloc[i]
        seen = road.intersection(predicted.buffer(12)).length  # where the model sees the road
        assert seen > 40
        assert road.intersection(predicted.buffer(12)).intersection(found).length >= 0.8 * seen
    near_kept = shapely.union_all(list(kept.to_crs(utm).geometry)).buffer(12)
    total = sum(p.length for p in pieces)
    assert sum(p.intersection(near_kept).length for p in pieces) <= 0.1 * total
    assert summary["missing_roads"] >= 2 and 0 < summary["completeness"] < 1
    from roadseg.conflate.osm import read_osm_lines

    lines = read_osm_lines(out / "missing.osm")
    assert len(lines) == len(missing) and set(lines["highway"]) == {"road"}
    assert sorted(pyogrio.list_layers(out / "completeness.gpkg")[:, 0]) == ["completeness", "layer_styles"]


@pytest.mark.skipif(not (SHARED / "spacenet_paris_osm_roads").is_dir(), reason="../shared data absent")
def test_complete_map_reports_little_missing(tmp_path):
    roads = tmp_path / "roads.gpkg"
    assert main(["predict", str(PARIS), "--out", str(roads), "-q"]) == 0
    s = conflate(roads, SHARED / "spacenet_paris_osm_roads" / "OSMroads_img1447.geojson", tmp_path / "o")
    assert s["missing_km"] <= 0.05 * s["predicted_km"]


def test_conflate_refuses_bad_maps(tmp_path, capsys):
    roads = tmp_path / "roads.gpkg"
    gpd.GeoDataFrame(
        {"mean_prob": [0.9]}, geometry=[LineString([(500000, 0), (500100, 0)])], crs=UTM
    ).to_file(roads, layer="roads")
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(geometry=[LineString([(10, 10), (10.01, 10)])], crs=4326).to_file(far)
    empty = tmp_path / "empty.geojson"
    gpd.GeoDataFrame(geometry=[], crs=4326).to_file(empty)
    points = tmp_path / "points.geojson"
    gpd.GeoDataFrame(geometry=[shapely.Point(500000, 0)], crs=UTM).to_file(points)
    cases = [
        (far, [], "does not overlap"),
        (empty, [], "holds no road line"),
        (points, [], "Point geometry"),
        (far, ["--map-where", "nosuchfield = 3"], "--map-where 'nosuchfield = 3' does not apply"),
    ]
    for i, (bad, extra, words) in enumerate(cases):
        out = tmp_path / f"o_{i}"
        assert main(["conflate", str(roads), "--map", str(bad), "--out-dir", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
        assert not out.exists() or not any(out.iterdir())
    ok = tmp_path / "ok"
    near = tmp_path / "near.geojson"
    gpd.GeoDataFrame(geometry=[LineString([(500000, 3), (500100, 3)])], crs=UTM).to_file(near)
    assert main(["conflate", str(roads), "--map", str(near), "--out-dir", str(ok), "-q"]) == 0
    assert main(["conflate", str(roads), "--map", str(near), "--out-dir", str(ok), "-q"]) == 2  # no overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_road_areas_become_centrelines(tmp_path):
    """A 6 m x 200 m road polygon is drawn as one centreline of about its length, on its axis."""
    from shapely.geometry import box

    from roadseg.conflate.tool import read_map

    road = box(500000, 4000000, 500200, 4000006)
    house = box(500050, 4000020, 500060, 4000030)
    gpd.GeoDataFrame({"cls": ["road", "building"]}, geometry=[road, house], crs=UTM).to_file(
        tmp_path / "lc.gpkg"
    )
    lines = read_map(tmp_path / "lc.gpkg", "cls = 'road'")
    assert set(lines.geometry.geom_type) == {"LineString"}
    assert 190 <= lines.geometry.length.sum() <= 202
    axis = LineString([(500000, 4000003), (500200, 4000003)])
    assert lines.geometry.hausdorff_distance(axis).max() < 6


@pytest.mark.heavy  # two predictions of a New Brunswick clip, about 15 s
def test_new_brunswick_road_area_removed_from_the_map_comes_back(tmp_path):
    """A land-cover map's road polygons (class 3) as the map: complete, nothing is missing; with
    one road polygon removed, what the model sees of that road comes back as missing, on it."""
    nb = SHARED / "nrcan_new_brunswick_roads"
    if not nb.is_dir():
        pytest.skip("../shared/data/nrcan_new_brunswick_roads not present")
    scene = nb / "23322E759967N_clipped_1m_1of2.tif"
    areas = pyogrio.read_dataframe(nb / "BakerLake_2017_clipped.gpkg", where="Quatreclasses = '3'")
    pyogrio.write_dataframe(areas.drop(index=1), tmp_path / "without.gpkg")
    summaries = {}
    for name, map_path, where in (
        ("full", nb / "BakerLake_2017_clipped.gpkg", "Quatreclasses = '3'"),
        ("without", tmp_path / "without.gpkg", None),
    ):
        argv = ["conflate", str(scene), "--map", str(map_path), "--out-dir", str(tmp_path / name), "-q"]
        assert main(argv + (["--map-where", where] if where else [])) == 0
        summaries[name] = json.loads((tmp_path / name / "summary.json").read_text())
    full, without = summaries["full"], summaries["without"]
    assert full["missing_km"] == 0 and full["predicted_km"] > 0.1
    lost = (
        full["matched_km"] - without["matched_km"]
    )  # predicted road that only the removed polygon explained
    assert lost > 0.03 and without["missing_km"] >= 0.8 * lost
    missing = pyogrio.read_dataframe(tmp_path / "without" / "missing.gpkg", layer="missing")
    removed = areas.loc[1, "geometry"]
    assert missing.to_crs(areas.crs).geometry.distance(removed).max() < 12
