"""Physics conventions of holo, written once and referred to everywhere else.

Units and axes
--------------
* Every length is in micrometres (µm): wavelengths, pixel and voxel sizes, positions.
  Spatial frequencies are in cycles/µm unless a name says ``k`` (then rad/µm).
* Arrays are ordered (Z, Y, X) with Z the optical axis (the direction of the unscattered
  beam at normal incidence; for sample rotation, the beam direction at angle 0). 2D frames
  are (Y, X). A time axis, when present, comes first: (T, Z, Y, X).
* Voxel sizes are tuples ``(dz, dy, dx)`` in µm, in array order.

Waves
-----
* Time dependence is e^{-iωt}; a plane wave travelling along +z is e^{+i k z} with
  k = 2π n_m / λ. ``wavelength_um`` is always the *vacuum* wavelength λ.
* Complex fields are stored as u/u0: the field with the sample divided by the sample-free
  field of the same illumination, in the focal plane z = 0, which is the centre of the
  reconstructed volume.
* With these signs the phase of u/u0 is *positive* where the optical path through the sample
  is longer than through the medium. For a thin object, φ(x, y) = k0 ∫ (n − n_m) dz with
  k0 = 2π/λ.
* Illumination direction of an illumination-scan frame is given as
  (NA_x, NA_y) = n_m (sinθ cosφ, sinθ sinφ), in the X, Y order of the frame.
* Sample rotation: rotation angle a in radians about the frame's Y axis (or X); at angle 0 the
  volume's Z axis is the optical axis. Rotations are right-handed: about +Y a point of the
  sample moves to x' = x cos a + z sin a, z' = −x sin a + z cos a; about +X to
  y' = y cos a − z sin a, z' = y sin a + z cos a.
* Grid origin: the coordinate origin of an axis of n samples is index n // 2, so the focal
  plane z = 0 is slice Z // 2 of a volume and the optical axis passes through (Y // 2, X // 2).

Refractive index
----------------
* RI is absolute (e.g. 1.337 for the medium, 1.36 for cytoplasm), never Δn, stored float32.
* Scattering potential f(r) = k0² (n_m² − n(r)²), so n = n_m √(1 − f / k_m²) with
  k_m = k0 n_m. (f is negative where n > n_m.)
* Dry mass uses the refractive increment α = 0.19 µm³/pg: m = (1/α) ∭ (n − n_m) dV.
"""

from __future__ import annotations

import numpy as np

#: Refractive increment of protein, µm³/pg (= mL/g).
ALPHA_PROTEIN_UM3_PER_PG = 0.19
#: Refractive increment of lipid, µm³/pg.
ALPHA_LIPID_UM3_PER_PG = 0.135

GEOMETRIES = ("illumination-scan", "sample-rotation")


def vacuum_wavenumber(wavelength_um: float) -> float:
    """k0 = 2π/λ in rad/µm."""
    return 2.0 * np.pi / float(wavelength_um)


def medium_wavenumber(wavelength_um: float, medium_index: float) -> float:
    """k_m = 2π n_m/λ in rad/µm."""
    return 2.0 * np.pi * float(medium_index) / float(wavelength_um)


def ri_to_potential(ri, wavelength_um: float, medium_index: float):
    """Scattering potential f = k0² (n_m² − n²) in rad²/µm² (see module docstring)."""
    k0 = vacuum_wavenumber(wavelength_um)
    ri = np.asarray(ri)
    return (k0 * k0) * (medium_index * medium_index - ri * ri)


def potential_to_ri(potential, wavelength_um: float, medium_index: float, *, dtype=np.float64, copy: bool = True):
    """Inverse of :func:`ri_to_potential`: n = n_m √(1 − f/k_m²), the one definition.

    Parameters
    ----------
    potential : array_like
        Scattering potential f, rad²/µm² (complex for an absorbing sample).
    wavelength_um, medium_index : float
        Vacuum wavelength λ (µm) and medium index n_m.
    dtype : {numpy.float64, numpy.float32}
        float64 (default): the root is taken in complex128 and its real part returned, so a
        complex f is allowed. float32: f must be real; the root is evaluated in float32 with
        its argument clipped at 0, which is the real part of the complex root
        (√(negative) is imaginary), with one float32 volume of memory.
    copy : bool
        With ``dtype=numpy.float32`` and ``copy=False`` a float32 ``potential`` array is
        overwritten with the result (no second volume); otherwise the input is left intact.

    Returns
    -------
    ndarray of ``dtype``
        Absolute RI n.
    """
    km = medium_wavenumber(wavelength_um, medium_index)
    if np.dtype(dtype) == np.float64:
        val = medium_index * np.sqrt((1.0 - np.asarray(potential) / (km * km)).astype(np.complex128))
        return np.real(val)
    if np.dtype(dtype) != np.float32:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    if np.iscomplexobj(potential):
        raise ValueError("potential must be real for dtype=float32 (pass its real part)")
    n = np.array(potential, dtype=np.float32, order="C") if copy else np.asarray(potential, dtype=np.float32)
    n *= np.float32(-1.0 / (km * km))
    n += np.float32(1.0)
    np.maximum(n, np.float32(0.0), out=n)
    np.sqrt(n, out=n)
    n *= np.float32(medium_index)
    return n
