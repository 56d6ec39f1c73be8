"""The road network as a graph people route on: GraphML that osmnx.load_graphml and networkx
read, GeoPackage nodes/edges layers in osmnx's layout, lengths that are the lines' lengths,
junctions as shared nodes, and the same graph from 4 adjacent scenes as from the whole."""

import itertools

import geopandas as gpd
import networkx as nx
import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from conftest import write_raster
from pyproj import Geod

from roadseg.cli import main

ox = pytest.importorskip("osmnx")
# UTM 31N, 0.5 m pixels: a street grid of 3 x 3 roads with a diagonal shortcut
T = Affine(0.5, 0, 500000, 0, -0.5, 5400000)
CRS = "EPSG:32631"


def _grid_mask():
    m = np.zeros((600, 600), np.uint8)
    for k in (100, 300, 500):
        m[k : k + 6, 40:560] = 255
        m[40:560, k : k + 6] = 255
    for i in range(100, 300):  # a diagonal street between two junctions
        m[i : i + 6, i : i + 6] = 255
    return m


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("net")
    path = write_raster(folder / "grid.tif", _grid_mask(), transform=T, crs=CRS)
    assert main(["vectorize", str(path), "--out", str(folder / "net.graphml"), "-q"]) == 0
    assert main(["vectorize", str(path), "--out", str(folder / "roads.gpkg"), "-q", "--speed-kph", "36"]) == 0
    return folder


def _geodesic(line):
    return Geod(ellps="WGS84").geometry_length(line)


def test_graphml_loads_in_osmnx_and_routes_on_line_lengths(grid):
    g = ox.load_graphml(grid / "net.graphml")
    assert isinstance(g, nx.MultiDiGraph) and g.graph["crs"] == "epsg:4326"
    assert not (grid / "net.qml").exists()  # QGIS does not open GraphML: no style sidecar
    junctions = [n for n, d in g.nodes(data=True) if d["street_count"] >= 3]
    assert len(junctions) >= 9
    for u, v, data in g.edges(data=True):  # junctions are shared nodes: every edge ends on its nodes
        line = data["geometry"]
        assert line.coords[0] == pytest.approx((g.nodes[u]["x"], g.nodes[u]["y"]), abs=1e-7)
        assert line.coords[-1] == pytest.approx((g.nodes[v]["x"], g.nodes[v]["y"]), abs=1e-7)
        assert data["length"] == pytest.approx(_geodesic(line), rel=1e-6, abs=0.01)
        assert data["travel_time"] == pytest.approx(data["length"] / (50 / 3.6))
        assert g.has_edge(v, u)  # two-way roads: both directions
    # the route between the two junctions farthest apart is as long as the lines it follows
    xy = {n: np.array([d["x"], d["y"]]) for n, d in g.nodes(data=True)}
    a = min(junctions, key=lambda n: xy[n][0] - xy[n][1])  # the north-west junction
    b = max(junctions, key=lambda n: xy[n][0] - xy[n][1])  # the south-east one
    route = ox.routing.shortest_path(g, a, b, weight="length")
    along = sum(
        min(_geodesic(d["geometry"]) for d in g.get_edge_data(u, v).values())
        for u, v in itertools.pairwise(route)
    )
    # within the centimetre of the file's 7-decimal coordinates, per edge
    assert nx.shortest_path_length(g, a, b, weight="length") == pytest.approx(along, abs=0.01 * len(route))
    # the diagonal street is a shortcut: 283 + 400 px instead of 400 + 400 px round the blocks
    assert nx.shortest_path_length(g, a, b, weight="length") < 0.5 * 800 * 0.9


def test_graphml_reads_in_plain_networkx(grid):
    g = nx.read_graphml(grid / "net.graphml", force_multigraph=True)
    o = ox.load_graphml(grid / "net.graphml")
    assert (g.number_of_nodes(), g.number_of_edges()) == (o.number_of_nodes(), o.number_of_edges())
    assert nx.is_weakly_connected(g)
    # osmnx's convention: attributes are strings; lengths convert with float
    assert all(float(d["length"]) > 0 for _, _, d in g.edges(data=True))


def test_geopackage_has_osmnx_nodes_and_edges(grid):
    path = grid / "roads.gpkg"
    # and the QGIS style table (layer_styles, as QGIS writes it), which QGIS applies on load
    assert [name for name, _ in pyogrio.list_layers(path)] == ["roads", "nodes", "edges", "layer_styles"]
    roads = gpd.read_file(path, layer="roads")
    nodes = gpd.read_file(path, layer="nodes").set_index("osmid")
    edges = gpd.read_file(path, layer="edges").set_index(["u", "v", "key"])
    assert len(edges) == len(roads) and nodes.crs == roads.crs == "EPSG:32631"
    assert edges["travel_time"].to_numpy() == pytest.approx(edges["length"].to_numpy() / 10.0)  # 36 km/h
    g = ox.convert.graph_from_gdfs(nodes, edges).to_undirected()
    graphml = ox.load_graphml(grid / "net.graphml")
    assert g.number_of_nodes() == graphml.number_of_nodes()
    a, b = min(g.nodes), max(g.nodes)
    assert nx.shortest_path_length(g, a, b, weight="length") == pytest.approx(
        nx.shortest_path_length(graphml, a, b, weight="length"), rel=1e-3
    )
    # GeoPackage 1.2: QGIS 3.22's GDAL 3.6 reads it without a version warning
    with open(path, "rb") as f:
        header = f.read(100)
    assert int.from_bytes(header[60:64], "big") == 10200  # application-defined user_version


def test_graph_of_four_adjacent_scenes_equals_the_whole(tmp_path):
    m = _grid_mask()
    whole = write_raster(tmp_path / "whole.tif", m, transform=T, crs=CRS)
    cuts = [(0, 0, 290, 310), (0, 310, 290, 600), (290, 0, 600, 310), (290, 310, 600, 600)]
    pieces = [
        write_raster(
            tmp_path / f"p{i}.tif", m[r0:r1, c0:c1], transform=T @ Affine.translation(c0, r0), crs=CRS
        )
        for i, (r0, c0, r1, c1) in enumerate(cuts)
    ]
    assert main(["vectorize", str(whole), "--out", str(tmp_path / "whole.graphml"), "-q"]) == 0
    assert main(["vectorize", *map(str, pieces), "--out", str(tmp_path / "pieces.graphml"), "-q"]) == 0
    a, b = ox.load_graphml(tmp_path / "whole.graphml"), ox.load_graphml(tmp_path / "pieces.graphml")
    assert (a.number_of_nodes(), a.number_of_edges()) == (b.number_of_nodes(), b.number_of_edges())
    total = [sum(d["length"] for _, _, d in g.edges(data=True)) for g in (a, b)]
    assert total[1] == pytest.approx(total[0], rel=0.005)
    lines = [shapely.union_all([d["geometry"] for _, _, d in g.edges(data=True)]) for g in (a, b)]
    assert lines[0].equals_exact(lines[1], 1e-7)


def test_graphml_needs_a_crs_and_lines(tmp_path, capsys):
    path = write_raster(tmp_path / "nocrs.tif", _grid_mask(), crs=None)
    assert main(["vectorize", str(path), "--out", str(tmp_path / "r.graphml")]) == 2
    assert "no CRS" in capsys.readouterr().err
    path = write_raster(tmp_path / "g.tif", _grid_mask(), transform=T, crs=CRS)
    assert main(["vectorize", str(path), "--out", str(tmp_path / "p.graphml"), "--geometry", "polygon"]) == 2
    assert "GraphML holds a road network" in capsys.readouterr().err
    assert main(["vectorize", str(path), "--out", str(tmp_path / "s.graphml"), "--speed-kph", "0"]) == 2
    assert not list(tmp_path.glob("*.graphml"))


def test_lengths_are_ground_metres_in_web_mercator(tmp_path):
    """A Web Mercator grid metre is 1/cos(latitude) ground metres: at 48 deg N a 1000-unit road
    is 669 m long on the ground, and that is what length_m and the graph say."""
    m = np.zeros((200, 1100), np.uint8)
    m[100:106, 50:1050] = 255
    y = 6_106_854.0  # 48 deg N in EPSG:3857
    path = write_raster(tmp_path / "wm.tif", m, transform=Affine(1, 0, 0, 0, -1, y), crs="EPSG:3857")
    assert main(["vectorize", str(path), "--out", str(tmp_path / "r.gpkg"), "-q"]) == 0
    roads = gpd.read_file(tmp_path / "r.gpkg", layer="roads")
    grid_length = float(roads.length.sum())
    assert roads.length_m.sum() == pytest.approx(grid_length * np.cos(np.radians(48.0)), rel=0.003)
