"""Illumination NA of each frame estimated from its sample-free hologram.

The background field of an illumination (NA_x, NA_y) (conventions: :mod:`holo.conventions`)
is the plane wave u0 = exp(i2π (NA_x x + NA_y y)/λ); in the hologram it sits in the sideband of
u at f = c + (NA_y, NA_x)/λ, c the carrier (see :mod:`.carrier`). Locating that peak inside
the sideband disc |f − c| ≤ NA_obj/λ to a fraction of a bin gives

    (NA_x, NA_y) = λ·(f_x − c_x, f_y − c_y).

With a frame of N pixels of pitch Δx the frequency bin is 1/(N Δx), i.e. an NA step of
λ/(N Δx); the Gaussian-window parabolic peak fit (:func:`.carrier.spectral_peaks`) resolves a
few hundredths of that for a plane-wave background.
"""

from __future__ import annotations

import numpy as np

from .carrier import in_positive_half_plane, spectral_peaks

__all__ = ["estimate_illumination_na"]


def estimate_illumination_na(
    background,
    carrier_cycles_per_um: tuple[float, float],
    pixel_size_um: float,
    wavelength_um: float,
    objective_na: float,
) -> np.ndarray:
    """Illumination NA of each background frame (module docstring for the method).

    Parameters
    ----------
    background : (A, Y, X) or (Y, X) real array-like
        Sample-free holograms, one per illumination (h5py datasets are read in batches).
    carrier_cycles_per_um : (fy, fx)
        Carrier of the sideband holding u (cycles/µm), e.g. from
        :func:`.carrier.detect_carrier` on the normal-incidence frame.
    pixel_size_um, wavelength_um, objective_na : float
        Camera pitch (µm), vacuum wavelength (µm) and detection NA (the search disc radius
        NA/λ around the carrier).

    Returns
    -------
    (A, 2) float64
        (NA_x, NA_y) per frame, X before Y as in :mod:`holo.conventions`; NaN rows for frames
        with no finite peak.

    Raises
    ------
    ValueError
        Bad shapes or parameters.
    """
    fy_c, fx_c = (float(v) for v in carrier_cycles_per_um)
    if not (np.isfinite(fy_c) and np.isfinite(fx_c)):
        raise ValueError(f"carrier_cycles_per_um must be finite, got {carrier_cycles_per_um}")
    if pixel_size_um <= 0 or wavelength_um <= 0 or objective_na <= 0:
        raise ValueError("pixel_size_um, wavelength_um and objective_na must be positive")
    # A real frame's rfft holds the half-plane fx > 0; a carrier given in the other half is
    # searched at its twin −c, where the peak is the mirror image −(c + ν).
    sign = 1.0 if in_positive_half_plane(fy_c, fx_c) else -1.0
    c_plus = (sign * fy_c, sign * fx_c)
    peaks = spectral_peaks(
        background, pixel_size_um, centre_cycles_per_um=c_plus, max_radius_cycles_per_um=objective_na / wavelength_um
    )
    nu = sign * (peaks - np.asarray(c_plus)[None, :])  # (fy, fx) offsets from the carrier of u
    return np.ascontiguousarray(wavelength_um * nu[:, ::-1])
