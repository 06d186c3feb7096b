"""Gerchberg–Papoulis missing-cone filling with non-negativity, and the shared solver loop.

The direct (Rytov/Born) mapping measures the spectrum F(K) of the scattering potential
f(r) = k0²(n_m² − n(r)²) (see :mod:`holo.conventions`) only on a support Ω, the union of the
Ewald caps; the rest (the "missing cone" around the K_z axis) is zero, which elongates objects
along Z and lowers their RI. Gerchberg–Papoulis alternates two projections:

1. data consistency: F(f)(K) ← d(K) for K ∈ Ω (the measured samples are re-inserted),
2. the object constraints: f real (the RI is kept real) and f ≤ 0, i.e. n ≥ n_m.

Written as an optimisation problem, with F the (unnormalised) 3D DFT and N the voxel count,

    min_f  ½ (1/N) Σ_K c(K) |F(f)(K) − d(K)|² + λ ‖f‖₁   subject to  f real, f ≤ 0,

where c ∈ [0, 1] is the data confidence (the support indicator, or the gridding weight scaled
to a maximum of one). The gradient of the data term is F⁻¹(c·(F f − d)) with Lipschitz constant
max c = 1, so a projected-gradient step of length 1 is exactly the GP iteration
f ← P(F⁻¹[F f + c (d − F f)]) (with c the indicator of Ω). :func:`solve_fista` runs this step with
optional Nesterov/FISTA momentum ("accelerated GP"), which reaches the same fixed point in far
fewer iterations; the TV solver (:mod:`holo.reconstruction.regularization.tv`) reuses the same loop with
the TV proximal operator in place of the clamp.

The ℓ1 term says that the sample is mostly medium (f = 0). Without it (λ = 0, classic GP)
the part of the measured samples that no f ≤ 0 reproduces (noise, gridding and Rytov errors)
is rectified by the clamp at every iteration into positive RI specks whose spectrum lies off
Ω, where nothing pulls them back: they pile up over the whole background. With f ≤ 0,
‖f‖₁ = −Σ f and the proximal step of λ‖f‖₁ + ι{f ≤ 0} is the shifted clamp
f = min(b + λ, 0) (:func:`shrink_nonpositive`). λ = κ σ̂ is set at every iteration from the
iterate's own noise: σ̂ is the RMS of the unphysical part b > 0 (n < n_m, made by nothing
but the inconsistency; the RMS of a half-normal is σ), κ = 3 (a 3σ detection threshold;
:data:`SPARSE_GP_SHRINK_SIGMAS`, the default; κ = 0 is classic GP). On
exact data b > 0 vanishes as the iterations converge, so λ → 0 and the fixed point is GP's.

The ℓ1 term also biases what it keeps: at its fixed point the data residual is −λ over the
object, which on a measured cell (HL60, tests/test_measured_data.py) took 8 % of the dry mass
that K = 0 measures. So the ℓ1 stage only *detects* the object: the last quarter of the
iterations (:data:`DEFAULT_GP_SUPPORT_FRACTION`) is classic GP restricted to its support
S, f ← min(b, 0)·1_S — Gerchberg's original support constraint, with the support found from
the data (the "debiasing" step of ℓ1 solvers: least squares on the detected support). S is
{f < 0} less its components smaller than one resolution cell of the data (N/|Ω| voxels,
:func:`object_support`): a κσ̂ threshold also passes the tips of noise and Rytov/gridding
artefacts, one- to twenty-voxel specks that the support stage would otherwise raise to
several 1e-3. Outside S the background stays exactly n_m; inside, the mass comes back.

The "masked" estimate (``l1_estimate``) keeps classic GP's interior instead: classic GP over
the whole volume, set to 0 outside S. Classic GP's background specks hold positive mass that
the measured K = 0 sample (the total dry mass) took from the objects (on the measured HL60
cell 4 % of it lay outside S), so a few iterations of the support-constrained GP from the
masked result (``refit_iterations``) give that mass back to S while moving the interior
little (docs/regularization.md). Where the data are far from consistent, λ approaches the
objects' own contrast and the ℓ1 stage keeps only their cores: an object whose part in S
holds less than half of its classic mass is then taken whole from the classic result at the
level λ (:func:`grown_support`).

A real f has a Hermitian spectrum, so the least-squares data for a real f combine each measured
sample with its conjugate partner at −K:

    d_h(K) = [c(K) d(K) + c(−K) conj d(−K)] / [c(K) + c(−K)],   c_h(K) = ½ [c(K) + c(−K)].

This doubles the effective support for illumination-scan data (whose support is not symmetric)
and lets every FFT be a real one (``rfftn``/``irfftn``, half the memory and time).

References
----------
R. W. Gerchberg, "Super-resolution through error energy reduction", Opt. Acta 21 (1974).
A. Papoulis, "A new algorithm in spectral analysis and band-limited extrapolation",
IEEE Trans. Circuits Syst. 22 (1975).
J. Lim et al., "Comparative study of iterative reconstruction algorithms for missing cone
problems in optical diffraction tomography", Opt. Express 23 (2015).
A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm", SIAM J. Imaging
Sci. 2 (2009).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.fft as sfft

from holo.threads import fft_workers

__all__ = [
    "DEFAULT_GP_DETECTION_ITERATIONS",
    "DEFAULT_GP_ITERATIONS",
    "DEFAULT_GP_L1_ESTIMATE",
    "DEFAULT_GP_MIN_COMPONENT_CELLS",
    "DEFAULT_GP_REFIT_ITERATIONS",
    "DEFAULT_GP_SHRINK_SIGMAS",
    "DEFAULT_GP_SUPPORT_FRACTION",
    "SPARSE_GP_SHRINK_SIGMAS",
    "RealData",
    "SolveInfo",
    "hermitian_half_data",
    "gerchberg_papoulis",
    "object_support",
    "resolution_cell_voxels",
    "detect_objects",
    "grown_support",
    "keep_detected_objects",
    "mask_to_objects",
    "solve_fista",
    "fista_momentum",
    "select_backend",
    "shrink_nonpositive",
]

#: Default number of (accelerated) GP iterations; FISTA momentum makes 40 of them match
#: several hundred classic GP iterations on cell-sized objects (see docs/regularization.md).
DEFAULT_GP_ITERATIONS = 40

#: κ of the ℓ1 threshold λ = κ σ̂ of :func:`gerchberg_papoulis` (module docstring) when the
#: ℓ1 mode is asked for; chosen on validation Mie data (d 5 µm, Δn 0.03, NA 1.0), see
#: docs/regularization.md.
SPARSE_GP_SHRINK_SIGMAS = 3.0

#: Default κ: the ℓ1 mode (:data:`SPARSE_GP_SHRINK_SIGMAS`), which keeps the background at
#: n_m on every scan pattern; 0 is classic GP (docs/regularization.md).
DEFAULT_GP_SHRINK_SIGMAS = SPARSE_GP_SHRINK_SIGMAS

#: Fraction of the iterations run as support-constrained GP after the ℓ1 stage (module
#: docstring); results moved < 2e-4 in mean RI between 1/8 and 1/2 on the validation data.
DEFAULT_GP_SUPPORT_FRACTION = 0.25

#: What the ℓ1 mode returns on its support S (:func:`gerchberg_papoulis` ``l1_estimate``):
#: "masked", classic GP's interior (the volumes the U-Net is trained on) with the specks'
#: mass given back to S by :data:`DEFAULT_GP_REFIT_ITERATIONS`; "support", GP constrained to
#: S from the ℓ1 result, whose interiors the U-Net segments worse (docs/regularization.md).
DEFAULT_GP_L1_ESTIMATE = "masked"

#: Support-constrained GP iterations after the "masked" estimate (:func:`gerchberg_papoulis`):
#: they give back to S the mass that classic GP's background specks took from it (module
#: docstring); chosen on twin validation seeds (docs/regularization.md).
DEFAULT_GP_REFIT_ITERATIONS = 3

#: Iterations of the ℓ1 detection of the objects (:func:`detect_objects`) at the default
#: iteration count: those gp runs before its support stage.
DEFAULT_GP_DETECTION_ITERATIONS = DEFAULT_GP_ITERATIONS - int(round(DEFAULT_GP_SUPPORT_FRACTION * DEFAULT_GP_ITERATIONS))

#: Smallest component of the ℓ1 stage's support kept for the support stage, in resolution
#: cells (:func:`object_support`, :func:`resolution_cell_voxels`); 0 keeps every component.
DEFAULT_GP_MIN_COMPONENT_CELLS = 1.0


@dataclass
class RealData:
    """Measured data of a real potential on the ``rfftn`` half grid.

    Attributes
    ----------
    data : (Z, Y, X//2+1) complex64
        d_h, the Hermitian-combined measured spectrum (zero off the support).
    confidence : (Z, Y, X//2+1) float32 or bool
        c_h ∈ [0, 1]; a bool array for hard data consistency on the support.
    shape_zyx : (Z, Y, X)
    """

    data: np.ndarray
    confidence: np.ndarray
    shape_zyx: tuple[int, int, int]


@dataclass
class SolveInfo:
    """What a solver run did: iterations, stopping reason and residual histories."""

    iterations: int = 0
    converged: bool = False
    relative_change: list = field(default_factory=list)
    data_residual: list = field(default_factory=list)
    backend: str = "numpy"
    shrinkage: float = 0.0
    support_fraction: float = 1.0


def _neg_index(n: int, count: int | None = None) -> np.ndarray:
    """Indices of −k (mod n) for k = 0 … count−1 in the unshifted FFT layout."""
    count = n if count is None else count
    return (-np.arange(count)) % n


def hermitian_half_data(spectrum, support=None, weight=None, *, data_weighting: str = "support") -> RealData:
    """Least-squares data of a *real* potential from a measured (non-Hermitian) spectrum.

    Parameters
    ----------
    spectrum : (Z, Y, X) complex array
        Measured spectrum d(K) of f in the scipy.fft (unshifted, ``norm="backward"``) layout,
        i.e. ``scipy.fft.ifftn(spectrum)`` is the direct reconstruction of f.
    support : (Z, Y, X) bool array, optional
        Ω, the measured samples. Defaults to ``weight > 0`` or ``spectrum != 0``.
    weight : (Z, Y, X) float array, optional
        Gridding weight (how many samples were averaged into each voxel); used only with
        ``data_weighting="gridding"``.
    data_weighting : {"support", "gridding"}
        ``"support"``: hard data consistency, c = 1 on Ω (classic GP). ``"gridding"``:
        c = weight / max(weight), a weighted least-squares data term (noise variance of a
        voxel averaged from m samples is σ²/m).

    Returns
    -------
    RealData
        d_h and c_h on the ``rfftn`` half grid (formulas in the module docstring).

    Raises
    ------
    ValueError
        Shapes disagree, the spectrum is not 3D, or ``data_weighting`` is unknown.
    """
    spectrum = np.asarray(spectrum)
    if spectrum.ndim != 3:
        raise ValueError(f"spectrum must be 3D (Z, Y, X), got shape {spectrum.shape}")
    shape = tuple(int(s) for s in spectrum.shape)
    if data_weighting not in ("support", "gridding"):
        raise ValueError(f"data_weighting must be 'support' or 'gridding', got {data_weighting!r}")
    if support is None:
        support = (np.asarray(weight) > 0) if weight is not None else (spectrum != 0)
    support = np.asarray(support, dtype=bool)
    if support.shape != shape:
        raise ValueError(f"support shape {support.shape} != spectrum shape {shape}")
    if data_weighting == "gridding":
        if weight is None:
            raise ValueError("data_weighting='gridding' needs the gridding weight")
        weight = np.asarray(weight, dtype=np.float32)
        if weight.shape != shape:
            raise ValueError(f"weight shape {weight.shape} != spectrum shape {shape}")
        wmax = float(weight[support].max()) if support.any() else 0.0
        if not wmax > 0:
            raise ValueError("weight is zero everywhere on the support")
        conf = np.where(support, weight / wmax, np.float32(0)).astype(np.float32)
    else:
        conf = support.astype(np.float32)

    Z, Y, X = shape
    nh = X // 2 + 1
    iz, iy, ix = _neg_index(Z), _neg_index(Y), _neg_index(X, nh)
    neg = np.ix_(iz, iy, ix)
    c_pos = conf[:, :, :nh]
    c_neg = conf[neg]
    den = c_pos + c_neg
    num = c_pos * spectrum[:, :, :nh].astype(np.complex64, copy=False)
    num += c_neg * np.conj(spectrum[neg]).astype(np.complex64, copy=False)
    measured = den > 0
    data = np.zeros_like(num)
    np.divide(num, den, out=data, where=measured)
    if data_weighting == "support":
        confidence = measured
    else:
        confidence = (0.5 * den).astype(np.float32)
    return RealData(data=data.astype(np.complex64, copy=False), confidence=confidence, shape_zyx=shape)


# --------------------------------------------------------------------------------------------
# Array back ends: NumPy/scipy.fft on the CPU, torch when a CUDA device is available.
# --------------------------------------------------------------------------------------------


class _NumpyBackend:
    name = "numpy"

    def __init__(self, shape_zyx):
        self.shape = tuple(shape_zyx)

    def asarray(self, a):
        return np.asarray(a)

    def rfftn(self, x):
        return sfft.rfftn(x, workers=fft_workers())

    def irfftn(self, X):
        # Two stages (complex inverse over Z, Y, then the real inverse over X): measured ~2×
        # faster than a single irfftn with overwrite_x on 512×512×256 complex64 (pocketfft).
        Xc = sfft.ifftn(X, axes=(0, 1), workers=fft_workers())
        return sfft.irfft(Xc, n=self.shape[2], axis=2, workers=fft_workers(), overwrite_x=True).astype(np.float32, copy=False)

    def clamp_nonpositive(self, x):
        np.minimum(x, 0.0, out=x)
        return x

    def shift_clamp_nonpositive(self, x, shift: float):
        """x ← min(x + shift, 0) in place."""
        np.add(x, np.float32(shift), out=x)
        return self.clamp_nonpositive(x)

    def keep_(self, x, keep):
        """x ← x · keep in place (keep: bool mask)."""
        np.multiply(x, keep, out=x)
        return x

    def positive_rms(self, x) -> float:
        """RMS of the positive values of x (0 when there are none), slab by slab (no
        volume-sized temporary)."""
        flat = x.reshape(x.shape[0], -1)
        s2, n = 0.0, 0
        for i in range(0, flat.shape[0], 8):
            pos = np.maximum(flat[i : i + 8], 0.0)
            s2 += float(np.vdot(pos.ravel(), pos.ravel()))
            n += int(np.count_nonzero(pos))
        return math.sqrt(s2 / n) if n else 0.0

    def norm(self, x) -> float:
        return float(np.sqrt(np.vdot(x.ravel(), x.ravel()).real))

    def dot(self, a, b) -> float:
        return float(np.vdot(a.ravel(), b.ravel()).real)

    def masked_residual(self, Fy, data, conf) -> tuple[float, float]:
        if conf.dtype == bool:
            r = Fy[conf] - data[conf]
            return float(np.vdot(r, r).real), float(np.vdot(data[conf], data[conf]).real)
        r = (Fy - data) * np.sqrt(conf)
        dd = data * np.sqrt(conf)
        return float(np.vdot(r, r).real), float(np.vdot(dd, dd).real)

    def data_step(self, Fy, data, conf):
        """Fy ← Fy + c (d − Fy) in place (the gradient step of length one)."""
        if conf.dtype == bool:
            Fy[conf] = data[conf]
        else:
            Fy += conf * (data - Fy)
        return Fy

    def to_numpy(self, x):
        return np.asarray(x, dtype=np.float32)

    def copy(self, x):
        return x.copy()

    def zeros_like(self, x):
        return np.zeros_like(x)


class _TorchBackend(_NumpyBackend):
    name = "torch"

    def __init__(self, shape_zyx, device):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.shape = tuple(shape_zyx)

    def asarray(self, a):
        t = self.torch
        if isinstance(a, t.Tensor):
            return a.to(self.device)
        a = np.ascontiguousarray(a)
        return t.from_numpy(a).to(self.device)

    def rfftn(self, x):
        return self.torch.fft.rfftn(x)

    def irfftn(self, X):
        return self.torch.fft.irfftn(X, s=self.shape)

    def clamp_nonpositive(self, x):
        return x.clamp_(max=0.0)

    def shift_clamp_nonpositive(self, x, shift: float):
        return x.add_(float(shift)).clamp_(max=0.0)

    def keep_(self, x, keep):
        return x.mul_(keep)

    def positive_rms(self, x) -> float:
        pos = x.clamp(min=0.0)
        n = int(self.torch.count_nonzero(pos))
        return math.sqrt(float((pos * pos).sum()) / n) if n else 0.0

    def norm(self, x) -> float:
        return float(self.torch.linalg.vector_norm(x))

    def dot(self, a, b) -> float:
        return float((a * b).sum())

    def masked_residual(self, Fy, data, conf):
        if conf.dtype == self.torch.bool:
            r = (Fy - data)[conf]
            return float(r.abs().square().sum()), float(data[conf].abs().square().sum())
        r = (Fy - data).abs().square() * conf
        return float(r.sum()), float((data.abs().square() * conf).sum())

    def data_step(self, Fy, data, conf):
        if conf.dtype == self.torch.bool:
            return self.torch.where(conf, data, Fy)
        return Fy.add_(conf * (data - Fy))

    def to_numpy(self, x):
        return x.detach().to("cpu").numpy().astype(np.float32, copy=False)

    def copy(self, x):
        return x.clone()

    def zeros_like(self, x):
        return self.torch.zeros_like(x)


def select_backend(shape_zyx, device: str | None = None):
    """The array back end: torch on ``device`` (default: CUDA when available), else NumPy.

    Parameters
    ----------
    device : {None, "cpu", "numpy", "cuda", "cuda:N"}
        None picks CUDA through torch when ``torch.cuda.is_available()``, else NumPy/scipy.fft
        with Numba kernels. ``"cpu"``/``"numpy"`` force the NumPy back end.
    """
    if device in ("cpu", "numpy"):
        return _NumpyBackend(shape_zyx)
    if device is None:
        try:
            import torch

            if not torch.cuda.is_available():
                return _NumpyBackend(shape_zyx)
            device = "cuda"
        except ImportError:  # pragma: no cover - torch is a dependency
            return _NumpyBackend(shape_zyx)
    if not str(device).startswith("cuda"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda[:N]', got {device!r}")
    return _TorchBackend(shape_zyx, device)


# --------------------------------------------------------------------------------------------
# The solver loop
# --------------------------------------------------------------------------------------------

Prox = Callable[[object], object]


def solve_fista(
    real_data: RealData,
    prox: Prox,
    *,
    iterations: int,
    tol: float = 1e-3,
    momentum: bool = True,
    init=None,
    progress: Callable[[int, int, float], object] | None = None,
    backend=None,
):
    """Projected/proximal gradient (FISTA) on the Fourier data term of a real potential.

    Iterates y_k = f_k + ((t_{k−1} − 1)/t_k)(f_k − f_{k−1}) (y_k = f_k without momentum),
    b = F⁻¹[F y + c (d − F y)] (gradient step of length 1/L, L = max c = 1), f_{k+1} = prox(b).

    Parameters
    ----------
    real_data : RealData
    prox : callable
        Maps b (a real volume of the back end) to f_{k+1}; may work in place on b.
    iterations : int
        Maximum number of iterations.
    tol : float
        Stop when ‖f_{k+1} − f_k‖ / ‖f_{k+1}‖ < tol (relative change, checked from the third
        iteration on).
    momentum : bool
        FISTA momentum (with adaptive restart when the step reverses, O'Donoghue & Candès 2015).
    init : (Z, Y, X) float array, optional
        Starting potential; default prox(F⁻¹ d), the direct reconstruction projected.
    progress : callable(iteration, n_iterations, residual), optional
        Called after every iteration with the relative data residual
        ‖√c (F y − d)‖ / ‖√c d‖ at the gradient point.

    Returns
    -------
    f : (Z, Y, X) float32 ndarray
    info : SolveInfo
    """
    if int(iterations) < 0:
        raise ValueError(f"iterations must be ≥ 0, got {iterations}")
    if not (tol >= 0):
        raise ValueError(f"tol must be ≥ 0, got {tol}")
    iterations = int(iterations)
    be = backend if backend is not None else _NumpyBackend(real_data.shape_zyx)
    data = be.asarray(real_data.data)
    conf = be.asarray(real_data.confidence)
    info = SolveInfo(backend=be.name)

    if init is None:
        f = prox(be.irfftn(be.copy(data)))
    else:
        init = np.asarray(init, dtype=np.float32)  # read only: the iterates are new arrays
        if init.shape != tuple(real_data.shape_zyx):
            raise ValueError(f"init shape {init.shape} != {tuple(real_data.shape_zyx)}")
        f = be.asarray(init)
    f_prev = None
    t = 1.0
    for k in range(iterations):
        f_new, t, rel, res = _fista_iteration(f, f_prev, t, momentum, data, conf, prox, be)
        f_prev, f = f, f_new
        info.relative_change.append(float(rel))
        info.data_residual.append(float(res))
        info.iterations = k + 1
        if progress is not None:
            progress(k + 1, iterations, res)
        if k >= 2 and rel < tol:
            info.converged = True
            break
    return be.to_numpy(f), info


def fista_momentum(t: float) -> tuple[float, float]:
    """FISTA step-size sequence: t_{k+1} = (1 + √(1 + 4 t_k²))/2 and the momentum
    β = (t_k − 1)/t_{k+1} (Beck & Teboulle 2009); returns (t_{k+1}, β)."""
    t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
    return t_next, (t - 1.0) / t_next


def _fista_iteration(f, f_prev, t: float, momentum: bool, data, conf, prox: Prox, be):
    """One iteration of :func:`solve_fista`: (f_{k+1}, t, relative change, data residual)."""
    beta = 0.0
    if momentum and f_prev is not None:
        t, beta = fista_momentum(t)
        y = f + np.float32(beta) * (f - f_prev)
    else:
        y = f
    Fy = be.rfftn(y)
    del y
    r2, d2 = be.masked_residual(Fy, data, conf)
    Fy = be.data_step(Fy, data, conf)
    b = be.irfftn(Fy)
    del Fy
    f_new = prox(b)
    del b
    delta = f_new - f
    step2 = be.dot(delta, delta)
    if beta > 0 and beta * be.dot(f - f_prev, delta) > step2:
        # Gradient restart (O'Donoghue & Candès 2015): <y − f_new, f_new − f> > 0 with
        # y − f_new = −delta + β (f − f_prev); the momentum points uphill, drop it.
        t = 1.0
    del delta
    fn = be.norm(f_new)
    rel = math.sqrt(step2) / fn if fn > 0 else 0.0
    res = math.sqrt(r2 / d2) if d2 > 0 else 0.0
    return f_new, t, rel, res


def shrink_nonpositive(b, sigmas: float, backend):
    """Proximal step of λ‖f‖₁ + ι{f ≤ 0} with a noise-adaptive λ, in place.

    f = min(b + λ, 0) with λ = ``sigmas`` · σ̂, σ̂ = √(mean of b² over b > 0): the values b > 0
    (n < n_m) are unphysical, made only by the data's inconsistency, and their RMS estimates
    the iterate's noise level (the RMS of a half-normal is its σ). ``sigmas`` = 0 is the plain
    clamp f = min(b, 0).

    Returns
    -------
    f : the back end's array (b, modified)
    lam : float
        λ used (units of f).
    """
    if sigmas <= 0:
        return backend.clamp_nonpositive(b), 0.0
    lam = float(sigmas) * backend.positive_rms(b)
    return backend.shift_clamp_nonpositive(b, lam), lam


def gerchberg_papoulis(
    real_data: RealData,
    *,
    iterations: int = DEFAULT_GP_ITERATIONS,
    tol: float = 1e-3,
    momentum: bool = True,
    shrink_sigmas: float = DEFAULT_GP_SHRINK_SIGMAS,
    support_fraction: float = DEFAULT_GP_SUPPORT_FRACTION,
    min_component_cells: float = DEFAULT_GP_MIN_COMPONENT_CELLS,
    l1_estimate: str = DEFAULT_GP_L1_ESTIMATE,
    refit_iterations: int = DEFAULT_GP_REFIT_ITERATIONS,
    progress=None,
    device: str | None = None,
):
    """Gerchberg–Papoulis reconstruction of a real potential with f ≤ 0 (n ≥ n_m).

    Each iteration re-inserts the measured samples on the support (data consistency) and
    projects on the object constraints, keeping f real; with ``momentum`` the iterates are
    extrapolated as in FISTA (same fixed point). Two stages (module docstring): the ℓ1 stage
    clamps after the noise-adaptive shrinkage of :func:`shrink_nonpositive`; the last
    ``support_fraction`` of the iterations clamp without shrinkage and keep f = 0 outside the
    support S of the first stage ({f < 0} without its sub-resolution components).

    Parameters
    ----------
    real_data : RealData
        From :func:`hermitian_half_data`.
    iterations, tol, momentum, progress
        See :func:`solve_fista` (``iterations`` counts both stages; each stage stops early at
        ``tol``; ``progress`` numbers the iterations of both stages in one sequence).
    shrink_sigmas : float
        κ of the threshold λ = κ σ̂ (module docstring); 0: classic GP (clamp only, one stage).
    support_fraction : float in [0, 1)
        Share of ``iterations`` run by the support-constrained stage.
    min_component_cells : float
        Components of the ℓ1 stage's support smaller than this many resolution cells
        (:func:`resolution_cell_voxels`) are left out of S (:func:`object_support`); 0 keeps
        them all.
    l1_estimate : {"support", "masked"}
        What the ℓ1 mode returns once S is found: ``"support"``, the support stage (classic GP
        constrained to S, from the ℓ1 result); ``"masked"``, classic GP over the whole volume
        (``iterations`` more, from the direct inverse) set to f = 0 outside S — the classic
        interior, without the background specks (docs/regularization.md), then
        ``refit_iterations`` of classic GP constrained to S from it.
    refit_iterations : int
        ``"masked"`` only: support-constrained iterations after the mask (0: the masked
        classic result itself).
    device : str, optional
        Back end (see :func:`select_backend`).

    Returns
    -------
    f : (Z, Y, X) float32 ndarray
        Scattering potential (rad²/µm², :mod:`holo.conventions`), f ≤ 0 everywhere.
    info : SolveInfo
        ``info.shrinkage``: λ of the last ℓ1 iteration (units of f); ``info.support_fraction``:
        share of the voxels in S (1.0 without the support stage).

    Examples
    --------
    >>> import numpy as np, scipy.fft as sfft
    >>> f_true = np.zeros((16, 16, 16), np.float32); f_true[6:10, 6:10, 6:10] = -1
    >>> k = np.fft.fftfreq(16)
    >>> kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    >>> support = np.hypot(kx, ky) >= np.abs(kz)          # a 45° missing cone around K_z
    >>> d = np.where(support, sfft.fftn(f_true), 0)
    >>> f, info = gerchberg_papoulis(hermitian_half_data(d, support), iterations=100, tol=0, device="cpu")
    >>> direct = sfft.ifftn(d).real
    >>> bool(np.linalg.norm(f - f_true) < 0.01 * np.linalg.norm(direct - f_true))
    True
    """
    if not shrink_sigmas >= 0:
        raise ValueError(f"shrink_sigmas must be ≥ 0, got {shrink_sigmas}")
    if not 0 <= support_fraction < 1:
        raise ValueError(f"support_fraction must be in [0, 1), got {support_fraction}")
    if not min_component_cells >= 0:
        raise ValueError(f"min_component_cells must be ≥ 0, got {min_component_cells}")
    if l1_estimate not in ("support", "masked"):
        raise ValueError(f"l1_estimate must be 'support' or 'masked', got {l1_estimate!r}")
    if not int(refit_iterations) >= 0:
        raise ValueError(f"refit_iterations must be ≥ 0, got {refit_iterations}")
    be = select_backend(real_data.shape_zyx, device)
    n_support = int(round(support_fraction * int(iterations))) if shrink_sigmas > 0 else 0
    total = int(iterations)
    if n_support == 0:
        return solve_fista(real_data, be.clamp_nonpositive, iterations=total, tol=tol, momentum=momentum, progress=progress,
                           backend=be)
    # progress numbers the iterations of every stage in one sequence out of their planned sum
    if l1_estimate == "masked":
        n_all = total + total - n_support + int(refit_iterations)
        f, info = solve_fista(real_data, be.clamp_nonpositive, iterations=total, tol=tol, momentum=momentum,
                              progress=_offset_progress(progress, 0, n_all), backend=be)
        f2, info2 = keep_detected_objects(real_data, f, detection_iterations=total - n_support, shrink_sigmas=shrink_sigmas,
                                          min_component_cells=min_component_cells, refit_iterations=refit_iterations,
                                          tol=tol, momentum=momentum, progress=_offset_progress(progress, info.iterations, n_all),
                                          backend=be)
        merged = _merged(info, info2, info2.support_fraction)
        merged.shrinkage = info2.shrinkage
        return f2, merged
    f, keep, info = detect_objects(real_data, iterations=total - n_support, shrink_sigmas=shrink_sigmas,
                                   min_component_cells=min_component_cells, tol=tol, momentum=momentum,
                                   progress=_offset_progress(progress, 0, total), backend=be)
    f2, info2 = mask_to_objects(real_data, f, keep, refit_iterations=n_support, tol=tol, momentum=momentum,
                                progress=_offset_progress(progress, info.iterations, total), backend=be)
    return f2, _merged(info, info2, info.support_fraction)


def keep_detected_objects(real_data: RealData, f, *, detection_iterations: int = DEFAULT_GP_DETECTION_ITERATIONS,
                          shrink_sigmas: float = SPARSE_GP_SHRINK_SIGMAS,
                          min_component_cells: float = DEFAULT_GP_MIN_COMPONENT_CELLS,
                          refit_iterations: int = DEFAULT_GP_REFIT_ITERATIONS, tol: float = 1e-3, momentum: bool = True,
                          progress=None, backend=None) -> tuple[np.ndarray, SolveInfo]:
    """``f``, an unbiased estimate (classic GP, TV), with the medium outside the objects:
    the ℓ1 stage detects them (:func:`detect_objects`), an object it cut is taken whole from
    ``f`` (:func:`grown_support`), then f is masked and refitted (:func:`mask_to_objects`;
    ``f`` is overwritten). The info's ``shrinkage`` is the detection's λ, ``support_fraction``
    the share of the voxels kept."""
    be = select_backend(real_data.shape_zyx) if backend is None else backend
    n_all = int(detection_iterations) + int(refit_iterations)
    _, keep, info = detect_objects(real_data, iterations=detection_iterations, shrink_sigmas=shrink_sigmas,
                                   min_component_cells=min_component_cells, tol=tol, momentum=momentum,
                                   progress=_offset_progress(progress, 0, n_all), backend=be)
    keep = grown_support(keep, f, info.shrinkage)
    fraction = float(np.count_nonzero(keep) / keep.size)
    f, info2 = mask_to_objects(real_data, f, keep, refit_iterations=refit_iterations, tol=tol, momentum=momentum,
                               progress=_offset_progress(progress, info.iterations, n_all), backend=be)
    return f, _merged(info, info2, fraction)


def detect_objects(real_data: RealData, *, iterations: int, shrink_sigmas: float = SPARSE_GP_SHRINK_SIGMAS,
                   min_component_cells: float = DEFAULT_GP_MIN_COMPONENT_CELLS, tol: float = 1e-3, momentum: bool = True,
                   progress=None, backend=None) -> tuple[np.ndarray, np.ndarray, SolveInfo]:
    """The ℓ1 stage (module docstring): ``iterations`` of GP with the noise-adaptive shrinkage
    λ = κσ̂ (κ = ``shrink_sigmas``), and its object support S, {f < 0} less the components
    smaller than ``min_component_cells`` resolution cells (:func:`object_support`).

    Returns
    -------
    f : (Z, Y, X) float32 ndarray
        The ℓ1 result.
    keep : (Z, Y, X) bool ndarray
        S.
    info : SolveInfo
        ``shrinkage`` is the last λ, ``support_fraction`` the share of S.
    """
    be = select_backend(real_data.shape_zyx) if backend is None else backend
    lam = [0.0]

    def shrink(b):
        f, lam[0] = shrink_nonpositive(b, shrink_sigmas, be)
        return f

    f, info = solve_fista(real_data, shrink, iterations=int(iterations), tol=tol, momentum=momentum, progress=progress, backend=be)
    cell = resolution_cell_voxels(real_data) if min_component_cells > 0 else 0.0
    keep = object_support(f, min_component_cells * cell)
    info.shrinkage, info.support_fraction = lam[0], float(np.count_nonzero(keep) / keep.size)
    return f, keep, info


def grown_support(keep, f, threshold: float, *, min_share: float = 0.5) -> np.ndarray:
    """S, with each object that the ℓ1 stage cut taken whole from an unbiased estimate ``f``
    (classic GP): the components of {f < −threshold} ∪ S (face connectivity) that meet S are
    the objects; an object whose part in S holds less than ``min_share`` of its mass in ``f``
    is kept whole, the others as S has them.

    The ℓ1 result is shrunk by λ = κσ̂ at every iteration, so S holds only what lies well
    inside λ. On consistent data λ is a noise level and S the whole object; where the data are
    far from consistent (a dense field of strong cells: σ̂ ≈ 0.004 in Δn) S is the cells'
    cores alone (a twin training field: 76 % of the cells' voxels outside S, 42 % of their
    mass inside). Taking only those objects whole keeps classic GP's background specks out,
    also those that touch an object at the λ level (docs/regularization.md).
    """
    from scipy import ndimage as ndi

    labels, n = ndi.label((np.asarray(f) < -float(threshold)) | keep)
    if n == 0:
        return keep
    index = np.arange(1, n + 1)
    mass = -ndi.sum(f, labels, index)
    mass_in_s = -ndi.sum(f, labels * keep, index)
    whole = np.zeros(n + 1, bool)
    whole[1:] = (mass_in_s > 0) & (mass_in_s < float(min_share) * mass)
    return keep | whole[labels]


def mask_to_objects(real_data: RealData, f, keep, *, refit_iterations: int = DEFAULT_GP_REFIT_ITERATIONS, tol: float = 1e-3,
                    momentum: bool = True, progress=None, backend=None) -> tuple[np.ndarray, SolveInfo]:
    """f set to 0 (n = n_m) outside the object support S (``keep``), then ``refit_iterations``
    of classic GP constrained to S from it, f ← min(b, 0)·1_S: the measured samples, K = 0
    (the total mass) among them, are re-inserted, so the mass a regulariser's clamp had
    spread into background specks comes back to S (module docstring). ``f`` is overwritten.
    """
    be = select_backend(real_data.shape_zyx) if backend is None else backend
    np.multiply(f, keep, out=f)  # in place: no second volume
    if int(refit_iterations) == 0:
        return f, SolveInfo(backend=be.name, support_fraction=float(np.count_nonzero(keep) / keep.size))
    return _gp_on_support(real_data, f, keep, int(refit_iterations), tol, momentum, progress, be)


def _offset_progress(progress, offset: int, n_all: int):
    """``progress`` of a later stage: its iterations numbered after the ``offset`` done before."""
    return None if progress is None else (lambda i, n, r: progress(offset + i, n_all, r))


def resolution_cell_voxels(real_data: RealData) -> float:
    """Voxels per degree of freedom of the data: N / |Ω|, with |Ω| the measured samples of the
    full grid (both halves of the Hermitian support).

    Noise whose spectrum fills Ω evenly has the correlation volume ∫R(r)dr / R(0) = N/|Ω|
    voxels: the volume of one resolution cell of the measurement (its coherence volume). An
    object smaller than that is not resolved; a component of the ℓ1 support smaller than that
    is the tip of a noise or artefact fluctuation.
    """
    conf = np.asarray(real_data.confidence)
    n_x = int(real_data.shape_zyx[2])
    measured = conf > 0
    count = 2 * int(np.count_nonzero(measured)) - int(np.count_nonzero(measured[:, :, 0]))
    if n_x % 2 == 0:
        count -= int(np.count_nonzero(measured[:, :, -1]))
    n = int(np.prod(real_data.shape_zyx))
    return n / count if count > 0 else float(n)


def object_support(f, min_voxels: float) -> np.ndarray:
    """The support S of the objects in the ℓ1 stage's result: the connected components of
    {f < 0} (face connectivity) of at least ``min_voxels`` voxels.

    f = min(b + κσ̂, 0) is non-zero where the iterate lies more than κσ̂ below zero; a
    pure-noise volume also does there in ≈ Q(κ) of its voxels (0.13 % at κ = 3), and
    Rytov/gridding artefacts reach far below −κσ̂ (their tail is not Gaussian: on exact Mie
    data isolated components reach −20 to −40 σ̂), but only at the tips of fluctuations:
    components of 1 to 20 voxels. A resolved object fills at least one resolution cell
    (:func:`resolution_cell_voxels`), so components below ``min_voxels`` = one cell are
    dropped. Amplitude (a hysteresis seed at the universal threshold √(2 ln N) σ̂) does not
    separate them (docs/regularization.md).

    Returns
    -------
    (Z, Y, X) bool ndarray
    """
    from scipy import ndimage as ndi

    detected = np.asarray(f) < 0
    labels, n = ndi.label(detected)
    if n == 0:
        return detected
    sizes = np.bincount(labels.ravel())
    big = sizes >= float(min_voxels)
    big[0] = False
    return big[labels]


def _gp_on_support(real_data: RealData, f, keep, iterations: int, tol: float, momentum: bool, progress, be):
    """Classic GP from ``f`` with f = 0 kept outside S (``keep``): f ← min(b, 0)·1_S."""
    keep = be.asarray(keep)

    def clamp_on_support(b):
        return be.keep_(be.clamp_nonpositive(b), keep)

    return solve_fista(real_data, clamp_on_support, iterations=iterations, tol=tol, momentum=momentum, init=f, progress=progress, backend=be)


def _merged(first: SolveInfo, second: SolveInfo, support_fraction: float) -> SolveInfo:
    """The SolveInfo of two consecutive solver stages (histories concatenated)."""
    return SolveInfo(
        iterations=first.iterations + second.iterations,
        converged=second.converged,
        relative_change=first.relative_change + second.relative_change,
        data_residual=first.data_residual + second.data_residual,
        backend=second.backend,
        shrinkage=first.shrinkage,
        support_fraction=support_fraction,
    )
