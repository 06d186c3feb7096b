"""Regenerate the segmentation/classification training set from the digital twin.

A training volume (:class:`holo.segmentation.data.TrainingVolume`) is a phantom
(:func:`holo.twin.phantoms.make_phantom`) seen through the instrument, with its ground-truth
labels, on the training voxel grid. Three sources:

``"pipeline"``
    digital twin end to end: phantom → simulated holograms
    (:func:`holo.twin.acquire.simulate_acquisition`) → reconstruction
    (:func:`holo.pipeline.reconstruct`, first-order Rytov); the phantom's labels are
    resampled (nearest neighbour, both grids centred on the optical axis with the volume
    centre at z = 0) onto the reconstruction grid.
``"gp"``
    the same chain reconstructed with ``method="gp"`` (Rytov + Gerchberg–Papoulis
    non-negativity, which fills part of the missing cone; the reconstruction ``holo run`` makes).
``"otf"``
    the instrument's optical transfer function applied to the phantom RI plus band-limited
    noise (:func:`holo.segmentation.data.apply_otf`), then resampled to the reconstruction grid.
``"otf_rotation"``
    the same phantoms (seeds of ``"otf"``) through the transfer function of a sample-rotation
    tomograph (60 views over π about Y: the missing cone lies about the rotation axis), so that
    training covers that geometry at the cost of an FFT (``"gp_rotation"``, the twin end to end
    by sample rotation, costs minutes per volume).

Every sample is finally put on the training voxel grid (linear for RI, nearest for labels).
Seeds are disjoint between splits (and between the training sources up to 300 pipeline
volumes), and the test seeds are never used for training or model selection:

    train: otf 1000 + i, pipeline 3000 + i, gp 3300 + i;  val: otf 5000 + i, pipeline and gp 6000 + i;
    test:  otf 9000 + i, pipeline and gp 9500 + i

(``pipeline`` and ``gp`` share their validation and test phantoms, so the two reconstructions
are compared on the same cells; their training phantoms differ.)

Usage (the shipped weights' data set)::

    python -m holo.training.make_data --out data/seg --workers 16 \
        --split train:otf:320 --split train:pipeline:48 --split val:otf:16 --split val:pipeline:16 \
        --split test:pipeline:40 --split test:otf:24
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from holo.segmentation.data import TrainingVolume, apply_otf, labels_to_grid, ri_to_grid, save_volume

__all__ = ["phantom_volume", "SPLIT_SEED0", "KINDS", "main"]

#: First seed of each (split, source); volume i of it has seed SPLIT_SEED0 + i.
SPLIT_SEED0 = {("train", "otf"): 1000, ("train", "pipeline"): 3000, ("val", "otf"): 5000,
               ("val", "pipeline"): 6000, ("test", "otf"): 9000, ("test", "pipeline"): 9500,
               ("train", "gp"): 3300, ("val", "gp"): 6000, ("test", "gp"): 9500,
               # the gp phantoms, acquired by sample rotation
               ("train", "gp_rotation"): 3300, ("val", "gp_rotation"): 6000, ("test", "gp_rotation"): 9500,
               # the otf phantoms, seen through a sample-rotation transfer function
               ("train", "otf_rotation"): 1000, ("val", "otf_rotation"): 5000, ("test", "otf_rotation"): 9000}
#: Phantom kind of volume i: KINDS[i % len(KINDS)].
KINDS = ("mixed", "cell", "rbc", "bacteria", "mixed")
DEFAULT_SPLITS = ("train:otf:320", "train:pipeline:48", "val:otf:16", "val:pipeline:16", "test:pipeline:40",
                  "test:otf:24")


def _seen_by_instrument(ph, source: str, seed: int, medium_index: float, rng, noise_ri, reconstruct_kw=None):
    """(RI, its voxel size) of a phantom as the instrument sees it through ``source``
    (``reconstruct_kw``: more options of :func:`holo.pipeline.reconstruct` for the chain sources)."""
    pv = tuple(float(v) for v in ph.voxel_size_um)
    if source in ("otf", "otf_rotation"):
        noise = float(rng.uniform(0.001, 0.004)) if noise_ri is None else float(noise_ri)
        geometry = "sample-rotation" if source == "otf_rotation" else "illumination-scan"
        return apply_otf(ph.ri, pv, medium_index, rng=rng, noise_ri=noise, geometry=geometry), pv
    if source in ("pipeline", "gp", "gp_rotation"):
        from holo.pipeline import reconstruct
        from holo.twin.acquire import simulate_acquisition

        geometry = "sample-rotation" if source == "gp_rotation" else "illumination-scan"
        acq = simulate_acquisition(ph, seed=int(seed), geometry=geometry)
        tomo = reconstruct(acq, method="rytov" if source == "pipeline" else "gp", **(reconstruct_kw or {}))
        return tomo.frame(0), tuple(tomo.voxel_size_um)
    raise ValueError(f"source must be 'otf', 'otf_rotation', 'pipeline', 'gp' or 'gp_rotation', got {source!r}")


def phantom_volume(seed: int, *, kind: str = "mixed", source: str = "otf", train_voxel_size_um=(0.4, 0.2, 0.2),
                   phantom_shape_zyx=(96, 256, 256), phantom_voxel_size_um=(0.2, 0.1, 0.1),
                   medium_index: float = 1.337, noise_ri=None, **phantom_kw) -> TrainingVolume:
    """One training volume from a digital-twin phantom, on the training voxel grid.

    Parameters
    ----------
    seed : int
        Seed of the phantom (and of the noise).
    kind : phantom kind ("cell", "rbc", "bacteria", "mixed").
    source : {"otf", "pipeline", "gp"}
        See the module docstring.
    noise_ri : float, optional
        Noise std of the ``"otf"`` source (default: uniform in [0.001, 0.004] from the seed).
    """
    from holo.twin.phantoms import make_phantom

    rng = np.random.default_rng(seed + 7919)
    ph = make_phantom(kind, shape_zyx=tuple(phantom_shape_zyx), voxel_size_um=tuple(phantom_voxel_size_um),
                      medium_index=medium_index, seed=int(seed), **phantom_kw)
    pv = tuple(float(v) for v in ph.voxel_size_um)
    ext = np.asarray(ph.ri.shape) * np.asarray(pv)
    out_shape = tuple(int(s) for s in np.maximum(1, np.round(ext / np.asarray(train_voxel_size_um))))
    rec, rec_vs = _seen_by_instrument(ph, source, seed, medium_index, rng, noise_ri)
    ri = ri_to_grid(rec, rec_vs, out_shape, train_voxel_size_um, medium_index)
    sem = labels_to_grid(np.asarray(ph.semantic), pv, out_shape, train_voxel_size_um)
    inst = labels_to_grid(np.asarray(ph.instance), pv, out_shape, train_voxel_size_um)
    classes = {int(k): str(v) for k, v in dict(ph.classes).items()}
    return TrainingVolume(ri, sem.astype(np.uint8), inst.astype(np.int32), tuple(train_voxel_size_um), medium_index,
                          classes, source)


def _one(args):
    """Make and save volume i of a (split, source); returns (path or "FAILED ..." line, seconds)."""
    split, source, i, out, train_voxel, phantom_shape, phantom_voxel = args
    seed = SPLIT_SEED0[(split, source)] + i
    kind = KINDS[i % len(KINDS)]
    path = Path(out) / split / f"{split}_{source}_{seed:05d}_{kind}.npz"
    if path.exists():
        return str(path), 0.0
    t0 = time.perf_counter()
    try:
        vol = phantom_volume(seed, kind=kind, source=source, train_voxel_size_um=train_voxel,
                             phantom_shape_zyx=phantom_shape, phantom_voxel_size_um=phantom_voxel)
    except Exception as exc:  # one failed simulation must not lose the data set; it is reported
        return f"FAILED {path.name}: {type(exc).__name__}: {exc}", time.perf_counter() - t0
    save_volume(vol, path)
    return str(path), time.perf_counter() - t0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m holo.training.make_data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--split", action="append", default=None,
                    help="SPLIT:SOURCE:COUNT, e.g. train:otf:320 (repeatable; split train|val|test, source otf|otf_rotation|pipeline|gp|gp_rotation)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--train-voxel", type=float, nargs=3, default=(0.4, 0.2, 0.2))
    ap.add_argument("--phantom-shape", type=int, nargs=3, default=(96, 256, 256))
    ap.add_argument("--phantom-voxel", type=float, nargs=3, default=(0.2, 0.1, 0.1))
    return ap


def _split_specs(ap: argparse.ArgumentParser, splits) -> list[tuple[str, str, int]]:
    """(split, source, count) of each ``SPLIT:SOURCE:COUNT`` argument."""
    specs = []
    for spec in splits or DEFAULT_SPLITS:
        split, source, n = spec.split(":")
        if (split, source) not in SPLIT_SEED0:
            ap.error(f"--split {spec}: unknown split or source")
        specs.append((split, source, int(n)))
    return specs


def _run_jobs(jobs, workers: int) -> list[str]:
    """Make the volumes in a process pool; returns the failure lines."""
    failed = []
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for k, (p, dt) in enumerate(ex.map(_one, jobs, chunksize=1)):
            if p.startswith("FAILED"):
                failed.append(p)
                print(p, flush=True)
            elif k % 20 == 0:
                print(f"[{k + 1}/{len(jobs)}] {p} {dt:.1f}s", flush=True)
    return failed


def main(argv=None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    from holo.threads import worker_thread_env

    # each worker process gets its share of the CPUs for its FFT/Numba threads (set before
    # the pool forks and before anything imports numba)
    os.environ.update(worker_thread_env(a.workers))
    specs = _split_specs(ap, a.split)
    # slow (pipeline) jobs first so that the pool stays busy to the end
    jobs = [(sp, so, i, str(a.out), tuple(a.train_voxel), tuple(a.phantom_shape), tuple(a.phantom_voxel))
            for sp, so, n in sorted(specs, key=lambda t: t[1] == "otf") for i in range(n)]
    t0 = time.perf_counter()
    failed = _run_jobs(jobs, a.workers)
    meta = {"splits": [f"{sp}:{so}:{n}" for sp, so, n in specs], "train_voxel_um": list(a.train_voxel),
            "phantom_shape_zyx": list(a.phantom_shape), "phantom_voxel_um": list(a.phantom_voxel),
            "seeds": {f"{sp}:{so}": [SPLIT_SEED0[(sp, so)], SPLIT_SEED0[(sp, so)] + n] for sp, so, n in specs},
            "kinds": list(KINDS), "failed": failed}
    (a.out / "dataset.json").write_text(json.dumps(meta, indent=2))
    print(f"{len(jobs)} volumes in {time.perf_counter() - t0:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
