"""Off-axis carrier detection and sub-pixel spectral peak location.

An off-axis hologram of the field u (u0 without sample) and a tilted reference wave
r = R·exp(i2π f_r·x) is

    I = |u|² + |r|² + u·r* + u*·r,

whose spectrum holds the autocorrelation around DC (radius ≤ 2·NA/λ for a field band-limited
by the objective pupil |f| ≤ NA/λ) and two sidebands: u·r* around the *carrier* c = −f_r and
its twin u*·r around +f_r. Here the carrier is always the centre of the sideband that holds u
itself (not u*); frequencies are in cycles/µm and given (fy, fx) in array order
(conventions: :mod:`holo.conventions`).

From a sample-free normal-incidence frame alone the two sidebands look alike (a real
hologram has a Hermitian spectrum), so :func:`detect_carrier` returns the peak in the
half-plane fx > 0 (or fx = 0, fy > 0); :func:`holo.reconstruction.fields.retrieve.retrieve_fields`
decides afterwards which of ±c carries u (see there).

Sub-pixel location
------------------
Frames are multiplied by a separable Gaussian window w(y) w(x) with σ = N/8 pixels (the
window is e^{-8} ≈ 3·10⁻⁴ at the frame edge), so that the spectrum of a plane-wave term is a
Gaussian of width σ_f = N/(2πσ) ≈ 1.3 bins. The logarithm of a Gaussian is a parabola, hence
the three-point parabolic fit of ln|F| through the maximum bin and its neighbours along each
axis gives the peak centre without the bias that the interpolation of an unwindowed (sinc)
or Hann-windowed peak has.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from holo.threads import fft_workers

__all__ = ["detect_carrier", "spectral_peaks", "gaussian_window", "in_positive_half_plane"]

#: Gaussian window width as a fraction of the frame size (σ = N/8).
_WINDOW_SIGMA_FRACTION = 1.0 / 8.0


def gaussian_window(shape_yx: tuple[int, int]) -> np.ndarray:
    """Separable Gaussian window exp(−½((j − N/2)/σ)²) with σ = N/8 per axis, float32 (Y, X)."""
    axes = []
    for n in shape_yx:
        j = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        sigma = max(n * _WINDOW_SIGMA_FRACTION, 1.0)
        axes.append(np.exp(-0.5 * (j / sigma) ** 2))
    return (axes[0][:, None] * axes[1][None, :]).astype(np.float32)


def in_positive_half_plane(fy: float, fx: float) -> bool:
    """True when (fy, fx) lies in the half-plane fx > 0, or fx = 0 and fy > 0."""
    return bool(fx > 0 or (fx == 0 and fy > 0))


def _bins(n: int) -> np.ndarray:
    """Signed integer frequency bins of an n-point FFT (0, 1, …, −1)."""
    return np.fft.fftfreq(n, d=1.0 / n).round().astype(np.int64)


def spectral_peaks(
    frames,
    pixel_size_um: float,
    *,
    centre_cycles_per_um: tuple[float, float] = (0.0, 0.0),
    min_radius_cycles_per_um: float = 0.0,
    max_radius_cycles_per_um: float = np.inf,
    batch: int = 16,
) -> np.ndarray:
    """Sub-pixel position of the strongest spectral peak of each frame inside an annulus.

    Parameters
    ----------
    frames : (Y, X) or (B, Y, X) array-like
        Real frames (holograms; only the half-plane fx > 0, or fx = 0 and fy > 0, is
        searched, since the spectrum of a real frame is Hermitian) or complex fields (the
        whole plane is searched). The frame mean is removed before windowing. A lazy stack
        (h5py dataset) is read ``batch`` frames at a time.
    pixel_size_um : float
        Sampling pitch of the frames, µm.
    centre_cycles_per_um : (fy, fx)
        Centre c of the searched annulus, cycles/µm.
    min_radius_cycles_per_um, max_radius_cycles_per_um : float
        Only frequencies f with r_min ≤ |f − c| ≤ r_max are searched.
    batch : int
        Frames transformed together (bounds the memory of the spectra).

    Returns
    -------
    (B, 2) float64 array
        Peak frequencies (fy, fx) in cycles/µm, refined by the parabola through ln|F| of the
        Gaussian-windowed spectrum (see the module docstring); a NaN row where the frame is
        not finite or the annulus holds no frequency bin.
    """
    shape = tuple(np.shape(frames) if not hasattr(frames, "shape") else frames.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"frames must be (Y, X) or (B, Y, X), got shape {shape}")
    if pixel_size_um <= 0:
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um}")
    if int(batch) < 1:
        raise ValueError(f"batch must be ≥ 1, got {batch}")
    annulus = (centre_cycles_per_um, min_radius_cycles_per_um, max_radius_cycles_per_um)
    if len(shape) == 2:
        return _peaks_of(np.asarray(frames)[None], pixel_size_um, *annulus)
    out = np.empty((shape[0], 2))
    for i0 in range(0, shape[0], int(batch)):
        i1 = min(i0 + int(batch), shape[0])
        out[i0:i1] = _peaks_of(np.asarray(frames[i0:i1]), pixel_size_um, *annulus)
    return out


def _peaks_of(arr: np.ndarray, pixel_size_um: float, centre_cycles_per_um, min_radius_cycles_per_um, max_radius_cycles_per_um):
    """:func:`spectral_peaks` of one in-memory (B, Y, X) batch."""
    is_complex = np.iscomplexobj(arr)
    b, ny, nx = arr.shape
    dfy, dfx = 1.0 / (ny * pixel_size_um), 1.0 / (nx * pixel_size_um)
    win = gaussian_window((ny, nx))
    x = arr.astype(np.complex64 if is_complex else np.float32, copy=True)
    x -= x.mean(axis=(-2, -1), keepdims=True)
    x *= win
    if is_complex:
        spec = scipy.fft.fft2(x, workers=fft_workers())
        kx = _bins(nx)
    else:
        spec = scipy.fft.rfft2(x, workers=fft_workers())
        kx = np.arange(nx // 2 + 1)
    ky = _bins(ny)
    fy = ky[:, None] * dfy
    fx = kx[None, :] * dfx
    r = np.hypot(fy - centre_cycles_per_um[0], fx - centre_cycles_per_um[1])
    allowed = (r >= min_radius_cycles_per_um) & (r <= max_radius_cycles_per_um)
    if not is_complex:
        allowed &= (kx[None, :] > 0) | (ky[:, None] > 0)
    mag = np.abs(spec)
    out = np.full((b, 2), np.nan)
    if not allowed.any():
        return out
    masked = np.where(allowed[None], mag, -1.0).reshape(b, -1)
    flat = np.argmax(masked, axis=1)
    iy, ix = np.unravel_index(flat, allowed.shape)

    def logmag(jy, jx):
        # Magnitude at arbitrary integer bins (jy, jx), using |F(−f)| = |F(f)| for real frames.
        jy = np.asarray(jy) % ny
        if is_complex:
            jx = np.asarray(jx) % nx
            return np.log(np.maximum(mag[np.arange(b), jy, jx], 1e-30))
        jx = np.asarray(jx) % nx
        flip = jx > nx // 2
        jy2 = np.where(flip, (-jy) % ny, jy)
        jx2 = np.where(flip, (-jx) % nx, jx)
        return np.log(np.maximum(mag[np.arange(b), jy2, jx2], 1e-30))

    def vertex(lm, l0, lp):
        den = lm - 2.0 * l0 + lp
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(den < 0, 0.5 * (lm - lp) / den, 0.0)
        return np.clip(d, -0.5, 0.5)

    jy0 = ky[iy]
    jx0 = kx[ix]
    l0 = logmag(jy0, jx0)
    dy = vertex(logmag(jy0 - 1, jx0), l0, logmag(jy0 + 1, jx0))
    dx = vertex(logmag(jy0, jx0 - 1), l0, logmag(jy0, jx0 + 1))
    out[:, 0] = (jy0 + dy) * dfy
    out[:, 1] = (jx0 + dx) * dfx
    bad = ~np.isfinite(arr).all(axis=(-2, -1)) | (masked.max(axis=1) <= 0)
    out[bad] = np.nan
    return out


def detect_carrier(background_frame, pixel_size_um: float, wavelength_um: float, objective_na: float) -> tuple[float, float]:
    """Carrier frequency of an off-axis hologram from a sample-free frame.

    The carrier is the strongest spectral peak outside the DC/autocorrelation disc
    |f| < NA/λ (a sideband that holds the pupil band |f − c| ≤ NA/λ cannot lie closer to DC
    without overlapping its twin), located to a small fraction of a frequency bin (module
    docstring). Use the normal-incidence background (whose u0 is a plane wave at the
    carrier itself); for a tilted illumination the peak sits at c + NA_ill/λ.

    Parameters
    ----------
    background_frame : (Y, X) real array
        Sample-free hologram.
    pixel_size_um : float
        Camera pixel pitch in the sample plane, µm.
    wavelength_um : float
        Vacuum wavelength λ, µm.
    objective_na : float
        Detection NA.

    Returns
    -------
    (fy, fx) : tuple of float
        Carrier in cycles/µm, in the half-plane fx > 0 (or fx = 0, fy > 0); the twin sideband
        sits at −(fy, fx).

    Raises
    ------
    ValueError
        ``background_frame`` is not a finite real 2D frame, or no peak exists outside the
        DC disc (carrier beyond the sampled band).
    """
    bg = np.asarray(background_frame)
    if bg.ndim != 2:
        raise ValueError(f"background_frame must be one (Y, X) frame, got shape {bg.shape}")
    if np.iscomplexobj(bg):
        raise ValueError("background_frame must be a real hologram intensity, got complex values")
    if not np.all(np.isfinite(bg)):
        raise ValueError("background_frame contains non-finite values")
    if wavelength_um <= 0 or objective_na <= 0:
        raise ValueError(f"wavelength_um and objective_na must be positive, got {wavelength_um}, {objective_na}")
    radius = objective_na / wavelength_um
    peak = spectral_peaks(bg, pixel_size_um, min_radius_cycles_per_um=radius)[0]
    if not np.all(np.isfinite(peak)):
        raise ValueError(
            "background_frame: no spectral peak outside the DC disc |f| < NA/λ; "
            "the pixel_size_um does not sample an off-axis carrier"
        )
    return float(peak[0]), float(peak[1])
