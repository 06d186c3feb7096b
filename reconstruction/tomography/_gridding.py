"""Numba kernels: spread Ewald-cap samples onto the 3D Fourier grid and normalise.

One kernel serves both geometries: the caller gives each frame's illumination wave vector
and a 3×3 matrix taking lab-frame K to object-frame K (identity for an illumination scan,
the inverse sample rotation for sample rotation). The physics is in :mod:`.fdt`.

Spreading is trilinear: a sample at fractional grid position (z, y, x) adds w·value and w
to the 8 surrounding voxels of ``num`` and ``den`` with w the product of the 1D linear
weights (1 − t, t). Dividing ``num`` by ``den`` afterwards (density compensation) gives each
voxel the proximity-weighted mean of the samples within one grid step of it. A sample lying
on a grid plane (to 1e-6 of a step: the lateral samples of an illumination scan) writes
only to that plane.

Race-free parallelism: the Z axis of the output is cut into as many slabs as threads;
each thread walks over all samples of a batch of frames and writes only the corners that
fall in its own slab (the sample geometry is cheap to recompute, the scattered writes are
not shared).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["spread_frames", "normalise_and_centre", "coarsen_z"]


@numba.njit(cache=True, fastmath=True, inline="always")
def _wrap(i, n):
    """Unshifted FFT index of signed frequency index i, or −1 outside [−n/2, (n−1)/2]."""
    if i < -(n // 2) or i > (n - 1) // 2:
        return -1
    return i % n


#: Fractional offsets closer than this to a grid point are snapped onto it (in grid steps).
#: Lateral cap samples of an illumination scan fall exactly on grid planes up to float64
#: round-off (~1e-12); without the snap each would also write weights ~1e-12 to the
#: neighbouring plane (4× the writes for nothing). Moving a sample by 1e-6 of a step is a
#: phase ramp of at most π·1e-6 rad across the volume, far below float32 accumulation error.
_SNAP = 1e-6


@numba.njit(cache=True, fastmath=True, inline="always")
def _corners(f, n):
    """The two grid points around the fractional signed index f along an axis of n points:
    (i0, w0, i1, w1), unshifted FFT indices with the linear weights 1 − t and t
    (t = f − ⌊f⌋). A point beyond the Nyquist range, or without weight, gets w = 0."""
    j0 = math.floor(f)
    t = f - j0
    if t < _SNAP:
        t = 0.0
    elif t > 1.0 - _SNAP:
        j0 += 1
        t = 0.0
    i0 = _wrap(j0, n)
    i1 = _wrap(j0 + 1, n)
    w0 = 1.0 - t if i0 >= 0 else 0.0
    w1 = t if i1 >= 0 else 0.0
    return i0, w0, i1, w1


@numba.njit(cache=True, fastmath=True, inline="always")
def _corners_narrow(f, n, scale):
    """As :func:`_corners` with a tent of half-width 1/scale steps: w = max(0, 1 − scale·|f − i|).

    ``scale`` = 1 is the linear interpolation weight; ``scale`` > 1 keeps only samples
    within 1/scale of a grid point, whose value differs from the one at the grid point by
    at most |∂F/∂K|·ΔK/scale (the first-order error of plain trilinear averaging)."""
    if scale == 1.0:
        return _corners(f, n)
    j0 = math.floor(f)
    t = f - j0
    i0 = _wrap(j0, n)
    i1 = _wrap(j0 + 1, n)
    w0 = 1.0 - scale * t if i0 >= 0 else 0.0
    w1 = 1.0 - scale * (1.0 - t) if i1 >= 0 else 0.0
    return i0, max(w0, 0.0), i1, max(w1, 0.0)


@numba.njit(cache=True, fastmath=True, inline="always")
def _add_row(num, den, iz, iy, w, ix0, wx0, ix1, wx1, vr, vi):
    """Add w·wx·(vr + i·vi) and w·wx to voxels (iz, iy, ix0) and (iz, iy, ix1)."""
    if w <= 0.0:
        return
    a = w * wx0
    if a > 0.0:
        num[iz, iy, ix0] += complex(a * vr, a * vi)
        den[iz, iy, ix0] += a
    a = w * wx1
    if a > 0.0:
        num[iz, iy, ix1] += complex(a * vr, a * vi)
        den[iz, iy, ix1] += a


@numba.njit(cache=True, fastmath=True)
def _spread_one(num, den, fz, fy, fx, vr, vi, z_lo, z_hi, z_scale):
    """Add w·(vr + i·vi) and w to the 8 voxels around the fractional index (fz, fy, fx).

    w = Π_axis (1 − |f − i|) (trilinear; along Z the tent is 1/``z_scale`` steps wide,
    see :func:`_corners_narrow`). Only voxels with z index in [z_lo, z_hi) are
    written (this thread's slab); indices beyond the grid's Nyquist range are dropped.
    """
    nz, ny, nx = num.shape
    iz0, wz0, iz1, wz1 = _corners_narrow(fz, nz, z_scale)
    if iz0 < z_lo or iz0 >= z_hi:
        wz0 = 0.0
    if iz1 < z_lo or iz1 >= z_hi:
        wz1 = 0.0
    if wz0 <= 0.0 and wz1 <= 0.0:
        return
    iy0, wy0, iy1, wy1 = _corners(fy, ny)
    ix0, wx0, ix1, wx1 = _corners(fx, nx)
    _add_row(num, den, iz0, iy0, wz0 * wy0, ix0, wx0, ix1, wx1, vr, vi)
    _add_row(num, den, iz0, iy1, wz0 * wy1, ix0, wx0, ix1, wx1, vr, vi)
    _add_row(num, den, iz1, iy0, wz1 * wy0, ix0, wx0, ix1, wx1, vr, vi)
    _add_row(num, den, iz1, iy1, wz1 * wy1, ix0, wx0, ix1, wx1, vr, vi)


@numba.njit(cache=True, parallel=True, fastmath=True)
def spread_frames(spec, qy, qx, period_y, period_x, kin_zyx, km, k_pupil, rot, inv_dk_zyx, hermitian, num, den, n_threads, z_scale=1.0):
    """Spread the Ewald caps of a batch of frames into the accumulators ``num`` (complex64)
    and ``den``.

    Parameters
    ----------
    spec : (B, Ny, Nx) complex64
        Û(q) of each frame: continuous 2D Fourier transform of the Rytov/Born field u_R(r⊥)
        (already multiplied by the pixel area, centred on the frame centre) and divided by
        the voxel volume of the 3D grid.
    qy, qx : (Ny,), (Nx,) float64
        Angular frequencies q of the FFT bins of the frame, rad/µm.
    period_y, period_x : float
        2π/pixel: q is known modulo this period; each bin is unwrapped so that the
        scattered wave vector k_out,⊥ = q + k_in,⊥ lies in the pupil (exact when the field
        u is band-limited to the pupil and sampled at ≤ λ/(2 NA)).
    kin_zyx : (B, 3) float64
        Illumination wave vector (k_z, k_y, k_x) of each frame, rad/µm, |k_in| = k_m.
    km, k_pupil : float
        k_m = 2π n_m/λ and the pupil radius k0·NA (rad/µm).
    rot : (B, 3, 3) float64
        Object-frame K = rot[b] @ lab-frame K, in (z, y, x) order.
    inv_dk_zyx : (3,) float64
        1/ΔK of the 3D grid per axis (ΔK = 2π/(N d)).
    hermitian : bool
        Also spread conj(F) at −K (a non-absorbing object has a real potential f).
    num, den : (Z, Y, X) complex64 / float32
        Accumulators, updated in place.
    n_threads : int
        Number of Z slabs processed in parallel (``numba.get_num_threads()``).
    z_scale : float
        1 (default): trilinear. > 1: along Z only samples within 1/z_scale of a grid plane
        count (accurate values on a sparser support, see :func:`_corners_narrow`).

    Notes
    -----
    Each bin gives k_out = (√(k_m² − |k_out,⊥|²), k_out,⊥), the cap point
    K = k_out − k_in and the sample F(K) = 2i k_z,out Û(q) (Fourier diffraction theorem,
    derived in :mod:`.fdt`).
    """
    nb, ny, nx = spec.shape
    nz = num.shape[0]
    nchunk = min(n_threads, nz)
    kp2 = k_pupil * k_pupil
    km2 = km * km
    for c in numba.prange(nchunk):
        z_lo = (c * nz) // nchunk
        z_hi = ((c + 1) * nz) // nchunk
        for b in range(nb):
            kz_in = kin_zyx[b, 0]
            ky_in = kin_zyx[b, 1]
            kx_in = kin_zyx[b, 2]
            r = rot[b]
            for iy in range(ny):
                ky = qy[iy] + ky_in
                ky = ky - period_y * math.floor(ky / period_y + 0.5)
                for ix in range(nx):
                    kx = qx[ix] + kx_in
                    kx = kx - period_x * math.floor(kx / period_x + 0.5)
                    kperp2 = kx * kx + ky * ky
                    if kperp2 > kp2 or kperp2 >= km2:
                        continue
                    kz = math.sqrt(km2 - kperp2)
                    Kz = kz - kz_in
                    Ky = ky - ky_in
                    Kx = kx - kx_in
                    oz = (r[0, 0] * Kz + r[0, 1] * Ky + r[0, 2] * Kx) * inv_dk_zyx[0]
                    oy = (r[1, 0] * Kz + r[1, 1] * Ky + r[1, 2] * Kx) * inv_dk_zyx[1]
                    ox = (r[2, 0] * Kz + r[2, 1] * Ky + r[2, 2] * Kx) * inv_dk_zyx[2]
                    s = spec[b, iy, ix]
                    # F = 2i k_z Û  ->  (re, im) = 2 k_z (−Im Û, Re Û)
                    vr = -2.0 * kz * s.imag
                    vi = 2.0 * kz * s.real
                    _spread_one(num, den, oz, oy, ox, vr, vi, z_lo, z_hi, z_scale)
                    if hermitian:
                        _spread_one(num, den, -oz, -oy, -ox, vr, -vi, z_lo, z_hi, z_scale)


@numba.njit(cache=True, parallel=True, fastmath=True)
def normalise_and_centre(num, den, phase_z, phase_y, phase_x, min_weight, support):
    """In place: num ← num/den · phase_z[z]·phase_y[y]·phase_x[x] where den > min_weight, else 0.

    ``support`` (bool, same shape) is set to ``den > min_weight``. The separable phase moves
    the spatial origin from the volume centre to the first voxel (FFT layout).
    """
    nz, ny, nx = num.shape
    for iz in numba.prange(nz):
        for iy in range(ny):
            pzy = phase_z[iz] * phase_y[iy]
            for ix in range(nx):
                d = den[iz, iy, ix]
                if d > min_weight:
                    num[iz, iy, ix] = num[iz, iy, ix] / d * (pzy * phase_x[ix])
                    support[iz, iy, ix] = True
                else:
                    num[iz, iy, ix] = 0.0
                    support[iz, iy, ix] = False


@numba.njit(cache=True, parallel=True, fastmath=True)
def coarsen_z(num_f, den_f, factor, min_weight, num_c, den_c):
    """Bring accumulators gridded ``factor`` times finer along K_z to the output grid.

    For coarse signed index k: the direct-trilinear equivalent sums
    c = Σ_{|d|<factor} (1 − |d|/factor)·a_f[factor·k + d] (for num and den), and where the
    fine voxel exactly at K (index factor·k) holds data, its estimate num_f/den_f replaces
    c_num/c_den (stored as num_f·c_den/den_f so that a later division by den gives it).
    """
    nzf, ny, nx = num_f.shape
    nz = num_c.shape[0]
    for kc in numba.prange(nz):
        k = np.int64(kc)
        if k > (nz - 1) // 2:
            k -= nz
        jn = (factor * k) % nzf
        # the coarse plane as the weighted sum of the fine planes around it
        for iy in range(ny):
            for ix in range(nx):
                num_c[kc, iy, ix] = num_f[jn, iy, ix]
                den_c[kc, iy, ix] = den_f[jn, iy, ix]
        for d in range(1, factor):
            c = np.float32(1.0 - d / factor)
            jm = (factor * k - d) % nzf
            jp = (factor * k + d) % nzf
            for iy in range(ny):
                for ix in range(nx):
                    num_c[kc, iy, ix] += c * (num_f[jm, iy, ix] + num_f[jp, iy, ix])
                    den_c[kc, iy, ix] += c * (den_f[jm, iy, ix] + den_f[jp, iy, ix])
        # where the fine voxel at K holds data its estimate replaces the sum
        for iy in range(ny):
            for ix in range(nx):
                dn = den_f[jn, iy, ix]
                if dn > min_weight:
                    num_c[kc, iy, ix] = num_f[jn, iy, ix] * (den_c[kc, iy, ix] / dn)
