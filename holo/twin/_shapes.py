"""Signed-distance primitives for the digital-twin phantoms.

Every function takes body-frame coordinates ``p = (pz, py, px)`` — a tuple of three
broadcastable float32 arrays in µm, in the (Z, Y, X) order of :mod:`holo.conventions` — and
returns the signed distance d(p) in µm to the object's surface: negative inside, positive
outside. Some are approximations that are exact on the surface and first-order accurate
within a voxel of it, which is all the partial-volume step needs (see
:func:`partial_volume_fraction`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "norm",
    "sphere",
    "ellipsoid",
    "capsule",
    "evans_fung_thickness_um",
    "evans_fung_disc",
    "smooth_union",
    "smooth_subtract",
    "radial_perturbation",
    "partial_volume_fraction",
]

_F32 = np.float32
_TINY = _F32(1e-12)

#: Evans–Fung coefficients of the human red blood cell, in units of the radius R0 = D/2
#: (R0 = 3.91 µm, C0 = 0.81 µm, C2 = 7.83 µm, C4 = -4.39 µm; Evans & Fung 1972).
EVANS_FUNG_C = (0.207161, 2.002558, -1.122762)


def norm(p) -> np.ndarray:
    """Euclidean length |p| of a (z, y, x) tuple of arrays."""
    return np.sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2])


def _shift(p, center_um):
    c = tuple(_F32(v) for v in center_um)
    return (p[0] - c[0], p[1] - c[1], p[2] - c[2])


def sphere(p, radius_um: float, center_um=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Exact distance to a sphere: d = |p − c| − r."""
    q = _shift(p, center_um)
    return norm(q) - _F32(radius_um)


def ellipsoid(p, semi_axes_um, center_um=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Distance to the ellipsoid Σ (p_i / a_i)² = 1, semi-axes ``(a_z, a_y, a_x)`` in µm.

    Uses d ≈ k0 (k0 − 1) / k1 with k0 = |p/a| and k1 = |p/a²|: the implicit function
    k0 − 1 divided by its gradient norm k1/k0, exact on the surface and for a sphere.
    """
    q = _shift(p, center_um)
    a = [_F32(v) for v in semi_axes_um]
    u = (q[0] / a[0], q[1] / a[1], q[2] / a[2])
    k0 = norm(u)
    v = (u[0] / a[0], u[1] / a[1], u[2] / a[2])
    k1 = norm(v)
    # k0/k1 lies in [min a, max a] and tends to the axis length along p as p → 0.
    ratio = np.where(k1 > _TINY, k0 / np.maximum(k1, _TINY), _F32(min(a)))
    return (k0 - _F32(1.0)) * ratio


def capsule(p, a_um, b_um, radius_um: float) -> np.ndarray:
    """Exact distance to the segment [a, b] inflated by ``radius_um`` (a rod with round caps)."""
    a = np.asarray(a_um, dtype=np.float64)
    ba = np.asarray(b_um, dtype=np.float64) - a
    L2 = float(ba @ ba)
    q = _shift(p, a)
    if L2 <= 0.0:
        return norm(q) - _F32(radius_um)
    t = (q[0] * _F32(ba[0]) + q[1] * _F32(ba[1]) + q[2] * _F32(ba[2])) * _F32(1.0 / L2)
    t = np.clip(t, _F32(0.0), _F32(1.0))
    r = (q[0] - t * _F32(ba[0]), q[1] - t * _F32(ba[1]), q[2] - t * _F32(ba[2]))
    return norm(r) - _F32(radius_um)


def evans_fung_thickness_um(rho_um, diameter_um: float = 7.82) -> np.ndarray:
    """Thickness T(ρ) of the Evans–Fung biconcave disc at distance ρ from its axis.

    T(ρ) = R0 √(1 − x) (c0 + c2 x + c4 x²), x = (ρ/R0)², R0 = D/2, for ρ ≤ R0 (0 beyond),
    with (c0, c2, c4) = :data:`EVANS_FUNG_C`. For D = 7.82 µm: T(0) = 0.81 µm at the
    centre and a maximum of ≈ 2.57 µm on the rim at ρ ≈ 0.71 R0.
    """
    R0 = 0.5 * float(diameter_um)
    c0, c2, c4 = EVANS_FUNG_C
    x = (np.asarray(rho_um, dtype=np.float64) / R0) ** 2
    poly = c0 + c2 * x + c4 * x * x
    return np.where(x < 1.0, R0 * np.sqrt(np.clip(1.0 - x, 0.0, None)) * poly, 0.0)


def evans_fung_disc(p, diameter_um: float = 7.82) -> np.ndarray:
    """Distance to the Evans–Fung biconcave disc (axis along body z, centred at 0).

    The surface is the zero set of the polynomial
    G(ρ, z) = (2z)² − R0² (1 − x) P(x)², x = ρ²/R0², P = c0 + c2 x + c4 x²,
    i.e. |2z| = T(ρ) of :func:`evans_fung_thickness_um`. The distance is G/|∇G|, capped
    below by ρ − R0, which removes the spurious zero of P at x ≈ 1.88 outside the cell.
    """
    R0 = _F32(0.5 * float(diameter_um))
    c0, c2, c4 = (_F32(c) for c in EVANS_FUNG_C)
    z = p[0]
    rho2 = p[1] * p[1] + p[2] * p[2]
    rho = np.sqrt(rho2)
    x = rho2 / (R0 * R0)
    P = c0 + x * (c2 + c4 * x)
    dP = c2 + _F32(2.0) * c4 * x
    one_x = _F32(1.0) - x
    G = _F32(4.0) * z * z - R0 * R0 * one_x * P * P
    # dG/dρ = 2ρ [P² − 2 (1 − x) P P'] ; dG/dz = 8 z
    g_rho = _F32(2.0) * rho * (P * P - _F32(2.0) * one_x * P * dP)
    g_z = _F32(8.0) * z
    grad = np.maximum(np.sqrt(g_rho * g_rho + g_z * g_z), _F32(1e-6))
    return np.maximum(G / grad, rho - R0)


def smooth_union(d1, d2, k_um: float) -> np.ndarray:
    """Polynomial smooth minimum: min(d1, d2) − h² k / 4 with h = max(k − |d1 − d2|, 0)/k.

    Blends the two surfaces with a fillet of size ≈ k where they meet; equals min() farther
    than k from the junction.
    """
    k = _F32(k_um)
    h = np.maximum(k - np.abs(d1 - d2), _F32(0.0)) / k
    return np.minimum(d1, d2) - h * h * k * _F32(0.25)


def smooth_subtract(d1, d2, k_um: float) -> np.ndarray:
    """Object 1 minus object 2 with a fillet of size ≈ k: a smooth max(d1, −d2).

    max(d1, −d2) + h² k / 4 with h = max(k − |d1 + d2|, 0)/k (carves object 2 out of 1).
    """
    k = _F32(k_um)
    a, b = d1, -d2
    h = np.maximum(k - np.abs(a - b), _F32(0.0)) / k
    return np.maximum(a, b) + h * h * k * _F32(0.25)


def radial_perturbation(p, wavevectors, phases, amplitudes) -> np.ndarray:
    """Low-order smooth function of the direction û = p/|p| on the unit sphere.

    δ(û) = Σ_j a_j cos(k_j · û + φ_j) with |k_j| of order 1–3 (a few lobes around the
    sphere, like spherical harmonics of degree ≤ 3); |δ| ≤ Σ_j |a_j|.
    """
    r = np.maximum(norm(p), _TINY)
    u = (p[0] / r, p[1] / r, p[2] / r)
    out = np.zeros(np.broadcast_shapes(*(np.shape(c) for c in p)), dtype=np.float32)
    for k, ph, a in zip(wavevectors, phases, amplitudes):
        out += _F32(a) * np.cos(u[0] * _F32(k[0]) + u[1] * _F32(k[1]) + u[2] * _F32(k[2]) + _F32(ph))
    return out


def partial_volume_fraction(d_um, width_um) -> np.ndarray:
    """Fraction of a voxel inside the object: clip(1/2 − d/w, 0, 1), a linear ramp of width w.

    With w the voxel size along the surface normal this is exactly the filled fraction of a
    voxel cut by a plane perpendicular to a grid axis, so a sum over a column of voxels
    returns the true length inside, whatever the sub-voxel position of the surface.
    """
    return np.clip(_F32(0.5) - d_um / width_um, _F32(0.0), _F32(1.0)).astype(np.float32, copy=False)
