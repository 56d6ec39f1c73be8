"""Scenes over HTTP and S3, outputs to S3: against real servers started here.

The S3 server is moto's server mode (a real HTTP server speaking the S3 API, on 127.0.0.1);
the web server is Python's, taught range requests and counting the bytes it sends. roadseg
reaches both as it reaches AWS or a CDN: GDAL's /vsis3/ and /vsicurl/, and s3fs.
"""

from __future__ import annotations

import http.server
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import kill_a_writer, road_image, write_raster

from roadseg.cli import main

pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

BUCKET = "roadseg-test"


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single range requests (what GDAL's /vsicurl/ sends), counting bytes."""

    sent = 0

    def log_message(self, *args):  # quiet
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if self.path.startswith("/forbidden/"):
            self.send_error(403, "Forbidden")
            return None
        if not path.is_file():
            self.send_error(404, "Not Found")
            return None
        size = path.stat().st_size
        m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        f = open(path, "rb")  # noqa: SIM115 - closed by the base class after copyfile
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            length = end - start + 1
            f.seek(start)
            self._left = length
        else:
            self.send_response(200)
            length = size
            self._left = size
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return f

    def copyfile(self, source, outputfile):
        data = source.read(self._left)
        type(self).sent += len(data)
        outputfile.write(data)


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    handler = type("Handler", (_RangeHandler,), {"sent": 0})

    def make(*args, **kwargs):
        return handler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the server's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address
    env = {
        "AWS_ACCESS_KEY_ID": "roadseg-test",
        "AWS_SECRET_ACCESS_KEY": "roadseg-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    old = {k: os.environ.get(k) for k in [*env, "AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"]}
    os.environ.update(env)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]})
    fs.mkdir(BUCKET)
    yield fs
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def _cog(path: Path, size: int = 192, seed: int = 0) -> Path:
    """A small Cloud-Optimized GeoTIFF scene (internal tiles, overviews)."""
    tmp = write_raster(path.with_suffix(".plain.tif"), road_image(size, size, seed=seed))
    with rasterio.open(tmp) as src:
        profile = src.profile | {"driver": "COG", "blocksize": 64, "compress": "deflate"}
        profile.pop("tiled", None)
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read())
    tmp.unlink()
    return path


ARGS = ["--tta", "none", "--threads", "1", "-q"]


def test_a_cog_over_http_predicts_byte_for_byte_like_the_local_file(tmp_path, web, varied_checkpoint):
    root, url, handler = web
    scene = _cog(root / "scene.tif")
    ck = ["--checkpoint", str(varied_checkpoint)]
    assert main(["predict", str(scene), "--prob-out", str(tmp_path / "local.tif"), *ck, *ARGS]) == 0
    handler.sent = 0
    assert main(["predict", f"{url}/scene.tif", "--prob-out", str(tmp_path / "web.tif"), *ck, *ARGS]) == 0
    assert (tmp_path / "web.tif").read_bytes() == (tmp_path / "local.tif").read_bytes()
    # the whole scene is needed, and it is read about once, not once per tile
    print(f"whole scene over HTTP: {handler.sent} bytes for a {scene.stat().st_size}-byte COG")
    assert handler.sent < 1.5 * scene.stat().st_size


def test_a_window_of_a_large_cog_reads_a_small_part_of_it(web):
    """Range requests: one 256-px window of a 4096-px COG fetches its header and a few tiles."""
    from rasterio.windows import Window

    from roadseg.io.raster import open_raster

    root, url, handler = web
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, size=(1, 4096, 4096), dtype=np.uint8)  # noise: no compression
    with rasterio.open(
        root / "big.tif",
        "w",
        driver="COG",
        width=4096,
        height=4096,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000),
        blocksize=256,
        compress="deflate",
    ) as dst:
        dst.write(data)
    size = (root / "big.tif").stat().st_size
    handler.sent = 0
    with open_raster(f"{url}/big.tif") as ds:
        window = ds.read(1, window=Window(1024, 2048, 256, 256))
    np.testing.assert_array_equal(window, data[0, 2048:2304, 1024:1280])
    print(f"one window: {handler.sent} of {size} bytes ({handler.sent / size:.2%})")
    assert handler.sent < size / 20, f"{handler.sent} of {size} bytes read for one window"


def test_s3_scenes_to_s3_outputs_equal_a_local_run_and_resume(tmp_path, s3, varied_checkpoint):
    scenes = [_cog(tmp_path / f"s{i}.tif", seed=i) for i in range(2)]
    for p in scenes:
        s3.put_file(str(p), f"{BUCKET}/scenes/{p.name}")
    ck = ["--checkpoint", str(varied_checkpoint)]
    assert main(["predict", *map(str, scenes), "--out-dir", str(tmp_path / "local"), *ck, *ARGS]) == 0
    out = f"s3://{BUCKET}/results/run1"
    assert main(["predict", f"s3://{BUCKET}/scenes/", "--out-dir", out, *ck, *ARGS]) == 0
    names = sorted(p.rsplit("/", 1)[1] for p in s3.ls(f"{BUCKET}/results/run1"))
    local = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == local  # rasters, GeoPackages, styles and the manifest: each once
    for name in names:
        if name.endswith((".tif", ".qml")):
            assert s3.cat_file(f"{BUCKET}/results/run1/{name}") == (tmp_path / "local" / name).read_bytes(), (
                name
            )
    manifest = s3.cat_file(f"{BUCKET}/results/run1/manifest.csv").decode()
    assert manifest.count(",done,") == 2
    # started again: the remote manifest says done and the objects exist, nothing is redone
    before = {p: s3.info(p)["LastModified"] for p in s3.ls(f"{BUCKET}/results/run1") if p.endswith(".tif")}
    assert main(["predict", f"s3://{BUCKET}/scenes/", "--out-dir", out, *ck, *ARGS]) == 0
    assert {p: s3.info(p)["LastModified"] for p in before} == before


def test_missing_forbidden_and_truncated_scenes_are_failed_rows(tmp_path, s3, web, varied_checkpoint, capsys):
    _, url, _ = web
    good = _cog(tmp_path / "good.tif")
    s3.put_file(str(good), f"{BUCKET}/mixed/good.tif")
    s3.pipe_file(f"{BUCKET}/mixed/cut.tif", good.read_bytes()[: good.stat().st_size // 3])
    listing = tmp_path / "scenes.txt"
    listing.write_text(
        f"s3://{BUCKET}/mixed/good.tif\ns3://{BUCKET}/mixed/nope.tif\ns3://{BUCKET}/mixed/cut.tif\n"
        f"{url}/forbidden/x.tif\n"
    )
    out = tmp_path / "out"
    rc = main(
        ["predict", f"@{listing}", "--out-dir", str(out), "--checkpoint", str(varied_checkpoint), *ARGS]
    )
    assert rc == 1
    rows = {r.split(",")[0]: r for r in (out / "manifest.csv").read_text().splitlines()[1:]}
    assert ",done," in rows[f"s3://{BUCKET}/mixed/good.tif"]
    assert "not found" in rows[f"s3://{BUCKET}/mixed/nope.tif"]
    assert f"'s3://{BUCKET}/mixed/cut.tif' cannot be read" in rows[f"s3://{BUCKET}/mixed/cut.tif"]
    assert "access denied" in rows[f"{url}/forbidden/x.tif"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("good")) == [
        "good.prob.qml",
        "good.prob.tif",
        "good.roads.gpkg",
    ]
    assert not [p for p in out.iterdir() if p.name.startswith(("nope", "cut", "x."))]  # nothing half-written
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 of 4 scenes failed" in err[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "ftp://host/scene.tif", "--prob-out", "{tmp}/p.tif"], "ftp://"),
        (["predict", "s3:///scene.tif", "--prob-out", "{tmp}/p.tif"], "names no bucket"),
        (["predict", "s3://roadseg-test/scenes/", "--prob-out", "{tmp}/p.tif"], "--out-dir"),
        (["predict", "{tmp}/a.tif", "--out-dir", "https://host/results/"], "web address"),
        (["predict", "{tmp}/a.tif", "--out-dir", "s3://no-such-bucket-here/results/"], "no-such-bucket-here"),
    ],
)
def test_bad_urls_are_refused_at_the_door(tmp_path, s3, argv, message, capsys):
    write_raster(tmp_path / "a.tif", road_image(64, 64))
    rc = main([a.format(tmp=tmp_path) for a in argv] + ["-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert "roadseg-test-secret" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def _item(item_id: str, assets: dict) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": None,
        "properties": {"gsd": 0.5},
        "assets": assets,
        "links": [],
    }


def test_a_stac_item_collection_on_s3_names_outputs_by_item_id(tmp_path, s3, varied_checkpoint):
    """Two items whose visual assets share a file name (as TCI.tif does across Sentinel-2
    items): each item's outputs carry its id; the visual asset is found by role."""
    import json

    for i in range(2):
        s3.put_file(str(_cog(tmp_path / f"v{i}.tif", seed=i)), f"{BUCKET}/stac/item-{i}/visual.tif")
    items = [
        _item(
            f"item-{i}",
            {
                "thumbnail": {"href": f"item-{i}/thumb.png", "roles": ["thumbnail"]},
                "image": {"href": f"item-{i}/visual.tif", "roles": ["visual"]},
            },
        )
        for i in range(2)
    ]
    s3.pipe_file(
        f"{BUCKET}/stac/search.json", json.dumps({"type": "FeatureCollection", "features": items}).encode()
    )
    out = tmp_path / "out"
    argv = ["predict", f"s3://{BUCKET}/stac/search.json", "--out-dir", str(out)]
    assert main([*argv, "--checkpoint", str(varied_checkpoint), *ARGS]) == 0
    assert sorted(p.name for p in out.glob("*.tif")) == ["item-0.prob.tif", "item-1.prob.tif"]
    rows = (out / "manifest.csv").read_text()
    assert f"s3://{BUCKET}/stac/item-0/visual.tif,done" in rows


def test_a_local_stac_item_with_a_chosen_asset(tmp_path, varied_checkpoint, capsys):
    import json

    _cog(tmp_path / "rgb.tif")
    item = _item("scene-7", {"analytic": {"href": "rgb.tif", "roles": ["data"]}})
    (tmp_path / "item.json").write_text(json.dumps(item))
    ck = ["--checkpoint", str(varied_checkpoint), *ARGS]
    assert main(["predict", str(tmp_path / "item.json"), "--prob-out", str(tmp_path / "p.tif"), *ck]) == 2
    assert (
        "no visual (RGB) asset; choose one with --stac-asset KEY (its assets: analytic)"
        in capsys.readouterr().err
    )
    argv = [
        "predict",
        str(tmp_path / "item.json"),
        "--stac-asset",
        "analytic",
        "--prob-out",
        str(tmp_path / "p.tif"),
    ]
    assert main([*argv, *ck]) == 0
    assert main(["predict", str(tmp_path / "rgb.tif"), "--prob-out", str(tmp_path / "q.tif"), *ck]) == 0
    assert (tmp_path / "p.tif").read_bytes() == (tmp_path / "q.tif").read_bytes()


@pytest.mark.heavy  # a 2-worker Dask cluster, about 40 s
def test_cluster_from_s3_to_s3_survives_a_killed_worker(tmp_path, s3, varied_checkpoint):
    """local:2 workers read scenes from S3 and upload their own outputs; a worker killed while
    writing has its scene run again elsewhere: every output is in the bucket once, complete."""
    pytest.importorskip("psutil")
    pytest.importorskip("distributed")
    for i in range(4):
        s3.put_file(str(_cog(tmp_path / f"t{i}.tif", size=320, seed=i)), f"{BUCKET}/cl/in/t{i}.tif")
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    ck = ["--checkpoint", str(varied_checkpoint), "--tta", "d4", "--threads", threads, "-q"]
    assert (
        main(
            [
                "predict",
                *(str(tmp_path / f"t{i}.tif") for i in range(4)),
                "--out-dir",
                str(tmp_path / "seq"),
                *ck,
            ]
        )
        == 0
    )

    killed, stop = [], threading.Event()

    holds = lambda p: ".part" in p and "roadseg-stage-" in p
    killer = threading.Thread(target=kill_a_writer, args=(holds, killed, stop), daemon=True)
    killer.start()
    out = f"s3://{BUCKET}/cl/out"
    try:
        rc = main(["predict", f"s3://{BUCKET}/cl/in/", "--out-dir", out, "--cluster", "local:2", *ck[:-1]])
    finally:
        stop.set()
        killer.join()
    assert rc == 0
    assert killed, "no worker was caught mid-write"
    names = sorted(p.rsplit("/", 1)[1] for p in s3.ls(f"{BUCKET}/cl/out"))
    assert names == sorted(p.name for p in (tmp_path / "seq").iterdir())  # each once, no partial object
    for i in range(4):
        got = s3.cat_file(f"{BUCKET}/cl/out/t{i}.prob.tif")
        assert got == (tmp_path / "seq" / f"t{i}.prob.tif").read_bytes()
    assert s3.cat_file(f"{BUCKET}/cl/out/manifest.csv").decode().count(",done,") == 4


def test_a_stac_assets_band_order_and_gsd_inform_preprocessing(tmp_path, varied_checkpoint):
    """eo:bands blue, green, red: read as --bands 3,2,1 would; the item's gsd is the pixel size
    of an asset without a CRS, as --pixel-size would give it."""
    import json

    from PIL import Image

    rgb = road_image(96, 96)
    write_raster(tmp_path / "bgr.tif", rgb[::-1].copy())
    Image.fromarray(rgb.transpose(1, 2, 0)).save(tmp_path / "plain.png")
    bands = [{"name": n, "common_name": n} for n in ("blue", "green", "red")]
    items = [
        _item("bgr", {"visual": {"href": "bgr.tif", "roles": ["visual"], "eo:bands": bands}}),
        _item("plain", {"visual": {"href": "plain.png", "roles": ["visual"]}}),  # properties.gsd 0.5
    ]
    for item in items:
        (tmp_path / f"{item['id']}.json").write_text(json.dumps(item))
    ck = ["--checkpoint", str(varied_checkpoint), *ARGS]
    runs = {
        "a": [str(tmp_path / "bgr.json")],
        "b": [str(tmp_path / "bgr.tif"), "--bands", "3,2,1"],
        "c": [str(tmp_path / "plain.json")],
        "d": [str(tmp_path / "plain.png"), "--pixel-size", "0.5"],
    }
    for name, argv in runs.items():
        assert main(["predict", *argv, "--prob-out", str(tmp_path / f"{name}.tif"), *ck]) == 0
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    assert (tmp_path / "c.tif").read_bytes() == (tmp_path / "d.tif").read_bytes()
