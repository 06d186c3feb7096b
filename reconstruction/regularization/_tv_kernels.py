"""Numba kernels of the isotropic-TV proximal operator (fast gradient projection on the dual).

Discrete gradient with Neumann boundaries and per-axis weights c_a (c_a = h_min / h_a for
voxel sizes h_a): (∇_a x)_i = c_a (x_{i+e_a} − x_i), zero on the last plane of axis a.
Its adjoint: (∇ᵀp)_i = Σ_a c_a (p_{a,i−e_a} − p_{a,i}), with p_a read as zero outside
0 … N_a−2. The two kernels below are one iteration of the dual projected-gradient method
(see :func:`holo.reconstruction.regularization.tv.tv_prox`); each runs in parallel over Z.

:func:`kernels` picks them for a volume: below :data:`SERIAL_BELOW_VOXELS` the same functions
compiled without ``parallel`` (each slab is written by one iteration of the Z loop, so the
results are identical). A parallel launch costs a fork/join of the thread team (tens of µs,
a scheduler tick per launch when the CPUs are busy), more than the whole sweep of a small
volume: 3000 FGP iterations on 6 × 7 × 8 voxels took 48 s in a loaded test run.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath=True)
def primal_from_dual(b, p, lam, cz, cy, cx, upper, x):
    """x = min(b − λ ∇ᵀp, upper) (the clamp implements f ≤ upper; upper=+inf disables it)."""
    Z, Y, X = b.shape
    for k in prange(Z):
        for j in range(Y):
            for i in range(X):
                adj = np.float32(0.0)
                if k < Z - 1:
                    adj -= cz * p[0, k, j, i]
                if k > 0:
                    adj += cz * p[0, k - 1, j, i]
                if j < Y - 1:
                    adj -= cy * p[1, k, j, i]
                if j > 0:
                    adj += cy * p[1, k, j - 1, i]
                if i < X - 1:
                    adj -= cx * p[2, k, j, i]
                if i > 0:
                    adj += cx * p[2, k, j, i - 1]
                v = b[k, j, i] - lam * adj
                x[k, j, i] = v if v < upper else upper


@njit(parallel=True, cache=True, fastmath=True)
def dual_step(x, p, r, tau, beta, cz, cy, cx):
    """One FGP dual step, in place.

    q = P_{|q|≤1}(r + τ ∇x) (pointwise projection on the unit ball of R³);
    r ← q + β (q − p);  p ← q.
    With r is p (same array) and β = 0 it is Chambolle's projected gradient step.
    """
    Z, Y, X = x.shape
    for k in prange(Z):
        for j in range(Y):
            for i in range(X):
                xc = x[k, j, i]
                gz = cz * (x[k + 1, j, i] - xc) if k < Z - 1 else np.float32(0.0)
                gy = cy * (x[k, j + 1, i] - xc) if j < Y - 1 else np.float32(0.0)
                gx = cx * (x[k, j, i + 1] - xc) if i < X - 1 else np.float32(0.0)
                qz = r[0, k, j, i] + tau * gz
                qy = r[1, k, j, i] + tau * gy
                qx = r[2, k, j, i] + tau * gx
                nrm = np.sqrt(qz * qz + qy * qy + qx * qx)
                if nrm > 1.0:
                    s = np.float32(1.0) / nrm
                    qz *= s
                    qy *= s
                    qx *= s
                if k == Z - 1:
                    qz = np.float32(0.0)
                if j == Y - 1:
                    qy = np.float32(0.0)
                if i == X - 1:
                    qx = np.float32(0.0)
                r[0, k, j, i] = qz + beta * (qz - p[0, k, j, i])
                r[1, k, j, i] = qy + beta * (qy - p[1, k, j, i])
                r[2, k, j, i] = qx + beta * (qx - p[2, k, j, i])
                p[0, k, j, i] = qz
                p[1, k, j, i] = qy
                p[2, k, j, i] = qx


@njit(parallel=True, cache=True, fastmath=True)
def tv_value(x, cz, cy, cx):
    """Σ_i |∇x|_i, the isotropic TV of x with the weighted gradient above."""
    Z, Y, X = x.shape
    acc = np.zeros(Z, dtype=np.float64)
    for k in prange(Z):
        s = 0.0
        for j in range(Y):
            for i in range(X):
                xc = x[k, j, i]
                gz = cz * (x[k + 1, j, i] - xc) if k < Z - 1 else 0.0
                gy = cy * (x[k, j + 1, i] - xc) if j < Y - 1 else 0.0
                gx = cx * (x[k, j, i + 1] - xc) if i < X - 1 else 0.0
                s += np.sqrt(gz * gz + gy * gy + gx * gx)
        acc[k] = s
    return acc.sum()


#: Volumes with fewer voxels run the serial kernels (see the module docstring).
SERIAL_BELOW_VOXELS = 1 << 15

_SERIAL = {
    f.__name__: njit(cache=True, fastmath=True)(f.py_func) for f in (primal_from_dual, dual_step, tv_value)
}


def kernels(shape_zyx):
    """(primal_from_dual, dual_step, tv_value) for a volume of ``shape_zyx``: the serial
    compilations below :data:`SERIAL_BELOW_VOXELS` voxels, else the parallel ones."""
    if int(np.prod(shape_zyx)) < SERIAL_BELOW_VOXELS:
        return _SERIAL["primal_from_dual"], _SERIAL["dual_step"], _SERIAL["tv_value"]
    return primal_from_dual, dual_step, tv_value
