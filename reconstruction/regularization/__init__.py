"""Missing-cone regularisation of the direct tomographic reconstruction.

Entry point :func:`reconstruct_regularized` takes the Fourier data of the scattering
potential from :func:`holo.reconstruction.tomography.fourier_map` and returns a :class:`Tomogram`:

* ``method="gp"``: Gerchberg–Papoulis with non-negativity (:mod:`.gp`),
* ``method="tv"``: total-variation regularised least squares with non-negativity (:mod:`.tv`).

Both keep the RI real and n ≥ n_m, run on NumPy/scipy.fft (+ Numba) or, when a CUDA device is
visible to torch, on the GPU.
"""

from __future__ import annotations

import time

import numpy as np

from holo.conventions import potential_to_ri
from holo.model import Tomogram
from holo.reconstruction.methods import REGULARIZED_METHODS

from .gp import (
    DEFAULT_GP_ITERATIONS,
    DEFAULT_GP_L1_ESTIMATE,
    DEFAULT_GP_MIN_COMPONENT_CELLS,
    DEFAULT_GP_REFIT_ITERATIONS,
    DEFAULT_GP_SHRINK_SIGMAS,
    DEFAULT_GP_SUPPORT_FRACTION,
    SPARSE_GP_SHRINK_SIGMAS,
    RealData,
    SolveInfo,
    gerchberg_papoulis,
    grown_support,
    hermitian_half_data,
    object_support,
    resolution_cell_voxels,
    select_backend,
    solve_fista,
)
from .tv import DEFAULT_TV_INNER, DEFAULT_TV_ITERATIONS, DEFAULT_TV_SHRINK_SIGMAS, DEFAULT_TV_WEIGHT, TVProx, tv_fista, tv_prox, tv_value

__all__ = [
    "reconstruct_regularized",
    "regularize_potential",
    "hermitian_half_data",
    "gerchberg_papoulis",
    "grown_support",
    "object_support",
    "resolution_cell_voxels",
    "tv_fista",
    "tv_prox",
    "tv_value",
    "TVProx",
    "RealData",
    "SolveInfo",
    "solve_fista",
    "select_backend",
    "DEFAULT_GP_ITERATIONS",
    "DEFAULT_GP_L1_ESTIMATE",
    "DEFAULT_GP_REFIT_ITERATIONS",
    "DEFAULT_GP_MIN_COMPONENT_CELLS",
    "DEFAULT_GP_SHRINK_SIGMAS",
    "DEFAULT_GP_SUPPORT_FRACTION",
    "SPARSE_GP_SHRINK_SIGMAS",
    "DEFAULT_TV_ITERATIONS",
    "DEFAULT_TV_WEIGHT",
    "DEFAULT_TV_SHRINK_SIGMAS",
    "DEFAULT_TV_INNER",
]

METHODS = REGULARIZED_METHODS


def regularize_potential(
    spectrum,
    support=None,
    weight_map=None,
    *,
    voxel_size_um=(1.0, 1.0, 1.0),
    method: str = "gp",
    iterations: int | None = None,
    weight: float | None = None,
    tol: float = 1e-3,
    data_weighting: str = "auto",
    inner_iterations: int = DEFAULT_TV_INNER,
    progress=None,
    device: str | None = None,
    shrink_sigmas: float | None = None,
):
    """Regularised scattering potential from a measured spectrum (array-level entry point).

    Parameters
    ----------
    spectrum : (Z, Y, X) complex array
        Measured spectrum of f (scipy.fft layout, ``ifftn(spectrum)`` = direct f).
    support : (Z, Y, X) bool array, optional
        Measured samples (default: ``weight_map > 0`` or ``spectrum != 0``).
    weight_map : (Z, Y, X) float array, optional
        Gridding weight (for ``data_weighting="gridding"``).
    voxel_size_um : (dz, dy, dx)
    method : {"gp", "tv"}
    iterations : int, optional
        Maximum iterations (default :data:`DEFAULT_GP_ITERATIONS` / :data:`DEFAULT_TV_ITERATIONS`).
    weight : float, optional
        Relative TV weight (``"tv"`` only; default :data:`DEFAULT_TV_WEIGHT`).
    tol : float
        Early stop on the relative change ‖f_{k+1} − f_k‖/‖f_{k+1}‖.
    data_weighting : {"auto", "support", "gridding"}
        Hard data consistency on the support, or least squares weighted by the gridding
        weight (a voxel that received little interpolation weight is trusted less). "auto"
        (default) uses the gridding weight when ``weight_map`` is given. On Rytov data of a
        6 µm bead the weighted term halves the RMS error of hard consistency, because
        trilinear gridding leaves poorly normalised values in barely touched voxels.
    inner_iterations : int
        TV proximal iterations per outer iteration.
    shrink_sigmas : float, optional
        κ of gp's ℓ1 mode (:func:`.gp.gerchberg_papoulis`; 0 = classic GP,
        :data:`SPARSE_GP_SHRINK_SIGMAS` = 3 keeps the background at n_m), or of the ℓ1
        detection after TV (:func:`.tv.tv_fista`; 0 = plain TV). None: the method's
        default (gp: :data:`DEFAULT_GP_SHRINK_SIGMAS`; tv: :data:`DEFAULT_TV_SHRINK_SIGMAS`).
    progress : callable(iteration, n_iterations, residual), optional
    device : str, optional
        None: CUDA through torch when available, else NumPy; "cpu" forces NumPy.

    Returns
    -------
    f : (Z, Y, X) float32 ndarray, f ≤ 0
    info : SolveInfo
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if iterations is not None and int(iterations) < 0:
        raise ValueError(f"iterations must be ≥ 0, got {iterations}")
    rd = hermitian_half_data(spectrum, support, weight_map, data_weighting=_data_weighting(data_weighting, weight_map))
    it = _iterations(method, iterations)
    if method == "gp":
        if weight not in (None, 0, 0.0):
            raise ValueError(f"weight is the TV weight and does not apply to method 'gp' (got {weight})")
        kappa = _shrink_sigmas(method, shrink_sigmas)
        return gerchberg_papoulis(rd, iterations=it, tol=tol, shrink_sigmas=kappa, progress=progress, device=device)
    w = DEFAULT_TV_WEIGHT if weight is None else float(weight)
    kappa = _shrink_sigmas(method, shrink_sigmas)
    return tv_fista(rd, voxel_size_um, weight=w, iterations=it, inner_iterations=inner_iterations, tol=tol, shrink_sigmas=kappa,
                    progress=progress, device=device)


def reconstruct_regularized(
    fourier_data,
    method: str = "gp",
    iterations: int | None = None,
    weight: float | None = None,
    progress=None,
    tol: float = 1e-3,
    *,
    data_weighting: str = "auto",
    inner_iterations: int = DEFAULT_TV_INNER,
    device: str | None = None,
    shrink_sigmas: float | None = None,
) -> Tomogram:
    """Missing-cone-regularised RI tomogram from the Fourier data of the direct mapping.

    Parameters
    ----------
    fourier_data : FourierData
        From :func:`holo.reconstruction.tomography.fourier_map`: ``spectrum`` (complex64, f's
        spectrum, scipy.fft layout), ``weight``, ``support``, ``voxel_size_um``,
        ``shape_zyx``, ``wavelength_um``, ``medium_index``.
    method : {"gp", "tv"}
    iterations, weight, tol, data_weighting, inner_iterations, progress, device, shrink_sigmas
        See :func:`regularize_potential`; "auto" is "support" (hard consistency) for data
        gridded with a narrow axial tent (``fourier_map(axial_halfwidth < 1)``, whose
        samples are accurate one by one), else as there.

    Returns
    -------
    Tomogram
        Absolute RI n = n_m √(1 − f/k_m²) ≥ n_m (float32), with provenance ``method``,
        ``parameters`` (everything that determines the result), ``iterations_run``,
        ``converged``, ``relative_change`` and ``data_residual`` (last values), ``backend``
        and ``elapsed_s``.
    """
    for name in ("spectrum", "support", "voxel_size_um", "wavelength_um", "medium_index"):
        if not hasattr(fourier_data, name):
            raise ValueError(f"fourier_data has no attribute {name!r} (expected a FourierData)")
    t0 = time.perf_counter()
    wmap = getattr(fourier_data, "weight", None)
    narrow = float((getattr(fourier_data, "provenance", None) or {}).get("axial_halfwidth", 1.0)) < 1.0
    # Narrow-tent data are accurate sample by sample: hard consistency (see fourier_map).
    data_weighting = "support" if (data_weighting == "auto" and narrow) else _data_weighting(data_weighting, wmap)
    f, info = regularize_potential(
        fourier_data.spectrum,
        fourier_data.support,
        wmap,
        voxel_size_um=fourier_data.voxel_size_um,
        method=method,
        iterations=iterations,
        weight=weight,
        tol=tol,
        data_weighting=data_weighting,
        inner_iterations=inner_iterations,
        progress=progress,
        device=device,
        shrink_sigmas=shrink_sigmas,
    )
    # f ≤ 0 and float32: converted in place, without a second volume
    crop = getattr(fourier_data, "crop", None)
    if crop is not None:  # the padded working grid back to the grid asked for
        f = np.ascontiguousarray(f[tuple(crop)])
    ri = potential_to_ri(f, fourier_data.wavelength_um, fourier_data.medium_index, dtype=np.float32, copy=False)
    del f
    params = {
        "iterations": _iterations(method, iterations),
        "tol": float(tol),
        "data_weighting": data_weighting,
        "nonnegativity": "n >= medium_index",
        "momentum": True,
    }
    if method == "gp":
        shrink_sigmas = _shrink_sigmas(method, shrink_sigmas)
        params.update(shrink_sigmas=shrink_sigmas, shrinkage_abs=float(getattr(info, "shrinkage", 0.0)),
                      support_iterations_fraction=DEFAULT_GP_SUPPORT_FRACTION if shrink_sigmas > 0 else 0.0,
                      min_component_cells=DEFAULT_GP_MIN_COMPONENT_CELLS if shrink_sigmas > 0 else 0.0,
                      l1_estimate=DEFAULT_GP_L1_ESTIMATE if shrink_sigmas > 0 else None,
                      refit_iterations=DEFAULT_GP_REFIT_ITERATIONS if shrink_sigmas > 0 and DEFAULT_GP_L1_ESTIMATE == "masked" else 0,
                      object_support_fraction=float(getattr(info, "support_fraction", 1.0)))
    if method == "tv":
        params.update(
            weight=DEFAULT_TV_WEIGHT if weight is None else float(weight),
            lambda_abs=float(getattr(info, "lam", 0.0)),
            inner_iterations=int(inner_iterations),
            tv="isotropic, voxel-size weighted",
        )
        shrink_sigmas = _shrink_sigmas(method, shrink_sigmas)
        params.update(shrink_sigmas=shrink_sigmas, refit_iterations=DEFAULT_GP_REFIT_ITERATIONS if shrink_sigmas > 0 else 0,
                      object_support_fraction=float(getattr(info, "support_fraction", 1.0)))
    return Tomogram(
        ri=ri,
        voxel_size_um=tuple(float(v) for v in fourier_data.voxel_size_um),
        medium_index=float(fourier_data.medium_index),
        wavelength_um=float(fourier_data.wavelength_um),
        provenance=_provenance(fourier_data, method, params, info, t0),
    )


def _data_weighting(data_weighting: str, weight_map) -> str:
    """``"auto"`` resolved: "gridding" when a non-zero gridding weight is given, else "support"."""
    if data_weighting == "auto":
        return "gridding" if weight_map is not None and np.any(np.asarray(weight_map) > 0) else "support"
    return data_weighting


def _shrink_sigmas(method: str, shrink_sigmas: float | None) -> float:
    """κ of the ℓ1 mode of ``method``: ``shrink_sigmas``, or the method's default when None."""
    if shrink_sigmas is not None:
        return float(shrink_sigmas)
    return DEFAULT_GP_SHRINK_SIGMAS if method == "gp" else DEFAULT_TV_SHRINK_SIGMAS


def _iterations(method: str, iterations: int | None) -> int:
    """Maximum iterations: the given number or the method's default."""
    if iterations is not None:
        return int(iterations)
    return DEFAULT_GP_ITERATIONS if method == "gp" else DEFAULT_TV_ITERATIONS


def _provenance(fourier_data, method: str, params: dict, info, t0: float) -> dict:
    """Provenance of the regularised tomogram (``reconstruct_regularized`` Returns)."""
    fd_prov = getattr(fourier_data, "provenance", None) or {}
    return dict(
        fourier_map=dict(fd_prov),
        direct_method=getattr(fourier_data, "method", None),
        excluded_frames=list(getattr(fourier_data, "excluded_frames", []) or []),
        source_file=getattr(fourier_data, "source", None),
        geometry=fd_prov.get("geometry"),
        method=method,
        parameters=params,
        iterations_run=info.iterations,
        converged=info.converged,
        relative_change=info.relative_change[-1] if info.relative_change else None,
        data_residual=info.data_residual[-1] if info.data_residual else None,
        backend=info.backend,
        elapsed_s=round(time.perf_counter() - t0, 3),
    )
