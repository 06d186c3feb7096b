"""Regenerate the segmentation/classification training set from the digital twin.

Each volume is a phantom (``holo.twin.phantoms.make_phantom``) seen through the instrument
(``--source pipeline``: simulated holograms + reconstruction; ``--source otf``: the optical
transfer function of the tomograph + noise, see ``segmentation.data``), with its ground-truth
labels, on the training voxel grid. Seeds are disjoint per split, and the test seeds are never
used for training or model selection:

    train 1000 + i,  val 5000 + i,  test 9000 + i

Usage::

    python scripts/make_training_data.py --out data/seg --n-train 160 --n-val 16 --n-test 24 --workers 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPLIT_SEED0 = {"train": 1000, "val": 5000, "test": 9000}
KINDS = ("mixed", "cell", "rbc", "bacteria", "mixed")


def _one(args):
    split, i, out, source, train_voxel, phantom_shape, phantom_voxel = args
    from segmentation.data import phantom_volume, save_volume

    seed = SPLIT_SEED0[split] + i
    kind = KINDS[i % len(KINDS)]
    path = Path(out) / split / f"{split}_{seed:05d}_{kind}.npz"
    if path.exists():
        return str(path), 0.0
    t0 = time.perf_counter()
    vol = phantom_volume(seed, kind=kind, source=source, train_voxel_um=train_voxel,
                         phantom_shape_zyx=phantom_shape, phantom_voxel_um=phantom_voxel)
    save_volume(vol, path)
    return str(path), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--source", default="otf", choices=("otf", "pipeline"))
    ap.add_argument("--n-train", type=int, default=160)
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument("--n-test", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--train-voxel", type=float, nargs=3, default=(0.4, 0.2, 0.2))
    ap.add_argument("--phantom-shape", type=int, nargs=3, default=(96, 256, 256))
    ap.add_argument("--phantom-voxel", type=float, nargs=3, default=(0.2, 0.1, 0.1))
    a = ap.parse_args(argv)
    jobs = [(s, i, str(a.out), a.source, tuple(a.train_voxel), tuple(a.phantom_shape), tuple(a.phantom_voxel))
            for s, n in (("train", a.n_train), ("val", a.n_val), ("test", a.n_test)) for i in range(n)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        for k, (p, dt) in enumerate(ex.map(_one, jobs, chunksize=1)):
            if k % 20 == 0:
                print(f"[{k + 1}/{len(jobs)}] {p} {dt:.1f}s", flush=True)
    meta = {"source": a.source, "train_voxel_um": list(a.train_voxel), "phantom_shape_zyx": list(a.phantom_shape),
            "phantom_voxel_um": list(a.phantom_voxel), "seeds": {k: [v, v + n] for (k, v), n in
                                                                  zip(SPLIT_SEED0.items(), (a.n_train, a.n_val, a.n_test))},
            "kinds": list(KINDS)}
    (a.out / "dataset.json").write_text(json.dumps(meta, indent=2))
    print(f"{len(jobs)} volumes in {time.perf_counter() - t0:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
