"""Numerical refocusing of u/u0 with the angular spectrum, and autofocus.

Angular spectrum (conventions: :mod:`holo.conventions`, e^{−iωt}, a plane wave along +z is
e^{+ikz}): a field u with spectrum U(f) (cycles/µm) in the plane z becomes in the plane z + d

    U(f; z + d) = U(f; z) · exp(i2π d η(f)),   η(f) = √((n_m/λ)² − |f|²),

exact for every propagating component |f| < n_m/λ; evanescent components (|f| ≥ n_m/λ) are
dropped rather than amplified, which keeps backward propagation stable.

Fields are stored as u/u0. For an illumination of transverse frequency ν = NA_ill/λ the
sample-free field is u0 = e^{i2π(ν·x + η(ν) z)}, so u/u0 has the spectrum of u shifted by −ν
and propagates with

    H(f) = exp(i2π d [η(f + ν) − η(ν)]).

This is the envelope propagator (1) of :mod:`holo.reconstruction.forward.propagation`
(:func:`~holo.reconstruction.forward.propagation.envelope_kz`, with q = 2πf and k_in⊥ = 2πν),
which is used here. On a cropped grid the spectrum of u/u0 (the pupil disc centred on −ν) may
wrap around the grid edge; each grid frequency is therefore taken as the alias closest to −ν
(per axis) before H is evaluated.

Autofocus: for a transparent (phase) object the amplitude |u| is most uniform in focus, and
defocus by d turns phase into amplitude contrast ∝ sin(π λ d |f|²/n_m) (weak-object limit),
whose variance grows away from focus. :func:`autofocus` minimises the normalised amplitude
variance Σ_a var|u_a|/mean(|u_a|)² over a range of distances: a coarse scan with steps of half
the depth of field DOF = λ/(n_m − √(n_m² − NA²)), then golden-section search to DOF/50.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.fft

from holo.conventions import medium_wavenumber
from holo.reconstruction.forward.propagation import envelope_kz, envelope_propagator, pupil_mask
from holo.threads import fft_workers

__all__ = ["refocus", "autofocus", "depth_of_field_um", "amplitude_variance"]


def depth_of_field_um(wavelength_um: float, medium_index: float, objective_na: float) -> float:
    """DOF = λ/(n_m − √(n_m² − NA²)): the defocus that shifts the phase at the pupil edge by
    2π relative to the pupil centre (2π d (n_m − √(n_m² − NA²))/λ)."""
    if not (0 < objective_na <= medium_index):
        raise ValueError(f"objective_na must be in (0, medium_index], got {objective_na}")
    return float(wavelength_um) / (medium_index - math.sqrt(medium_index**2 - objective_na**2))


def _as_stack(fields) -> tuple[np.ndarray, bool]:
    u = np.asarray(fields)
    if not np.iscomplexobj(u):
        raise ValueError(f"fields must be complex, got dtype {u.dtype}")
    if u.ndim == 2:
        return u[None], True
    if u.ndim != 3:
        raise ValueError(f"fields must be (Y, X) or (A, Y, X), got shape {u.shape}")
    return u, False


def _phase_rate(shape_yx, pixel_size_um, wavelength_um, medium_index, na_xy, objective_na):
    """g(f) = 2π [η(f + ν) − η(ν)] (rad/µm) of u/u0 on the grid, and the kept components.

    This is Δk_z of the envelope propagator,
    :func:`holo.reconstruction.forward.propagation.envelope_kz` with q = 2πf and
    k_in⊥ = 2πν (and its :func:`~holo.reconstruction.forward.propagation.pupil_mask` when
    ``objective_na`` is given); each grid frequency is first taken as its alias closest to
    −ν (module docstring).
    """
    ny, nx = shape_yx
    fy = np.fft.fftfreq(ny, d=pixel_size_um)
    fx = np.fft.fftfreq(nx, d=pixel_size_um)
    span = 1.0 / pixel_size_um  # frequency span of the grid, cycles/µm
    nax, nay = na_xy
    vy, vx = nay / wavelength_um, nax / wavelength_um
    qy = (2.0 * np.pi * (fy + span * np.round((-vy - fy) / span)))[:, None]
    qx = (2.0 * np.pi * (fx + span * np.round((-vx - fx) / span)))[None, :]
    kin_y, kin_x = 2.0 * np.pi * vy, 2.0 * np.pi * vx
    rate, prop = envelope_kz(qy, qx, kin_x, kin_y, medium_wavenumber(wavelength_um, medium_index))
    if objective_na is not None:
        prop &= pupil_mask(qy, qx, kin_x, kin_y, wavelength_um, objective_na)
    return rate, prop


def _transfer(shape_yx, pixel_size_um, wavelength_um, medium_index, distance_um, na_xy, objective_na):
    """Transfer functions (B, Y, X) complex64 for distances (B,) and illumination NAs (B, 2)."""
    out = np.empty((len(distance_um),) + tuple(shape_yx), np.complex64)
    for b, (d, na) in enumerate(zip(distance_um, na_xy)):
        rate, prop = _phase_rate(shape_yx, pixel_size_um, wavelength_um, medium_index, na, objective_na)
        out[b] = envelope_propagator(rate, prop, d)
    return out


def _broadcast_params(a, distance_um, illumination_na):
    d = np.asarray(distance_um, np.float64).reshape(-1)
    if d.size == 1:
        d = np.repeat(d, a)
    if d.shape != (a,) or not np.all(np.isfinite(d)):
        raise ValueError(f"distance_um must be a finite scalar or one value per frame ({a}), got {distance_um!r}")
    if illumination_na is None:
        na = np.zeros((a, 2))
    else:
        na = np.asarray(illumination_na, np.float64).reshape(-1, 2)
        if na.shape[0] == 1:
            na = np.repeat(na, a, axis=0)
        if na.shape != (a, 2) or not np.all(np.isfinite(na)):
            raise ValueError(f"illumination_na must be (2,) or ({a}, 2) finite values, got shape {na.shape}")
    return d, na


def refocus(
    fields,
    distance_um,
    pixel_size_um: float,
    wavelength_um: float,
    medium_index: float,
    *,
    illumination_na=None,
    objective_na: float | None = None,
    batch: int = 16,
) -> np.ndarray:
    """Propagate u/u0 by ``distance_um`` along +z with the exact angular spectrum.

    Parameters
    ----------
    fields : (Y, X) or (A, Y, X) complex
        u/u0 in the plane z.
    distance_um : float or (A,) array
        Propagation distance d (µm); the result is u/u0 in the plane z + d.
    pixel_size_um : float
        Sampling pitch of the fields, µm.
    wavelength_um : float
        Vacuum wavelength λ, µm.
    medium_index : float
        Medium RI n_m.
    illumination_na : (2,) or (A, 2) array, optional
        (NA_x, NA_y) of each frame; None for normal incidence.
    objective_na : float, optional
        Also drop components outside the detection pupil |f + ν| ≤ NA/λ.
    batch : int
        Frames transformed together.

    Returns
    -------
    complex64 array of the input shape.
    """
    u, squeeze = _as_stack(fields)
    if pixel_size_um <= 0 or wavelength_um <= 0 or medium_index <= 0:
        raise ValueError("pixel_size_um, wavelength_um and medium_index must be positive")
    a = u.shape[0]
    d, na = _broadcast_params(a, distance_um, illumination_na)
    if np.any(np.hypot(na[:, 0], na[:, 1]) >= medium_index):
        raise ValueError("illumination_na: an illumination NA reaches the medium index")
    out = np.empty(u.shape, np.complex64)
    for i0 in range(0, a, batch):
        i1 = min(i0 + batch, a)
        h = _transfer(u.shape[1:], pixel_size_um, wavelength_um, medium_index, d[i0:i1], na[i0:i1], objective_na)
        spec = scipy.fft.fft2(np.asarray(u[i0:i1], np.complex64), workers=fft_workers())
        spec *= h
        out[i0:i1] = scipy.fft.ifft2(spec, workers=fft_workers(), overwrite_x=True)
    return out[0] if squeeze else out


def amplitude_variance(fields: np.ndarray) -> float:
    """Σ_a var(|u_a|)/mean(|u_a|)² over frames (in-focus minimum for phase objects)."""
    amp = np.abs(fields).reshape(fields.shape[0], -1)
    m = amp.mean(axis=1)
    return float(np.sum(amp.var(axis=1) / np.maximum(m * m, 1e-30)))


def autofocus(
    field,
    pixel_size_um: float,
    wavelength_um: float,
    medium_index: float,
    *,
    illumination_na=None,
    objective_na: float | None = None,
    z_range_um: tuple[float, float] = (-10.0, 10.0),
    metric: str | Callable = "amplitude_variance",
    tolerance_um: float | None = None,
) -> float:
    """Distance d (µm) such that ``refocus(field, d, ...)`` is in focus.

    Parameters
    ----------
    field : (Y, X) or (A, Y, X) complex
        u/u0 of one frame or a stack (the metric is summed over frames: one common focus).
    pixel_size_um, wavelength_um, medium_index : float
        As in :func:`refocus`.
    illumination_na : (2,) or (A, 2), optional
        Illumination of each frame (normal incidence when None).
    objective_na : float, optional
        Detection NA; sets the depth of field DOF (module docstring). When None the band of
        the grid is used, NA = min(n_m, λ/(2 Δx)).
    z_range_um : (z_min, z_max)
        Searched distances.
    metric : "amplitude_variance" or callable
        Callable: (A, Y, X) complex64 refocused stack → float, minimised.
    tolerance_um : float, optional
        Final bracket width of the golden-section search (default DOF/50).

    Returns
    -------
    float
        Refocus distance in µm.
    """
    u, _ = _as_stack(field)
    u = np.asarray(u, np.complex64)
    z0, z1 = (float(v) for v in z_range_um)
    if not (np.isfinite(z0) and np.isfinite(z1) and z1 > z0):
        raise ValueError(f"z_range_um must be an increasing finite pair, got {z_range_um!r}")
    if metric == "amplitude_variance":
        fmetric = amplitude_variance
    elif callable(metric):
        fmetric = metric
    else:
        raise ValueError(f"metric must be 'amplitude_variance' or a callable, got {metric!r}")
    na_obj = objective_na if objective_na is not None else min(medium_index, wavelength_um / (2.0 * pixel_size_um))
    dof = depth_of_field_um(wavelength_um, medium_index, min(na_obj, medium_index))
    tol = dof / 50.0 if tolerance_um is None else float(tolerance_um)
    a = u.shape[0]
    _, na = _broadcast_params(a, 0.0, illumination_na)
    spec = scipy.fft.fft2(u, workers=fft_workers())
    # Propagation phases per frame: exp(i d·g_a(f)), g_a = 2π (η(f + ν_a) − η(ν_a)).
    phases = np.empty(u.shape, np.float64)
    keep = np.empty(u.shape, bool)
    for i in range(a):
        phases[i], keep[i] = _phase_rate(u.shape[1:], pixel_size_um, wavelength_um, medium_index, na[i], objective_na)
    spec = np.where(keep, spec, 0).astype(np.complex64)

    def cost(d: float) -> float:
        h = np.exp(1j * d * phases).astype(np.complex64)
        return float(fmetric(scipy.fft.ifft2(spec * h, workers=fft_workers())))

    return _minimise_scan_then_golden(cost, z0, z1, dof / 2.0, tol)


def _minimise_scan_then_golden(cost: Callable[[float], float], z0: float, z1: float, step: float, tol: float) -> float:
    """Minimum of ``cost`` on [z0, z1]: a scan with steps ≤ ``step``, then golden-section
    search in the bracket around the best scanned point until it is narrower than ``tol``."""
    n = max(3, int(math.ceil((z1 - z0) / step)) + 1)
    zs = np.linspace(z0, z1, n)
    costs = np.array([cost(z) for z in zs])
    j = int(np.argmin(costs))
    lo, hi = zs[max(j - 1, 0)], zs[min(j + 1, n - 1)]
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = cost(c), cost(d)
    while hi - lo > tol:
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = cost(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = cost(d)
    return float(0.5 * (lo + hi))
