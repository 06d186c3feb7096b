"""Numba kernel of the first-Born envelope: the sum over the slabs of one illumination.

For every kept lateral frequency q_m the scattered envelope needs the discrete sum

    A(q_m) = Σ_{j=0}^{J−1} F2_j(q_m) r_m^j,   r_m = exp(−i K_z(q_m) dz),

of the slabs' 2D spectra F2_j. Evaluated by Horner's rule from the last slab,
A ← A r_m + F2_j, on a (Y, X, J) copy of the spectra, so each q reads one contiguous row
(the gather of a (J, M) block per illumination cost more than the sums themselves).

Each step of Horner's rule waits for the previous one (a chain of dependent complex
multiply-adds), so one chain at a time leaves the arithmetic units idle; both kernels run
four independent chains side by side, with the same operations in the same order
(bit-identical results):

* :func:`slab_sums`, one illumination (its own slab spectra, e.g. a turned sample): four
  frequencies per step (half the time of one chain);
* :func:`slab_sums_frames`, illuminations that share the slab spectra (an illumination
  scan): for each frequency, the frames whose kept region holds it, four per step. Each
  row of slabs is read once for all frames instead of once per frame (2–3× faster than
  :func:`slab_sums` frame by frame on 49 × 320² × 128).
"""

from __future__ import annotations

import numba
import numpy as np

#: Horner chains evaluated side by side by :func:`slab_sums`.
_CHAINS = 4


@numba.njit(cache=True)
def _horner(row, rm):
    """Σ_j row[j] rm^j by Horner's rule (one frequency)."""
    n_j = row.size
    acc = row[n_j - 1]
    for j in range(n_j - 2, -1, -1):
        acc = acc * rm + row[j]
    return acc


@numba.njit(parallel=True, cache=True)
def slab_sums(spec_yxj: np.ndarray, iy: np.ndarray, ix: np.ndarray, r: np.ndarray) -> np.ndarray:
    """A_m = Σ_j spec_yxj[iy_m, ix_m, j] r_m^j (complex64), by Horner's rule, four
    frequencies per step (module docstring)."""
    n_m = iy.size
    n_j = spec_yxj.shape[2]
    out = np.empty(n_m, dtype=np.complex64)
    for b in numba.prange((n_m + _CHAINS - 1) // _CHAINS):
        m = _CHAINS * b
        if m + _CHAINS <= n_m:
            w0 = spec_yxj[iy[m], ix[m]]
            w1 = spec_yxj[iy[m + 1], ix[m + 1]]
            w2 = spec_yxj[iy[m + 2], ix[m + 2]]
            w3 = spec_yxj[iy[m + 3], ix[m + 3]]
            r0 = r[m]
            r1 = r[m + 1]
            r2 = r[m + 2]
            r3 = r[m + 3]
            a0 = w0[n_j - 1]
            a1 = w1[n_j - 1]
            a2 = w2[n_j - 1]
            a3 = w3[n_j - 1]
            for j in range(n_j - 2, -1, -1):
                a0 = a0 * r0 + w0[j]
                a1 = a1 * r1 + w1[j]
                a2 = a2 * r2 + w2[j]
                a3 = a3 * r3 + w3[j]
            out[m] = a0
            out[m + 1] = a1
            out[m + 2] = a2
            out[m + 3] = a3
        else:
            for t in range(m, n_m):
                out[t] = _horner(spec_yxj[iy[t], ix[t]], r[t])
    return out


@numba.njit(cache=True, inline="always")
def _next_kept(keep, a, y, x):
    """The first frame index ≥ a whose mask keeps (y, x), or the number of frames."""
    n_a = keep.shape[0]
    a = min(a, n_a)
    while a < n_a and not keep[a, y, x]:
        a += 1
    return a


@numba.njit(parallel=True, cache=True)
def slab_sums_frames(spec_yxj: np.ndarray, keep: np.ndarray, r: np.ndarray, out: np.ndarray) -> None:
    """out[a, y, x] = Σ_j spec_yxj[y, x, j] r[a, y, x]^j where keep[a, y, x] (complex64, in
    place; untouched elsewhere), by Horner's rule, four frames per step (module docstring).

    ``keep`` (A, Y, X) bool, ``r`` and ``out`` (A, Y, X) complex64, ``spec_yxj`` (Y, X, J).
    """
    n_a, n_y, n_x = keep.shape
    n_j = spec_yxj.shape[2]
    last = n_a - 1
    for y in numba.prange(n_y):
        for x in range(n_x):
            row = spec_yxj[y, x]
            a0 = _next_kept(keep, 0, y, x)
            while a0 < n_a:
                a1 = _next_kept(keep, a0 + 1, y, x)
                a2 = _next_kept(keep, a1 + 1, y, x)
                a3 = _next_kept(keep, a2 + 1, y, x)
                r0 = r[a0, y, x]
                r1 = r[min(a1, last), y, x]
                r2 = r[min(a2, last), y, x]
                r3 = r[min(a3, last), y, x]
                s0 = row[n_j - 1]
                s1 = s0
                s2 = s0
                s3 = s0
                for j in range(n_j - 2, -1, -1):
                    w = row[j]
                    s0 = s0 * r0 + w
                    s1 = s1 * r1 + w
                    s2 = s2 * r2 + w
                    s3 = s3 * r3 + w
                out[a0, y, x] = s0
                if a1 < n_a:
                    out[a1, y, x] = s1
                if a2 < n_a:
                    out[a2, y, x] = s2
                if a3 < n_a:
                    out[a3, y, x] = s3
                a0 = _next_kept(keep, a3 + 1, y, x)
