"""Benchmark of the direct Fourier diffraction tomography (holo.reconstruction.tomography).

Run ``python -m benchmarks.bench_reconstruction [--quick] [--out DIR] [--skip-odtbrain]``.
Writes ``bench_reconstruction.md``, ``.json``, ``_scaling.png`` and ``_slices.png`` into
``benchmarks/results/`` (or DIR):

1. Sample rotation, holo vs ODTbrain ``backpropagate_3d`` on the same acquisition: fields of
   a cell phantom from the multi-slice BPM forward model (60 angles over 2π, 188² frames;
   ``--quick``: 36 × 96²), both Rytov, both on the phantom's grid; wall time, time ratio and
   RMSE against the phantom (whole volume and inside the cell).
2. Illumination scan: 49 frames of 256² → 128 × 256² volume through the whole
   ``holo reconstruct`` command (a fresh process: Python start, imports, reading the file,
   field QC, mapping, OME-TIFF writing), caches warm (second run reported), plus the
   in-process reconstruction time alone.
3. Scaling: reconstruction time vs grid size and vs number of frames (synthetic fields; the
   cost does not depend on the content), as a PNG plot.
4. Peak memory: traced NumPy allocations during the 49 × 256² reconstruction and the
   process's maximum resident set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np

LAM, NM, NA = 0.532, 1.337, 1.2
RESULTS = Path(__file__).resolve().parent / "results"


def _fieldset(u, px, **kw):
    base = dict(fields=u, wavelength_um=LAM, pixel_size_um=px, medium_index=NM, objective_na=NA, valid=None, qc=[],
                source=None, rotation_axis="y", angles=None, illumination_na=None)
    base.update(kw)
    return SimpleNamespace(**base)


def _warm_up():
    """Load the cached Numba kernels (first call in a process) on a tiny problem."""
    from holo.reconstruction.tomography import reconstruct_fdt

    u = np.ones((2, 16, 16), np.complex64)
    reconstruct_fdt(_fieldset(u, 0.1, geometry="illumination-scan", illumination_na=np.zeros((2, 2))), method="born")
    reconstruct_fdt(_fieldset(u, 0.1, geometry="sample-rotation", angles=np.array([0.0, 1.0])), method="born")


def _cell_phantom(shape_zyx, voxel_um, seed=2):
    from holo.twin.phantoms import make_phantom

    return make_phantom("cell", shape_zyx=shape_zyx, voxel_size_um=voxel_um, n_cells=1, seed=seed)


# -- 1. sample rotation vs ODTbrain ----------------------------------------------------------

def bench_rotation(n: int, n_angles: int, skip_odtbrain: bool, log) -> dict:
    from holo.reconstruction.forward import bpm_fields
    from holo.reconstruction.tomography import reconstruct_fdt

    px = 0.1
    ph = _cell_phantom((n, n, n), (px, px, px))
    angles = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
    t = time.perf_counter()
    u = bpm_fields(ph.ri, px, wavelength_um=LAM, medium_index=NM, objective_na=NA, angles=angles, rotation_axis="y").astype(np.complex64)
    log(f"rotation: BPM fields {u.shape} in {time.perf_counter() - t:.1f} s")
    fs = _fieldset(u, px, geometry="sample-rotation", angles=angles)
    mask = ph.instance > 0
    truth = ph.ri.astype(np.float32)

    def rmse(vol):
        return float(np.sqrt(np.mean((vol - truth) ** 2))), float(np.sqrt(np.mean((vol[mask] - truth[mask]) ** 2)))

    times = []
    for _ in range(2):
        t = time.perf_counter()
        tomo = reconstruct_fdt(fs, method="rytov", shape_zyx=truth.shape, voxel_size_um=px)
        times.append(time.perf_counter() - t)
    ours = tomo.ri
    res = {
        "case": f"{n_angles} angles x {n}^2 -> {n}^3, Rytov",
        "holo_s": min(times),
        "holo_rmse": rmse(ours)[0],
        "holo_rmse_in_cell": rmse(ours)[1],
        "holo_mean_dn_in_cell": float(ours[mask].mean() - NM),
        "truth_mean_dn_in_cell": float(truth[mask].mean() - NM),
    }
    log(f"rotation: holo {res['holo_s']:.2f} s, RMSE {res['holo_rmse']:.5f}")
    slices = {"phantom": truth[n // 2], "holo": ours[n // 2]}
    if not skip_odtbrain:
        import odtbrain as odt

        t = time.perf_counter()
        sino = odt.sinogram_as_rytov(u.astype(np.complex128))
        f = odt.backpropagate_3d(sino, angles, LAM / px, NM, lD=0, onlyreal=True, num_cores=os.cpu_count() or 1)
        theirs = np.asarray(odt.odt_to_ri(f, LAM / px, NM).real, np.float32)
        res["odtbrain_s"] = time.perf_counter() - t
        res["odtbrain_rmse"], res["odtbrain_rmse_in_cell"] = rmse(theirs)
        res["odtbrain_mean_dn_in_cell"] = float(theirs[mask].mean() - NM)
        res["speedup"] = res["odtbrain_s"] / res["holo_s"]
        res["correlation_holo_odtbrain"] = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
        slices["odtbrain"] = theirs[n // 2]
        log(f"rotation: ODTbrain {res['odtbrain_s']:.1f} s, RMSE {res['odtbrain_rmse']:.5f}, speed-up {res['speedup']:.0f}x")
    res["_slices"] = slices
    return res


# -- 2. illumination scan through the CLI ----------------------------------------------------

def _children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_illumination_cli(n: int, nz: int, n_frames: int, log) -> dict:
    from holo.io.acquisition import write_acquisition
    from holo.model import Acquisition
    from holo.twin.illumination import illumination_pattern
    from holo.reconstruction.forward import bpm_fields
    from holo.reconstruction.tomography import reconstruct_fdt

    px = round(LAM / (4 * NA), 4)  # the lateral Nyquist pixel of the object band
    dz = 2 * px
    ph = _cell_phantom((nz, n, n), (dz, px, px), seed=4)
    na_ill = np.asarray(illumination_pattern(n_frames, 1.1))
    t = time.perf_counter()
    u = bpm_fields(ph.ri, ph.voxel_size_um, wavelength_um=LAM, medium_index=NM, objective_na=NA, illumination_na=na_ill)
    log(f"illumination: BPM fields {u.shape} in {time.perf_counter() - t:.1f} s")
    from holo.reconstruction.forward import snap_illumination_na

    na_used = snap_illumination_na(na_ill, (n, n), px, LAM)
    acq = Acquisition(geometry="illumination-scan", wavelength_um=LAM, pixel_size_um=px, medium_index=NM, objective_na=NA,
                      fields=u.astype(np.complex64), illumination_na=na_used)
    res = {"case": f"{n_frames} x {n}^2 fields -> {nz} x {n}^2 volume, Rytov"}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "acq.h5"
        write_acquisition(src, acq)
        out = Path(tmp) / "ri.ome.tif"
        cmd = [sys.executable, "-m", "holo.cli.main", "reconstruct", str(src), "-o", str(out), "--method", "rytov", "--shape", str(nz), str(n), str(n), "--json"]
        walls, cpus = [], []
        for _ in range(2):
            t, c = time.perf_counter(), _children_cpu_s()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TERM": "dumb"})
            walls.append(time.perf_counter() - t)
            cpus.append(_children_cpu_s() - c)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
        info = json.loads(proc.stdout)
        res.update(cli_wall_s_first=walls[0], cli_wall_s=walls[1], cli_cpu_s=cpus[1], load_average=os.getloadavg()[0],
                   cli_internal_s=info["time_s"], output_mb=out.stat().st_size / 1e6)
        # in-process: field QC/unwrapping (holo.reconstruction.fields) and the reconstruction alone
        from holo.pipeline import retrieve

        t = time.perf_counter()
        fs = retrieve(acq)
        res["field_retrieval_s"] = time.perf_counter() - t
        ts = []
        for _ in range(2):
            t = time.perf_counter()
            tomo = reconstruct_fdt(fs, method="rytov", shape_zyx=(nz, n, n))
            ts.append(time.perf_counter() - t)
        res["reconstruct_s"] = min(ts)
        # peak memory of the reconstruction (NumPy allocations traced)
        tracemalloc.start()
        reconstruct_fdt(fs, method="rytov", shape_zyx=(nz, n, n))
        res["peak_traced_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        res["volume_complex64_mb"] = nz * n * n * 8 / 1e6
        mask = ph.instance > 0
        res["mean_dn_in_cell"] = float(tomo.ri[mask].mean() - NM)
        res["truth_mean_dn_in_cell"] = float(ph.ri[mask].mean() - NM)
        res["rmse"] = float(np.sqrt(np.mean((tomo.ri - ph.ri) ** 2)))
    log(f"illumination: CLI {res['cli_wall_s']:.2f} s, {res['cli_cpu_s']:.2f} CPU s (internal {res['cli_internal_s']:.2f} s), reconstruction {res['reconstruct_s']:.2f} s")
    return res


# -- 3. scaling ---------------------------------------------------------------------------

def _synthetic_fields(n_frames, n, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] - n / 2
    base = np.exp(-(x * x + y * y) / (2 * (n / 6) ** 2))
    u = np.empty((n_frames, n, n), np.complex64)
    for a in range(n_frames):
        u[a] = np.exp(1j * (0.5 + 0.1 * rng.standard_normal()) * base)
    return u


def bench_scaling(sizes, frame_counts, log) -> dict:
    from holo.reconstruction.tomography import reconstruct_fdt

    px = 0.11
    ring = lambda a: np.stack([1.0 * np.cos(np.linspace(0, 2 * np.pi, a, endpoint=False)) * np.sqrt(np.linspace(0, 1, a)),  # noqa: E731
                               1.0 * np.sin(np.linspace(0, 2 * np.pi, a, endpoint=False)) * np.sqrt(np.linspace(0, 1, a))], 1)
    out = {"vs_grid": [], "vs_frames": []}
    u = _synthetic_fields(49, sizes[0])
    reconstruct_fdt(_fieldset(u, px, geometry="illumination-scan", illumination_na=ring(49)), shape_zyx=(sizes[0] // 2, sizes[0], sizes[0]))
    for n in sizes:
        u = _synthetic_fields(49, n)
        fs = _fieldset(u, px, geometry="illumination-scan", illumination_na=ring(49))
        t = time.perf_counter()
        reconstruct_fdt(fs, method="rytov", shape_zyx=(n // 2, n, n))
        out["vs_grid"].append({"n": n, "shape_zyx": [n // 2, n, n], "frames": 49, "s": time.perf_counter() - t})
        log(f"scaling: {n // 2}x{n}^2 {out['vs_grid'][-1]['s']:.2f} s")
    n = 128
    for a in frame_counts:
        u = _synthetic_fields(a, n)
        fs = _fieldset(u, px, geometry="illumination-scan", illumination_na=ring(a))
        t = time.perf_counter()
        reconstruct_fdt(fs, method="rytov", shape_zyx=(n // 2, n, n))
        out["vs_frames"].append({"frames": a, "shape_zyx": [n // 2, n, n], "s": time.perf_counter() - t})
        log(f"scaling: {a} frames {out['vs_frames'][-1]['s']:.2f} s")
    return out


# -- report -----------------------------------------------------------------------------------

def _plots(out_dir: Path, scaling: dict, slices: dict | None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    g = scaling["vs_grid"]
    ax[0].loglog([r["n"] ** 3 / 2 for r in g], [r["s"] for r in g], "o-")
    ax[0].set_xlabel("voxels (N/2 x N x N)")
    ax[0].set_ylabel("reconstruction time (s)")
    ax[0].set_title("49 frames, time vs grid")
    for r in g:
        ax[0].annotate(f"{r['n']}", (r["n"] ** 3 / 2, r["s"]))
    f = scaling["vs_frames"]
    ax[1].plot([r["frames"] for r in f], [r["s"] for r in f], "o-")
    ax[1].set_xlabel("frames (128^2 each)")
    ax[1].set_ylabel("reconstruction time (s)")
    ax[1].set_title("64 x 128^2 grid, time vs frames")
    fig.tight_layout()
    fig.savefig(out_dir / "bench_reconstruction_scaling.png", dpi=100)
    plt.close(fig)
    if slices:
        keys = list(slices)
        lo, hi = NM - 0.005, float(max(np.max(slices["phantom"]), NM + 0.01))
        fig, ax = plt.subplots(1, len(keys), figsize=(4 * len(keys), 4))
        for a, k in zip(np.atleast_1d(ax), keys):
            im = a.imshow(slices[k], vmin=lo, vmax=hi, cmap="viridis")
            a.set_title(f"{k} (central Z slice)")
            a.axis("off")
        fig.colorbar(im, ax=list(np.atleast_1d(ax)), shrink=0.8, label="RI")
        fig.savefig(out_dir / "bench_reconstruction_slices.png", dpi=90)
        plt.close(fig)


def _markdown(report: dict) -> str:
    r, il, sc = report["rotation"], report["illumination_scan"], report["scaling"]
    lines = [
        "# Reconstruction benchmark (direct Rytov/Born Fourier diffraction tomography)",
        "",
        f"Machine: {report['machine']} — **shared with other engineers while measured**, so times are upper bounds.",
        f"Mode: {'quick' if report['quick'] else 'full'}; date {report['date']}.",
        "",
        "## Sample rotation: holo vs ODTbrain backpropagate_3d (same BPM acquisition of a cell phantom)",
        "",
        f"Case: {r['case']}.",
        "",
        "| | time (s) | RMSE vs phantom | RMSE in cell | mean Δn in cell (truth %.4f) |" % r["truth_mean_dn_in_cell"],
        "|---|---|---|---|---|",
        f"| holo | {r['holo_s']:.2f} | {r['holo_rmse']:.5f} | {r['holo_rmse_in_cell']:.5f} | {r['holo_mean_dn_in_cell']:.4f} |",
    ]
    if "odtbrain_s" in r:
        lines += [
            f"| ODTbrain | {r['odtbrain_s']:.1f} | {r['odtbrain_rmse']:.5f} | {r['odtbrain_rmse_in_cell']:.5f} | {r['odtbrain_mean_dn_in_cell']:.4f} |",
            "",
            f"Speed-up: **{r['speedup']:.0f}×**; correlation between the two volumes {r['correlation_holo_odtbrain']:.3f}.",
        ]
    lines += [
        "",
        "## Illumination scan through `holo reconstruct` (whole command, caches warm)",
        "",
        f"Case: {il['case']}.",
        "",
        f"* whole CLI call (new process: start-up, imports, read, field QC, map, data-consistency check, write OME-TIFF): **{il['cli_wall_s']:.2f} s** "
        f"(first, cold-ish: {il['cli_wall_s_first']:.2f} s), {il['cli_cpu_s']:.2f} CPU s (user + system), load average {il['load_average']:.1f}",
        f"* inside the command (read → written): {il['cli_internal_s']:.2f} s",
        f"* of which field QC / phase unwrapping (holo.reconstruction.fields, fields in memory): {il['field_retrieval_s']:.2f} s",
        f"* and the reconstruction alone (`reconstruct_fdt`, fields in memory): **{il['reconstruct_s']:.2f} s**",
        f"* peak traced memory of the reconstruction: {il['peak_traced_mb']:.0f} MB (one complex64 volume is {il['volume_complex64_mb']:.0f} MB); process max RSS {report['max_rss_mb']:.0f} MB",
        f"* mean Δn in the cell {il['mean_dn_in_cell']:.4f} (truth {il['truth_mean_dn_in_cell']:.4f}), RMSE vs phantom {il['rmse']:.5f}",
        "",
        "## Scaling",
        "",
        "![scaling](bench_reconstruction_scaling.png)",
        "",
        "| grid (Z×Y×X) | frames | time (s) |",
        "|---|---|---|",
    ]
    for g in sc["vs_grid"]:
        lines.append(f"| {'×'.join(map(str, g['shape_zyx']))} | {g['frames']} | {g['s']:.2f} |")
    for g in sc["vs_frames"]:
        lines.append(f"| {'×'.join(map(str, g['shape_zyx']))} | {g['frames']} | {g['s']:.2f} |")
    lines += ["", "![slices](bench_reconstruction_slices.png)", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Small cases (a minute or two).")
    ap.add_argument("--out", type=Path, default=RESULTS, help="Output folder.")
    ap.add_argument("--skip-odtbrain", action="store_true", help="Do not run ODTbrain.")
    args = ap.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    _warm_up()
    if args.quick:
        rot = bench_rotation(96, 36, args.skip_odtbrain, log)
        il = bench_illumination_cli(128, 64, 25, log)
        sc = bench_scaling([64, 96, 128], [10, 25, 49], log)
    else:
        rot = bench_rotation(188, 60, args.skip_odtbrain, log)
        il = bench_illumination_cli(256, 128, 49, log)
        sc = bench_scaling([64, 96, 128, 192, 256], [10, 25, 49, 100, 200], log)
    slices = rot.pop("_slices")
    report = {
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "rotation": rot,
        "illumination_scan": il,
        "scaling": sc,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    _plots(args.out, sc, slices)
    (args.out / "bench_reconstruction.json").write_text(json.dumps(report, indent=2))
    (args.out / "bench_reconstruction.md").write_text(_markdown(report))
    log(f"report: {args.out / 'bench_reconstruction.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
