"""Accuracy per acquisition pattern against exact Mie fields (issue 18's table).

Run ``python -m benchmarks.bench_patterns [--methods rytov,gp,tv] [--cache DIR]``. Prints a
Markdown table and writes ``benchmarks/results/bench_patterns.{md,json}`` (git-ignored).

The sample is the issue's sphere: d 6 µm, n 1.36 in n_m 1.337 (Δn 0.023), λ 0.532 µm,
objective NA 1.2, 64² frames at 0.2 µm, exact fields from Mie theory (``holo.twin.mie``,
miepython), never from a model under test. Illumination scans: a single ring at NA 0.8, three
concentric rings, a dense Fermat spiral (49), random directions, a sparse spiral (25) and a
one-sided half disc, each with normal incidence. Sample rotation: 60 and 360 angles over a
full turn about Y; the sphere sits on the axis, so every angle's field is the normal-incidence
Mie field. Each volume comes from the whole ``holo.pipeline.reconstruct`` call (default grid
and padding, data-consistency check included).

Figures per row: mean RI error inside 0.6 R; volume above half contrast against the sphere's;
extents at half contrast along Z (and Y) over X through the centre; 99th percentile of
|n − n_m| outside 1.2 R (the issue asks ±5e-4) and its maximum (the sphere's own blurred
rim reaches past 1.2 R: a resolution length is 0.36 µm axially); the number of connected
components of n > n_m other than the sphere (isolated specks); the reported dry-mass ratio (re-projected /
measured phase); CPU seconds of the call. Targets (issue 18): gp mean within 1e-3, volume
within 5 %, z/x ≤ 1.15; rytov mean within 2e-3.

Mie fields take a few CPU-seconds per pattern; they are cached as .npy under ``--cache``
(default ``$TMPDIR/holo-bench-mie``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

LAM, NM, NA = 0.532, 1.337, 1.2
RADIUS_UM, N_SPHERE = 3.0, 1.36
N_PIXELS, PIXEL_UM = 64, 0.2
SCANS = ("ring", "rings", "spiral", "random", "sparse", "one-sided")
ROTATIONS = (60, 360)


def scan_pattern(name: str) -> np.ndarray:
    """(A, 2) illumination NAs of a named pattern: the test suite's (tests/_mie_data.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _mie_data import scan_pattern as pattern

    return pattern(name)


def _mie(illumination_na, cache: Path) -> np.ndarray:
    """Exact u/u0 frames (A, 64, 64) for the illumination NAs, cached by content."""
    from holo.twin.mie import mie_sphere_field

    na = np.asarray(illumination_na, float).reshape(-1, 2)
    key = hashlib.sha1(na.round(9).tobytes() + repr((RADIUS_UM, N_SPHERE, NM, LAM, N_PIXELS, PIXEL_UM, NA)).encode()).hexdigest()[:16]
    path = cache / f"mie_{key}.npy"
    if path.exists():
        return np.load(path)
    u = np.stack([mie_sphere_field(RADIUS_UM, N_SPHERE, NM, LAM, (N_PIXELS, N_PIXELS), PIXEL_UM, illumination_na=tuple(a), objective_na=NA)
                  for a in na]).astype(np.complex64)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, u)
    return u


def fieldset(case, cache: Path):
    """The field set of an illumination pattern name or a number of rotation angles."""
    common = dict(wavelength_um=LAM, pixel_size_um=PIXEL_UM, medium_index=NM, objective_na=NA, source=None, rotation_axis="y")
    if isinstance(case, str):
        na = scan_pattern(case)
        return types.SimpleNamespace(fields=_mie(na, cache), geometry="illumination-scan", illumination_na=na, angles=None,
                                     valid=np.ones(len(na), bool), **common)
    u = _mie(np.zeros((1, 2)), cache)[0]
    return types.SimpleNamespace(fields=np.ascontiguousarray(np.broadcast_to(u, (case,) + u.shape)), geometry="sample-rotation",
                                 angles=np.linspace(0, 2 * np.pi, case, endpoint=False), illumination_na=None,
                                 valid=np.ones(case, bool), **common)


def figures(ri: np.ndarray, voxel_size_um) -> dict:
    """Mean error inside 0.6 R, volume error, axial/lateral extents, background p99."""
    dz, dy, dx = voxel_size_um
    z, y, x = (np.arange(n) - n // 2 for n in ri.shape)
    r = np.sqrt((z[:, None, None] * dz) ** 2 + (y[None, :, None] * dy) ** 2 + (x[None, None, :] * dx) ** 2)
    half = NM + (N_SPHERE - NM) / 2
    c = [s // 2 for s in ri.shape]
    ext = [(np.ptp(np.flatnonzero(line > half)) + 1) * d
           for line, d in ((ri[:, c[1], c[2]], dz), (ri[c[0], :, c[2]], dy), (ri[c[0], c[1], :], dx))]
    return {
        "mean_error": float(ri[r < 0.6 * RADIUS_UM].mean() - N_SPHERE),
        "volume_error": float(np.count_nonzero(ri > half) * dz * dy * dx / (4 / 3 * np.pi * RADIUS_UM**3) - 1),
        "z_over_x": float(ext[0] / ext[2]),
        "y_over_x": float(ext[1] / ext[2]),
        "background_p99": float(np.percentile(np.abs(ri[r > 1.2 * RADIUS_UM] - NM), 99)),
        "background_max": float(np.abs(ri[r > 1.2 * RADIUS_UM] - NM).max()),
        "isolated_components": _isolated_components(ri),
    }


def _isolated_components(ri: np.ndarray) -> int:
    """Connected components of n > n_m (face connectivity) other than the largest (the sphere)."""
    from scipy import ndimage as ndi

    return max(int(ndi.label(ri - NM > 1e-6)[1]) - 1, 0)


def run_case(case, method: str, cache: Path, shrink_sigmas: float | None = None) -> dict:
    """One row: ``method`` on ``case``; ``shrink_sigmas`` (gp only) overrides its default κ."""
    from holo.pipeline import reconstruct

    fs = fieldset(case, cache)
    kw = {} if shrink_sigmas is None else {"shrink_sigmas": shrink_sigmas}
    c0 = time.process_time()
    tomo = reconstruct(fs, method=method, **kw)
    cpu = time.process_time() - c0
    label = method if shrink_sigmas is None else f"{method} κ={shrink_sigmas:g}"
    row = {"case": case if isinstance(case, str) else f"rotation {case}", "frames": int(len(fs.fields)), "method": label,
           "padding": tomo.provenance.get("parameters", {}).get("padding", (tomo.provenance.get("fourier_map") or {}).get("padding")),
           "cpu_s": round(cpu, 2), "dry_mass_ratio": tomo.provenance["data_consistency"]["dry_mass_ratio"]}
    row.update(figures(tomo.ri, tomo.voxel_size_um))
    return row


def markdown(rows) -> str:
    lines = ["| pattern | frames | method | mean RI error (0.6 R) | volume | z/x | y/x | background p99 | background max "
             "| isolated components | dry-mass ratio | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['frames']} | {r['method']} | {r['mean_error']:+.1e} | {r['volume_error']:+.1%} | "
                     f"{r['z_over_x']:.2f} | {r['y_over_x']:.2f} | {r['background_p99']:.1e} | {r['background_max']:.1e} | "
                     f"{r['isolated_components']} | {r['dry_mass_ratio']:.3f} | {r['cpu_s']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="rytov,gp,tv")
    ap.add_argument("--cases", default=",".join(SCANS + tuple(str(a) for a in ROTATIONS)),
                    help="pattern names and/or numbers of rotation angles")
    ap.add_argument("--gp-shrink-sigmas", default="",
                    help="comma-separated κ of gp's ℓ1 mode to run gp with (e.g. 0,3); default: gp's own default only")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "holo-bench-mie")
    args = ap.parse_args(argv)
    cases = [int(c) if c.isdigit() else c for c in args.cases.split(",")]
    rows = []
    for case in cases:
        for method in args.methods.split(","):
            kappas = [float(k) for k in args.gp_shrink_sigmas.split(",") if k] if method == "gp" else []
            for kappa in kappas or [None]:
                rows.append(run_case(case, method, args.cache, kappa))
                print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    table = markdown(rows)
    print(table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_patterns.md").write_text(table + "\n")
    meta = {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()}
    (out / "bench_patterns.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
