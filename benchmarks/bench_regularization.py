"""Speed and accuracy of the missing-cone regularisation (GP, TV) and of the BPM inversion.

Run ``python -m benchmarks.bench_regularization [--quick] [--device cpu|cuda]``.

* GP and TV on 256×256×128 and (without ``--quick``) 512×512×256 grids: time of the data
  preparation, time per iteration and total time for the default iteration counts.
* Accuracy versus iterations (RMS RI error and mean RI inside the objects) of GP and TV on a
  128×128×64 grid, plotted into ``benchmarks/results/regularization_accuracy.png``.
* BPM inversion: time per FISTA iteration (forward + autograd backward over all
  illuminations) on 48×48×32 with 25 illuminations (and 96×96×48 with 49 without ``--quick``).

Data: a cluster of spheres (Δn 0.01–0.05, cell-like) on an isotropic-in-physical-units grid
(dz = 2 dx, dx = 0.11 µm); its exact spectrum restricted to the support of 49 illuminations
up to NA 1.1 (objective NA 1.2, λ 0.532 µm, n_m 1.337) stands in for the Fourier data, so the
accuracy curves isolate the missing cone. Results go to ``benchmarks/results/
bench_regularization.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import types
from pathlib import Path

import numpy as np
import scipy.fft as sfft

from holo.conventions import potential_to_ri, ri_to_potential
from holo.threads import fft_workers

LAM, NM, NA_OBJ, NA_ILL = 0.532, 1.337, 1.2, 1.1
RESULTS = Path(__file__).resolve().parent / "results"


def spiral_na(n=49):
    """Illumination directions of the benchmark: the twin's spiral up to NA_ILL."""
    from holo.twin.illumination import illumination_pattern

    return illumination_pattern(n, condenser_na=NA_ILL, pattern="spiral", medium_index=NM)


def ewald_support(shape, voxel, n_ill=49):
    """Support of the Fourier diffraction theorem for an illumination scan (no wrap)."""
    from holo.reconstruction.tomography.grid import illumination_scan_support

    return illumination_scan_support(shape, voxel, spiral_na(n_ill), wavelength_um=LAM, medium_index=NM, objective_na=NA_OBJ)


def phantom(shape, voxel, seed=0, n_spheres=10):
    """Spheres of radius 1–2.5 µm (scaled to the box), Δn 0.01–0.05, RI float32."""
    rng = np.random.default_rng(seed)
    axes = [((np.arange(n) - n // 2) * h).astype(np.float32) for n, h in zip(shape, voxel)]
    half = np.array([n * h / 2 for n, h in zip(shape, voxel)])
    ri = np.full(shape, NM, np.float32)
    scale = min(1.0, half.min() / 5.0)
    for _ in range(n_spheres):
        r = rng.uniform(1.0, 2.5) * scale
        c = rng.uniform(-1, 1, 3) * (half - r - 0.5)
        sl = [slice(max(0, int((ci - r) / h + n // 2) - 1), min(n, int((ci + r) / h + n // 2) + 2)) for ci, h, n in zip(c, voxel, shape)]
        zz, yy, xx = np.meshgrid(axes[0][sl[0]], axes[1][sl[1]], axes[2][sl[2]], indexing="ij", sparse=True)
        inside = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r
        sub = ri[tuple(sl)]
        sub[inside] = np.maximum(sub[inside], NM + rng.uniform(0.01, 0.05))
    return ri


def fourier_data(shape, voxel, seed=0):
    ri = phantom(shape, voxel, seed)
    sup = ewald_support(shape, voxel)
    spec = sfft.fftn(ri_to_potential(ri, LAM, NM).astype(np.float32), workers=fft_workers())
    spec[~sup] = 0
    fd = types.SimpleNamespace(
        spectrum=spec.astype(np.complex64), weight=sup.astype(np.float32), support=sup, voxel_size_um=voxel,
        shape_zyx=shape, wavelength_um=LAM, medium_index=NM, method="synthetic", provenance={},
    )
    return ri, fd


def bench_speed(shape, device, methods=("gp", "tv")):
    from holo.reconstruction.regularization import DEFAULT_GP_ITERATIONS, DEFAULT_TV_ITERATIONS, reconstruct_regularized

    voxel = (0.22, 0.11, 0.11)
    t0 = time.perf_counter()
    ri, fd = fourier_data(shape, voxel)
    t_data = time.perf_counter() - t0
    rows = []
    direct = potential_to_ri(sfft.ifftn(fd.spectrum, workers=fft_workers()).real, LAM, NM)
    rms_direct = float(np.sqrt(np.mean((direct - ri) ** 2)))
    del direct
    for method in methods:
        stamps = []
        t0 = time.perf_counter()
        tomo = reconstruct_regularized(fd, method=method, tol=0.0, device=device, progress=lambda i, n, r: stamps.append(time.perf_counter()))
        total = time.perf_counter() - t0
        per_it = float(np.median(np.diff(stamps))) if len(stamps) > 2 else float("nan")
        rms = float(np.sqrt(np.mean((tomo.frame() - ri) ** 2)))
        row = dict(
            method=method, shape_zyx=list(shape), iterations=tomo.provenance["iterations_run"],
            default_iterations=DEFAULT_GP_ITERATIONS if method == "gp" else DEFAULT_TV_ITERATIONS,
            seconds_total=round(total, 2), seconds_per_iteration=round(per_it, 3),
            seconds_setup=round(stamps[0] - t0 - per_it, 2) if stamps else None,
            backend=tomo.provenance["backend"], rms_direct=rms_direct, rms=rms,
        )
        print(f"{method:3s} {shape}: {row['iterations']} it, {per_it:.3f} s/it, total {total:.1f} s (setup {row['seconds_setup']} s), "
              f"RMS RI error {rms:.2e} (direct {rms_direct:.2e}) [{row['backend']}]", flush=True)
        rows.append(row)
        del tomo
    rows.append(dict(method="synthetic-data", shape_zyx=list(shape), seconds=round(t_data, 2)))
    return rows


def bench_accuracy(device, iterations=(1, 2, 5, 10, 20, 40, 80)):
    from holo.reconstruction.regularization import reconstruct_regularized

    shape, voxel = (64, 128, 128), (0.22, 0.11, 0.11)
    ri, fd = fourier_data(shape, voxel, seed=1)
    mask = ri > NM + 0.005
    direct = potential_to_ri(sfft.ifftn(fd.spectrum).real, LAM, NM)
    out = {"iterations": list(iterations), "rms_direct": float(np.sqrt(np.mean((direct - ri) ** 2))),
           "mean_dn_true": float(ri[mask].mean() - NM), "mean_dn_direct": float(direct[mask].mean() - NM)}
    for method in ("gp", "tv"):
        rms, mean_dn = [], []
        for it in iterations:
            v = reconstruct_regularized(fd, method=method, iterations=it, tol=0.0, device=device).frame()
            rms.append(float(np.sqrt(np.mean((v - ri) ** 2))))
            mean_dn.append(float(v[mask].mean() - NM))
        out[method] = {"rms": rms, "mean_dn": mean_dn}
    # classic (un-accelerated) GP for comparison
    from holo.reconstruction.regularization import gerchberg_papoulis, hermitian_half_data

    rd = hermitian_half_data(fd.spectrum, fd.support)
    out["gp_classic"] = {"rms": []}
    for it in iterations:
        f, _ = gerchberg_papoulis(rd, iterations=it, tol=0.0, momentum=False, device=device)
        out["gp_classic"]["rms"].append(float(np.sqrt(np.mean((potential_to_ri(f, LAM, NM) - ri) ** 2))))
    for k in ("gp", "tv", "gp_classic"):
        print(f"accuracy {k:10s}: RMS " + " ".join(f"{it}:{r:.2e}" for it, r in zip(iterations, out[k]["rms"])) + f"  (direct {out['rms_direct']:.2e})")
    return out


def plot_accuracy(acc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    its = acc["iterations"]
    for k, style in (("gp", "o-"), ("tv", "s-"), ("gp_classic", "x--")):
        ax[0].plot(its, acc[k]["rms"], style, label=k)
    ax[0].axhline(acc["rms_direct"], color="k", ls=":", label="direct inverse (missing cone)")
    ax[0].set(xscale="log", yscale="log", xlabel="iterations", ylabel="RMS RI error", title="128×128×64, 49 illuminations")
    ax[0].legend()
    for k, style in (("gp", "o-"), ("tv", "s-")):
        ax[1].plot(its, acc[k]["mean_dn"], style, label=k)
    ax[1].axhline(acc["mean_dn_true"], color="g", ls="-", label="truth")
    ax[1].axhline(acc["mean_dn_direct"], color="k", ls=":", label="direct")
    ax[1].set(xscale="log", xlabel="iterations", ylabel="mean Δn inside objects")
    ax[1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bench_bpm(shape, vox, n_ill, device, iterations=3):
    from holo.reconstruction.forward import bpm_fields, snap_illumination_na
    from holo.reconstruction.model_based import reconstruct_bpm
    from holo.reconstruction.tomography import reconstruct_fdt

    ri = phantom(shape, vox, seed=2, n_spheres=3)
    na = snap_illumination_na(spiral_na(n_ill), shape[1:], vox[1:], LAM)
    u = bpm_fields(ri, vox, wavelength_um=LAM, medium_index=NM, objective_na=NA_OBJ, illumination_na=na)
    fs = types.SimpleNamespace(fields=u, geometry="illumination-scan", wavelength_um=LAM, pixel_size_um=vox[1], medium_index=NM,
                               objective_na=NA_OBJ, illumination_na=na, valid=None, source=None)
    init = reconstruct_fdt(fs, shape_zyx=shape, voxel_size_um=vox)
    stamps = []
    t0 = time.perf_counter()
    tomo = reconstruct_bpm(fs, init, iterations=iterations, tol=0.0, device=device, progress=lambda i, n, r: stamps.append(time.perf_counter()))
    total = time.perf_counter() - t0
    per_it = float(np.median(np.diff([t0] + stamps)))
    row = dict(method="bpm", shape_zyx=list(shape), illuminations=n_ill, iterations=iterations, seconds_per_iteration=round(per_it, 3),
               seconds_total=round(total, 2), device=tomo.provenance["parameters"]["device"], batch_size=tomo.provenance["parameters"]["batch_size"])
    print(f"bpm {shape} × {n_ill} illuminations: {per_it:.2f} s/iteration on {row['device']} (batch {row['batch_size']})", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the 256×256×128 grid and the small BPM case")
    ap.add_argument("--device", default="cpu", help="'cpu' (NumPy/Numba, default) or 'cuda' (torch)")
    ap.add_argument("--no-accuracy", action="store_true", help="skip the accuracy-vs-iterations curves")
    args = ap.parse_args(argv)
    dev = None if args.device == "auto" else args.device
    rows = []
    sizes = [(128, 256, 256)] + ([] if args.quick else [(256, 512, 512)])
    for s in sizes:
        rows += bench_speed(s, dev)
    acc = None
    if not args.no_accuracy:
        acc = bench_accuracy(dev)
        plot_accuracy(acc, RESULTS / "regularization_accuracy.png")
    bpm_dev = "cuda" if args.device == "cuda" else "cpu"
    rows.append(bench_bpm((32, 48, 48), (0.24, 0.15, 0.15), 25, bpm_dev))
    if not args.quick:
        rows.append(bench_bpm((48, 96, 96), (0.22, 0.11, 0.11), 49, bpm_dev, iterations=2))
    meta = dict(python=platform.python_version(), machine=platform.machine(), cpus=os.cpu_count(), device=args.device)
    try:
        import torch

        if args.device == "cuda" and torch.cuda.is_available():
            meta["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_regularization.json" if args.device == "cpu" else f"bench_regularization_{args.device}.json"
    (RESULTS / name).write_text(json.dumps(dict(meta=meta, results=rows, accuracy=acc), indent=1))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
