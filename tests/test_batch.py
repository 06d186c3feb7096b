"""Batch runs: good and corrupt inputs, resume, --force, a killed worker, an external
scheduler, concurrent runs. Inputs are small RI tomograms so each sample is quick; the
acquisition path through reconstruction is covered by the demo test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from holo.batch import expand_inputs, read_manifest, run_batch
from holo.errors import HoloError
from holo.model import Tomogram
from holo.sample import SampleOptions, process_sample

OPTIONS = SampleOptions(seg_method="classic")


def _sphere_tomogram(seed: int) -> Tomogram:
    """Two spheres of RI 1.36 / 1.38 in medium 1.337 on a 0.2 µm grid."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:24, :48, :48].astype(np.float32)
    ri = np.full(z.shape, 1.337, np.float32)
    for cy, cx, n in ((14, 14, 1.36), (34, 33, 1.38)):
        r = 5 + rng.uniform(0, 2)
        ri[(z - 12) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < r * r] = n
    ri += rng.normal(0, 5e-4, ri.shape).astype(np.float32)
    return Tomogram(ri, (0.4, 0.2, 0.2), 1.337, wavelength_um=0.532)


@pytest.fixture
def inputs(tmp_path):
    from holo.io import save_tomogram

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        save_tomogram(_sphere_tomogram(i), folder / f"good{i}.ome.tif")
    # a Tomocube TCF enters the pipeline at segmentation, like an OME-TIFF tomogram
    save_tomogram(_sphere_tomogram(3), folder / "tcf3.TCF")
    (folder / "random.h5").write_bytes(os.urandom(4096))
    good = (folder / "good0.ome.tif").read_bytes()
    (folder / "truncated.ome.tif").write_bytes(good[: len(good) // 3])
    return folder


def _no_temporaries(out: Path) -> bool:
    return not any(".tmp-" in p.name for p in out.rglob("*"))


def test_expand_inputs(inputs):
    paths = expand_inputs([inputs, str(inputs / "good*.ome.tif")])
    assert len(paths) == 6  # duplicates from the glob removed
    with pytest.raises(HoloError, match="matches no file"):
        expand_inputs([inputs / "nothing*.h5"])


def test_bad_inputs_fail_alone_and_rerun_skips(inputs, tmp_path):
    out = tmp_path / "out"
    res = run_batch([inputs], out, OPTIONS)
    assert sorted(r["name"] for r in res.done) == ["good0", "good1", "good2", "tcf3"]
    assert sorted(r["name"] for r in res.failed) == ["random", "truncated"]
    for rec in res.failed:
        assert "\n" not in rec["error"] and rec["name"] in rec["error"]
        assert not (out / rec["name"]).exists()
    for name in ("good0", "good1", "good2"):
        files = {p.name for p in (out / name).iterdir()}
        assert {"ri.ome.tif", "labels.ome.tif", "cells.csv", "report.html", "provenance.json"} <= files
    # two spheres per sample, found by the whole chain
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cells"] == 8 and summary["failed_in_folder"] == ["random", "truncated"]
    assert (out / "summary.html").exists() and (out / "all_cells.csv").exists()
    assert _no_temporaries(out)

    again = run_batch([inputs], out, OPTIONS)
    assert sorted(again.skipped) == ["good0", "good1", "good2", "tcf3"] and len(again.done) == 0
    forced = run_batch([inputs / "good1.ome.tif"], out, OPTIONS, force=True)
    assert [r["name"] for r in forced.done] == ["good1"]
    assert read_manifest(out)["samples"]["good1"]["run"] == forced.done[0]["run"]


def test_interrupted_run_resumes(inputs, tmp_path):
    """A run stopped mid-sample leaves no partial folder; the next run finishes the rest."""
    out = tmp_path / "out"
    calls = []

    def interrupt_on_second(path, out_dir, options, name=None):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return process_sample(path, out_dir, options, name=name)

    with pytest.raises(KeyboardInterrupt):
        run_batch(sorted(inputs.glob("good*.ome.tif")), out, OPTIONS, process_fn=interrupt_on_second)
    assert _no_temporaries(out) and not any((out / ".locks").iterdir())
    res = run_batch(sorted(inputs.glob("good*.ome.tif")), out, OPTIONS)
    assert res.skipped == ["good0"] and sorted(r["name"] for r in res.done) == ["good1", "good2"]


def _kill_worker_once(path, out_dir, options, name=None):
    """Kill the worker process the first time a sample is tried (marker file beside it)."""
    marker = Path(out_dir) / f".killed-{Path(path).name}"
    if not marker.exists():
        marker.write_text("x")
        os._exit(1)
    return process_sample(path, out_dir, options, name=name)


def test_killed_worker_is_retried(inputs, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out = tmp_path / "out"
    res = run_batch([inputs / "good0.ome.tif"], out, OPTIONS, workers=1, process_fn=_kill_worker_once)
    assert [r["name"] for r in res.done] == ["good0"] and not res.failed
    assert (out / ".killed-good0.ome.tif").exists()
    assert _no_temporaries(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_external_scheduler(inputs, tmp_path):
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    bindir = Path(sys.executable).parent
    sched = subprocess.Popen(
        [str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    worker = subprocess.Popen(
        [str(bindir / "dask"), "worker", addr, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        out = tmp_path / "out"
        res = run_batch([inputs / "good0.ome.tif", inputs / "random.h5"], out, OPTIONS, scheduler=addr)
        assert [r["name"] for r in res.done] == ["good0"] and [r["name"] for r in res.failed] == ["random"]
    finally:
        for p in (worker, sched):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_concurrent_runs_share_the_folder(inputs, tmp_path):
    """Two runs into one folder at once: every sample done exactly once, manifest intact."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "holo.cli.main", "run", str(inputs / "good*.ome.tif"), "-o", str(out), "--seg-method", "classic", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    done = sorted(n for o in outs for n in o["done"])
    assert done == ["good0", "good1", "good2"]
    manifest = read_manifest(out)
    assert all(manifest["samples"][n]["status"] == "done" for n in done)
    assert _no_temporaries(out)


def test_cli_run_exit_codes(inputs, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "holo.cli.main", "run", str(inputs), "-o", str(out), "--seg-method", "classic", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_done"] == 4 and summary["n_failed"] == 2
    assert "Traceback" not in proc.stderr
    usage = subprocess.run([sys.executable, "-m", "holo.cli.main", "run", "-o", str(out)], capture_output=True, text=True)
    assert usage.returncode == 2


def test_ome_zarr_outputs(inputs, tmp_path):
    from holo.io import open_path, read_labels

    out = tmp_path / "out"
    res = run_batch([inputs / "good2.ome.tif"], out, SampleOptions(seg_method="classic", image_format="ome-zarr"))
    assert [r["name"] for r in res.done] == ["good2"]
    store = out / "good2" / "ri.ome.zarr"
    tomo = open_path(store)
    labels, voxel = read_labels(store)
    assert set(labels) == {"semantic", "instances"}
    np.testing.assert_allclose(voxel, tomo.voxel_size_um)
    assert len(np.unique(labels["instances"])) - 1 == 2  # two spheres


# -- nothing lost: names, identity, foreign folders, leftovers, timeouts -------------------------
def _quick_process(path, out_dir, options, name=None):
    """A stand-in for process_sample that writes a sample folder the way it does."""
    from holo.io._atomic import atomic_path
    from holo.sample import sample_name

    name = name or sample_name(path)
    with atomic_path(Path(out_dir) / name) as tmp:
        tmp.mkdir()
        (tmp / "provenance.json").write_text(json.dumps({"input": str(path)}))
        (tmp / "cells.csv").write_text("sample\n")
    return {"name": name, "input": str(Path(path).resolve()), "status": "done", "n_cells": 0}


def test_sample_names_are_never_run_files_or_hidden():
    from holo.sample import sample_name

    assert sample_name("in/..tcf") == "sample" and sample_name(".tcf") == "sample"
    assert sample_name("in/.hidden.h5") == "hidden"
    assert sample_name("summary.html.tcf") == "summary.html_sample"
    assert sample_name("MANIFEST.JSON.h5") == "MANIFEST.JSON_sample"
    assert sample_name("all_cells.csv.ome.tif") == "all_cells.csv_sample"
    assert sample_name("my sample.h5") == "my_sample"


def test_colliding_names_are_told_apart_deterministically(tmp_path):
    from holo.batch import assign_names

    paths = []
    for sub in ("day1", "day2"):
        (tmp_path / sub).mkdir()
        paths.append(tmp_path / sub / "cell.h5")
    paths += [tmp_path / "day1" / "my sample.h5", tmp_path / "day1" / "my_sample.h5", tmp_path / "day3" / "Cell.tcf"]
    names = assign_names(paths, {"samples": {}})
    assert names[:2] == ["day1_cell", "day2_cell"] and names[4] == "day3_Cell"
    assert len({n.casefold() for n in names}) == len(names)  # unique, also on case-insensitive disks
    assert names[2].startswith("my_sample-") and names[3].startswith("my_sample-")
    assert assign_names(paths[::-1], {"samples": {}}) == names[::-1]  # order does not matter


def test_a_different_input_is_processed_never_skipped(tmp_path):
    out = tmp_path / "out"
    for sub in ("day1", "day2"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "cell.h5").write_bytes(sub.encode())
    first = run_batch([tmp_path / "day1" / "cell.h5"], out, OPTIONS, process_fn=_quick_process)
    second = run_batch([tmp_path / "day2" / "cell.h5"], out, OPTIONS, process_fn=_quick_process)
    assert [r["name"] for r in first.done] == ["cell"] and [r["name"] for r in second.done] == ["day2_cell"]
    manifest = read_manifest(out)["samples"]
    assert manifest["cell"]["input"].endswith("day1/cell.h5") and manifest["day2_cell"]["input"].endswith("day2/cell.h5")
    assert run_batch([tmp_path / "day1" / "cell.h5"], out, OPTIONS, process_fn=_quick_process).skipped == ["cell"]
    (tmp_path / "day1" / "cell.h5").write_bytes(b"new content")  # same path, new data: redone
    assert [r["name"] for r in run_batch([tmp_path / "day1" / "cell.h5"], out, OPTIONS, process_fn=_quick_process).done] == ["cell"]


def test_a_folder_holo_did_not_write_is_never_replaced(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "s.h5").write_bytes(b"x")
    out = tmp_path / "out"
    (out / "s").mkdir(parents=True)
    (out / "s" / "thesis.tex").write_text("precious")
    res = run_batch([tmp_path / "in" / "s.h5"], out, OPTIONS, process_fn=_quick_process)
    assert [r["name"] for r in res.failed] == ["s"] and "did not write" in res.failed[0]["error"]
    assert (out / "s" / "thesis.tex").read_text() == "precious"


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "s.h5").write_bytes(b"x")
    out = tmp_path / "out"
    (out / ".gone.tmp-0123abcd").mkdir(parents=True)  # a sample folder being built when killed
    (out / ".manifest.json.tmp-89abcdef").write_text("{")
    (out / ".locks").mkdir()
    (out / ".locks" / "gone.lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
    run_batch([tmp_path / "in" / "s.h5"], out, OPTIONS, process_fn=_quick_process)
    assert _no_temporaries(out)


def test_missing_input_creates_no_output_folder(tmp_path):
    with pytest.raises(HoloError, match="matches no file"):
        run_batch([tmp_path / "nosuch.h5"], tmp_path / "out2", OPTIONS)
    assert not (tmp_path / "out2").exists()


def _hang(path, out_dir, options, name=None):
    """Starts writing its sample, then hangs (as a stuck compiled loop would)."""
    (Path(out_dir) / f".{name}.tmp-00000000").mkdir()
    time.sleep(600)


def test_a_sample_over_its_time_limit_is_killed(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "s.h5").write_bytes(b"x")
    out = tmp_path / "out"
    t0 = time.monotonic()
    res = run_batch([tmp_path / "in" / "s.h5"], out, OPTIONS, process_fn=_hang, timeout_s=1.0)
    assert time.monotonic() - t0 < 60
    assert [r["name"] for r in res.failed] == ["s"] and "did not finish within 1 s" in res.failed[0]["error"]
    assert _no_temporaries(out) and not (out / "s").exists()


def test_run_with_timeout_returns_and_raises():
    from holo.batch import run_with_timeout

    assert run_with_timeout(lambda a, b=0: a + b, 30, 2, b=3) == 5
    with pytest.raises(HoloError, match="bad"):
        run_with_timeout(lambda: (_ for _ in ()).throw(HoloError("bad", item="x")), 30)
