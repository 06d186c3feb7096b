"""Numba kernel of the first-Born envelope: the sum over the slabs of one illumination.

For every kept lateral frequency q_m the scattered envelope needs the discrete sum

    A(q_m) = Σ_{j=0}^{J−1} F2_j(q_m) r_m^j,   r_m = exp(−i K_z(q_m) dz),

of the slabs' 2D spectra F2_j. Evaluated by Horner's rule from the last slab,
A ← A r_m + F2_j, on a (Y, X, J) copy of the spectra, so each q reads one contiguous row
(the gather of a (J, M) block per illumination cost more than the sums themselves).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def slab_sums(spec_yxj: np.ndarray, iy: np.ndarray, ix: np.ndarray, r: np.ndarray) -> np.ndarray:
    """A_m = Σ_j spec_yxj[iy_m, ix_m, j] r_m^j (complex64), by Horner's rule."""
    n_m = iy.size
    n_j = spec_yxj.shape[2]
    out = np.empty(n_m, dtype=np.complex64)
    for m in numba.prange(n_m):
        row = spec_yxj[iy[m], ix[m]]
        rm = r[m]
        acc = row[n_j - 1]
        for j in range(n_j - 2, -1, -1):
            acc = acc * rm + row[j]
        out[m] = acc
    return out
