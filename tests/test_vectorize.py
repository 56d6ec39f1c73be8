import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from conftest import write_raster
from shapely.geometry import LineString

from roadseg.cli import main
from roadseg.errors import InputError
from roadseg.vectorize import graph as G
from roadseg.vectorize.geo import pixel_to_map
from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster

OPTS = VectorizeOptions(progress=False)


def _cross_mask():
    m = np.zeros((600, 700), np.uint8)
    m[100:106, 20:680] = 1  # horizontal road
    m[20:580, 300:306] = 1  # vertical road crossing it
    m[300:305, 306:322] = 1  # a 9 m spur attached to the vertical road
    m[400:405, 400:500] = 1
    m[400:405, 520:650] = 1  # a 10 m collinear gap
    m[500:504, 500:520] = 1  # an isolated 10 m blob-line
    return m


def _curvy_mask(size=900, seed=0):
    """Random thick polylines: many crossings, curves and block-border crossings."""
    from rasterio.features import rasterize

    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(12):
        pts = np.cumsum(rng.normal(0, 60, size=(8, 2)), axis=0) + rng.uniform(100, size - 100, 2)
        lines.append(LineString(np.clip(pts, 0, size - 1)).buffer(4))
    return rasterize(lines, out_shape=(size, size)).astype(np.uint8)


def test_graph_on_synthetic_cross(tmp_path):
    path = write_raster(tmp_path / "m.tif", _cross_mask())
    res = vectorize_raster(path, tmp_path / "r.gpkg", OPTS)
    df = gpd.read_file(tmp_path / "r.gpkg")
    # cross = 4 edges at one junction; the gap is closed into one line; spur and blob dropped
    assert res.features == 5 and res.components == 2
    assert df.gap_closed.sum() == 1
    junction = df.groupby("u").size().idxmax()
    ends = [
        g.coords[0] if u == junction else g.coords[-1]
        for g, u, v in zip(df.geometry, df.u, df.v, strict=True)
        if junction in (u, v)
    ]
    assert len(ends) == 4 and len({tuple(e) for e in ends}) == 1  # shared exact coordinate
    # lengths in metres: the horizontal road is 660 px * 0.5 m, minus end shrinkage
    assert 320 < df.length_m.sum() - df[df.gap_closed].length_m.sum() - 0 < 700


@pytest.mark.parametrize("seed", [0, 1])
def test_block_size_does_not_change_the_graph(tmp_path, seed):
    path = write_raster(tmp_path / "m.tif", _curvy_mask(seed=seed))
    one = vectorize_raster(path, tmp_path / "a.gpkg", VectorizeOptions(block_size=4096, progress=False))
    small = vectorize_raster(path, tmp_path / "b.gpkg", VectorizeOptions(block_size=256, progress=False))
    assert small.components == one.components
    assert abs(small.total_length_m - one.total_length_m) / one.total_length_m < 0.005


def test_pixel_centres_through_full_affine():
    t = Affine(0.5, 0.1, 1000.0, 0.2, -0.5, 2000.0)  # rotated/sheared grid
    got = pixel_to_map(LineString([(0, 0), (3, 2)]), t)
    expected = [t @ (0.5, 0.5), t @ (3.5, 2.5)]
    np.testing.assert_allclose(np.asarray(got.coords), expected)


def test_geojson_is_rfc7946_lonlat(tmp_path):
    # UTM 33N: easting 500000 is the central meridian 15 E; northing 4e6 is about 36.1 N
    path = write_raster(tmp_path / "m.tif", _cross_mask())
    vectorize_raster(path, tmp_path / "r.geojson", OPTS)
    data = json.loads((tmp_path / "r.geojson").read_text())
    assert "crs" not in data  # RFC 7946: no crs member, WGS84 implied
    coords = np.array([c for f in data["features"] for c in f["geometry"]["coordinates"]])
    assert np.all((coords[:, 0] > 14.99) & (coords[:, 0] < 15.01))  # lon first
    assert np.all((coords[:, 1] > 36.0) & (coords[:, 1] < 36.2))
    decimals = max(len(repr(float(v)).split(".")[1]) for v in coords.ravel())
    assert decimals <= 7
    info = pyogrio.read_info(tmp_path / "r.geojson")
    assert info["geometry_type"] == "LineString" and info["features"] == 5
    assert pyogrio.read_info(tmp_path / "r.geojson")["crs"] == "EPSG:4326"
    props = data["features"][0]["properties"]
    assert set(props) >= {"id", "u", "v", "length_m", "mean_prob"}


def test_geopackage_keeps_scene_crs(tmp_path):
    path = write_raster(tmp_path / "m.tif", _cross_mask())
    vectorize_raster(path, tmp_path / "r.gpkg", OPTS)
    info = pyogrio.read_info(tmp_path / "r.gpkg", layer="roads")
    assert info["crs"] == "EPSG:32633" and info["geometry_type"] == "LineString"


def test_mean_probability_from_probability_raster(tmp_path):
    prob = (_cross_mask() * 200).astype(np.uint8)
    path = write_raster(tmp_path / "p.tif", prob)
    vectorize_raster(path, tmp_path / "r.gpkg", OPTS)
    df = gpd.read_file(tmp_path / "r.gpkg")
    real = df[~df.gap_closed]
    np.testing.assert_allclose(real.mean_prob, 200 / 255, atol=0.01)


def test_empty_mask_gives_valid_empty_layer(tmp_path):
    path = write_raster(tmp_path / "m.tif", np.zeros((64, 64), np.uint8))
    with pytest.warns(UserWarning, match="no roads found"):
        res = vectorize_raster(path, tmp_path / "r.geojson", OPTS)
    assert res.features == 0
    assert json.loads((tmp_path / "r.geojson").read_text())["features"] == []
    # a uint8 probability raster: the message gives the threshold as a probability, not 127.5
    faint = write_raster(tmp_path / "f.tif", np.full((64, 64), 60, np.uint8))
    with pytest.warns(UserWarning, match=r"probability threshold 0.5\)"):
        vectorize_raster(faint, tmp_path / "f.geojson", OPTS)


def test_no_crs_refuses_geojson_unless_pixel_coords(tmp_path):
    path = write_raster(tmp_path / "m.tif", _cross_mask(), crs=None, transform=Affine(2, 0, 0, 0, 2, 0))
    with pytest.raises(InputError, match="no CRS"):
        vectorize_raster(path, tmp_path / "r.geojson", OPTS)
    assert not (tmp_path / "r.geojson").exists()
    opts = VectorizeOptions(pixel_coords=True, pixel_size_m=0.5, progress=False)
    res = vectorize_raster(path, tmp_path / "r.geojson", opts)
    assert res.features == 5
    coords = np.array(
        json.loads((tmp_path / "r.geojson").read_text())["features"][0]["geometry"]["coordinates"]
    )
    assert coords.max() < 700  # pixel coordinates, not map units


def test_polygon_geometry(tmp_path):
    path = write_raster(tmp_path / "m.tif", _cross_mask())
    vectorize_raster(
        path, tmp_path / "p.gpkg", VectorizeOptions(geometry="polygon", block_size=256, progress=False)
    )
    df = gpd.read_file(tmp_path / "p.gpkg")
    assert (df.geom_type == "Polygon").all()
    # the cross is one polygon even though it spans several 256-px blocks
    biggest = df.area_m2.max()
    assert biggest == pytest.approx((660 * 6 + 560 * 6 - 36 + 16 * 5) * 0.25, rel=0.001)


def test_contract_and_simplify_keep_junctions():
    g = G.build_graph(
        [
            LineString([(0, 0), (5, 0.2), (10, 0)]),
            LineString([(10, 0), (20, 0)]),
            LineString([(10, 0), (10, 10)]),
        ]
    )
    G.contract_degree_two(g)
    assert g.number_of_edges() == 3  # (10, 0) is a junction: nothing to contract
    G.simplify_edges(g, 1.0)
    for _, _, d in g.edges(data=True):
        assert (10.0, 0.0) in {tuple(d["geom"].coords[0]), tuple(d["geom"].coords[-1])}


def test_gap_closing_needs_agreeing_directions():
    aligned = G.build_graph([LineString([(0, 0), (20, 0)]), LineString([(25, 1), (45, 1)])])
    assert G.close_gaps(aligned, 30, 30) == 1  # offset atan(1/5) = 11 degrees
    assert aligned.number_of_edges() == 1  # joined and contracted into one line
    offset = G.build_graph([LineString([(0, 0), (20, 0)]), LineString([(25, 5), (45, 5)])])
    assert G.close_gaps(offset, 30, 30) == 0  # 45 degrees
    side = G.build_graph([LineString([(0, 0), (20, 0)]), LineString([(22, 3), (22, 30)])])
    assert G.close_gaps(side, 30, 30) == 0  # a T, not a gap
    far = G.build_graph([LineString([(0, 0), (20, 0)]), LineString([(60, 0), (80, 0)])])
    assert G.close_gaps(far, 30, 30) == 0


def test_cli_vectorize_and_errors(tmp_path, capsys):
    path = write_raster(tmp_path / "m.tif", _cross_mask())
    assert main(["vectorize", str(path), "--out", str(tmp_path / "r.geojson"), "-q"]) == 0
    assert main(["vectorize", str(path), "--out", str(tmp_path / "r.shp")]) == 2
    assert "must end in .geojson or .gpkg" in capsys.readouterr().err


def test_lines_fall_on_labelled_roads(tmp_path, shared_data):
    """SpaceNet Vegas: the mask solaris rasterized from 9 centrelines, vectorized back."""
    folder = shared_data / "spacenet3_roads_vegas" / "scene_pan_solaris"
    vectorize_raster(folder / "sample_road_raster_mask.tif", tmp_path / "r.geojson", OPTS)
    pred = gpd.read_file(tmp_path / "r.geojson")
    truth = gpd.read_file(folder / "sample_roads_for_masking.geojson")
    utm = pred.estimate_utm_crs()
    pred_u, truth_u = pred.to_crs(utm), truth.to_crs(utm)
    truth_union = truth_u.union_all()
    pts = shapely.get_coordinates(shapely.segmentize(pred_u.geometry.values, 1.0))
    dist = shapely.distance(shapely.points(pts), truth_union)
    assert np.percentile(dist, 95) < 3.0, np.percentile(dist, 95)  # metres
    pred_union = pred_u.union_all()
    tpts = shapely.get_coordinates(shapely.segmentize(truth_u.geometry.values, 1.0))
    covered = shapely.distance(shapely.points(tpts), pred_union) < 3.0
    assert covered.mean() > 0.9


def test_pieces_of_a_scene_give_the_whole_scene_network(tmp_path):
    """A scene cut into 4 adjacent GeoTIFFs: vectorizing the pieces together gives the same
    network as the whole (roads crossing the cuts stay single lines with shared junctions)."""
    import geopandas as gpd
    from affine import Affine
    from conftest import write_raster

    from roadseg.cli import main

    m = np.zeros((400, 500), np.uint8)
    m[100:106, 20:480] = 255  # a road crossing the vertical cut
    m[20:380, 240:246] = 255  # one crossing the horizontal cut, meeting it at a junction
    m[300:306, 100:450] = 255
    t = Affine(0.5, 0, 500000, 0, -0.5, 4000000)
    write_raster(tmp_path / "whole.tif", m, transform=t)
    cuts = [(0, 0, 230, 260), (0, 260, 230, 500), (230, 0, 400, 260), (230, 260, 400, 500)]
    pieces = []
    for i, (r0, c0, r1, c1) in enumerate(cuts):
        pieces.append(
            write_raster(tmp_path / f"p{i}.tif", m[r0:r1, c0:c1], transform=t @ Affine.translation(c0, r0))
        )
    assert main(["vectorize", str(tmp_path / "whole.tif"), "--out", str(tmp_path / "whole.gpkg"), "-q"]) == 0
    assert main(["vectorize", *map(str, pieces), "--out", str(tmp_path / "pieces.gpkg"), "-q"]) == 0
    whole, parts = gpd.read_file(tmp_path / "whole.gpkg"), gpd.read_file(tmp_path / "pieces.gpkg")
    assert len(parts) == len(whole) and parts.length.sum() == pytest.approx(whole.length.sum(), rel=0.005)
    assert whole.geometry.union_all().equals_exact(parts.geometry.union_all(), 1e-6)
    assert not list(tmp_path.glob(".roadseg-*"))


def test_pieces_in_two_utm_zones_give_the_whole_scene_network(tmp_path):
    """The same 4 pieces, the right two reprojected into the next UTM zone (as scenes either
    side of a zone border come): the mosaic warps them back and the network is the same."""
    import geopandas as gpd
    import rasterio
    from affine import Affine
    from conftest import write_raster
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from roadseg.cli import main

    m = np.zeros((400, 500), np.uint8)
    m[100:106, 20:480] = 1
    m[20:380, 240:246] = 1
    m[300:306, 100:450] = 1
    t = Affine(0.5, 0, 760000, 0, -0.5, 5000000)  # zone 31, near its eastern edge (about 6.4 E)
    write_raster(tmp_path / "whole.tif", m, crs="EPSG:32631", transform=t)
    cuts = [(0, 0, 230, 260), (0, 260, 230, 500), (230, 0, 400, 260), (230, 260, 400, 500)]
    pieces = []
    for i, (r0, c0, r1, c1) in enumerate(cuts):
        piece = write_raster(
            tmp_path / f"p{i}.tif",
            m[r0:r1, c0:c1],
            crs="EPSG:32631",
            transform=t @ Affine.translation(c0, r0),
        )
        if c0:  # the right half: into zone 32
            with rasterio.open(piece) as src:
                tr, w, h = calculate_default_transform(
                    src.crs, "EPSG:32632", src.width, src.height, *src.bounds
                )
                data = np.zeros((h, w), np.uint8)
                reproject(
                    src.read(1),
                    data,
                    src_transform=src.transform,
                    src_crs=src.crs,
                    dst_transform=tr,
                    dst_crs="EPSG:32632",
                    resampling=Resampling.nearest,
                )
            piece = write_raster(tmp_path / f"p{i}_z32.tif", data, crs="EPSG:32632", transform=tr)
        pieces.append(piece)
    assert main(["vectorize", str(tmp_path / "whole.tif"), "--out", str(tmp_path / "whole.gpkg"), "-q"]) == 0
    assert main(["vectorize", *map(str, pieces), "--out", str(tmp_path / "pieces.gpkg"), "-q"]) == 0
    whole, parts = gpd.read_file(tmp_path / "whole.gpkg"), gpd.read_file(tmp_path / "pieces.gpkg")
    assert parts.crs == whole.crs  # the CRS of most rasters (a tie: the first raster's)
    assert whole.geometry.union_all().is_valid and len(parts) == len(whole)
    assert parts.length.sum() == pytest.approx(whole.length.sum(), rel=0.01)  # two nearest warps
    assert parts.geometry.union_all().hausdorff_distance(whole.geometry.union_all()) < 1.5  # metres
    assert not list(tmp_path.glob(".roadseg-*"))


def test_pieces_with_and_without_a_crs_are_refused(tmp_path, capsys):
    from affine import Affine
    from conftest import write_raster

    from roadseg.cli import main

    a = write_raster(tmp_path / "a.tif", np.zeros((64, 64), np.uint8), transform=Affine(1, 0, 0, 0, -1, 0))
    b = write_raster(
        tmp_path / "b.tif", np.zeros((64, 64), np.uint8), crs=None, transform=Affine(1, 0, 64, 0, -1, 0)
    )
    assert main(["vectorize", str(a), str(b), "--out", str(tmp_path / "r.gpkg"), "-q"]) == 2
    assert "1 of 2 rasters have no CRS" in capsys.readouterr().err and not (tmp_path / "r.gpkg").exists()
