"""Sideband filtering, demodulation and cropping of off-axis holograms.

The sideband of the field u sits around the carrier c (see :mod:`.carrier`); its content is
the spectrum of u, band-limited by the objective pupil to |f − c| ≤ R with R = NA/λ
(cycles/µm). The filter keeps that disc, moves it to the origin and inverse-transforms on a
smaller grid:

* frequency bins of an N-pixel frame (pitch Δx) are Δf = 1/(N Δx); the output grid keeps M
  bins around the carrier, so its pitch is Δx' = N Δx / M and it spans the same field of
  view. M Δf ≥ 2R(1 + edge) (+ 2 bins for the sub-pixel carrier) makes the output pixel
  Δx' ≤ λ/(2 NA): the pupil band is sampled at Nyquist. Sizes are even and FFT-friendly.
* the carrier is generally not on a bin; the crop is centred on the nearest bin k₀ and the
  remaining offset δ = c − k₀Δf is removed by multiplying the output by exp(−i2π δ·x), with
  x = j Δx' the position of output pixel j (same origin as camera pixel 0).

Filter shapes (``shape``): ``"circle"`` is 1 for |f − c| ≤ R and 0 outside; ``"tukey"``
adds a raised-cosine edge from R to R(1 + edge); ``"gaussian"`` a Gaussian edge
exp(−½((|f − c| − R)/σ)²) with σ = edge·R/3, cut at R(1 + edge). Soft edges keep the whole
pupil band at gain 1 and only trade a little extra noise for less ringing.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from holo.threads import fft_workers

__all__ = ["SIDEBAND_SHAPES", "output_grid", "sideband_filter", "demodulate"]

SIDEBAND_SHAPES = ("circle", "tukey", "gaussian")
_DEFAULT_EDGE = 0.1


def _check_shape(shape: str, edge: float) -> float:
    if shape not in SIDEBAND_SHAPES:
        raise ValueError(f"sideband shape must be one of {SIDEBAND_SHAPES}, got {shape!r}")
    if shape == "circle":
        return 0.0
    if not (0.0 < edge <= 1.0):
        raise ValueError(f"edge must be in (0, 1] for a soft sideband, got {edge}")
    return float(edge)


def output_grid(
    shape_yx: tuple[int, int],
    pixel_size_um: float,
    wavelength_um: float,
    objective_na: float,
    *,
    shape: str = "circle",
    edge: float = _DEFAULT_EDGE,
) -> tuple[tuple[int, int], float]:
    """Shape (M_y, M_x) and pitch Δx' (µm) of the cropped field grid.

    The output pitch is the same on both axes: with g = gcd(N_y, N_x), M = (N_y/g, N_x/g)·k
    and Δx' = g Δx / k for the smallest k that covers 2R(1 + edge) + 2 bins on both axes
    (preferring even, FFT-friendly sizes); for square frames this is M = N/g·k with g = N.
    M never exceeds N (an undersampled sideband is then kept whole).

    Returns
    -------
    ((M_y, M_x), pixel_size_um_out)
    """
    edge = _check_shape(shape, edge)
    ny, nx = (int(s) for s in shape_yx)
    if ny < 2 or nx < 2:
        raise ValueError(f"shape_yx must be at least 2 x 2, got {shape_yx}")
    if pixel_size_um <= 0 or wavelength_um <= 0 or objective_na <= 0:
        raise ValueError("pixel_size_um, wavelength_um and objective_na must be positive")
    radius = objective_na / wavelength_um
    need_y = 2.0 * radius * (1.0 + edge) * ny * pixel_size_um + 2.0
    need_x = 2.0 * radius * (1.0 + edge) * nx * pixel_size_um + 2.0
    g = math.gcd(ny, nx)
    qy, qx = ny // g, nx // g
    k_min = max(1, math.ceil(max(need_y / qy, need_x / qx)))
    if k_min >= g:
        return (ny, nx), float(pixel_size_um)
    chosen = None
    for k in range(k_min, g + 1):
        my, mx = qy * k, qx * k
        if my % 2 == 0 and mx % 2 == 0 and scipy.fft.next_fast_len(my) == my and scipy.fft.next_fast_len(mx) == mx:
            chosen = k
            break
        if k > 2 * k_min + 16:
            break
    if chosen is None:
        chosen = k_min + (k_min % 2 if (qy * k_min) % 2 or (qx * k_min) % 2 else 0)
        chosen = min(chosen, g)
    return (qy * chosen, qx * chosen), float(g * pixel_size_um / chosen)


def sideband_filter(
    shape_out: tuple[int, int],
    pixel_size_out_um: float,
    offset_cycles_per_um: tuple[float, float],
    radius_cycles_per_um: float,
    *,
    shape: str = "circle",
    edge: float = _DEFAULT_EDGE,
) -> np.ndarray:
    """Filter of the cropped spectrum (unshifted FFT layout of the output grid), float32.

    ``offset_cycles_per_um`` is the position of the exact carrier on the output frequency
    grid (the sub-pixel remainder δ); the filter is centred there (shapes: module docstring).
    """
    edge = _check_shape(shape, edge)
    my, mx = shape_out
    fy = np.fft.fftfreq(my, d=pixel_size_out_um)[:, None] - offset_cycles_per_um[0]
    fx = np.fft.fftfreq(mx, d=pixel_size_out_um)[None, :] - offset_cycles_per_um[1]
    r = np.hypot(fy, fx)
    big_r = float(radius_cycles_per_um)
    if shape == "circle":
        filt = (r <= big_r).astype(np.float32)
    elif shape == "tukey":
        t = np.clip((r - big_r) / (edge * big_r), 0.0, 1.0)
        filt = (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)
    else:
        sigma = edge * big_r / 3.0
        filt = np.where(r <= big_r, 1.0, np.exp(-0.5 * ((r - big_r) / sigma) ** 2))
        filt = np.where(r <= big_r * (1.0 + edge), filt, 0.0).astype(np.float32)
    return filt


def demodulate(
    holograms,
    carrier_cycles_per_um: tuple[float, float],
    pixel_size_um: float,
    wavelength_um: float,
    objective_na: float,
    *,
    shape: str = "circle",
    edge: float = _DEFAULT_EDGE,
) -> tuple[np.ndarray, float]:
    """Complex field of the sideband at the carrier, on the cropped grid.

    With Î the spectrum of the hologram (unnormalised DFT), the output is

        u'(x_j) = (1/(N_y N_x)) Σ_{f ∈ band} Î(f) W(f − c) e^{i2π (f − c)·x_j},

    W the sideband filter, x_j = j Δx' (module docstring): the sideband term u·r* of the
    hologram moved to the origin, i.e. u times the (constant) reference amplitude.

    Parameters
    ----------
    holograms : (Y, X) or (B, Y, X) real array
    carrier_cycles_per_um : (fy, fx)
        Centre of the sideband to demodulate, cycles/µm (either half-plane).
    pixel_size_um, wavelength_um, objective_na : float
        Camera pitch (µm), vacuum wavelength (µm), detection NA (sets R = NA/λ).
    shape, edge : filter shape and relative soft-edge width (module docstring).

    Returns
    -------
    fields : (B, M_y, M_x) complex64 (2D input gives (M_y, M_x))
    pixel_size_um_out : float
    """
    h = np.asarray(holograms)
    if np.iscomplexobj(h):
        raise ValueError("holograms must be real intensities, got complex values")
    squeeze = h.ndim == 2
    if squeeze:
        h = h[None]
    if h.ndim != 3:
        raise ValueError(f"holograms must be (Y, X) or (B, Y, X), got shape {h.shape}")
    fy_c, fx_c = (float(v) for v in carrier_cycles_per_um)
    if not (np.isfinite(fy_c) and np.isfinite(fx_c)):
        raise ValueError(f"carrier_cycles_per_um must be finite, got {carrier_cycles_per_um}")
    b, ny, nx = h.shape
    (my, mx), p_out = output_grid((ny, nx), pixel_size_um, wavelength_um, objective_na, shape=shape, edge=edge)
    # Work in the half-plane that an rfft holds; the twin sideband is the conjugate:
    # demodulating a real frame at −c gives the complex conjugate of demodulating at +c.
    conj = fx_c < 0 or (fx_c == 0 and fy_c < 0)
    if conj:
        fy_c, fx_c = -fy_c, -fx_c
    dfy, dfx = 1.0 / (ny * pixel_size_um), 1.0 / (nx * pixel_size_um)
    ky0, kx0 = int(round(fy_c / dfy)), int(round(fx_c / dfx))
    delta = (fy_c - ky0 * dfy, fx_c - kx0 * dfx)
    oy = np.fft.fftfreq(my, d=1.0 / my).round().astype(np.int64)
    ox = np.fft.fftfreq(mx, d=1.0 / mx).round().astype(np.int64)
    kyf = (ky0 + oy[:, None]) % ny
    kxf = (kx0 + ox[None, :]) % nx
    flip = np.broadcast_to(kxf > nx // 2, (my, mx))
    src_y = np.where(flip, (-kyf) % ny, kyf)
    src_x = np.where(flip, (-kxf) % nx, kxf)
    filt = sideband_filter((my, mx), p_out, delta, objective_na / wavelength_um, shape=shape, edge=edge)
    spec = scipy.fft.rfft2(h.astype(np.float32, copy=False), workers=fft_workers())
    crop = spec[:, src_y, src_x]
    del spec
    if flip.any():
        crop = np.where(flip[None], np.conj(crop), crop)
    crop *= filt[None]
    field = scipy.fft.ifft2(crop, workers=fft_workers(), overwrite_x=True)
    y = (np.arange(my) * p_out)[:, None]
    x = (np.arange(mx) * p_out)[None, :]
    ramp = np.exp(-2j * np.pi * (delta[0] * y + delta[1] * x)) * (my * mx / (ny * nx))
    field *= ramp.astype(np.complex64)[None]
    field = field.astype(np.complex64, copy=False)
    if conj:
        np.conjugate(field, out=field)
    return (field[0] if squeeze else field), p_out
