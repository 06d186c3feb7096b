"""Residual tilt and offset removal and amplitude normalisation of u/u0.

After division by the background field, u/u0 should be 1 outside the sample. Drift between the
sample and background exposures leaves a phase plane a + b·x + c·y (reference tilt, path
length change), slow curvature (defocus of the reference) and an amplitude scale (power
change). They are fitted on the *background* pixels only:

1. mask the object: pixels whose smoothed phase residual φ − p(x, y) or log-amplitude ln|u|
   deviates from its background level by more than ``threshold_sigma`` times the background's
   own spread (median and 1.4826·MAD over the border ring, then over the background of the
   previous round; floored at 0.05 rad / 0.05), holes filled, regions under
   ``min_object_px`` pixels given back to the background, then dilated by a square of
   half-width ``dilate_px`` pixels to cover the diffraction ringing around the object;
2. fit the polynomial p of degree 1 (plane) or 2 by least squares on the unmasked pixels
   (normal equations, coordinates scaled to [−1, 1]);
3. repeat from 1 (``iterations``), starting from a plane fitted on the border ring, so that
   neither a strong tilt nor a cell covering most of the frame biases the first mask (the thresholds also keep at least a quarter of the pixels
   as background).

The correction multiplies the complex field by exp(−i·p)/s, with s the median amplitude over
the background pixels, and subtracts p from the unwrapped phase, so the two stay consistent:
angle(u) = W(φ_u).
"""

from __future__ import annotations

import numpy as np

__all__ = ["object_mask", "fit_polynomial", "remove_background", "border_ring"]

_MIN_PHASE_THRESHOLD_RAD = 0.05
_MIN_LOGAMP_THRESHOLD = 0.05


#: σ in pixels of the Gaussian that smooths residuals before objects are found.
SMOOTH_PX = 2.0


def object_mask(
    phase_residual,
    log_amplitude,
    *,
    threshold_sigma: float = 5.0,
    dilate_px: int = 3,
    min_background_fraction: float = 0.25,
    reference=None,
    smooth_px: float = SMOOTH_PX,
    min_object_px: int = 256,
    log_amplitude_smoothed: bool = False,
) -> np.ndarray:
    """Object pixels of each frame, bool (A, Y, X).

    Parameters
    ----------
    phase_residual : (A, Y, X) float
        Unwrapped phase minus the current background fit, radians (finite).
    log_amplitude : (A, Y, X) float
        ln|u/u0| (finite).
    threshold_sigma : float
        k: a pixel belongs to the object when the residual smoothed by a Gaussian of
        ``smooth_px`` deviates from its background level by more than max(k σ, floor)
        (φ: 0.05 rad floor; ln|u|: 0.05), level = median and σ = 1.4826 · MAD of the smoothed
        residual over the ``reference`` pixels. The σ is that of the background itself
        (speckle, parasitic fringes, shot noise, all spatially correlated after the sideband
        filter), not of the pixel-to-pixel noise, which a band-limited field makes far smaller.
    dilate_px : int
        Half-width (pixels) of the square the mask is dilated by (after filling holes: a
        region enclosed by the object, e.g. a nucleus at the background's phase, is object).
    min_background_fraction : float
        The thresholds are raised, if needed, so that at least this fraction of the pixels
        (before dilation) stays background: a poor first fit cannot mask a whole frame.
    reference : (A, Y, X) bool, optional
        Pixels believed to be background, for the level and σ (default: the frame's border
        ring, :func:`border_ring`; a cell covering more than half of the frame would pull a
        whole-frame median onto the object).
    smooth_px : float
        σ of the Gaussian smoothing, pixels (0: none).
    log_amplitude_smoothed : bool
        ``log_amplitude`` is already smoothed by ``smooth_px`` (an iterating caller smooths it
        once, since it does not change between rounds).
    min_object_px : int
        Connected regions of fewer pixels are background fluctuations, not objects: left in
        the fit (excluding only the highest lumps of a correlated background would bias it).
        256 px is a 16 × 16 px region: a lump of the band-limited background spans a few
        impulse-response widths of the sideband filter, a cell sampled at the band's Nyquist
        rate covers far more (on the measured HL60 hologram: 64 px left a 0.05 rad tilt,
        256 px 0.008 rad).
    """
    from scipy import ndimage

    phi = np.asarray(phase_residual, np.float32)
    la = np.asarray(log_amplitude, np.float32)
    if phi.shape != la.shape or phi.ndim != 3:
        raise ValueError(f"phase_residual and log_amplitude must both be (A, Y, X), got {phi.shape} and {la.shape}")
    if threshold_sigma <= 0:
        raise ValueError(f"threshold_sigma must be positive, got {threshold_sigma}")
    phi = _smooth_frames(phi, smooth_px)
    if not log_amplitude_smoothed:
        la = _smooth_frames(la, smooth_px)
    ref = np.broadcast_to(border_ring(phi.shape[1:]), phi.shape) if reference is None else np.asarray(reference, bool)
    mask = np.empty(phi.shape, bool)
    for i in range(phi.shape[0]):
        sel = ref[i] if ref[i].sum() >= 16 else np.ones(ref[i].shape, bool)
        dp = _deviation(phi[i], sel, threshold_sigma, _MIN_PHASE_THRESHOLD_RAD, min_background_fraction)
        da = _deviation(la[i], sel, threshold_sigma, _MIN_LOGAMP_THRESHOLD, min_background_fraction)
        mask[i] = _without_specks(ndimage.binary_fill_holes(dp | da), min_object_px)
    if dilate_px > 0:
        size = 2 * int(dilate_px) + 1
        m8 = ndimage.maximum_filter1d(mask.view(np.uint8), size, axis=-1, mode="nearest")
        mask = ndimage.maximum_filter1d(m8, size, axis=-2, mode="nearest").view(bool)
    return mask


def _without_specks(mask: np.ndarray, min_px: int) -> np.ndarray:
    """``mask`` without its connected regions (8-connectivity) of fewer than ``min_px`` pixels."""
    from scipy import ndimage

    if min_px <= 1 or not mask.any():
        return mask
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(lab.reshape(-1), minlength=n + 1)
    big = sizes >= min_px
    big[0] = False
    return big[lab]


def _deviation(x: np.ndarray, reference: np.ndarray, k: float, floor: float, min_background_fraction: float) -> np.ndarray:
    """|x − level| > max(k σ, floor, the (min_background_fraction) quantile of |x − level|),
    level and σ (1.4826 MAD) from the ``reference`` pixels of the (Y, X) frame x."""
    vals = x[reference]
    step = max(1, vals.size // 8192)
    level = np.median(vals[::step])
    sigma = 1.4826 * np.median(np.abs(vals[::step] - level))
    d = np.abs(x - level)
    q = np.percentile(d.reshape(-1)[:: max(1, d.size // 8192)], 100.0 * min_background_fraction)
    with np.errstate(invalid="ignore"):
        return ~(d <= max(k * sigma, floor, q))


def border_ring(shape_yx: tuple[int, int]) -> np.ndarray:
    """Bool (Y, X) mask of the frame's outer ring, max(2, min(Y, X) // 16) pixels wide."""
    ny, nx = shape_yx
    w = max(2, min(ny, nx) // 16)
    ring = np.ones((ny, nx), bool)
    ring[w : ny - w, w : nx - w] = False
    return ring


def _design(shape_yx: tuple[int, int], degree: int) -> np.ndarray:
    ny, nx = shape_yx
    y = np.linspace(-1.0, 1.0, ny)[:, None] * np.ones((1, nx))
    x = np.ones((ny, 1)) * np.linspace(-1.0, 1.0, nx)[None, :]
    cols = [np.ones_like(x), x, y]
    if degree == 2:
        cols += [x * x, x * y, y * y]
    return np.stack([c.reshape(-1) for c in cols], axis=1)  # (P, n_terms)


def fit_polynomial(values, keep, degree: int = 1) -> np.ndarray:
    """Least-squares polynomial surface of each frame fitted on the ``keep`` pixels.

    Minimises Σ_{keep} (v − Σ_t a_t B_t)² with B = (1, x, y[, x², xy, y²]) on coordinates
    scaled to [−1, 1] (normal equations, batched over frames).

    Parameters
    ----------
    values : (A, Y, X) float
    keep : (A, Y, X) bool
        Pixels used in the fit (non-finite values are dropped too).
    degree : {1, 2}

    Returns
    -------
    (A, Y, X) float32 fitted surfaces (zero for a frame with too few usable pixels).
    """
    if degree not in (1, 2):
        raise ValueError(f"degree must be 1 or 2, got {degree}")
    v = np.asarray(values, np.float64)
    if v.ndim != 3:
        raise ValueError(f"values must be (A, Y, X), got shape {v.shape}")
    a, ny, nx = v.shape
    basis = _design((ny, nx), degree)
    w = (np.asarray(keep, bool) & np.isfinite(v)).reshape(a, -1).astype(np.float64)
    vv = np.where(w > 0, v.reshape(a, -1), 0.0)
    nt = basis.shape[1]
    # Gram matrices Σ_p w_p B_i B_j of all frames as one product with the basis products.
    gram = (w @ (basis[:, :, None] * basis[:, None, :]).reshape(-1, nt * nt)).reshape(a, nt, nt)
    rhs = (vv * w) @ basis
    coef = np.zeros((a, nt))
    ok = w.sum(axis=1) >= 4 * nt
    if ok.any():
        gram_ok = gram[ok] + 1e-9 * np.eye(nt)[None]
        coef[ok] = np.linalg.solve(gram_ok, rhs[ok][..., None])[..., 0]
    return (coef @ basis.T).reshape(a, ny, nx).astype(np.float32)


def remove_background(
    fields,
    unwrapped,
    *,
    degree: int = 1,
    iterations: int = 3,
    threshold_sigma: float = 5.0,
    dilate_px: int = 3,
    normalize_amplitude: bool = True,
    min_tilt_fraction: float = 0.10,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the fitted phase polynomial and the amplitude scale (module docstring).

    Parameters
    ----------
    fields : (A, Y, X) complex
        u/u0 before correction.
    unwrapped : (A, Y, X) float
        Its unwrapped phase.
    degree : {1, 2}
        Polynomial degree of the phase background (1: offset + tilt).
    iterations : int
        Mask/fit rounds (≥ 1).
    threshold_sigma, dilate_px : see :func:`object_mask`.
    normalize_amplitude : bool
        Divide by the median background amplitude.
    min_tilt_fraction : float
        Frames with less than this fraction of background pixels get only their offset
        removed (a plane fitted on so few pixels is ill-conditioned).

    Returns
    -------
    fields : (A, Y, X) complex64, corrected
    unwrapped : (A, Y, X) float32, corrected
    info : dict with ``mask`` (bool (A, Y, X), object pixels), ``offset_rad`` (A,),
        ``slope_rad_per_px`` (A, 2) as (d/dy, d/dx) of the removed surface at the frame
        centre, ``amplitude_scale`` (A,) and ``background_fraction`` (A,).
    """
    u = np.asarray(fields)
    if u.ndim != 3 or not np.iscomplexobj(u):
        raise ValueError(f"fields must be complex (A, Y, X), got {u.dtype} {u.shape}")
    phi = np.asarray(unwrapped, np.float32)
    if phi.shape != u.shape:
        raise ValueError(f"unwrapped shape {phi.shape} differs from fields {u.shape}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    opts = dict(
        degree=degree, iterations=iterations, threshold_sigma=threshold_sigma, dilate_px=dilate_px,
        normalize_amplitude=normalize_amplitude, min_tilt_fraction=min_tilt_fraction,
    )
    finite = np.isfinite(u).all(axis=(1, 2)) & np.isfinite(phi).all(axis=(1, 2))
    if not finite.all():
        return _remove_background_of_finite_frames(u, phi, finite, opts)
    a, ny, nx = u.shape
    logamp = np.log(np.maximum(np.abs(u), 1e-30)).astype(np.float32)
    fit, mask = _fit_phase_background(phi, logamp, degree, iterations, threshold_sigma, dilate_px)
    keep = ~mask & np.isfinite(logamp)
    # A tilt fitted on a few background pixels in the corners of a crowded frame is poorly
    # conditioned (a slope error × the frame size can reach radians): below
    # `min_tilt_fraction` of background pixels only the offset is removed.
    frac = keep.reshape(a, -1).mean(axis=1)
    few = frac < min_tilt_fraction
    for i in np.flatnonzero(few):
        sel = phi[i][keep[i]]
        fit[i] = np.median(sel) if sel.size else np.median(phi[i])
    scale = _amplitude_scale(u, keep) if normalize_amplitude else np.ones(a)
    corr = np.exp(-1j * fit.astype(np.float32)) / scale.astype(np.float32)[:, None, None]
    out = (u * corr).astype(np.complex64, copy=False)
    phi_out = (phi - fit).astype(np.float32)
    info = {
        "mask": mask,
        "offset_rad": fit[:, ny // 2, nx // 2].astype(np.float64),
        "slope_rad_per_px": _centre_slope(fit),
        "amplitude_scale": scale,
        "background_fraction": frac,
        "offset_only": few,
    }
    return out, phi_out, info


def _remove_background_of_finite_frames(u, phi, finite, opts: dict):
    """:func:`remove_background` of the all-finite frames; frames with non-finite values are
    left as they are (QC rejects them), with NaN fit values and an all-object mask."""
    a = u.shape[0]
    out = np.array(u, dtype=np.complex64)
    phi_out = np.array(phi, dtype=np.float32)
    info = {
        "mask": np.ones(u.shape, bool),
        "offset_rad": np.full(a, np.nan),
        "slope_rad_per_px": np.full((a, 2), np.nan),
        "amplitude_scale": np.full(a, np.nan),
        "background_fraction": np.zeros(a),
        "offset_only": np.zeros(a, bool),
    }
    if finite.any():
        fo, po, io = remove_background(u[finite], phi[finite], **opts)
        out[finite], phi_out[finite] = fo, po
        for key, val in io.items():
            info[key][finite] = val
    return out, phi_out, info


def _smooth_frames(a: np.ndarray, smooth_px: float) -> np.ndarray:
    """Each (Y, X) frame of ``a`` smoothed by a Gaussian of σ = ``smooth_px`` (unchanged for 0)."""
    from scipy import ndimage

    return ndimage.gaussian_filter(a, (0, smooth_px, smooth_px), mode="nearest") if smooth_px > 0 else a


def _fit_phase_background(phi, logamp, degree: int, iterations: int, threshold_sigma: float, dilate_px: int):
    """Steps 1–3 of the module docstring: (fitted surface (A, Y, X) float32, object mask)."""
    # first fit: a plane on the frame border (objects rarely cover most of it)
    fit = fit_polynomial(phi, np.broadcast_to(border_ring(phi.shape[1:]), phi.shape), degree=1)
    mask = np.zeros(phi.shape, bool)
    reference = None  # the border ring, then the background found by the previous round
    # ln|u| does not change between rounds: smoothed once (object_mask's default σ)
    logamp = _smooth_frames(np.asarray(logamp, np.float32), SMOOTH_PX)
    for _ in range(iterations):
        mask = object_mask(phi - fit, logamp, threshold_sigma=threshold_sigma, dilate_px=dilate_px, reference=reference,
                           log_amplitude_smoothed=True)
        fit = fit_polynomial(phi, ~mask, degree=degree)
        reference = ~mask
    return fit, mask


def _amplitude_scale(u, keep) -> np.ndarray:
    """Median amplitude of each frame over its ``keep`` pixels (all pixels when none), (A,)."""
    a = u.shape[0]
    scale = np.ones(a)
    amp = np.abs(u).reshape(a, -1)
    for i in range(a):
        sel = amp[i][keep[i].reshape(-1)]
        scale[i] = np.median(sel) if sel.size else np.nanmedian(amp[i])
    return scale


def _centre_slope(fit) -> np.ndarray:
    """(d/dy, d/dx) per pixel of the fitted surfaces at the frame centre, float64 (A, 2)."""
    _, ny, nx = fit.shape
    cy, cx = ny // 2, nx // 2
    return np.stack(
        [
            fit[:, min(cy + 1, ny - 1), cx] - fit[:, cy, cx],
            fit[:, cy, min(cx + 1, nx - 1)] - fit[:, cy, cx],
        ],
        axis=1,
    ).astype(np.float64)
