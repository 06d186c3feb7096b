"""Time and peak memory of the beam-propagation forward model versus grid size.

Run ``python -m benchmarks.bench_bpm [--frames 8] [--sizes 64x32,128x64,256x128]``.
Prints a table and writes ``benchmarks/results/bench_bpm.json`` (git-ignored).

The phantom fills every slice (a cluster of spheres at cell-like contrast, Δn 0.02–0.06),
so no empty slice is skipped; illumination NAs lie on a ring of NA 0.9 as in an
illumination scan. Time per illumination is the wall time of one ``bpm_fields`` call
divided by the number of frames; peak memory is the tracemalloc peak of the NumPy/SciPy
allocations during the call (the input volume excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from holo.reconstruction.forward import bpm_fields
from holo.reconstruction.forward.propagation import grid_coordinates

LAM, NM, NA = 0.532, 1.337, 1.2


def _phantom(nxy: int, nz: int, voxel_um: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = grid_coordinates(nz, voxel_um)
    y = grid_coordinates(nxy, voxel_um)
    zz, yy, xx = np.meshgrid(z, y, y, indexing="ij")
    ri = np.full((nz, nxy, nxy), NM, dtype=np.float32)
    half_z, half_xy = nz * voxel_um / 2, nxy * voxel_um / 2
    for _ in range(12):
        r = rng.uniform(0.15, 0.35) * min(half_xy, half_z)
        c = rng.uniform(-1, 1, 3) * (np.array([half_z, half_xy, half_xy]) - r)
        inside = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r
        ri[inside] = NM + rng.uniform(0.02, 0.06)
    ri[0] = ri[0] + 1e-3  # make sure the first slice is not skipped
    return ri


def bench(sizes, frames: int, voxel_um: float = 0.15, repeat: int = 2) -> list[dict]:
    angles = np.linspace(0, 2 * np.pi, frames, endpoint=False)
    na = 0.9 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rows = []
    for nxy, nz in sizes:
        ri = _phantom(nxy, nz, voxel_um)
        kw = dict(wavelength_um=LAM, medium_index=NM, objective_na=NA, illumination_na=na)
        bpm_fields(ri[:2], voxel_um, **kw)  # warm-up (FFT plans, imports)
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            bpm_fields(ri, voxel_um, **kw)
            best = min(best, time.perf_counter() - t0)
        tracemalloc.start()
        bpm_fields(ri, voxel_um, **kw)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append(
            {
                "shape_zyx": [nz, nxy, nxy],
                "frames": frames,
                "seconds_total": best,
                "seconds_per_frame": best / frames,
                "ms_per_frame_per_slice": 1e3 * best / frames / nz,
                "peak_mib": peak / 2**20,
            }
        )
        r = rows[-1]
        print(f"{nxy:5d}²×{nz:<4d} {r['seconds_per_frame']*1e3:10.1f} ms/frame {r['ms_per_frame_per_slice']:8.3f} ms/frame/slice {r['peak_mib']:8.1f} MiB peak")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--sizes", default="64x32,128x64,256x128", help="comma list of NXYxNZ")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "bench_bpm.json"))
    args = ap.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"BPM forward model, {args.frames} illuminations, λ {LAM} µm, NA {NA}, voxel 0.15 µm, lateral guard band n/8")
    rows = bench(sizes, args.frames)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(), "numpy": np.__version__}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
