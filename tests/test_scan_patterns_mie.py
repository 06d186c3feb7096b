"""Any illumination pattern, against exact Mie fields (holo.twin.mie, miepython).

A sphere of diameter 6 µm, n 1.36 in 1.337 (Δn = 0.023, peak phase 1.6 rad), λ 0.532 µm,
objective NA 1.2, 64² frames at 0.2 µm, seen through the scan patterns instruments use: a
single ring at NA 0.8 (+ normal incidence, a galvo/DMD circle), concentric rings, a Fermat
spiral, random directions, a sparse 25-frame spiral and a one-sided half disc. The default
chain (gp) must give the mean RI inside 0.6 R within 1e-3, the volume above half contrast
within 5 % and z/x ≤ 1.15 on every pattern, and the background outside 1.2 R within 5e-4 of
n_m (99th percentile; gp's default ℓ1 mode), with no specks besides the sphere; the direct
Rytov inverse the mean within 2e-3. Those bounds are the issue's targets; the measured values are in
benchmarks/README.md (patterns table).

Each pipeline result also carries the data-consistency check; on exact data its dry-mass
ratio is near one and no frame is flagged.
"""

from __future__ import annotations

import functools
import types

import numpy as np
import pytest

pytest.importorskip("miepython")

from _mie_data import scan_pattern  # noqa: E402

from holo.pipeline import reconstruct  # noqa: E402

LAM, NM, NA = 0.532, 1.337, 1.2
RADIUS, N_IN = 3.0, 1.36
N, PX = 64, 0.2
@functools.lru_cache(maxsize=None)
def _fields(name):
    from holo.twin.mie import mie_sphere_field

    na = scan_pattern(name)
    u = np.stack([mie_sphere_field(RADIUS, N_IN, NM, LAM, (N, N), PX, illumination_na=tuple(a), objective_na=NA) for a in na])
    return types.SimpleNamespace(
        fields=u.astype(np.complex64), geometry="illumination-scan", wavelength_um=LAM, pixel_size_um=PX, medium_index=NM,
        objective_na=NA, illumination_na=na, valid=np.ones(len(na), bool), source=None,
    )


def _figures(tomo):
    """Mean RI error inside 0.6 R, volume error at half contrast, z/x extent, and the 99th
    percentile of |n − n_m| outside 1.2 R."""
    ri, (dz, dy, dx) = tomo.ri, tomo.voxel_size_um
    z, y, x = (np.arange(n) - n // 2 for n in ri.shape)
    r = np.sqrt((z[:, None, None] * dz) ** 2 + (y[None, :, None] * dy) ** 2 + (x[None, None, :] * dx) ** 2)
    half = NM + (N_IN - NM) / 2
    mean_err = float(ri[r < 0.6 * RADIUS].mean() - N_IN)
    vol_err = np.count_nonzero(ri > half) * dz * dy * dx / (4 / 3 * np.pi * RADIUS**3) - 1
    c = [s // 2 for s in ri.shape]
    zl, xl = np.flatnonzero(ri[:, c[1], c[2]] > half), np.flatnonzero(ri[c[0], c[1], :] > half)
    background = float(np.percentile(np.abs(ri[r > 1.2 * RADIUS] - NM), 99))
    return mean_err, vol_err, (np.ptp(zl) + 1) * dz / ((np.ptp(xl) + 1) * dx), background


def _check(name):
    fs = _fields(name)
    gp = reconstruct(fs, method="gp")
    mean_err, vol_err, zx, background = _figures(gp)
    assert abs(mean_err) < 1e-3, (name, mean_err)
    assert abs(vol_err) < 0.05, (name, vol_err)
    assert zx <= 1.15, (name, zx)
    assert background <= 5e-4, (name, background)
    assert gp.ri.min() >= NM - 1e-6
    dc = gp.provenance["data_consistency"]
    assert dc["model"] == "rytov" and dc["flagged_frames"] == []
    assert len(dc["frame_rms_phase_residual_rad"]) == len(fs.fields)
    assert 0.9 < dc["dry_mass_ratio"] < 1.1 and dc["rms_phase_residual_rad"] < 0.1
    rytov = reconstruct(fs, method="rytov")
    assert abs(_figures(rytov)[0]) < 2e-3, (name, _figures(rytov)[0])
    assert rytov.provenance["data_consistency"]["flagged_frames"] == []


@pytest.mark.parametrize("name", ["sparse"])
def test_default_chain_holds_on_scan_pattern(name):
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ring", "rings", "random", "one-sided"])
def test_default_chain_holds_on_more_scan_patterns(name):
    _check(name)


@pytest.mark.parametrize("l1_estimate", ["masked", "support"])
def test_gp_l1_mode_keeps_the_background_at_the_medium(l1_estimate):
    """gp's ℓ1 mode (noise-adaptive 3σ detection of the objects, then classic GP masked to
    their support and refitted on it, the default; or GP on the support from the ℓ1 result):
    the same targets and the background p99 |n − n_m| outside 1.2 R within 5e-4 (classic gp
    1.5e-3 on this pattern); nothing but the sphere stands above that band (the 3σ detection
    alone left ~10² specks; classic gp ~10³ components of n > n_m)."""
    from scipy import ndimage as ndi

    from holo.reconstruction.regularization import SPARSE_GP_SHRINK_SIGMAS, reconstruct_regularized
    from holo.reconstruction.regularization import gp as gp_module
    from holo.reconstruction.tomography import fourier_map
    from holo.reconstruction.tomography.fdt import REGULARIZED_AXIAL_HALFWIDTH

    fs = _fields("sparse")
    fd = fourier_map(fs, method="rytov", axial_halfwidth=REGULARIZED_AXIAL_HALFWIDTH[fs.geometry])
    solver = gp_module.gerchberg_papoulis
    defaults = dict(solver.__kwdefaults__)
    try:
        solver.__kwdefaults__["l1_estimate"] = l1_estimate
        tomo = reconstruct_regularized(fd, method="gp", shrink_sigmas=SPARSE_GP_SHRINK_SIGMAS)
    finally:
        solver.__kwdefaults__.update(defaults)
    mean_err, vol_err, zx, background = _figures(tomo)
    assert abs(mean_err) < 1e-3 and abs(vol_err) < 0.05 and zx <= 1.15, (mean_err, vol_err, zx)
    assert background <= 5e-4, background
    assert tomo.ri.min() >= NM - 1e-6
    assert tomo.provenance["parameters"]["shrink_sigmas"] == SPARSE_GP_SHRINK_SIGMAS
    # one object, the sphere: any other component of n > n_m stays within the 5e-4 band
    # (measured: "support" none; "masked" four of 1–2 voxels, at most 4.6e-4)
    labels, n = ndi.label(tomo.ri > NM + 1e-6)
    sphere = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    others = (labels > 0) & (labels != sphere)
    assert not others.any() or tomo.ri[others].max() - NM <= 5e-4, (n, tomo.ri[others].max() - NM)


def test_data_consistency_flags_a_corrupted_frame():
    """A 0.5 rad phase ramp added to one frame (a drift, a bad retrieval): that frame, and
    only that one, is flagged, and its residual stands far above the others."""
    fs = _fields("sparse")
    u = fs.fields.copy()
    u[7] *= np.exp(0.5j * np.linspace(-1, 1, N, dtype=np.float32))[None, :]
    tomo = reconstruct(types.SimpleNamespace(**{**vars(fs), "fields": u}), method="rytov")
    dc = tomo.provenance["data_consistency"]
    assert dc["flagged_frames"] == [7]
    r = np.asarray(dc["frame_rms_phase_residual_rad"])
    assert r[7] > 3 * max(r[5], r[6], r[8], r[9])
