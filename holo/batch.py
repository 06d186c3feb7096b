"""Batch processing of many samples: resumable, fault tolerant, scaling out on dask.distributed.

``run_batch`` expands the inputs, skips samples already done, claims each remaining sample
with a lock file (so two runs into the same folder never work on the same sample), runs
:func:`holo.sample.process_sample` in-process or on a dask cluster (tasks retried when a
worker dies), streams results into ``manifest.json`` as they complete, and writes the run's
``all_cells.csv``, ``summary.json`` and ``summary.html``.

Nothing is lost: sample names are never a run file, hidden, ``.`` or ``..``
(:func:`holo.sample.sample_name`); inputs whose names collide are told apart
deterministically (:func:`assign_names`); a sample counts as done only for the same input
(resolved path, size and modification time, :func:`input_identity`); a sample folder is
replaced only if holo wrote it; temporaries of a killed run are removed at the next start.

Output folder layout::

    OUT/manifest.json         status of every sample seen so far (done | failed + error)
    OUT/<sample>/...          per-sample outputs (see holo.sample)
    OUT/all_cells.csv         all cells of all finished samples
    OUT/summary.json|html     run summary, failures listed
    OUT/.locks/<sample>.lock  claim of a sample by a running process (removed when done)
    OUT/.<name>.tmp-XXXXXXXX  a sample or run file being written (removed on failure)
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import html
import json
import os
import pickle
import select
import signal
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from holo.errors import HoloError
from holo.io import INPUT_SUFFIXES, is_camera_input
from holo.io._atomic import atomic_path, remove_temporaries
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


def input_identity(path: Path) -> dict:
    """What tells one input from another: ``{"input": resolved path, "input_size": bytes,
    "input_mtime_ns": int}``; for a folder (an OME-Zarr store) the total size and the latest
    modification time of its files."""
    path = Path(path)
    st = path.stat()
    size, mtime = st.st_size, st.st_mtime_ns
    if path.is_dir():
        size = 0
        for root, _, files in os.walk(path):
            for fn in files:
                with contextlib.suppress(OSError):
                    fst = os.stat(os.path.join(root, fn))
                    size += fst.st_size
                    mtime = max(mtime, fst.st_mtime_ns)
    return {"input": str(path.resolve()), "input_size": int(size), "input_mtime_ns": int(mtime)}


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def assign_names(paths: list[Path], manifest: dict) -> list[str]:
    """Sample names of ``paths`` (in order), unique in the run and in the folder.

    An input the manifest already knows (same resolved path) keeps its name. Others take
    :func:`holo.sample.sample_name`; names shared by several inputs (compared ignoring case,
    so that case-insensitive file systems are safe) or held by a different input in the
    manifest become ``<parent folder>_<name>``, and if that is still not unique
    ``<name>-<8 hex of the resolved path>``. The result depends only on the inputs and the
    manifest, never on their order.
    """
    by_input = {rec.get("input"): name for name, rec in manifest.get("samples", {}).items()}
    keys = [str(Path(p).resolve()) for p in paths]
    names: list[str | None] = [by_input.get(k) for k in keys]
    taken = {n.casefold() for n in manifest.get("samples", {})}
    base = [sample_name(p) for p in paths]
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        if n is None:
            groups.setdefault(base[i].casefold(), []).append(i)
    for key, idx in sorted(groups.items()):
        if len(idx) == 1 and key not in taken:
            names[idx[0]] = base[idx[0]]
            taken.add(key)
            continue
        parent = [sample_name(Path(paths[i]).resolve().parent.name + ".h5") + "_" + base[i] for i in idx]
        for j, i in enumerate(idx):
            cand = parent[j]
            if [c.casefold() for c in parent].count(cand.casefold()) > 1 or cand.casefold() in taken:
                cand = f"{base[i]}-{_short_hash(keys[i])}"
            names[i] = cand
            taken.add(cand.casefold())
    return [str(n) for n in names]


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
    remove_temporaries(out_dir, keep=lambda target: target != name)


def _claimed_elsewhere(out_dir: Path, name: str) -> bool:
    """True while ``.locks/<name>.lock`` belongs to a live process (or one on another host)."""
    try:
        owner = json.loads((out_dir / ".locks" / f"{name}.lock").read_text() or "{}")
    except FileNotFoundError:
        return False
    except (OSError, json.JSONDecodeError):
        return True
    if owner.get("host") != socket.gethostname() or not owner.get("pid"):
        return True
    return _pid_alive(int(owner["pid"]))


def _clean_leftovers(out_dir: Path) -> None:
    """Remove the temporaries of killed runs: every ``.X.tmp-*`` whose sample X no live run
    claims (run files' temporaries are written under the manifest lock, held here)."""
    with _manifest_lock(out_dir):
        remove_temporaries(out_dir, keep=lambda target: _claimed_elsewhere(out_dir, target))


def is_done(out_dir: Path, name: str, manifest: dict, identity: dict | None = None) -> bool:
    """Whether sample ``name`` is finished in ``out_dir``; with ``identity``
    (:func:`input_identity`) only if it was made from that same input."""
    rec = manifest["samples"].get(name)
    if not (rec and rec.get("status") == "done" and (out_dir / name / "provenance.json").exists()):
        return False
    return identity is None or all(rec.get(k) == v for k, v in identity.items())


# -- the task run on workers -------------------------------------------------------------
class SampleTimeout(HoloError):
    """A sample ran longer than the batch's per-sample timeout."""


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Bytes of ``fd`` until EOF, or None when ``deadline`` (time.monotonic) passes first."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        data = os.read(fd, 1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def run_with_timeout(fn: Callable, timeout_s: float, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a forked child process, killed after ``timeout_s`` seconds.

    The child's return value (or its exception) comes back pickled through a pipe. A hang
    inside compiled code (where no signal reaches Python) is ended by SIGKILL.
    os.fork is used rather than multiprocessing so that it also works inside daemonic dask
    worker processes, and nothing is pickled on the way in.

    Raises
    ------
    SampleTimeout
        The child did not finish in time (it is killed before this returns).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            payload = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - sent to the parent
            payload = ("err", exc)
        try:
            data = pickle.dumps(payload)
        except Exception as exc:  # an unpicklable result or exception
            data = pickle.dumps(("err", RuntimeError(f"{type(exc).__name__}: {exc}")))
        with os.fdopen(w, "wb") as fh:
            fh.write(data)
        os._exit(0)
    os.close(w)
    data = None
    try:
        data = _read_all(r, time.monotonic() + float(timeout_s))
    finally:
        os.close(r)
        if data is None:  # too late, or interrupted: the child must not outlive us
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if data is None:
        raise SampleTimeout(f"did not finish within {timeout_s:g} s (killed)", item="timeout")
    if not data:
        raise RuntimeError("the sample's process died without a result")
    status, value = pickle.loads(data)
    if status == "err":
        raise value
    return value


def _task(input_path: str, out_dir: str, options: dict, process_fn: Callable = process_sample, name: str | None = None,
          timeout_s: float | None = None) -> dict:
    """Worker-side wrapper: bad data becomes a 'failed' record instead of an exception, so one
    bad input fails only itself; a dying worker raises on the client and dask retries it.
    With ``timeout_s`` the sample runs in a child process killed when the time is up (its
    temporaries are removed, the record says so)."""
    t0 = time.perf_counter()
    name = name or sample_name(input_path)
    args = (input_path, out_dir, SampleOptions(**options))
    try:
        if timeout_s:
            return run_with_timeout(process_fn, timeout_s, *args, name=name)
        return process_fn(*args, name=name)
    except SampleTimeout as exc:
        _remove_temporaries(Path(out_dir), name)
        err = f"{input_path}: {exc}"
    except HoloError as exc:
        err = str(exc)
    except Exception as exc:  # any other failure is reported, not fatal to the batch
        err = f"{input_path}: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return {
        "name": name,
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
    timeout_s: float | None = None,
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
    timeout_s : float, optional
        Per-sample time limit: each sample runs in a child process killed after this many
        seconds (the sample is then recorded as failed, its temporaries removed).
    on_result : callable(record, n_finished, n_total), optional
        Called as each sample completes (progress bars).
    """
    options = options or SampleOptions()
    out = Path(out_dir)
    named = _named_inputs(inputs, out)  # before creating OUT: a bad input leaves no folder
    _make_out(out)
    _clean_leftovers(out)
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    result = BatchResult(out_dir=out)
    todo = _claim_samples(out, named, run_id, force, result)
    claimed = {name for _, name, _ in todo}
    identity = {name: ident for _, name, ident in todo}

    def record(rec: dict) -> None:
        rec = dict(rec, **identity.get(rec["name"], {}), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"), run=run_id)
        _update_manifest(out, rec["name"], rec)
        _release(out, rec["name"])
        claimed.discard(rec["name"])
        (result.done if rec["status"] == "done" else result.failed).append(rec)
        if on_result:
            on_result(rec, len(result.done) + len(result.failed), len(todo))

    opts = asdict(options)
    try:
        if todo and (workers or scheduler):
            _run_on_dask(todo, out, opts, process_fn, run_id, workers, scheduler, retries, record, timeout_s)
        else:
            for p, name, _ in todo:
                record(_task(str(p), str(out), opts, process_fn, name, timeout_s))
    finally:
        for name in list(claimed):  # interrupted: no partial outputs, no stale claims
            _remove_temporaries(out, name)
            _release(out, name)
        result.seconds = time.perf_counter() - t0
    with _manifest_lock(out):
        write_run_summary(out, result)
    return result


def _make_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise HoloError("exists and is not a folder", path=out, item="output")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HoloError(f"cannot create the output folder ({exc.strerror or exc})", path=out, item="output") from None


def _named_inputs(inputs: Iterable[str | Path], out: Path) -> list[tuple[Path, str]]:
    """(path, sample name) of every input (:func:`expand_inputs`), names from
    :func:`assign_names`; files inside the output folder (earlier outputs) are left out."""
    out_key = str(out.resolve())
    paths = [p for p in expand_inputs(inputs) if not (str(p.resolve()) + os.sep).startswith(out_key + os.sep)]
    if not paths:
        raise HoloError("every input lies inside the output folder", path=out, item="input")
    names = assign_names(paths, read_manifest(out) if out.is_dir() else {"samples": {}})
    return list(zip(paths, names))


def _claim_samples(out: Path, named: list[tuple[Path, str]], run_id: str, force: bool,
                   result: BatchResult) -> list[tuple[Path, str, dict]]:
    """(path, name, :func:`input_identity`) of the inputs this run claims; the others go to
    ``result.skipped`` (done before from the same input) or ``result.busy`` (claimed by
    another run)."""
    manifest = read_manifest(out)
    todo = []
    for p, name in named:
        ident = input_identity(p)
        if not force and is_done(out, name, manifest, ident):
            result.skipped.append(name)
        elif _claim(out, name, run_id):
            _remove_temporaries(out, name)
            todo.append((p, name, ident))
        else:
            result.busy.append(name)
    return todo


def _run_on_dask(todo: list[tuple[Path, str, dict]], out: Path, opts: dict, process_fn: Callable, run_id: str,
                 workers: int | None, scheduler: str | None, retries: int, record: Callable[[dict], None],
                 timeout_s: float | None = None) -> None:
    """Run every claimed input as a dask task, passing each record to ``record`` as it
    completes; the client and the cluster are closed before returning (also on error), so
    no worker is still writing when the caller removes its temporaries."""
    from dask.distributed import as_completed

    client = cluster = None
    try:
        client, cluster = _start_client(workers, scheduler)
        futures = {
            client.submit(_task, str(p), str(out), opts, process_fn, name, timeout_s, key=f"holo-{name}-{run_id}",
                          retries=retries, pure=False): (p, name)
            for p, name, _ in todo
        }
        for fut in as_completed(futures):
            p, name = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # e.g. KilledWorker after all retries
                rec = {
                    "name": name,
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
