"""Exact field of a homogeneous sphere (Mie theory, via miepython) as u/u0 on a frame grid.

The sphere's centre is the origin: laterally the pixel (Y//2, X//2) of the frame
(:func:`holo.reconstruction.forward.propagation.grid_coordinates`), axially z = 0. The incident
plane wave travels along d = (NA_x, NA_y, √(n_m² − NA²))/n_m with its electric field along
p, the unit vector closest to +x that is orthogonal to d (p = x at normal incidence). The
sphere is symmetric, so the field is evaluated in the rotated frame (x', y', z') =
(p, d × p, d) where the incidence is the textbook one (along +z', polarised along +x').
The returned scalar is the total electric field projected on p divided by the incident
wave exp(i k_m d·r), with the conventions of :mod:`holo.conventions` (e^{-iωt}, phase of
u/u0 positive where the optical path is longer).

Two evaluations:

* ``objective_na=None``: the vector near field (``miepython.field.e_near_cartesian``: the
  incident plus scattered field outside the sphere, the internal field inside) in the plane
  z = ``z_um``, point by point, unfiltered.
* ``objective_na`` given: what an ideal microscope focused on the plane z = ``z_um`` records,
  i.e. the outgoing field (incident + forward-scattered) propagated back to that plane and
  low-passed by the pupil |k⊥| ≤ 2π NA/λ. For z > a (outside the sphere) the propagating
  angular spectrum of the scattered field is fixed by its far-field amplitude F(ŝ),
  E_p ~ F(ŝ) e^{ik_m r}/r:  Â(k⊥) = 2π i F(ŝ)/k_z (the Weyl expansion of e^{ikr}/r gives
  the factor). With the amplitude functions S1, S2 (Bohren & Huffman convention,
  e^{-iωt}), the scattering angle Θ and azimuth Φ measured from p around d,

      F(ŝ) = (S2(Θ) cos Θ cos² Φ + S1(Θ) sin² Φ) / (−i k_m),

  the p-component of the vector far field. The spectrum is sampled on the frame's discrete
  frequencies, so the result is the sphere's image repeated with the frame period, exactly
  as the periodic forward models of :mod:`holo.reconstruction.forward` see it. The test suite
  checks this route against the near field propagated from a plane behind the sphere.

References
----------
C. F. Bohren and D. R. Huffman, *Absorption and Scattering of Light by Small Particles*
(Wiley, 1983), ch. 4. S. Prahl, miepython (https://github.com/scottprahl/miepython).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from holo.conventions import medium_wavenumber, vacuum_wavenumber
from holo.errors import HoloError
from holo.threads import fft_workers

__all__ = ["mie_sphere_field", "incidence_frame"]


def _miepython():
    try:
        import miepython  # noqa: F401
        import miepython.field as mie_field
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise HoloError(
            "the exact Mie reference needs the optional package miepython (pip install 'holo[dev]' or pip install miepython)",
            item="miepython",
        ) from exc
    return miepython, mie_field


def incidence_frame(illumination_na, medium_index: float):
    """Unit vectors (p, s, d) in (x, y, z) of the incident polarisation, s = d × p, and the
    propagation direction d of an illumination (NA_x, NA_y)."""
    na = np.asarray(illumination_na, dtype=np.float64).reshape(-1)
    if na.shape != (2,) or not np.all(np.isfinite(na)):
        raise ValueError(f"illumination_na must be (NA_x, NA_y), got {illumination_na!r}")
    nm = float(medium_index)
    if np.hypot(*na) >= nm:
        raise ValueError(f"illumination_na {tuple(na)} reaches the medium index {nm}")
    d = np.array([na[0] / nm, na[1] / nm, 0.0])
    d[2] = np.sqrt(1.0 - d[0] ** 2 - d[1] ** 2)
    x = np.array([1.0, 0.0, 0.0])
    p = x - d[0] * d
    p /= np.linalg.norm(p)  # d_z > 0, so x is never parallel to d
    s = np.cross(d, p)
    return p, s, d


def _check(radius_um, sphere_index, medium_index, wavelength_um, shape_yx, pixel_size_um, objective_na):
    vals = {"radius_um": radius_um, "medium_index": medium_index, "wavelength_um": wavelength_um}
    for name, v in vals.items():
        if not (np.isfinite(float(v)) and float(v) > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if not np.isfinite(sphere_index) or np.real(sphere_index) <= 0:
        raise ValueError(f"sphere_index must be a positive (absolute) refractive index, got {sphere_index!r}")
    shape = tuple(int(s) for s in np.atleast_1d(shape_yx))
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"shape_yx must be (Y, X) with at least 2 pixels each, got {shape_yx!r}")
    pix = np.atleast_1d(np.asarray(pixel_size_um, dtype=np.float64)).reshape(-1)
    if pix.size == 1:
        pix = np.repeat(pix, 2)
    if pix.size != 2 or np.any(~np.isfinite(pix)) or np.any(pix <= 0):
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    if objective_na is not None and not (0 < float(objective_na) <= float(medium_index)):
        raise ValueError(f"objective_na must be in (0, medium_index], got {objective_na!r}")
    return shape, (float(pix[0]), float(pix[1]))


def _near_field(radius_um, sphere_index, medium_index, wavelength_um, shape, pix, z_um, frame):
    _, mie_field = _miepython()
    p, s, d = frame
    ny, nx = shape
    y = (np.arange(ny) - ny // 2) * pix[0]
    x = (np.arange(nx) - nx // 2) * pix[1]
    xx, yy = np.meshgrid(x, y)
    zz = np.full_like(xx, float(z_um))
    lab = np.stack([xx, yy, zz])  # (3, Y, X)
    xp = np.tensordot(p, lab, axes=1)
    yp = np.tensordot(s, lab, axes=1)
    zp = np.tensordot(d, lab, axes=1)
    e = mie_field.e_near_cartesian(
        float(wavelength_um), 2.0 * float(radius_um), complex(sphere_index), float(medium_index), xp, yp, zp
    )
    km = medium_wavenumber(wavelength_um, medium_index)
    return np.asarray(e[0], dtype=np.complex128) / np.exp(1j * km * zp)


def _imaged_field(radius_um, sphere_index, medium_index, wavelength_um, shape, pix, z_um, frame, objective_na):
    miepython, _ = _miepython()
    p, s, d = frame
    km = medium_wavenumber(wavelength_um, medium_index)
    ny, nx = shape
    qy = (2.0 * np.pi * sfft.fftfreq(ny, pix[0])).reshape(ny, 1)
    qx = (2.0 * np.pi * sfft.fftfreq(nx, pix[1])).reshape(1, nx)
    kin = km * d
    kx = np.broadcast_to(qx + kin[0], shape)
    ky = np.broadcast_to(qy + kin[1], shape)
    kperp2 = kx * kx + ky * ky
    kc = vacuum_wavenumber(wavelength_um) * float(objective_na)
    keep = (kperp2 <= kc * kc * (1.0 + 1e-9)) & (kperp2 < km * km)
    kz = np.sqrt(km * km - kperp2[keep])
    sx, sy, sz = kx[keep] / km, ky[keep] / km, kz / km
    cos_t = np.clip(sx * d[0] + sy * d[1] + sz * d[2], -1.0, 1.0)
    a_p = sx * p[0] + sy * p[1] + sz * p[2]
    a_s = sx * s[0] + sy * s[1] + sz * s[2]
    rho = np.hypot(a_p, a_s)
    safe = rho > 1e-12
    cos_f = np.where(safe, a_p / np.where(safe, rho, 1.0), 1.0)
    sin_f = np.where(safe, a_s / np.where(safe, rho, 1.0), 0.0)
    m_rel = complex(sphere_index) / float(medium_index)
    size = km * float(radius_um)
    # miepython uses the n − ik (e^{+iωt}) convention for S1, S2; for a non-absorbing or
    # absorbing sphere the e^{-iωt} amplitudes are the complex conjugates
    s1, s2 = miepython.S1_S2(np.conj(m_rel), size, cos_t, norm="wiscombe")
    s1, s2 = np.conj(s1), np.conj(s2)
    far = (s2 * cos_t * cos_f**2 + s1 * sin_f**2) / (-1j * km)
    amp = 2j * np.pi * far / kz
    amp *= np.exp(1j * (kz - kin[2]) * float(z_um))
    spec = np.zeros(shape, dtype=np.complex128)
    spec[keep] = amp
    # envelope spectrum at q = k⊥ − k_in⊥; continuous inverse transform ≈ ifft2 / (dy dx),
    # whose origin (index 0) is moved to the centre pixel (Y//2, X//2)
    field = sfft.fftshift(sfft.ifft2(spec, workers=fft_workers())) / (pix[0] * pix[1])
    if np.hypot(kin[0], kin[1]) <= kc * (1.0 + 1e-9):
        field += 1.0
    return field


def mie_sphere_field(
    radius_um: float,
    sphere_index: float,
    medium_index: float,
    wavelength_um: float,
    shape_yx,
    pixel_size_um,
    *,
    z_um: float = 0.0,
    illumination_na=(0.0, 0.0),
    objective_na: float | None = None,
) -> np.ndarray:
    """u/u0 of a plane wave scattered by a sphere, in the plane z = ``z_um`` (module docstring).

    Parameters
    ----------
    radius_um : float
        Sphere radius a, µm.
    sphere_index : float or complex
        Absolute RI of the sphere (Im > 0 absorbs).
    medium_index : float
        n_m.
    wavelength_um : float
        Vacuum wavelength λ, µm.
    shape_yx : (int, int)
        Frame shape; the sphere centre is on pixel (Y//2, X//2).
    pixel_size_um : float or (dy, dx)
    z_um : float
        Plane, relative to the sphere centre along the optical axis.
    illumination_na : (NA_x, NA_y)
        Direction of the incident plane wave (:mod:`holo.conventions`); not snapped.
    objective_na : float, optional
        If given, the field imaged by an ideal objective focused on ``z_um`` (back-propagated
        outgoing field, low-passed to |k⊥| ≤ 2π NA/λ on the total field); otherwise the
        exact unfiltered near field (inside the sphere too).

    Returns
    -------
    (Y, X) complex128
        u/u0.

    Raises
    ------
    ValueError
        Non-physical arguments.
    HoloError
        miepython is not installed.
    """
    shape, pix = _check(radius_um, sphere_index, medium_index, wavelength_um, shape_yx, pixel_size_um, objective_na)
    frame = incidence_frame(illumination_na, medium_index)
    if objective_na is None:
        return _near_field(radius_um, sphere_index, medium_index, wavelength_um, shape, pix, z_um, frame)
    return _imaged_field(radius_um, sphere_index, medium_index, wavelength_um, shape, pix, z_um, frame, objective_na)
