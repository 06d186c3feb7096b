"""Simulated training sets: N acquisitions of random phantoms with their ground truth.

Layout of a dataset folder::

    DIR/index.json        what was generated and how (see :func:`generate_dataset`)
    DIR/sample_0000.h5    acquisition + /ground_truth (holo.io.acquisition layout)
    DIR/sample_0001.h5
    ...

Sample i uses the seed ``seed·100003 + i`` for both its phantom and its acquisition, so a
sample depends only on (seed, i, parameters): a dataset can be extended, regenerated in
parallel or resumed and stays identical.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from holo.io._atomic import atomic_path

__all__ = ["generate_dataset", "sample_seed", "INDEX_NAME", "SEED_STRIDE"]

INDEX_NAME = "index.json"
#: Seed of sample i: seed·SEED_STRIDE + i (a prime, so datasets of different seeds do not share samples).
SEED_STRIDE = 100003
_FORMAT = "holo-twin-dataset"


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` of a dataset generated with ``seed``: seed·100003 + index."""
    return int(seed) * SEED_STRIDE + int(index)


def sample_name(index: int) -> str:
    """File name of sample ``index``: ``sample_0000.h5``."""
    return f"sample_{int(index):04d}.h5"


def _make_sample(out_dir: str, index: int, seed: int, kind: str, params: dict) -> dict:
    """Simulate and write one sample; returns its index record (runs in worker processes)."""
    from holo.io.acquisition import write_acquisition
    from holo.twin.acquire import phantom_grid_for_frame, simulate_acquisition
    from holo.twin.camera import CameraModel
    from holo.twin.phantoms import make_phantom

    p = dict(params)
    s = sample_seed(seed, index)
    (ny, nx), voxel, pix = phantom_grid_for_frame(
        p.pop("frame_shape_yx"), voxel_size_um=p.pop("voxel_size_um"), objective_na=p["objective_na"], wavelength_um=p["wavelength_um"]
    )
    phantom = make_phantom(
        kind, shape_zyx=(int(p.pop("n_z")), ny, nx), voxel_size_um=(voxel, voxel, voxel),
        medium_index=p.pop("medium_index"), n_cells=p.pop("n_cells"), seed=s,
    )
    camera = CameraModel(**p.pop("camera"))
    acq = simulate_acquisition(phantom, camera=camera, pixel_size_um=pix, seed=s, **p)
    path = Path(out_dir) / sample_name(index)
    write_acquisition(path, acq)
    classes = {int(k): str(v) for k, v in phantom.classes.items()}
    return {
        "index": int(index),
        "file": path.name,
        "seed": s,
        "kind": kind,
        "n_frames": acq.n_frames,
        "frame_shape": list(acq.frame_shape),
        "n_cells": len(classes),
        "classes": {str(k): v for k, v in sorted(classes.items())},
        "class_counts": dict(sorted(Counter(classes.values()).items())),
    }


def _write_index(path: Path, index: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(index, indent=2) + "\n")


def generate_dataset(
    out_dir: str | Path,
    n: int,
    *,
    kinds: Sequence[str] = ("mixed",),
    seed: int = 0,
    workers: int = 1,
    frame_shape_yx=(256, 256),
    n_z: int = 64,
    voxel_size_um: float = 0.2,
    n_cells: int | None = None,
    medium_index: float = 1.337,
    camera=None,
    overwrite: bool = False,
    progress: Callable | None = None,
    **acquisition_kwargs,
) -> Path:
    """Write ``n`` simulated acquisitions with ground truth and an ``index.json``.

    Sample i is a phantom of kind ``kinds[i % len(kinds)]`` on a grid that images onto a
    camera frame of ``frame_shape_yx`` (:func:`holo.twin.acquire.phantom_grid_for_frame`,
    isotropic voxel ≤ ``voxel_size_um``, ``n_z`` slices), simulated by
    :func:`holo.twin.acquire.simulate_acquisition` with seed ``seed·100003 + i``.

    Parameters
    ----------
    out_dir : str or Path
        Dataset folder (created).
    n : int
        Number of samples ≥ 1.
    kinds : sequence of str
        Phantom kinds cycled over the samples ("cell", "rbc", "bacteria", "mixed").
    seed : int
        Dataset seed.
    workers : int
        Worker processes (1 = in this process).
    frame_shape_yx, n_z, voxel_size_um, n_cells, medium_index :
        Phantom and frame geometry.
    camera : CameraModel or dict, optional
        Sensor of every sample.
    overwrite : bool
        Regenerate samples already present. Without it, samples listed in an existing index
        made with the same parameters are kept (resume); other parameters regenerate all.
    progress : callable, optional
        ``progress(done, total, note=...)`` after each sample.
    **acquisition_kwargs
        Passed to ``simulate_acquisition`` (``geometry``, ``n_angles``, ``objective_na``,
        ``condenser_na``, ``wavelength_um``, ``drift_um``, ``fringes``, ...).

    Returns
    -------
    Path
        The ``index.json``, whose ``samples`` list has per sample: ``index``, ``file``,
        ``seed``, ``kind``, ``n_frames``, ``frame_shape``, ``n_cells``, ``classes`` (cell id →
        class) and ``class_counts``.
    """
    n, workers = int(n), int(workers)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    kinds = [str(k) for k in ([kinds] if isinstance(kinds, str) else kinds)]
    if not kinds:
        raise ValueError("kinds must name at least one phantom kind")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    params = _dataset_parameters(frame_shape_yx, n_z, voxel_size_um, n_cells, medium_index, camera, acquisition_kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / INDEX_NAME
    done = {} if overwrite else _resumable_samples(out, index_path, n=n, seed=seed, kinds=kinds, params=params)
    if progress is not None:
        progress(len(done), n, note="resumed" if done else "")
    jobs = [(str(out), i, int(seed), kinds[i % len(kinds)], params) for i in range(n) if i not in done]
    for rec in _run_jobs(jobs, workers):
        done[rec["index"]] = rec
        _write_index(index_path, _index_doc(n, seed, kinds, params, done, complete=False))
        if progress is not None:
            progress(len(done), n, note=rec["file"])
    _write_index(index_path, _index_doc(n, seed, kinds, params, done, complete=True))
    return index_path


def _dataset_parameters(frame_shape_yx, n_z, voxel_size_um, n_cells, medium_index, camera, acquisition_kwargs: dict) -> dict:
    """The JSON-clean parameters shared by every sample (stored in the index, compared on resume)."""
    from dataclasses import asdict

    from holo.twin.camera import CameraModel

    for key in ("pixel_size_um", "seed", "progress", "carrier_cycles_per_um"):
        if key in acquisition_kwargs:
            raise ValueError(f"{key} is chosen per sample by generate_dataset and cannot be passed")
    if camera is None:
        camera = CameraModel()
    elif isinstance(camera, dict):
        camera = CameraModel(**camera)
    acquisition_kwargs = dict(acquisition_kwargs)
    acquisition_kwargs.setdefault("objective_na", 1.2)
    acquisition_kwargs.setdefault("wavelength_um", 0.532)
    shape = [int(s) for s in np.atleast_1d(frame_shape_yx)]
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"frame_shape_yx must be N or (Y, X) with at least 8 pixels, got {frame_shape_yx!r}")
    params = {
        "frame_shape_yx": shape,
        "n_z": int(n_z),
        "voxel_size_um": float(voxel_size_um),
        "n_cells": None if n_cells is None else int(n_cells),
        "medium_index": float(medium_index),
        "camera": asdict(camera),
        **acquisition_kwargs,
    }
    # the parameters must be JSON-clean to be compared with a stored index
    return json.loads(json.dumps(params))


def _resumable_samples(out: Path, index_path: Path, *, n: int, seed: int, kinds: list[str], params: dict) -> dict[int, dict]:
    """Records of an existing index made with the same seed, kinds and parameters whose file
    exists and whose index is < n (nothing when the index is missing, unreadable or differs)."""
    if not index_path.exists():
        return {}
    try:
        old = json.loads(index_path.read_text())
    except (OSError, ValueError):
        return {}
    same = old.get("format") == _FORMAT and old.get("seed") == int(seed) and old.get("parameters") == params and old.get("kinds") == kinds
    if not same:
        return {}
    done = {}
    for rec in old.get("samples", []):
        i = int(rec["index"])
        if i < n and (out / rec["file"]).exists():
            done[i] = rec
    return done


def _index_doc(n: int, seed: int, kinds: list[str], params: dict, done: dict[int, dict], *, complete: bool) -> dict:
    """The ``index.json`` document: format, seed rule, parameters and the sample records so far."""
    return {
        "format": _FORMAT,
        "version": 1,
        "n": n,
        "seed": int(seed),
        "seed_rule": "seed * 100003 + index",
        "kinds": kinds,
        "parameters": params,
        "complete": complete,
        "samples": [done[i] for i in sorted(done)],
    }


def _run_jobs(jobs: list[tuple], workers: int) -> Iterator[dict]:
    """Yield the record of each :func:`_make_sample` job as it completes: in this process when
    ``workers`` is 1 or one job is left, else in a pool of spawned processes (pending jobs are
    cancelled if the caller stops or a job fails)."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield _make_sample(*job)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_make_sample, *job) for job in jobs]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
