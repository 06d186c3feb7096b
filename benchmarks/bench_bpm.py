"""Time and peak memory of the beam-propagation forward model versus grid size.

Run ``python -m benchmarks.bench_bpm [--frames 8] [--sizes 64x32,128x64,256x128]``, or
``python -m benchmarks.bench_bpm --inverse`` for the BPM inverse of 49 exact Mie fields
(128², d 5 µm bead, Δn 0.06) → 128²×64 from the Rytov volume: wall time, passes, field misfit,
RI error inside the bead and peak RSS of a fresh process, default stochastic steps against
three full-gradient iterations.
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


def _mie_bead(n_frames: int, shape, voxel_um, radius_um: float, dn: float):
    """Exact (Mie) u/u0 of a bead at the volume centre, illuminations on a Fermat spiral to NA 1.1."""
    import types

    from holo.twin.mie import mie_sphere_field

    i = np.arange(n_frames)
    na = 1.1 * np.sqrt(i / max(n_frames - 1, 1))[:, None] * np.stack([np.cos(2.399963 * i), np.sin(2.399963 * i)], 1)
    u = np.stack([mie_sphere_field(radius_um, NM + dn, NM, LAM, shape[1:], voxel_um[1], illumination_na=tuple(a), objective_na=NA) for a in na])
    return types.SimpleNamespace(fields=u.astype(np.complex64), geometry="illumination-scan", wavelength_um=LAM, pixel_size_um=voxel_um[1],
                                 medium_index=NM, objective_na=NA, illumination_na=na, valid=np.ones(n_frames, bool), source=None)


def _inverse_run(fs, shape, voxel_um, radius_um: float, dn: float, options: dict) -> dict:
    """One Rytov-started BPM inversion (in its own process, for its peak RSS): time, misfit, RI error."""
    import resource

    from holo.reconstruction.model_based import reconstruct_bpm
    from holo.reconstruction.tomography import reconstruct_fdt

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    init = reconstruct_fdt(fs, method="rytov", shape_zyx=shape, voxel_size_um=voxel_um)
    tomo = reconstruct_bpm(fs, init, device="cpu", **options)
    seconds = time.perf_counter() - t0
    r = np.sqrt(sum(g**2 for g in np.meshgrid(*[grid_coordinates(n, h) for n, h in zip(shape, voxel_um)], indexing="ij", sparse=True)))
    ri = tomo.frame()
    p = tomo.provenance
    return dict(options=options, seconds_total=round(seconds, 1), iterations_run=p["iterations_run"], frames_per_step=p["parameters"]["frames_per_step"],
                data_residual=round(p["data_residual"], 4), mean_ri_error_inner=float(ri[r < 0.6 * radius_um].mean() - NM - dn),
                rms_ri_error_bead=float(np.sqrt(((ri[r < 0.8 * radius_um] - NM - dn) ** 2).mean())),
                peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0), rss_before_mib=round(rss0 / 1024, 0))


def bench_inverse(frames: int = 49, nxy: int = 128, nz: int = 64) -> list[dict]:
    """BPM inverse of a Mie bead (d 5 µm, Δn 0.06): the default stochastic steps against
    three full-gradient FISTA iterations (the previous default), each in a fresh process."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    shape, vox, radius, dn = (nz, nxy, nxy), (0.2, 0.115, 0.115), 2.5, 0.06
    fs = _mie_bead(frames, shape, vox, radius, dn)
    rows = []
    for options in (dict(), dict(frames_per_step=frames, iterations=3, tol=0.0)):
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            row = pool.submit(_inverse_run, fs, shape, vox, radius, dn, options).result()
        row.update(shape_zyx=list(shape), frames=frames)
        rows.append(row)
        print(f"inverse {frames}×{nxy}² → {nxy}²×{nz} {options or 'default'}: {row['seconds_total']} s, {row['iterations_run']} passes, "
              f"misfit {row['data_residual']}, RI error inner {row['mean_ri_error_inner']:+.4f} rms {row['rms_ri_error_bead']:.4f}, "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--sizes", default="64x32,128x64,256x128", help="comma list of NXYxNZ")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "bench_bpm.json"))
    ap.add_argument("--inverse", action="store_true", help="BPM inverse of a 49 × 128² Mie bead → 128²×64 instead")
    args = ap.parse_args(argv)
    if args.inverse:
        rows = bench_inverse()
        out = Path(args.out).with_name("bench_bpm_inverse.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": {"cpus": os.cpu_count(), "load": os.getloadavg()}, "results": rows}, indent=2))
        print(f"written {out}")
        return
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
