"""Numba kernel of the first-Born envelope: the sum over the slabs of one illumination.

For every kept lateral frequency q_m the scattered envelope needs the discrete sum

    A(q_m) = Σ_{j=0}^{J−1} F2_j(q_m) r_m^j,   r_m = exp(−i K_z(q_m) dz),

of the slabs' 2D spectra F2_j. Evaluated by Horner's rule from the last slab,
A ← A r_m + F2_j, on a (Y, X, J) copy of the spectra, so each q reads one contiguous row
(the gather of a (J, M) block per illumination cost more than the sums themselves).

Each step of Horner's rule waits for the previous one (a chain of dependent complex
multiply-adds), so one frequency at a time leaves the arithmetic units idle; the kernel runs
four independent chains side by side (four frequencies per step), which halves the time of
the sums with the same operations in the same order (bit-identical results).
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
