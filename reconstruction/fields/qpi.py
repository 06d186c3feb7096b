"""Quantitative phase of one off-axis hologram (2D QPI, digital holographic microscopy).

The everyday use of an off-axis microscope: one hologram I (and, when recorded, one
sample-free frame I₀) → the field u/u0 and its phase φ, the optical path difference
OPD = φ λ/(2π) (conventions: :mod:`holo.conventions`, φ > 0 where the sample is denser than
the medium).

Steps (the same building blocks as the tomographic retrieval, :mod:`.retrieve`):

1. carrier c: the strongest spectral peak of I₀ (else of I) outside the disc |f| < r_min
   (:func:`.carrier.spectral_peaks`), with r_min = NA/λ when the objective NA is known, else
   0.1 cycles/pixel (a fringe period under 10 pixels, as off-axis set-ups are built); c is
   then moved to the nearest frequency bin: the remainder is a plane tilt, which the division
   by the background field or the plane fit of step 4 removes exactly.
2. sideband radius R = NA/λ (the pupil), or, when the NA is not known, R = ``radius_fraction``
   ·|c| (1/2: the disc reaches half-way to the DC term, the usual compromise when the carrier
   is too close to DC to hold the whole pupil);
3. demodulation (:func:`.sideband.demodulate`, filter shape ``sideband``), division by the
   background field when there is one, and (``full_grid=True``) band-limited interpolation
   back onto the camera grid by zero-padding the spectrum — exact, since the demodulated
   field holds no frequency beyond R;
4. unwrapping (:func:`.unwrap.unwrap_phase`), removal of the phase polynomial (offset + tilt,
   or degree 2) and amplitude scale fitted on the background pixels
   (:func:`.background.remove_background`);
5. the sideband that holds u: a real hologram cannot tell u from u*; the twin is taken when
   the phase summed over the object pixels is negative (a cell is denser than its medium).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from holo.errors import ValidationError
from holo.threads import fft_workers

from .background import remove_background
from .carrier import spectral_peaks
from .retrieve import _object_phase_sign
from .sideband import SIDEBAND_SHAPES, demodulate
from .unwrap import unwrap_phase

__all__ = ["PhaseMap", "hologram_phase", "fourier_upsample"]

#: Smallest carrier searched without a known NA, cycles per pixel.
_MIN_CARRIER_CYCLES_PER_PX = 0.1


@dataclass
class PhaseMap:
    """Phase of one hologram.

    Attributes
    ----------
    field : (Y, X) complex64
        u/u0 (background-corrected, amplitude normalised).
    phase : (Y, X) float32
        Unwrapped phase φ, radians, ≈ 0 on the background.
    pixel_size_um, wavelength_um : float
    carrier_cycles_per_um : (fy, fx)
        Carrier of the sideband that holds u (on a frequency bin).
    radius_cycles_per_um : float
        Sideband radius R.
    object_mask : (Y, X) bool
        Pixels excluded from the background fit.
    metadata : dict
        How the phase was obtained.
    """

    field: np.ndarray
    phase: np.ndarray
    pixel_size_um: float
    wavelength_um: float
    carrier_cycles_per_um: tuple[float, float]
    radius_cycles_per_um: float
    object_mask: np.ndarray
    metadata: dict = field(default_factory=dict)

    @property
    def opd_um(self) -> np.ndarray:
        """Optical path difference φ λ/(2π), µm (float32)."""
        return (self.phase * np.float32(self.wavelength_um / (2.0 * np.pi))).astype(np.float32)


def fourier_upsample(field_yx: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """Band-limited interpolation of a periodic complex (Y', X') field onto (Y, X) ≥ (Y', X').

    The spectrum is zero-padded (its Nyquist row/column, if any, split evenly) and scaled by
    (Y X)/(Y' X') so that values are kept: the output at the points of the coarse grid equals
    the input there.
    """
    my, mx = field_yx.shape
    ny, nx = shape_yx
    if ny < my or nx < mx:
        raise ValueError(f"shape_yx {shape_yx} is smaller than the field {field_yx.shape}")
    spec = scipy.fft.fftshift(scipy.fft.fft2(field_yx, workers=fft_workers()))
    big = np.zeros((ny, nx), np.complex128)
    oy, ox = ny // 2 - my // 2, nx // 2 - mx // 2
    big[oy : oy + my, ox : ox + mx] = spec
    out = scipy.fft.ifft2(scipy.fft.ifftshift(big), workers=fft_workers()) * (ny * nx / (my * mx))
    return out.astype(np.complex64)


def _as_frame(arr, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.dtype.kind not in "uif":
        raise ValidationError(f"must be one real (Y, X) frame, got {a.dtype} {a.shape}", item=name)
    if not np.all(np.isfinite(a)):
        raise ValidationError("contains non-finite values", item=name)
    return a.astype(np.float32)


def _carrier(ref: np.ndarray, pixel_size_um: float, r_min: float) -> np.ndarray:
    """Step 1: the peak outside r_min, moved to the nearest frequency bin (fy, fx)."""
    ny, nx = ref.shape
    peak = spectral_peaks(ref, pixel_size_um, min_radius_cycles_per_um=r_min)[0]
    if not np.all(np.isfinite(peak)):
        raise ValidationError("no off-axis sideband peak found", item="hologram")
    dfy, dfx = 1.0 / (ny * pixel_size_um), 1.0 / (nx * pixel_size_um)
    return np.array([np.round(peak[0] / dfy) * dfy, np.round(peak[1] / dfx) * dfx])


def hologram_phase(
    hologram,
    background=None,
    *,
    pixel_size_um: float,
    wavelength_um: float,
    objective_na: float | None = None,
    radius_fraction: float = 0.5,
    sideband: str = "tukey",
    background_degree: int = 1,
    full_grid: bool = True,
) -> PhaseMap:
    """Phase and field of one off-axis hologram (steps in the module docstring).

    Parameters
    ----------
    hologram : (Y, X) real array
        Camera frame with the sample.
    background : (Y, X) real array, optional
        Sample-free frame; without it the reference's own tilt and offset are fitted away on
        the background pixels (a curved reference then remains: use ``background_degree=2``).
    pixel_size_um, wavelength_um : float
        Camera pixel at the sample plane and vacuum wavelength, µm.
    objective_na : float, optional
        Detection NA: sets the sideband radius R = NA/λ. Without it R = radius_fraction·|c|.
    radius_fraction : float
        R/|c| when the NA is not given, in (0, 1).
    sideband : {"circle", "tukey", "gaussian"}
        Filter shape (:mod:`.sideband`).
    background_degree : {1, 2}
    full_grid : bool
        Return the maps on the camera grid (True) or on the cropped grid sampled at the
        band's Nyquist rate (False).

    Returns
    -------
    PhaseMap
    """
    if pixel_size_um <= 0 or wavelength_um <= 0:
        raise ValidationError("pixel_size_um and wavelength_um must be positive", item="optics")
    if sideband not in SIDEBAND_SHAPES:
        raise ValidationError(f"must be one of {SIDEBAND_SHAPES}, got {sideband!r}", item="sideband")
    if not 0 < radius_fraction < 1:
        raise ValidationError(f"must be in (0, 1), got {radius_fraction}", item="radius_fraction")
    h = _as_frame(hologram, "hologram")
    bg = None if background is None else _as_frame(background, "background")
    if bg is not None and bg.shape != h.shape:
        raise ValidationError(f"shape {bg.shape} differs from the hologram's {h.shape}", item="background")
    r_min = objective_na / wavelength_um if objective_na else _MIN_CARRIER_CYCLES_PER_PX / pixel_size_um
    c = _carrier(h if bg is None else bg, pixel_size_um, r_min)
    radius = objective_na / wavelength_um if objective_na else radius_fraction * float(np.hypot(*c))
    dem = dict(pixel_size_um=pixel_size_um, wavelength_um=wavelength_um, objective_na=radius * wavelength_um, shape=sideband)
    u, pixel = demodulate(h, tuple(c), **dem)
    if bg is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (u / demodulate(bg, tuple(c), **dem)[0]).astype(np.complex64)
        if not np.all(np.isfinite(u)):
            raise ValidationError("background field vanishes somewhere (no fringes?)", item="background")
    if full_grid and u.shape != h.shape:
        u, pixel = fourier_upsample(u, h.shape), float(pixel_size_um)
    phi = unwrap_phase(u[None])
    fields, phase, info = remove_background(u[None], phi, degree=background_degree, dilate_px=3)
    sign = _object_phase_sign(phase, info["mask"])
    if sign < 0:
        fields, phase, c = np.conj(fields), -phase, -c
    meta = {
        "sideband": sideband, "sideband_sign_from": "positive object phase", "background_frame": bg is not None,
        "background_degree": background_degree, "radius_from": "objective_na" if objective_na else "radius_fraction",
    }
    return PhaseMap(
        field=fields[0], phase=phase[0].astype(np.float32), pixel_size_um=float(pixel), wavelength_um=float(wavelength_um),
        carrier_cycles_per_um=(float(c[0]), float(c[1])), radius_cycles_per_um=float(radius),
        object_mask=info["mask"][0], metadata=meta,
    )
