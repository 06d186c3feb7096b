"""Numba kernels: spread Ewald-cap samples onto the 3D Fourier grid and normalise.

One kernel serves both geometries: the caller gives each frame's illumination wave vector
and a 3×3 matrix taking lab-frame K to object-frame K (identity for an illumination scan,
the inverse sample rotation for sample rotation). The physics is in :mod:`.fdt`.

Spreading is trilinear: a sample at fractional grid position (z, y, x) adds w·value and w
to the 8 surrounding voxels of ``num`` and ``den`` with w the product of the 1D linear
weights (1 − t, t). Dividing ``num`` by ``den`` afterwards (density compensation) gives each
voxel the proximity-weighted mean of the samples within one grid step of it.

Race-free parallelism: the Z axis of the output is cut into as many slabs as threads;
each thread walks over all samples of the frame and writes only the corners that fall in
its own slab (the sample geometry is cheap to recompute, the scattered writes are not
shared).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["spread_frame", "normalise_and_centre"]


@numba.njit(cache=True, fastmath=True, inline="always")
def _wrap(i, n):
    """Unshifted FFT index of signed frequency index i, or −1 outside [−n/2, (n−1)/2]."""
    if i < -(n // 2) or i > (n - 1) // 2:
        return -1
    return i % n


@numba.njit(cache=True, fastmath=True)
def _spread_one(num, den, fz, fy, fx, vr, vi, z_lo, z_hi):
    """Add w·(vr + i·vi) and w to the 8 voxels around the fractional index (fz, fy, fx).

    w = Π_axis (1 − |f − i|) (trilinear). Only voxels with z index in [z_lo, z_hi) are
    written (this thread's slab); indices beyond the grid's Nyquist range are dropped.
    """
    nz, ny, nx = num.shape
    z0 = math.floor(fz)
    y0 = math.floor(fy)
    x0 = math.floor(fx)
    for jz in range(z0, z0 + 2):
        iz = _wrap(jz, nz)
        if iz < z_lo or iz >= z_hi:
            continue
        wz = 1.0 - abs(fz - jz)
        if wz <= 0.0:
            continue
        for jy in range(y0, y0 + 2):
            iy = _wrap(jy, ny)
            if iy < 0:
                continue
            wy = wz * (1.0 - abs(fy - jy))
            if wy <= 0.0:
                continue
            for jx in range(x0, x0 + 2):
                ix = _wrap(jx, nx)
                if ix < 0:
                    continue
                w = wy * (1.0 - abs(fx - jx))
                if w <= 0.0:
                    continue
                num[iz, iy, ix] += complex(w * vr, w * vi)
                den[iz, iy, ix] += w


@numba.njit(cache=True, parallel=True, fastmath=True)
def spread_frame(spec, qy, qx, period_y, period_x, kin_zyx, km, k_pupil, rot, inv_dk_zyx, hermitian, num, den, n_threads):
    """Spread one frame's Ewald cap into the accumulators ``num`` (complex64) and ``den``.

    Parameters
    ----------
    spec : (Ny, Nx) complex64
        Û(q): continuous 2D Fourier transform of the Rytov/Born field u_R(r⊥) (already
        multiplied by the pixel area, centred on the frame centre) and divided by the voxel
        volume of the 3D grid.
    qy, qx : (Ny,), (Nx,) float64
        Angular frequencies q of the FFT bins of the frame, rad/µm.
    period_y, period_x : float
        2π/pixel: q is known modulo this period; each bin is unwrapped so that the
        scattered wave vector k_out,⊥ = q + k_in,⊥ lies in the pupil (exact when the field
        u is band-limited to the pupil and sampled at ≤ λ/(2 NA)).
    kin_zyx : (3,) float64
        Illumination wave vector (k_z, k_y, k_x), rad/µm, |k_in| = k_m.
    km, k_pupil : float
        k_m = 2π n_m/λ and the pupil radius k0·NA (rad/µm).
    rot : (3, 3) float64
        Object-frame K = rot @ lab-frame K, in (z, y, x) order.
    inv_dk_zyx : (3,) float64
        1/ΔK of the 3D grid per axis (ΔK = 2π/(N d)).
    hermitian : bool
        Also spread conj(F) at −K (a non-absorbing object has a real potential f).
    num, den : (Z, Y, X) complex64 / float32
        Accumulators, updated in place.
    n_threads : int
        Number of Z slabs processed in parallel (``numba.get_num_threads()``).

    Notes
    -----
    Each bin gives k_out = (√(k_m² − |k_out,⊥|²), k_out,⊥), the cap point
    K = k_out − k_in and the sample F(K) = 2i k_z,out Û(q) (Fourier diffraction theorem,
    derived in :mod:`.fdt`).
    """
    ny, nx = spec.shape
    nz = num.shape[0]
    nthreads = n_threads
    nchunk = min(nthreads, nz)
    kz_in = kin_zyx[0]
    ky_in = kin_zyx[1]
    kx_in = kin_zyx[2]
    kp2 = k_pupil * k_pupil
    km2 = km * km
    for c in numba.prange(nchunk):
        z_lo = (c * nz) // nchunk
        z_hi = ((c + 1) * nz) // nchunk
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
                oz = rot[0, 0] * Kz + rot[0, 1] * Ky + rot[0, 2] * Kx
                oy = rot[1, 0] * Kz + rot[1, 1] * Ky + rot[1, 2] * Kx
                ox = rot[2, 0] * Kz + rot[2, 1] * Ky + rot[2, 2] * Kx
                s = spec[iy, ix]
                # F = 2i k_z Û  ->  (re, im) = 2 k_z (−Im Û, Re Û)
                vr = -2.0 * kz * s.imag
                vi = 2.0 * kz * s.real
                _spread_one(num, den, oz * inv_dk_zyx[0], oy * inv_dk_zyx[1], ox * inv_dk_zyx[2], vr, vi, z_lo, z_hi)
                if hermitian:
                    _spread_one(num, den, -oz * inv_dk_zyx[0], -oy * inv_dk_zyx[1], -ox * inv_dk_zyx[2], vr, -vi, z_lo, z_hi)


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
        for iy in range(ny):
            for ix in range(nx):
                sn = 0j
                sd = 0.0
                for d in range(-factor + 1, factor):
                    j = (factor * k + d) % nzf
                    c = 1.0 - abs(d) / factor
                    sn += c * num_f[j, iy, ix]
                    sd += c * den_f[j, iy, ix]
                dn = den_f[jn, iy, ix]
                if dn > min_weight:
                    num_c[kc, iy, ix] = num_f[jn, iy, ix] * (sd / dn)
                else:
                    num_c[kc, iy, ix] = sn
                den_c[kc, iy, ix] = sd
