"""Batch throughput: acquisitions per minute with 1 vs 2 dask workers.

    python -m benchmarks.bench_batch [--n 8] [--size 256] [--angles 49]

Simulates N small acquisitions with the twin, then runs ``holo.batch.run_batch`` on them with
one and with two single-threaded worker processes (fresh output folders), and reports
acquisitions per minute, the speed-up, and the per-sample time. Results go to
``benchmarks/results/batch.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _simulate(folder: Path, n: int, size: int, angles: int) -> list[Path]:
    from holo.demo import DEMO_VOXEL_SIZE_UM
    from holo.io.acquisition import write_acquisition
    from holo.twin.acquire import phantom_grid_for_frame, simulate_acquisition
    from holo.twin.phantoms import make_phantom

    (ny, nx), voxel_size_um, _ = phantom_grid_for_frame((size, size), voxel_size_um=DEMO_VOXEL_SIZE_UM)
    paths = []
    for i in range(n):
        ph = make_phantom("mixed", shape_zyx=(64, ny, nx), voxel_size_um=(voxel_size_um,) * 3, seed=1000 + i)
        path = folder / f"acq_{i:03d}.h5"
        write_acquisition(path, simulate_acquisition(ph, n_angles=angles, seed=1000 + i))
        paths.append(path)
    return paths


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--angles", type=int, default=49)
    args = ap.parse_args(argv)
    from holo.batch import run_batch
    from holo.sample import SampleOptions

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = _simulate(tmp, args.n, args.size, args.angles)
        rows = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            res = run_batch(inputs, tmp / f"out{workers}", SampleOptions(), workers=workers)
            dt = time.perf_counter() - t0
            assert not res.failed, res.summary()["failures"]
            rows[workers] = {"seconds": dt, "per_minute": 60 * args.n / dt, "per_sample_s": dt / args.n}
    result = {
        "n_acquisitions": args.n,
        "frame": args.size,
        "angles": args.angles,
        "cores": os.cpu_count(),
        "workers": rows,
        "speedup_2_vs_1": rows[1]["seconds"] / rows[2]["seconds"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Batch throughput ({args.n} acquisitions, {args.angles} × {args.size}², {os.cpu_count()} cores)",
        "",
        "| workers | time (s) | acquisitions / min |",
        "|---|---|---|",
    ] + [f"| {w} | {r['seconds']:.1f} | {r['per_minute']:.2f} |" for w, r in rows.items()]
    lines.append(f"\nSpeed-up 2 vs 1 worker: {result['speedup_2_vs_1']:.2f}×")
    (RESULTS / "batch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
