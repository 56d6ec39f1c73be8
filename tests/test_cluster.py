"""Many scenes on a local Dask cluster of 2 workers: the same bytes as a sequential run, and a
worker killed mid-write has its scene run again with nothing half-written left."""

import csv
import os
import threading
from pathlib import Path

import pytest
from conftest import kill_a_writer, write_tiles

from roadseg.cli import main
from roadseg.cluster import parse_cluster
from roadseg.errors import InputError

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")


def _argv(src, out, ckpt, *extra):
    return [
        "predict",
        str(src),
        "--out-dir",
        str(out),
        "--checkpoint",
        str(ckpt),
        "--tta",
        "d4",
        "-q",
        *extra,
    ]


@pytest.mark.heavy  # a 2-worker Dask cluster, about 30 s
def test_cluster_run_matches_sequential_bytes_and_survives_a_killed_worker(tmp_path, varied_checkpoint):
    src = write_tiles(tmp_path / "tiles", 6, 384, broken_bytes=4000)
    # local:2 on this machine's cores gives each worker its share of threads; oneDNN's float sums
    # depend on the thread count, so the sequential run to match uses the same share
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert (
        main(_argv(src, tmp_path / "seq", varied_checkpoint, "--threads", threads)) == 1
    )  # broken.tif failed

    out = tmp_path / "cl"
    killed, stop = [], threading.Event()
    killer = threading.Thread(
        target=kill_a_writer, args=(lambda p: ".part" in p and str(out) in p, killed, stop), daemon=True
    )
    killer.start()
    try:
        assert main(_argv(src, out, varied_checkpoint, "--cluster", "local:2")) == 1
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was caught mid-write"

    with open(out / "manifest.csv", newline="") as f:
        rows = {r["scene"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}
    assert {k: r["status"] for k, r in rows.items()} == {
        **{f"t{i}.tif": "done" for i in range(6)},
        "broken.tif": "failed",
    }
    assert "cannot be read" in rows["broken.tif"]["error"] or "not a raster" in rows["broken.tif"]["error"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no partial file left
    # the scene killed mid-write (broken.tif too: it fails only past its header) was run again by
    # another worker; the killed one may have finished or failed other scenes before it
    pid, part = killed[0]
    scene = Path(part).name.lstrip(".").split(".")[0] + ".tif"  # .t3.prob.tif.XXXX.part.tif
    assert rows[scene]["worker"].rsplit(":", 1)[-1] != str(pid), (part, rows[scene])
    for i in range(6):
        for name in (f"t{i}.prob.tif",):
            assert (out / name).read_bytes() == (tmp_path / "seq" / name).read_bytes(), name
        assert (out / f"t{i}.roads.gpkg").is_file()


def test_cluster_specs_are_checked(tmp_path):
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad, msg in [
        ("local:0", "from 1 to"),
        ("local:100000", "from 1 to"),
        ("local:x", "from 1 to"),
        ("nowhere", "local:N"),
        ("s.json", "not found"),
    ]:
        with pytest.raises(InputError, match=msg):
            parse_cluster(str(tmp_path / bad) if bad.endswith(".json") else bad)


def test_cluster_needs_out_dir(tmp_path, scene_path, capsys):
    assert main(["predict", str(scene_path), "--out", str(tmp_path / "r.gpkg"), "--cluster", "local:2"]) == 2
    assert "--out-dir" in capsys.readouterr().err
