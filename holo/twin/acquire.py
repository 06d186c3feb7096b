"""Simulated off-axis holotomography acquisitions of a phantom (the digital twin's camera side).

Physics of one frame
--------------------
The forward model gives u/u0 on the phantom's lateral grid in the focal plane z = 0 (see
:mod:`holo.conventions` for signs and units). The field reaching the camera is

    u(x, y) = P{ t(x, y) · D_Δz{ (u/u0)(x − s_x, y − s_y) · u_in(x, y) } }

with u_in = exp(i 2π (NA_x x + NA_y y)/λ) the tilted illumination (1 for sample rotation),
(s_x, s_y) an optional lateral sample drift (Fourier shift; shifting the sample under a plane
wave shifts u/u0 and nothing else), D_Δz the angular-spectrum propagation by the defocus
Δz (transfer function exp(i k_z Δz), k_z = √(k_m² − k_⊥²)), t a weak fixed parasitic
transmittance (dust diffraction rings and an etalon-like tilted copy, identical in every
frame, sample or background) and P the objective pupil |k_⊥| ≤ 2π NA/λ. The sample-free
field u0 follows the same chain with u/u0 = 1.

u is band-limited to the pupil disc of radius ρ = NA/λ (cycles/µm), and the illumination
NA is snapped to the phantom grid's frequencies, so u is periodic and band-limited on the
phantom grid and its Fourier zero-padding onto the finer camera grid of the same field of view
is exact. The camera records I = |u + r|² with the off-axis reference
r = a·exp(i 2π (f_y y + f_x x)) of carrier (f_y, f_x) in cycles/µm (Y before X, as everywhere
in holo): I holds the autocorrelation |u|² + a² (disc of radius 2ρ at the origin) and the
sidebands u·r* and u*·r (discs of radius ρ at ∓f). They are separated when |f| ≥ 3ρ and
unaliased when each sideband disc fits inside the Nyquist square, max(|f_y|, |f_x|) + ρ ≤
1/(2p) for a camera pixel p (``pixel_size_um``, in the sample plane; :func:`check_carrier`). The default
carrier lies on the diagonal; the default pixel is the largest that satisfies both with a
guard band of 5 % of ρ (≈ 0.069 µm at NA 1.2, λ 0.532 µm).

The intensity is scaled so that a sample-free hologram has mean 1, then recorded by
:func:`holo.twin.camera.expose`.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
import scipy.fft as sfft

from holo.conventions import GEOMETRIES
from holo.model import Acquisition, software_version
from holo.reconstruction.forward import born_fields, bpm_fields, rytov_fields
from holo.reconstruction.forward.propagation import angular_spectrum_propagate, frequency_grid, pupil_mask, snap_illumination_na
from holo.threads import fft_workers
from holo.twin.camera import CameraModel, expose
from holo.twin.illumination import illumination_pattern, rotation_angles

__all__ = [
    "simulate_acquisition",
    "default_pixel_size_um",
    "default_carrier",
    "check_carrier",
    "camera_grid",
    "phantom_grid_for_frame",
    "plane_wave",
    "pupil_filter",
    "fourier_shift",
    "fourier_resample",
    "reference_wave",
    "hologram_intensity",
    "parasitic_transmittance",
    "drift_shifts",
]

#: Guard band between the sideband and the autocorrelation / Nyquist edge, fraction of NA/λ.
GUARD_FRACTION = 0.05
#: Highest spatial frequency of the parasitic pattern, fraction of NA/λ.
PARASITIC_BAND_FRACTION = 0.25


# -- grids and frequencies -----------------------------------------------------------------
def _pair(value, name: str) -> tuple[float, float]:
    """A scalar or a (y, x) pair of positive numbers."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be a positive number or a (y, x) pair, got {value!r}")
    return float(arr[0]), float(arr[1])


def _freqs(shape_yx, pixel_size_um) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies (cycles/µm) of an FFT grid, broadcastable (Y, 1) and (1, X)."""
    dy, dx = _pair(pixel_size_um, "pixel_size_um")
    fy = sfft.fftfreq(int(shape_yx[0]), d=dy)[:, None]
    fx = sfft.fftfreq(int(shape_yx[1]), d=dx)[None, :]
    return fy, fx


def _coords(shape_yx, pixel_size_um) -> tuple[np.ndarray, np.ndarray]:
    """Positions (µm) of the pixel centres, origin at index N//2 (the FFT centre)."""
    dy, dx = _pair(pixel_size_um, "pixel_size_um")
    y = (np.arange(int(shape_yx[0])) - int(shape_yx[0]) // 2) * dy
    x = (np.arange(int(shape_yx[1])) - int(shape_yx[1]) // 2) * dx
    return y[:, None], x[None, :]


def _pupil_radius(objective_na: float, wavelength_um: float) -> float:
    """ρ = NA/λ, the radius of the detection pupil in cycles/µm."""
    return float(objective_na) / float(wavelength_um)


def default_pixel_size_um(objective_na: float = 1.2, wavelength_um: float = 0.532, *, guard: float = GUARD_FRACTION) -> float:
    """Largest camera pixel (sample plane, µm) for a diagonal carrier with a guard band.

    With ρ = NA/λ and a guard g = ``guard``·ρ, the carrier |f| = 3ρ + g clears the
    autocorrelation, and the sideband's far edge on each axis, |f|/√2 + ρ + g, must stay
    inside Nyquist 1/(2p), hence p = 1 / (2 (|f|/√2 + ρ + g)). NA 1.2, λ 0.532 µm → 0.0691 µm.
    """
    if not (objective_na > 0 and wavelength_um > 0):
        raise ValueError(f"objective_na and wavelength_um must be positive, got {objective_na}, {wavelength_um}")
    rho = _pupil_radius(objective_na, wavelength_um)
    g = guard * rho
    fc = 3.0 * rho + g
    return 1.0 / (2.0 * (fc / np.sqrt(2.0) + rho + g))


def check_carrier(carrier_cycles_per_um, *, objective_na: float, wavelength_um: float, pixel_size_um: float) -> None:
    """Raise ``ValueError`` unless the sidebands of the carrier (f_y, f_x) are clean.

    Conditions (ρ = NA/λ, cycles/µm; p = ``pixel_size_um`` the camera pixel in the sample
    plane): |f| ≥ 3ρ so that the sideband disc (radius ρ at f) does not touch the
    autocorrelation disc (radius 2ρ at 0); and max(|f_y|, |f_x|) + ρ ≤ 1/(2p) so that both
    sideband discs lie inside the Nyquist square (no aliasing onto each other or onto the
    autocorrelation).
    """
    f = np.asarray(carrier_cycles_per_um, dtype=np.float64).reshape(-1)
    if f.size != 2 or not np.all(np.isfinite(f)):
        raise ValueError(f"carrier_cycles_per_um must be (f_y, f_x) in cycles/µm, got {carrier_cycles_per_um!r}")
    rho = _pupil_radius(objective_na, wavelength_um)
    nyq = 0.5 / float(pixel_size_um)
    mag = float(np.hypot(*f))
    tol = 1e-9 * rho
    if mag < 3.0 * rho - tol:
        raise ValueError(
            f"carrier |f| = {mag:.4g} cycles/µm is below 3·NA/λ = {3 * rho:.4g}: the sideband (radius NA/λ) "
            f"would overlap the autocorrelation (radius 2·NA/λ)"
        )
    edge = float(np.max(np.abs(f))) + rho
    if edge > nyq + tol:
        raise ValueError(
            f"carrier (f_y, f_x) = {tuple(round(v, 4) for v in f)} cycles/µm with pupil radius NA/λ = {rho:.4g} reaches "
            f"{edge:.4g} cycles/µm, beyond the camera Nyquist 1/(2·{pixel_size_um:.4g} µm) = {nyq:.4g}: "
            f"the sideband would alias; use a smaller pixel_size_um (≤ {default_pixel_size_um(objective_na, wavelength_um, guard=0):.4g} µm "
            f"for a diagonal carrier)"
        )


def default_carrier(objective_na: float, wavelength_um: float, pixel_size_um: float, frame_shape_yx=None, *, guard: float = GUARD_FRACTION) -> tuple[float, float]:
    """Diagonal carrier (f_y, f_x) in cycles/µm, midway in its allowed range.

    The allowed magnitudes along the diagonal are [3ρ + g, √2 (1/(2p) − ρ − g)] (p =
    ``pixel_size_um``); the middle is taken, then, when ``frame_shape_yx`` is given, each
    component is rounded to the nearest frequency of the camera's FFT grid (k / (N p)), so
    the reference is periodic on the frame.

    Raises
    ------
    ValueError
        When the pixel is too coarse for any diagonal carrier (see :func:`check_carrier`).
    """
    rho = _pupil_radius(objective_na, wavelength_um)
    g = guard * rho
    p = float(pixel_size_um)
    nyq = 0.5 / p
    lo, hi = 3.0 * rho + g, np.sqrt(2.0) * (nyq - rho - g)
    if hi < lo:
        lo, hi = 3.0 * rho, np.sqrt(2.0) * (nyq - rho)
    if hi < lo:
        raise ValueError(
            f"pixel_size_um {p:.4g} µm is too coarse for an off-axis hologram at NA {objective_na}, "
            f"λ {wavelength_um} µm: any carrier clear of the autocorrelation would alias; use ≤ "
            f"{default_pixel_size_um(objective_na, wavelength_um, guard=0):.4g} µm"
        )
    comp = 0.5 * (lo + hi) / np.sqrt(2.0)
    f = np.array([comp, comp])
    if frame_shape_yx is not None:
        ny, nx = (int(s) for s in frame_shape_yx)
        f = np.array([np.round(comp * ny * pixel_size_um) / (ny * pixel_size_um), np.round(comp * nx * pixel_size_um) / (nx * pixel_size_um)])
    check_carrier(f, objective_na=objective_na, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um)
    return float(f[0]), float(f[1])


def camera_grid(fov_yx_um, pixel_size_um: float | None = None, *, objective_na: float = 1.2, wavelength_um: float = 0.532) -> tuple[tuple[int, int], float]:
    """Camera frame shape and pixel that tile a field of view exactly.

    Parameters
    ----------
    fov_yx_um : (float, float)
        Field of view (Y, X) in µm (the phantom's lateral extent N·d).
    pixel_size_um : float, optional
        Requested camera pixel in the sample plane; must divide both extents. ``None`` takes
        the largest pixel ≤ :func:`default_pixel_size_um` that divides both.

    Returns
    -------
    ((M_y, M_x), pixel_size_um)
    """
    fy_um, fx_um = _pair(fov_yx_um, "fov_yx_um")
    if pixel_size_um is not None:
        p = float(pixel_size_um)
        if not (np.isfinite(p) and p > 0):
            raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um}")
        my, mx = fy_um / p, fx_um / p
        if abs(my - round(my)) > 1e-6 * my or abs(mx - round(mx)) > 1e-6 * mx:
            raise ValueError(
                f"pixel_size_um {p} µm does not tile the field of view {fy_um:.6g} × {fx_um:.6g} µm "
                f"({my:.4f} × {mx:.4f} pixels); choose it so both are integers"
            )
        return (int(round(my)), int(round(mx))), p
    target = default_pixel_size_um(objective_na, wavelength_um)
    start = int(np.ceil(fx_um / target - 1e-9))
    ratio = fy_um / fx_um
    for mx in range(start, 8 * start + 8):
        my = ratio * mx
        if abs(my - round(my)) <= 1e-6 * max(my, 1.0):
            return (int(round(my)), mx), fx_um / mx
    raise ValueError(f"no camera pixel ≤ {target:.4g} µm tiles the field of view {fy_um:.6g} × {fx_um:.6g} µm; pass pixel_size_um")


def phantom_grid_for_frame(frame_shape_yx, *, voxel_size_um: float = 0.2, pixel_size_um: float | None = None, objective_na: float = 1.2, wavelength_um: float = 0.532) -> tuple[tuple[int, int], float, float]:
    """Phantom lateral grid (N_y, N_x) and voxel that image onto a camera frame of given shape.

    The field of view is M·p (p = ``pixel_size_um``, the camera pixel in the sample plane, or
    :func:`default_pixel_size_um`). With g = gcd(M_y, M_x), lateral grids N = (M/g)·t for an
    integer t share the isotropic voxel p·g/t; t is the smallest value giving a voxel
    ≤ ``voxel_size_um`` (the largest voxel allowed) and FFT-friendly N.

    Returns
    -------
    ((N_y, N_x), lateral voxel_size_um, pixel_size_um)
    """
    my, mx = (int(s) for s in frame_shape_yx)
    if my < 8 or mx < 8:
        raise ValueError(f"frame shape must be at least 8 × 8 pixels, got {frame_shape_yx}")
    if not voxel_size_um > 0:
        raise ValueError(f"voxel_size_um must be positive, got {voxel_size_um}")
    p = default_pixel_size_um(objective_na, wavelength_um) if pixel_size_um is None else float(pixel_size_um)
    g = int(np.gcd(my, mx))
    t = max(1, int(np.ceil(p * g / voxel_size_um - 1e-9)))
    for tt in range(t, 2 * t + 2):
        ny, nx = (my // g) * tt, (mx // g) * tt
        if sfft.next_fast_len(ny) == ny and sfft.next_fast_len(nx) == nx:
            t = tt
            break
    return ((my // g) * t, (mx // g) * t), p * g / t, p


# -- fields -----------------------------------------------------------------------------------
def plane_wave(shape_yx, pixel_size_um, illumination_na, wavelength_um: float) -> np.ndarray:
    """u_in = exp(i 2π (NA_x x + NA_y y)/λ) on a grid (origin at index N//2), complex64."""
    y, x = _coords(shape_yx, pixel_size_um)
    na_x, na_y = (float(v) for v in np.asarray(illumination_na, dtype=np.float64).reshape(2))
    k0 = 2.0 * np.pi / float(wavelength_um)
    return (np.exp(1j * k0 * na_y * y) * np.exp(1j * k0 * na_x * x)).astype(np.complex64)


def _pupil_mask(shape_yx, pixel_size_um, objective_na: float, wavelength_um: float) -> np.ndarray:
    """Objective pupil |k_⊥| ≤ 2π NA/λ on a total field's FFT grid (the forward models' mask)."""

    qy, qx = frequency_grid(shape_yx, pixel_size_um)
    return pupil_mask(qy, qx, 0.0, 0.0, wavelength_um, objective_na)


def pupil_filter(field, pixel_size_um, objective_na: float, wavelength_um: float) -> np.ndarray:
    """Keep the spatial frequencies |f| ≤ NA/λ of ``field`` (..., Y, X); complex64."""
    field = np.asarray(field, dtype=np.complex64)
    spec = sfft.fft2(field, workers=fft_workers())
    spec *= _pupil_mask(field.shape[-2:], pixel_size_um, objective_na, wavelength_um)
    return sfft.ifft2(spec, workers=fft_workers()).astype(np.complex64, copy=False)


def fourier_shift(field, shift_yx_um, pixel_size_um) -> np.ndarray:
    """g(r) = field(r − s) by the Fourier shift theorem, G(f) = F(f)·exp(−i 2π f·s) (periodic)."""
    field = np.asarray(field, dtype=np.complex64)
    sy, sx = (float(v) for v in np.asarray(shift_yx_um, dtype=np.float64).reshape(2))
    fy, fx = _freqs(field.shape[-2:], pixel_size_um)
    ramp = (np.exp(-2j * np.pi * fy * sy) * np.exp(-2j * np.pi * fx * sx)).astype(np.complex64)
    return sfft.ifft2(sfft.fft2(field, workers=fft_workers()) * ramp, workers=fft_workers()).astype(np.complex64, copy=False)


def _resample_spectrum(spec: np.ndarray, shape_yx) -> np.ndarray:
    """Zero-padding (or cropping) of FFT-layout spectra (..., N_y, N_x) onto (M_y, M_x).

    Both grids keep their origin at index N//2 (M//2): for odd sizes these sit at different
    fractions of the field of view, (N//2)/N ≠ (M//2)/M, so the spectrum first gets the phase
    ramp exp(i 2π k ((N//2)/N − (M//2)/M)) (k the integer frequency index) that moves the
    samples by that fraction.
    """
    ny, nx = spec.shape[-2:]
    my, mx = (int(s) for s in shape_yx)
    for axis, (n, m) in ((-2, (ny, my)), (-1, (nx, mx))):
        frac = (n // 2) / n - (m // 2) / m
        if frac != 0.0:
            k = sfft.fftfreq(n) * n
            ramp = np.exp(2j * np.pi * k * frac).astype(np.complex64)
            spec = spec * (ramp[:, None] if axis == -2 else ramp[None, :])
    s = sfft.fftshift(spec, axes=(-2, -1))
    out = np.zeros(spec.shape[:-2] + (my, mx), dtype=spec.dtype)
    # source and target windows aligned on the zero frequency (index N//2 after fftshift)
    cy, cx = min(ny, my), min(nx, mx)
    sy0, sx0 = ny // 2 - cy // 2, nx // 2 - cx // 2
    ty0, tx0 = my // 2 - cy // 2, mx // 2 - cx // 2
    out[..., ty0 : ty0 + cy, tx0 : tx0 + cx] = s[..., sy0 : sy0 + cy, sx0 : sx0 + cx]
    return sfft.ifftshift(out, axes=(-2, -1))


def fourier_resample(field, shape_yx) -> np.ndarray:
    """Band-limited resampling of periodic fields (..., N_y, N_x) onto (M_y, M_x) samples.

    The spectrum is zero-padded (or cropped) around the zero frequency and the amplitude kept
    (factor M_y M_x / (N_y N_x)); exact for fields whose spectrum lies inside both grids'
    Nyquist bands, as pupil-limited fields do. Sample N//2 of the input and sample M//2 of
    the output are the same point (the origin of :mod:`holo.conventions` grids).
    """
    field = np.asarray(field, dtype=np.complex64)
    ny, nx = field.shape[-2:]
    my, mx = (int(s) for s in shape_yx)
    spec = sfft.fft2(field, workers=fft_workers())
    out = sfft.ifft2(_resample_spectrum(spec, (my, mx)), workers=fft_workers())
    out *= (my * mx) / (ny * nx)
    return out.astype(np.complex64, copy=False)


def reference_wave(shape_yx, pixel_size_um: float, carrier_cycles_per_um, amplitude: float = 1.0) -> np.ndarray:
    """Off-axis reference r = a·exp(i 2π (f_y y + f_x x)) with carrier (f_y, f_x) in cycles/µm."""
    y, x = _coords(shape_yx, pixel_size_um)
    f_y, f_x = (float(v) for v in np.asarray(carrier_cycles_per_um, dtype=np.float64).reshape(2))
    r = float(amplitude) * np.exp(2j * np.pi * f_y * y) * np.exp(2j * np.pi * f_x * x)
    return r.astype(np.complex64)


def hologram_intensity(field, reference) -> np.ndarray:
    """I = |u + r|² (float32), the interference of the object field and the reference."""
    s = np.asarray(field, dtype=np.complex64) + np.asarray(reference, dtype=np.complex64)
    return (s.real * s.real + s.imag * s.imag).astype(np.float32, copy=False)


def parasitic_transmittance(shape_yx, pixel_size_um, amplitude: float, rng, *, objective_na: float = 1.2, wavelength_um: float = 0.532, n_dust: int = 3) -> np.ndarray:
    """Weak fixed coherent-noise pattern t = 1 + ε (½·e^{i(2π f_e·r + φ)} + Σ_k d_k(r)).

    The tilted term is a parasitic reference-like copy (an etalon reflection) with |f_e| in
    [0.05, 0.25]·NA/λ, on the grid's frequencies; each dust term
    d_k = c_k·exp(−ρ_k²/(2w_k²))·exp(iπ κ_k ρ_k²) is a Fresnel ring pattern of a particle
    out of focus (ρ_k the periodic distance to its centre, |c_k| = 1, width w_k 8–20 % of the
    field, chirp κ_k such that the local ring frequency κρ reaches 0.25·NA/λ at ρ = 2w). The
    pattern is periodic and band-limited well inside the pupil, complex64.
    """
    eps = float(amplitude)
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"fringes amplitude must be ≥ 0, got {amplitude}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    ny, nx = (int(s) for s in shape_yx)
    dy, dx = _pair(pixel_size_um, "pixel_size_um")
    ly, lx = ny * dy, nx * dx
    rho = _pupil_radius(objective_na, wavelength_um)
    band = PARASITIC_BAND_FRACTION * rho
    y, x = _coords(shape_yx, (dy, dx))
    # etalon-like tilted copy, frequency snapped to the grid so the pattern stays periodic
    fe = rng.uniform(0.05, 1.0) * band
    ang = rng.uniform(0, 2 * np.pi)
    fex = np.round(fe * np.cos(ang) * lx) / lx
    fey = np.round(fe * np.sin(ang) * ly) / ly
    pattern = 0.5 * np.exp(1j * (2 * np.pi * (fex * x + fey * y) + rng.uniform(0, 2 * np.pi)))
    for _ in range(int(n_dust)):
        cy, cx = rng.uniform(-ly / 2, ly / 2), rng.uniform(-lx / 2, lx / 2)
        w = rng.uniform(0.08, 0.2) * min(ly, lx)
        kappa = band / (2.0 * w)
        ry = (y - cy + ly / 2) % ly - ly / 2
        rx = (x - cx + lx / 2) % lx - lx / 2
        r2 = ry * ry + rx * rx
        pattern = pattern + np.exp(1j * rng.uniform(0, 2 * np.pi)) * np.exp(-r2 / (2 * w * w) + 1j * np.pi * kappa * r2)
    return (1.0 + eps * pattern).astype(np.complex64)


def drift_shifts(n_frames: int, drift_um: float, rng) -> np.ndarray:
    """Lateral sample positions (A, 2) as (s_y, s_x) µm: a random walk starting at 0.

    Each step between consecutive frames is Gaussian with RMS length ``drift_um``
    (σ = drift_um/√2 per axis).
    """
    if not (np.isfinite(drift_um) and drift_um >= 0):
        raise ValueError(f"drift_um must be ≥ 0, got {drift_um}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    steps = rng.normal(0.0, float(drift_um) / np.sqrt(2.0), size=(int(n_frames), 2))
    steps[0] = 0.0
    return np.cumsum(steps, axis=0)


# -- the acquisition ---------------------------------------------------------------------------
_FORWARD_MODELS = {"bpm": bpm_fields, "born": born_fields, "rytov": rytov_fields}


def _forward(name: str) -> Callable:
    """The forward model ``name`` of :mod:`holo.reconstruction.forward`."""
    return _FORWARD_MODELS[name]


def simulate_acquisition(
    phantom, *, geometry: str = "illumination-scan", n_angles: int | None = None, condenser_na: float = 1.1,
    objective_na: float = 1.2, wavelength_um: float = 0.532, pixel_size_um: float | None = None, carrier_cycles_per_um=None,
    reference_ratio: float = 1.0, camera: CameraModel | None = None, drift_um: float = 0.0, defocus_um: float = 0.0,
    fringes: float = 0.0, pattern: str = "spiral", rotation_span_rad: float = np.pi, rotation_axis: str = "y",
    forward: str = "bpm", seed: int = 0, progress: Callable | None = None,
) -> Acquisition:
    """Simulate the raw holograms and backgrounds of a phantom, as an instrument would record them.

    Parameters
    ----------
    phantom : Phantom
        Object with ``ri`` (Z, Y, X) absolute RI, ``voxel_size_um`` (dz, dy, dx),
        ``medium_index`` and ``ground_truth()`` (see :mod:`holo.twin.phantoms`).
    geometry : {"illumination-scan", "sample-rotation"}
    n_angles : int, optional
        Frames; 49 for illumination scan, 60 for sample rotation when ``None``.
    condenser_na, objective_na : float
        Largest illumination NA (illumination scan) < detection NA < medium index.
    wavelength_um : float
        Vacuum wavelength λ.
    pixel_size_um : float, optional
        Camera pixel in the sample plane (the acquisition's ``pixel_size_um``); must tile the
        phantom's field of view (:func:`camera_grid`). ``None``: the largest the optics allow.
    carrier_cycles_per_um : (f_y, f_x) cycles/µm, optional
        Reference carrier; ``None``: :func:`default_carrier` on the camera grid. Checked with
        :func:`check_carrier`.
    reference_ratio : float
        Reference amplitude over illumination amplitude, a = |r|/|u_in|.
    camera : CameraModel, optional
        Sensor; ``CameraModel()`` when ``None``.
    drift_um, defocus_um : float
        RMS lateral sample displacement between consecutive frames (random walk), µm; camera
        focal plane offset Δz (µm, +z downstream): the field is propagated by Δz.
    fringes : float
        Amplitude ε of the fixed parasitic pattern (:func:`parasitic_transmittance`), 0 = off.
    pattern : {"spiral", "rings"}
        Illumination-scan pattern (:func:`holo.twin.illumination.illumination_pattern`).
    rotation_span_rad, rotation_axis :
        Sample-rotation views (:func:`holo.twin.illumination.rotation_angles`).
    forward : {"bpm", "born", "rytov"}
        Forward model of :mod:`holo.reconstruction.forward` (multiple scattering with "bpm").
    seed : int
        Seeds drift, parasitic pattern and camera noise; equal seeds give equal frames.
    progress : callable, optional
        ``progress(done, total, note=...)``.

    Returns
    -------
    Acquisition
        ``holograms`` and ``background`` (A, M_y, M_x) in the camera's dtype, the snapped
        ``illumination_na`` (or ``angles``), simulation parameters in ``metadata`` (among them
        ``carrier_cycles_per_um`` = [f_y, f_x]) and ``ground_truth = phantom.ground_truth()``.

    Raises
    ------
    ValueError
        Inconsistent optics (NA order, carrier, pixel, phantom sampling) or arguments.
    """
    ri, vs, n_m = _checked_phantom(phantom, geometry=geometry, forward=forward)
    optics = {"objective_na": float(objective_na), "wavelength_um": float(wavelength_um), "medium_index": n_m}
    _check_optics(vs, geometry=geometry, condenser_na=condenser_na, reference_ratio=reference_ratio, defocus_um=defocus_um, **optics)
    camera = CameraModel() if camera is None else camera
    n_angles = int((49 if geometry == "illumination-scan" else 60) if n_angles is None else n_angles)
    # detection geometry (validated before the expensive forward model)
    shape_c, pix, carrier = _detection(ri.shape[1:], vs, pixel_size_um, carrier_cycles_per_um, objective_na=optics["objective_na"],
                                       wavelength_um=optics["wavelength_um"])
    na, angles = _views(geometry, n_angles, ri.shape[1:], vs, condenser_na=condenser_na, pattern=pattern,
                        rotation_span_rad=rotation_span_rad, **optics)
    fields = _object_fields(ri, vs, forward, na, angles, rotation_axis=rotation_axis, progress=progress, **optics)
    holograms, background, shifts = _record(fields, na, vs, shape_c, pix, carrier, optics, reference_ratio=reference_ratio,
                                            camera=camera, drift_um=drift_um, defocus_um=defocus_um, fringes=fringes,
                                            seed=seed, progress=progress)
    metadata = _metadata(phantom, ri, vs, carrier, camera, shifts, geometry=geometry, forward=forward, seed=seed,
                         reference_ratio=reference_ratio, drift_um=drift_um, defocus_um=defocus_um, fringes=fringes,
                         condenser_na=condenser_na, pattern=pattern, rotation_span_rad=rotation_span_rad)
    return Acquisition(
        geometry=geometry, pixel_size_um=pix, holograms=holograms, background=background, illumination_na=na,
        angles=angles, rotation_axis=rotation_axis, metadata=metadata, ground_truth=phantom.ground_truth(), **optics,
    )


def _checked_phantom(phantom, *, geometry: str, forward: str) -> tuple[np.ndarray, tuple[float, float, float], float]:
    """(ri float32 (Z, Y, X), voxel_size_um (dz, dy, dx), medium_index) of a phantom, with the
    geometry and forward-model names checked."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    if forward not in _FORWARD_MODELS:
        raise ValueError(f"forward must be 'bpm', 'born' or 'rytov', got {forward!r}")
    ri = np.asarray(phantom.ri, dtype=np.float32)
    if ri.ndim != 3:
        raise ValueError(f"phantom.ri must be (Z, Y, X), got shape {ri.shape}")
    vs = tuple(float(v) for v in phantom.voxel_size_um)
    return ri, vs, float(phantom.medium_index)


def _check_optics(voxel_size_um, *, geometry: str, condenser_na: float, objective_na: float, wavelength_um: float,
                  medium_index: float, reference_ratio: float, defocus_um: float) -> None:
    """Raise ``ValueError`` unless NA_condenser < NA_objective < n_m, λ is a vacuum wavelength
    in µm, a > 0, Δz is finite and the phantom's lateral voxel d ≤ λ/(2 NA) samples the pupil."""
    if not (0 < objective_na < medium_index):
        raise ValueError(f"objective_na must be in (0, medium index {medium_index}), got {objective_na}")
    if not (0.1 < wavelength_um < 20):
        raise ValueError(f"wavelength_um must be a vacuum wavelength in µm, got {wavelength_um}")
    if geometry == "illumination-scan" and not (0 < condenser_na < objective_na):
        raise ValueError(
            f"condenser_na must be in (0, objective_na={objective_na}) so the unscattered beam stays in the pupil, got {condenser_na}"
        )
    if not (np.isfinite(reference_ratio) and reference_ratio > 0):
        raise ValueError(f"reference_ratio must be positive, got {reference_ratio}")
    if not np.isfinite(defocus_um):
        raise ValueError(f"defocus_um must be finite, got {defocus_um}")
    rho = _pupil_radius(objective_na, wavelength_um)
    d = max(voxel_size_um[1], voxel_size_um[2])
    if d > 0.5 / rho:
        raise ValueError(f"phantom lateral voxel {d:.4g} µm is too coarse to sample the pupil: needs ≤ λ/(2·NA) = {0.5 / rho:.4g} µm")


def _detection(shape_yx, voxel_size_um, pixel_size_um, carrier_cycles_per_um, *, objective_na: float, wavelength_um: float):
    """Camera frame (M_y, M_x), pixel p and carrier (f_y, f_x) for the phantom's field of view
    N·d: the carrier is :func:`default_carrier` when ``None``, else checked."""
    fov = (shape_yx[0] * voxel_size_um[1], shape_yx[1] * voxel_size_um[2])
    shape_c, pix = camera_grid(fov, pixel_size_um, objective_na=objective_na, wavelength_um=wavelength_um)
    if carrier_cycles_per_um is None:
        carrier_cycles_per_um = default_carrier(objective_na, wavelength_um, pix, shape_c)
    else:
        check_carrier(carrier_cycles_per_um, objective_na=objective_na, wavelength_um=wavelength_um, pixel_size_um=pix)
    carrier = tuple(float(v) for v in np.asarray(carrier_cycles_per_um, dtype=np.float64).reshape(2))
    return shape_c, pix, carrier


def _views(geometry: str, n_angles: int, shape_yx, voxel_size_um, *, condenser_na: float, pattern: str, medium_index: float,
           objective_na: float, wavelength_um: float, rotation_span_rad: float):
    """(illumination_na (A, 2) snapped to the phantom grid, None) for an illumination scan,
    (None, angles (A,)) for sample rotation."""
    if geometry != "illumination-scan":
        return None, rotation_angles(n_angles, rotation_span_rad)
    vox_yx = (voxel_size_um[1], voxel_size_um[2])
    na = illumination_pattern(n_angles, condenser_na, pattern, medium_index)
    na = np.asarray(snap_illumination_na(na, shape_yx, vox_yx, wavelength_um), dtype=np.float64)
    if np.hypot(na[:, 0], na[:, 1]).max() >= objective_na:
        fov = (shape_yx[0] * vox_yx[0], shape_yx[1] * vox_yx[1])
        raise ValueError(
            f"condenser_na {condenser_na} snapped to the phantom grid (NA step λ/FOV = {wavelength_um / min(fov):.3g}) "
            f"reaches the objective NA {objective_na}: lower condenser_na or enlarge the phantom's field of view"
        )
    return na, None


def _object_fields(ri, voxel_size_um, forward: str, na, angles, *, medium_index: float, objective_na: float, wavelength_um: float,
                   rotation_axis: str, progress: Callable | None) -> np.ndarray:
    """u/u0 (A, N_y, N_x) in the focal plane from the forward model; its progress counts the
    first A of the 2A steps of the acquisition."""
    n_angles = len(na) if na is not None else len(angles)

    def fwd_progress(*args, **kwargs):
        if progress is not None and args:
            progress(min(int(args[0]), n_angles), 2 * n_angles, note="forward model")

    fields = _forward(forward)(
        ri, voxel_size_um, wavelength_um=wavelength_um, medium_index=medium_index, objective_na=objective_na,
        illumination_na=na, angles=angles, rotation_axis=rotation_axis, progress=fwd_progress,
    )
    fields = np.asarray(fields)
    if fields.shape != (n_angles, *ri.shape[1:]):
        raise ValueError(f"forward model returned shape {fields.shape}, expected {(n_angles, *ri.shape[1:])}")
    return fields


def _record(fields, na, voxel_size_um, shape_c, pixel_size_um: float, carrier, optics: dict, *, reference_ratio: float,
            camera: CameraModel, drift_um: float, defocus_um: float, fringes: float, seed: int, progress: Callable | None):
    """Holograms and backgrounds (A, M_y, M_x) of the fields u/u0, with the drift shifts (A, 2).

    The seed spawns four streams: drift, parasitic pattern, sample-frame and background-frame
    camera noise. Each frame is :func:`_camera_pair` then :func:`holo.twin.camera.expose` of
    I·1/(1 + a²) (sample-free hologram mean → 1)."""
    n_angles, shape_p = fields.shape[0], fields.shape[1:]
    vox_yx = (voxel_size_um[1], voxel_size_um[2])
    rng_drift, rng_fringe, rng_sample, rng_bg = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4))
    shifts = drift_shifts(n_angles, drift_um, rng_drift) if drift_um > 0 else np.zeros((n_angles, 2))
    t = parasitic_transmittance(shape_p, vox_yx, fringes, rng_fringe, objective_na=optics["objective_na"], wavelength_um=optics["wavelength_um"]) if fringes > 0 else None
    ref = reference_wave(shape_c, pixel_size_um, carrier, reference_ratio)
    pupil = _pupil_mask(shape_p, vox_yx, optics["objective_na"], optics["wavelength_um"])
    norm = np.float32(1.0 / (1.0 + reference_ratio**2))  # sample-free hologram mean → 1
    holograms = np.empty((n_angles, *shape_c), dtype=camera.dtype)
    background = np.empty_like(holograms)
    for a in range(n_angles):
        uu0 = fourier_shift(fields[a].astype(np.complex64), shifts[a], vox_yx) if drift_um > 0 else fields[a].astype(np.complex64)
        u_in = plane_wave(shape_p, vox_yx, na[a], optics["wavelength_um"]) if na is not None else np.ones(shape_p, np.complex64)
        cam = _camera_pair(uu0, u_in, vox_yx, shape_c, t, pupil, defocus_um=defocus_um, wavelength_um=optics["wavelength_um"],
                           medium_index=optics["medium_index"])
        holograms[a] = expose(hologram_intensity(cam[0], ref) * norm, camera, rng_sample)
        background[a] = expose(hologram_intensity(cam[1], ref) * norm, camera, rng_bg)
        if progress is not None:
            progress(n_angles + a + 1, 2 * n_angles, note="holograms")
    return holograms, background, shifts


def _camera_pair(uu0, u_in, voxel_yx, shape_c, transmittance, pupil, *, defocus_um: float, wavelength_um: float, medium_index: float) -> np.ndarray:
    """The sample and sample-free fields (2, M_y, M_x) on the camera grid:
    P{ t · D_Δz{ (u/u0)·u_in, u_in } } resampled from the phantom grid (N_y, N_x) onto
    the camera grid with the amplitude kept (factor M_y M_x / (N_y N_x)); complex64."""
    pair = np.stack([uu0 * u_in, u_in])
    if defocus_um != 0:
        pair = angular_spectrum_propagate(pair, defocus_um, voxel_yx, wavelength_um, medium_index)
    if transmittance is not None:
        pair *= transmittance
    spec = sfft.fft2(pair, workers=fft_workers()) * pupil
    cam = sfft.ifft2(_resample_spectrum(spec, shape_c), workers=fft_workers()).astype(np.complex64, copy=False)
    cam *= np.float32((shape_c[0] * shape_c[1]) / (uu0.shape[-2] * uu0.shape[-1]))
    return cam


def _metadata(phantom, ri, voxel_size_um, carrier, camera: CameraModel, shifts, *, geometry: str, forward: str, seed: int,
              reference_ratio: float, drift_um: float, defocus_um: float, fringes: float, condenser_na: float, pattern: str,
              rotation_span_rad: float) -> dict:
    """Simulation parameters recorded in ``Acquisition.metadata``."""
    metadata = {
        "simulated": True,
        "simulator": "holo.twin.acquire.simulate_acquisition",
        "software_version": software_version(),
        "forward_model": forward,
        "seed": int(seed),
        "phantom_kind": str(getattr(phantom, "kind", "") or ""),
        "phantom_shape_zyx": [int(s) for s in ri.shape],
        "phantom_voxel_size_um": [float(v) for v in voxel_size_um],
        "carrier_cycles_per_um": [carrier[0], carrier[1]],
        "reference_ratio": float(reference_ratio),
        "camera": json.dumps(camera.to_dict()),
        "drift_um": float(drift_um),
        "drift_shifts_yx_um": json.dumps(np.round(shifts, 6).tolist()),
        "defocus_um": float(defocus_um),
        "fringes": float(fringes),
    }
    if geometry == "illumination-scan":
        metadata.update({"condenser_na": float(condenser_na), "illumination_pattern": pattern})
    else:
        metadata["rotation_span_rad"] = float(rotation_span_rad)
    return metadata
