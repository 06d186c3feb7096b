"""Regenerate the segmentation/classification training set from the digital twin.

Each volume is a phantom (``holo.twin.phantoms.make_phantom``) seen through the instrument
(source ``pipeline``: simulated holograms + Rytov reconstruction; ``gp``: the same with
Gerchberg–Papoulis non-negativity, the reconstruction ``holo run`` makes; ``otf``: the optical
transfer function of the tomograph + noise, see ``holo.segmentation.data``), with its ground-truth
labels, on the training voxel grid. Seeds are disjoint between splits (and between the training
sources up to 300 pipeline volumes), and the test seeds are never
used for training or model selection:

    train: otf 1000 + i, pipeline 3000 + i, gp 3300 + i;  val: otf 5000 + i, pipeline and gp 6000 + i;
    test:  otf 9000 + i, pipeline and gp 9500 + i

(``pipeline`` and ``gp`` share their validation and test phantoms, so the two reconstructions
are compared on the same cells; their training phantoms differ.)

Usage (the shipped weights' data set)::

    python -m holo.segmentation.training.make_data --out data/seg --workers 16 \
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

SPLIT_SEED0 = {("train", "otf"): 1000, ("train", "pipeline"): 3000, ("val", "otf"): 5000,
               ("val", "pipeline"): 6000, ("test", "otf"): 9000, ("test", "pipeline"): 9500,
               ("train", "gp"): 3300, ("val", "gp"): 6000, ("test", "gp"): 9500}
KINDS = ("mixed", "cell", "rbc", "bacteria", "mixed")


def _one(args):
    split, source, i, out, train_voxel, phantom_shape, phantom_voxel = args
    from holo.segmentation.data import phantom_volume, save_volume

    seed = SPLIT_SEED0[(split, source)] + i
    kind = KINDS[i % len(KINDS)]
    path = Path(out) / split / f"{split}_{source}_{seed:05d}_{kind}.npz"
    if path.exists():
        return str(path), 0.0
    t0 = time.perf_counter()
    try:
        vol = phantom_volume(seed, kind=kind, source=source, train_voxel_um=train_voxel,
                             phantom_shape_zyx=phantom_shape, phantom_voxel_um=phantom_voxel)
    except Exception as exc:  # one failed simulation must not lose the data set; it is reported
        return f"FAILED {path.name}: {type(exc).__name__}: {exc}", time.perf_counter() - t0
    save_volume(vol, path)
    return str(path), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--split", action="append", default=None,
                    help="SPLIT:SOURCE:COUNT, e.g. train:otf:320 (repeatable; split train|val|test, source otf|pipeline|gp)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--train-voxel", type=float, nargs=3, default=(0.4, 0.2, 0.2))
    ap.add_argument("--phantom-shape", type=int, nargs=3, default=(96, 256, 256))
    ap.add_argument("--phantom-voxel", type=float, nargs=3, default=(0.2, 0.1, 0.1))
    a = ap.parse_args(argv)
    from holo.threads import worker_thread_env

    # each worker process gets its share of the CPUs for its FFT/Numba threads (set before
    # the pool forks and before anything imports numba)
    os.environ.update(worker_thread_env(a.workers))
    specs = []
    for spec in a.split or ["train:otf:320", "train:pipeline:48", "val:otf:16", "val:pipeline:16",
                            "test:pipeline:40", "test:otf:24"]:
        split, source, n = spec.split(":")
        if (split, source) not in SPLIT_SEED0:
            ap.error(f"--split {spec}: unknown split or source")
        specs.append((split, source, int(n)))
    # slow (pipeline) jobs first so that the pool stays busy to the end
    jobs = [(sp, so, i, str(a.out), tuple(a.train_voxel), tuple(a.phantom_shape), tuple(a.phantom_voxel))
            for sp, so, n in sorted(specs, key=lambda t: t[1] == "otf") for i in range(n)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        failed = []
        for k, (p, dt) in enumerate(ex.map(_one, jobs, chunksize=1)):
            if p.startswith("FAILED"):
                failed.append(p)
                print(p, flush=True)
            elif k % 20 == 0:
                print(f"[{k + 1}/{len(jobs)}] {p} {dt:.1f}s", flush=True)
    meta = {"splits": [f"{sp}:{so}:{n}" for sp, so, n in specs], "train_voxel_um": list(a.train_voxel),
            "phantom_shape_zyx": list(a.phantom_shape), "phantom_voxel_um": list(a.phantom_voxel),
            "seeds": {f"{sp}:{so}": [SPLIT_SEED0[(sp, so)], SPLIT_SEED0[(sp, so)] + n] for sp, so, n in specs},
            "kinds": list(KINDS), "failed": failed}
    (a.out / "dataset.json").write_text(json.dumps(meta, indent=2))
    print(f"{len(jobs)} volumes in {time.perf_counter() - t0:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
