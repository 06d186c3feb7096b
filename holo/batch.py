"""Batch processing of many samples: resumable, fault tolerant, scaling out on dask.distributed.

``run_batch`` expands the inputs, skips samples already done, claims each remaining sample
with a lock file (so two runs into the same folder never work on the same sample), runs
:func:`holo.sample.process_sample` in-process or on a dask cluster (tasks retried when a
worker dies), streams results into ``manifest.json`` as they complete, and writes the run's
``all_cells.csv``, ``summary.json`` and ``summary.html``.

Output folder layout::

    OUT/manifest.json         status of every sample seen so far (done | failed + error)
    OUT/<sample>/...          per-sample outputs (see holo.sample)
    OUT/all_cells.csv         all cells of all finished samples
    OUT/summary.json|html     run summary, failures listed
    OUT/.locks/<sample>.lock  claim of a sample by a running process (removed when done)
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import html
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from holo.errors import HoloError
from holo.io import INPUT_SUFFIXES, is_camera_input
from holo.io._atomic import atomic_path
from holo.sample import SampleOptions, process_sample, sample_name


# -- inputs ---------------------------------------------------------------------------
def _is_input_file(p: Path) -> bool:
    low = p.name.lower()
    return any(low.endswith(s) for s in INPUT_SUFFIXES) and not p.name.startswith(".")


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files, folders (searched recursively for acquisitions and tomograms) and glob patterns,
    de-duplicated in order. Raises HoloError naming an input that matches nothing."""
    found: list[Path] = []
    for item in inputs:
        s = str(item)
        p = Path(s)
        if p.is_dir() and not s.lower().rstrip("/").endswith(".zarr") and not is_camera_input(p):
            hits = sorted(q for q in p.rglob("*") if _is_input_file(q) and (q.is_file() or q.suffix == ".zarr"))
            hits = [q for q in hits if not any(part.endswith(".zarr") for part in q.relative_to(p).parts[:-1])]
        elif p.exists():
            hits = [p]
        else:
            hits = sorted(Path(q) for q in glob.glob(s, recursive=True))
        if not hits:
            raise HoloError("matches no file", path=s, item="input")
        found.extend(hits)
    seen, out = set(), []
    for p in found:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# -- manifest ---------------------------------------------------------------------------
@contextlib.contextmanager
def _manifest_lock(out_dir: Path):
    with open(out_dir / ".manifest.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_manifest(out_dir: str | Path) -> dict:
    """The manifest ``{"samples": {name: record}}`` of an output folder (empty if none)."""
    path = Path(out_dir) / "manifest.json"
    if not path.exists():
        return {"samples": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HoloError(f"is corrupt ({exc.msg})", path=path) from None


def _update_manifest(out_dir: Path, name: str, record: dict) -> None:
    with _manifest_lock(out_dir):
        manifest = read_manifest(out_dir)
        manifest["samples"][name] = record
        with atomic_path(out_dir / "manifest.json") as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, default=str))


# -- claims -----------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(out_dir: Path, name: str, run_id: str) -> bool:
    """Create ``.locks/<name>.lock`` exclusively; break it if its owner process is gone."""
    locks = out_dir / ".locks"
    locks.mkdir(exist_ok=True)
    lock = locks / f"{name}.lock"
    payload = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run": run_id})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                owner = {}
            if owner.get("host") == socket.gethostname() and owner.get("pid") and not _pid_alive(int(owner["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                _remove_temporaries(out_dir, name)
                continue
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(payload)
        return True
    return False


def _release(out_dir: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (out_dir / ".locks" / f"{name}.lock").unlink()


def _remove_temporaries(out_dir: Path, name: str) -> None:
    for tmp in out_dir.glob(f".{name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def is_done(out_dir: Path, name: str, manifest: dict) -> bool:
    rec = manifest["samples"].get(name)
    return bool(rec and rec.get("status") == "done" and (out_dir / name / "provenance.json").exists())


# -- the task run on workers -------------------------------------------------------------
def _task(input_path: str, out_dir: str, options: dict, process_fn: Callable = process_sample) -> dict:
    """Worker-side wrapper: bad data becomes a 'failed' record instead of an exception, so one
    bad input fails only itself; a dying worker raises on the client and dask retries it."""
    t0 = time.perf_counter()
    try:
        return process_fn(input_path, out_dir, SampleOptions(**options))
    except HoloError as exc:
        err = str(exc)
    except Exception as exc:  # any other failure is reported, not fatal to the batch
        err = f"{input_path}: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return {
        "name": sample_name(input_path),
        "input": str(Path(input_path).resolve()),
        "status": "failed",
        "error": err,
        "seconds": round(time.perf_counter() - t0, 3),
    }


@dataclass
class BatchResult:
    out_dir: Path
    done: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "n_done": len(self.done),
            "n_failed": len(self.failed),
            "n_skipped": len(self.skipped),
            "n_busy": len(self.busy),
            "seconds": round(self.seconds, 3),
            "done": [r["name"] for r in self.done],
            "skipped": self.skipped,
            "busy_elsewhere": self.busy,
            "failures": [{"name": r["name"], "input": r["input"], "error": r["error"]} for r in self.failed],
        }


def _start_client(workers: int | None, scheduler: str | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="20s"), None
    from holo.threads import worker_thread_env

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40, env=worker_thread_env(workers or 1))
    return Client(cluster), cluster


def run_batch(
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    options: SampleOptions | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    retries: int = 2,
    on_result: Callable[[dict, int, int], None] | None = None,
    process_fn: Callable = process_sample,
) -> BatchResult:
    """Process every input into ``out_dir``; see the module docstring for the layout.

    Parameters
    ----------
    workers : int, optional
        Start a dask LocalCluster with this many single-threaded worker processes.
    scheduler : str, optional
        Address ``tcp://HOST:PORT`` of an existing dask scheduler (wins over ``workers``).
        Without either, samples run one after another in this process.
    force : bool
        Redo samples already marked done.
    retries : int
        How often dask reruns a task whose worker died.
    on_result : callable(record, n_finished, n_total), optional
        Called as each sample completes (progress bars).
    """
    options = options or SampleOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    result = BatchResult(out_dir=out)
    todo = _claim_samples(out, _named_inputs(inputs), run_id, force, result)
    claimed = {sample_name(p) for p in todo}

    def record(rec: dict) -> None:
        rec = dict(rec, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"), run=run_id)
        _update_manifest(out, rec["name"], rec)
        _release(out, rec["name"])
        claimed.discard(rec["name"])
        (result.done if rec["status"] == "done" else result.failed).append(rec)
        if on_result:
            on_result(rec, len(result.done) + len(result.failed), len(todo))

    opts = asdict(options)
    try:
        if todo and (workers or scheduler):
            _run_on_dask(todo, out, opts, process_fn, run_id, workers, scheduler, retries, record)
        else:
            for p in todo:
                record(_task(str(p), str(out), opts, process_fn))
    finally:
        for name in list(claimed):  # interrupted: no partial outputs, no stale claims
            _remove_temporaries(out, name)
            _release(out, name)
        result.seconds = time.perf_counter() - t0
    write_run_summary(out, result)
    return result


def _named_inputs(inputs: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """(path, sample name) of every input (:func:`expand_inputs`); two inputs with one
    sample name are an error."""
    paths = expand_inputs(inputs)
    names = [sample_name(p) for p in paths]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise HoloError(f"several inputs map to the same sample name(s): {', '.join(sorted(dup))}", item="input")
    return list(zip(paths, names))


def _claim_samples(out: Path, named: list[tuple[Path, str]], run_id: str, force: bool, result: BatchResult) -> list[Path]:
    """The inputs this run claims; the others go to ``result.skipped`` (done before) or
    ``result.busy`` (claimed by another run)."""
    manifest = read_manifest(out)
    todo: list[Path] = []
    for p, name in named:
        if not force and is_done(out, name, manifest):
            result.skipped.append(name)
        elif _claim(out, name, run_id):
            _remove_temporaries(out, name)
            todo.append(p)
        else:
            result.busy.append(name)
    return todo


def _run_on_dask(todo: list[Path], out: Path, opts: dict, process_fn: Callable, run_id: str, workers: int | None,
                 scheduler: str | None, retries: int, record: Callable[[dict], None]) -> None:
    """Run every claimed input as a dask task, passing each record to ``record`` as it
    completes; the client and the cluster are closed before returning (also on error), so
    no worker is still writing when the caller removes its temporaries."""
    from dask.distributed import as_completed

    client = cluster = None
    try:
        client, cluster = _start_client(workers, scheduler)
        futures = {
            client.submit(_task, str(p), str(out), opts, process_fn, key=f"holo-{sample_name(p)}-{run_id}", retries=retries, pure=False): p
            for p in todo
        }
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # e.g. KilledWorker after all retries
                rec = {
                    "name": sample_name(p),
                    "input": str(p.resolve()),
                    "status": "failed",
                    "error": f"{p}: worker failed: {type(exc).__name__}: {' '.join(str(exc).split())}",
                }
            record(rec)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


# -- run-level outputs --------------------------------------------------------------------
def write_run_summary(out: Path, result: BatchResult) -> None:
    """``all_cells.csv`` over every finished sample in the folder, ``summary.json`` and
    ``summary.html`` (counts, per-sample status, failures)."""
    import pandas as pd

    manifest = read_manifest(out)
    tables = []
    for name, rec in sorted(manifest["samples"].items()):
        csv = out / name / "cells.csv"
        if rec.get("status") == "done" and csv.exists():
            with contextlib.suppress(pd.errors.EmptyDataError):
                tables.append(pd.read_csv(csv))
    cells = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["sample"])
    with atomic_path(out / "all_cells.csv") as tmp:
        cells.to_csv(tmp, index=False)

    class_counts = {}
    if "class" in cells.columns:
        class_counts = {str(k): int(v) for k, v in cells["class"].value_counts().items()}
    samples = manifest["samples"]
    summary = {
        "run": result.summary(),
        "samples_in_folder": len(samples),
        "done_in_folder": sum(r.get("status") == "done" for r in samples.values()),
        "failed_in_folder": sorted(n for n, r in samples.items() if r.get("status") == "failed"),
        "n_cells": int(len(cells)),
        "class_counts": class_counts,
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))

    rows = []
    for name, rec in sorted(samples.items()):
        link = f'<a href="{html.escape(name)}/report.html">{html.escape(name)}</a>' if rec.get("status") == "done" else html.escape(name)
        rows.append(
            f"<tr class='{rec.get('status')}'><td>{link}</td><td>{html.escape(str(rec.get('status')))}</td>"
            f"<td>{rec.get('n_cells', '')}</td><td>{html.escape(str(rec.get('error', '')))}</td></tr>"
        )
    counts = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(class_counts.items()))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>holo run summary</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
tr.failed td{{background:#fdd}}</style></head><body>
<h1>holo run summary</h1>
<p>{summary['done_in_folder']} of {summary['samples_in_folder']} samples done, {len(summary['failed_in_folder'])} failed;
{summary['n_cells']} cells. This run: {len(result.done)} done, {len(result.failed)} failed, {len(result.skipped)} skipped
in {result.seconds:.1f} s.</p>
<h2>Samples</h2><table><tr><th>sample</th><th>status</th><th>cells</th><th>error</th></tr>{''.join(rows)}</table>
<h2>Cells by class</h2><table><tr><th>class</th><th>count</th></tr>{counts}</table>
<p>All cells: <a href="all_cells.csv">all_cells.csv</a></p></body></html>"""
    with atomic_path(out / "summary.html") as tmp:
        tmp.write_text(page)
