"""Total-variation regularised reconstruction of the scattering potential (FISTA).

Solves, for the real potential f (:mod:`holo.conventions`), on the measured Fourier samples
d with confidence c (see :mod:`holo.reconstruction.regularization.gp`):

    min_f  ½ (1/N) Σ_K c(K) |F(f)(K) − d(K)|²  +  λ TV_h(f)   subject to  f ≤ 0  (n ≥ n_m),

with the isotropic, voxel-size-aware total variation

    TV_h(f) = Σ_i √( Σ_a (h_min/h_a)² (f_{i+e_a} − f_i)² ),   h = (dz, dy, dx),

i.e. the Euclidean norm of the physical gradient (in units of the finest voxel), so that an
anisotropic grid (dz > dx) does not penalise axial edges more than lateral ones.

The outer loop is FISTA (Beck & Teboulle 2009) with a gradient step of length one on the data
term (Lipschitz constant max c = 1); the proximal operator of λ TV_h + ι{f ≤ 0} is evaluated
by the fast gradient projection (FGP) on its dual (Beck & Teboulle, IEEE TIP 18, 2009):

    x(p) = min(b − λ ∇ᵀp, 0),   p ← P_{|p|≤1}(r + ∇x(r) / (λ L²)),   L² = 4 Σ_a (h_min/h_a)²,

with Nesterov extrapolation r of the dual variable, warm-started from the previous outer
iteration so that a few inner iterations suffice. The regularisation weight is relative:
λ = weight · s with s the 99.9th percentile of |f| of the direct reconstruction, so that
``weight`` is dimensionless (a step of height s between two regions costs λ per unit area;
a ball of radius R voxels loses about 3·weight/R of its contrast).

The constraint f ≤ 0 rectifies the part of the data no f ≤ 0 reproduces into positive
background specks, as in classic GP (:mod:`holo.reconstruction.regularization.gp`): on exact
Mie spheres TV added 2.6–6.5 % of the mass that way. By default (``shrink_sigmas``) the
objects are then detected by gp's ℓ1 stage (an object it cut taken whole from the TV result,
:func:`~holo.reconstruction.regularization.gp.keep_detected_objects`) and f is set to the medium outside them, with
three support-constrained iterations that give the specks' mass (taken from the objects
through the measured K = 0) back to them: gp's default treatment of its own result
(docs/regularization.md).
"""

from __future__ import annotations

import numpy as np

from holo.reconstruction.regularization import _tv_kernels as _k
from holo.reconstruction.regularization.gp import (
    DEFAULT_GP_DETECTION_ITERATIONS,
    DEFAULT_GP_REFIT_ITERATIONS,
    SPARSE_GP_SHRINK_SIGMAS,
    RealData,
    fista_momentum,
    keep_detected_objects,
    select_backend,
    solve_fista,
)

__all__ = ["DEFAULT_TV_ITERATIONS", "DEFAULT_TV_WEIGHT", "DEFAULT_TV_INNER", "DEFAULT_TV_SHRINK_SIGMAS", "tv_weights", "tv_value", "tv_prox", "TVProx", "tv_fista"]

#: Default outer FISTA iterations, inner FGP iterations and relative TV weight.
DEFAULT_TV_ITERATIONS = 20
DEFAULT_TV_INNER = 4
DEFAULT_TV_WEIGHT = 0.01
#: κ of the ℓ1 detection of the objects after TV (module docstring); 0: plain TV.
DEFAULT_TV_SHRINK_SIGMAS = SPARSE_GP_SHRINK_SIGMAS


def tv_weights(voxel_size_um) -> tuple[float, float, float]:
    """Per-axis gradient weights c_a = h_min / h_a for voxel sizes (dz, dy, dx) in µm."""
    h = np.asarray(voxel_size_um, dtype=np.float64).reshape(-1)
    if h.size != 3 or not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"voxel_size_um must be three positive numbers (dz, dy, dx), got {voxel_size_um!r}")
    c = h.min() / h
    return float(c[0]), float(c[1]), float(c[2])


def tv_value(x, voxel_size_um) -> float:
    """TV_h(x), the weighted isotropic total variation defined in the module docstring."""
    cz, cy, cx = tv_weights(voxel_size_um)
    x = np.ascontiguousarray(x, dtype=np.float32)
    return float(_k.kernels(np.shape(x))[2](x, np.float32(cz), np.float32(cy), np.float32(cx)))


class TVProx:
    """Proximal operator of λ TV_h + ι{x ≤ upper}, with a dual variable kept between calls.

    Parameters
    ----------
    shape_zyx : (Z, Y, X)
    voxel_size_um : (dz, dy, dx)
    lam : float
        λ ≥ 0, in the units of x.
    iterations : int
        FGP iterations per call.
    nonpositive : bool
        Enforce x ≤ 0 (n ≥ n_m for the scattering potential).
    backend : optional
        From :func:`holo.reconstruction.regularization.gp.select_backend`; NumPy + Numba if None.
    """

    def __init__(self, shape_zyx, voxel_size_um, lam: float, *, iterations: int = DEFAULT_TV_INNER, nonpositive: bool = True, backend=None):
        if not (lam >= 0 and np.isfinite(lam)):
            raise ValueError(f"lam must be a finite number ≥ 0, got {lam}")
        if int(iterations) < 1:
            raise ValueError(f"iterations must be ≥ 1, got {iterations}")
        self.shape = tuple(int(s) for s in shape_zyx)
        self.c = tv_weights(voxel_size_um)
        self.lam = float(lam)
        self.iterations = int(iterations)
        self.upper = 0.0 if nonpositive else np.inf
        self.backend = backend
        self.torch = backend is not None and backend.name == "torch"
        if self.torch:
            self.p = backend.torch.zeros((3,) + self.shape, dtype=backend.torch.float32, device=backend.device)
        else:
            self.p = np.zeros((3,) + self.shape, dtype=np.float32)
        self.r = None
        self.L2 = 4.0 * sum(c * c for c in self.c)

    def __call__(self, b):
        if self.lam == 0.0:
            if self.torch:
                return b.clamp_(max=self.upper)
            return np.minimum(b, self.upper, out=b)
        if self.torch:
            return self._call_torch(b)
        return self._call_numpy(b)

    def _call_numpy(self, b):
        b = np.ascontiguousarray(b, dtype=np.float32)
        lam = np.float32(self.lam)
        tau = np.float32(1.0 / (self.lam * self.L2))
        cz, cy, cx = (np.float32(c) for c in self.c)
        up = np.float32(self.upper)
        if self.r is None:
            self.r = np.empty_like(self.p)
        r = self.r
        np.copyto(r, self.p)
        x = np.empty_like(b)
        primal_from_dual, dual_step, _ = _k.kernels(b.shape)
        t = 1.0
        for _ in range(self.iterations):
            primal_from_dual(b, r, lam, cz, cy, cx, up, x)
            t, beta = fista_momentum(t)
            beta = np.float32(beta)
            dual_step(x, self.p, r, tau, beta, cz, cy, cx)
        primal_from_dual(b, self.p, lam, cz, cy, cx, up, x)
        return x

    # -- torch (CUDA) version of the same two steps ------------------------------------------
    def _grad(self, x):
        torch = self.backend.torch
        cz, cy, cx = self.c
        g = torch.zeros((3,) + self.shape, dtype=x.dtype, device=x.device)
        g[0, :-1] = cz * (x[1:] - x[:-1])
        g[1, :, :-1] = cy * (x[:, 1:] - x[:, :-1])
        g[2, :, :, :-1] = cx * (x[:, :, 1:] - x[:, :, :-1])
        return g

    def _adj(self, p):
        torch = self.backend.torch
        cz, cy, cx = self.c
        a = torch.zeros(self.shape, dtype=p.dtype, device=p.device)
        a[:-1] -= cz * p[0, :-1]
        a[1:] += cz * p[0, :-1]
        a[:, :-1] -= cy * p[1, :, :-1]
        a[:, 1:] += cy * p[1, :, :-1]
        a[:, :, :-1] -= cx * p[2, :, :, :-1]
        a[:, :, 1:] += cx * p[2, :, :, :-1]
        return a

    def _call_torch(self, b):
        tau = 1.0 / (self.lam * self.L2)
        r = self.p.clone()
        t = 1.0
        for _ in range(self.iterations):
            x = (b - self.lam * self._adj(r)).clamp_(max=self.upper)
            q = r + tau * self._grad(x)
            q /= q.square().sum(0, keepdim=True).sqrt_().clamp_(min=1.0)
            q[0, -1] = 0
            q[1, :, -1] = 0
            q[2, :, :, -1] = 0
            t, beta = fista_momentum(t)
            r = q + beta * (q - self.p)
            self.p = q
        return (b - self.lam * self._adj(self.p)).clamp_(max=self.upper)


def tv_prox(b, voxel_size_um, lam: float, *, iterations: int = 50, nonpositive: bool = False):
    """argmin_x ½‖x − b‖² + λ TV_h(x) (+ x ≤ 0 if ``nonpositive``), by FGP on the dual.

    Parameters
    ----------
    b : (Z, Y, X) float array
    voxel_size_um : (dz, dy, dx)
    lam : float
        λ ≥ 0 in the units of b.
    iterations : int
        FGP iterations (cold start).
    nonpositive : bool

    Returns
    -------
    (Z, Y, X) float32 ndarray
    """
    b = np.asarray(b, dtype=np.float32)
    if b.ndim != 3:
        raise ValueError(f"b must be 3D (Z, Y, X), got shape {b.shape}")
    return TVProx(b.shape, voxel_size_um, lam, iterations=iterations, nonpositive=nonpositive)(b.copy())


def tv_fista(
    real_data: RealData,
    voxel_size_um,
    *,
    weight: float = DEFAULT_TV_WEIGHT,
    iterations: int = DEFAULT_TV_ITERATIONS,
    inner_iterations: int = DEFAULT_TV_INNER,
    tol: float = 1e-3,
    shrink_sigmas: float = DEFAULT_TV_SHRINK_SIGMAS,
    refit_iterations: int = DEFAULT_GP_REFIT_ITERATIONS,
    progress=None,
    device: str | None = None,
):
    """TV-regularised, non-negative reconstruction of f by FISTA (module docstring).

    Parameters
    ----------
    real_data : RealData
        From :func:`holo.reconstruction.regularization.gp.hermitian_half_data`.
    voxel_size_um : (dz, dy, dx)
    weight : float
        Relative TV weight (λ = weight × 99.9th percentile of |f_direct|).
    iterations, tol, progress
        See :func:`holo.reconstruction.regularization.gp.solve_fista`.
    inner_iterations : int
        FGP iterations of the proximal operator per outer iteration (warm-started).
    shrink_sigmas : float
        κ of the ℓ1 detection of the objects (:func:`~holo.reconstruction.regularization.gp.detect_objects`)
        after which f is set to 0 outside them and refitted
        (:func:`~holo.reconstruction.regularization.gp.mask_to_objects`, ``refit_iterations``);
        0: plain TV.
    device : str, optional
        Back end (see :func:`holo.reconstruction.regularization.gp.select_backend`).

    Returns
    -------
    f : (Z, Y, X) float32 ndarray, f ≤ 0
    info : SolveInfo
        with ``lam`` (the absolute λ) added as an attribute; ``support_fraction``, the share of
        the voxels kept.
    """
    if not (weight >= 0 and np.isfinite(weight)):
        raise ValueError(f"weight must be a finite number ≥ 0, got {weight}")
    be = select_backend(real_data.shape_zyx, device)
    direct = be.irfftn(be.asarray(real_data.data.copy()))
    direct_np = be.to_numpy(direct)
    scale = float(np.percentile(np.abs(direct_np[:: max(1, direct_np.shape[0] // 32)]), 99.9))
    del direct_np
    lam = float(weight) * scale
    prox = TVProx(real_data.shape_zyx, voxel_size_um, lam, iterations=inner_iterations, nonpositive=True, backend=be if be.name == "torch" else None)
    init = be.to_numpy(be.clamp_nonpositive(direct))
    del direct
    f, info = solve_fista(real_data, prox, iterations=iterations, tol=tol, momentum=True, init=init, progress=progress, backend=be)
    if shrink_sigmas > 0:
        f, kept = keep_detected_objects(real_data, f, detection_iterations=DEFAULT_GP_DETECTION_ITERATIONS,
                                        shrink_sigmas=shrink_sigmas, refit_iterations=refit_iterations, tol=tol, backend=be)
        info.support_fraction, info.shrinkage = kept.support_fraction, kept.shrinkage
    info.lam = lam
    return f, info
