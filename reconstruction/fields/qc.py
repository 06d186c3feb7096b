"""Per-frame quality control of retrieved fields u/u0.

A frame is rejected (``valid`` False) with the reasons listed when

* it holds non-finite values (NaN/inf: a dark or missing frame, a failed division);
* unwrapping cannot succeed: the density of phase residues (see :mod:`.unwrap`) exceeds
  ``max_residue_fraction`` of the pixels, or the unwrapped phase keeps more than that
  fraction of neighbour jumps |Δφ| > π. A sample imaged within the NA band has residues only
  in rare dark speckles; a frame of noise has about one residue per three pixels;
* it is an outlier of the stack: the robust z-score of the logarithm of the obliquity-corrected
  mean absolute phase m = cosθ·⟨|φ|⟩, z = (ln m − median ln m) / (1.4826·max(MAD(ln m), 0.05)),
  exceeds ``z_threshold`` in magnitude (only with ≥ 5 usable frames).

  Why m is nearly constant across a valid scan: the frame mean of the phase of a sample denser
  than its medium is ⟨φ⟩ ≈ ⟨|φ|⟩ and, by the Fourier diffraction theorem at K = 0, its
  integral is ∫φ dA = −F(0)/(2 k_z,in) = k0 ∫(n − n_m) dV / cosθ (to first order), with
  k_z,in = k_m cosθ, cosθ = √(1 − |NA_ill|²/n_m²) the obliquity of the illumination: a tilted
  beam crosses the sample along a longer path. Without the correction a scan up to
  NA_ill = 1.1 in water spans a factor 1/cosθ = 1.76 (ln 0.57) although every frame is fine;
  with it the frames of noise-free scans (spheres, cell phantoms, NA_ill ≤ 1.1) stay within
  ≈ 15 % of their median (|Δ ln m| ≤ 0.15: the pupil cuts the tilted object spectrum
  differently, and the ringing it leaves counts in ⟨|φ|⟩). Sample rotation needs no
  correction (the beam is fixed; cosθ = 1). A bubble, a second object drifting in, a sample
  leaving the field or a failed background fit change m abruptly.

  Floor on the spread: nearly identical frames (noise-free data, symmetric scans with many
  equal obliquities) give a MAD far below that legitimate 15 % scatter (0.003 measured), which
  would turn the scatter into |z| > 5 (uncorrected, the normal-incidence frame of noise-free
  sphere scans got z = −4.7 to −7.7 even with the floor). The MAD is therefore floored at 0.05, σ = 1.4826·0.05 = 7.4 % — half the
  largest legitimate deviation — so a frame must differ from the median by a factor
  ≥ e^{5·0.074} ≈ 1.45 (2.5× the legitimate scatter) to be rejected, which a second object of
  similar mass (× 2) or a lost sample (≪ 1) exceeds. The mean absolute log-amplitude
  ⟨|ln|u||⟩ is reported (``z_amplitude``) but not used to reject: oblique illuminations near
  the pupil edge legitimately raise it.
"""

from __future__ import annotations

import numpy as np

from .unwrap import phase_discontinuities, phase_residues

__all__ = ["frame_qc", "excluded_list"]


#: Floor of the MAD of ln m (module docstring): σ ≥ 1.4826·0.05 = 7.4 % relative spread.
MAD_FLOOR = 0.05


def _robust_log_z(values: np.ndarray, use: np.ndarray, mad_floor: float = MAD_FLOOR) -> np.ndarray:
    """Robust z-score of ln(values) over the ``use`` frames (zeros with fewer than 5)."""
    z = np.zeros(values.shape)
    if use.sum() < 5:
        return z
    logv = np.log(np.maximum(values, 1e-12))
    v = logv[use]
    med = np.median(v)
    mad = np.median(np.abs(v - med))
    z[:] = (logv - med) / (1.4826 * max(mad, mad_floor))
    return z


def _obliquity(illumination_na, medium_index, n_frames: int) -> np.ndarray:
    """cosθ = √(1 − |NA_ill|²/n_m²) per frame (ones without illumination NAs), float64 (A,)."""
    if illumination_na is None:
        return np.ones(n_frames)
    if medium_index is None or not medium_index > 0:
        raise ValueError(f"medium_index must be a positive number with illumination_na, got {medium_index!r}")
    na = np.asarray(illumination_na, np.float64)
    if na.shape != (n_frames, 2):
        raise ValueError(f"illumination_na must be ({n_frames}, 2), got shape {na.shape}")
    sin2 = (na[:, 0] ** 2 + na[:, 1] ** 2) / float(medium_index) ** 2
    known = np.isfinite(sin2)
    if np.any(sin2[known] >= 1.0):
        raise ValueError("illumination_na must stay below medium_index (|NA| < n_m)")
    # a frame whose NA could not be estimated keeps cosθ = 1
    return np.where(known, np.sqrt(1.0 - np.where(known, sin2, 0.0)), 1.0)


def frame_qc(
    fields,
    unwrapped=None,
    *,
    max_residue_fraction: float = 0.01,
    z_threshold: float = 5.0,
    illumination_na=None,
    medium_index: float | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Check each frame (module docstring) and report.

    Parameters
    ----------
    fields : (A, Y, X) complex
        u/u0.
    unwrapped : (A, Y, X) float, optional
        Unwrapped phase (computed when None).
    max_residue_fraction : float
        Largest tolerated fraction of residues / discontinuities per pixel.
    z_threshold : float
        Robust z-score (of ln m, m = cosθ·⟨|φ|⟩) beyond which a frame is an outlier.
    illumination_na : (A, 2) array, optional
        (NA_x, NA_y) of each frame of an illumination scan; with ``medium_index`` it gives the
        obliquity cosθ = √(1 − |NA|²/n_m²). None: cosθ = 1 (sample rotation).
    medium_index : float, optional
        n_m, required with ``illumination_na``.

    Returns
    -------
    valid : (A,) bool
    reports : list of dict, one per frame, with ``frame``, ``valid``, ``reasons`` (list of
        str), ``nonfinite``, ``residues``, ``discontinuities``, ``mean_abs_phase_rad``,
        ``mean_abs_log_amplitude``, ``obliquity_cos``, ``z_phase``, ``z_amplitude``.
    """
    u = np.asarray(fields)
    if u.ndim != 3 or not np.iscomplexobj(u):
        raise ValueError(f"fields must be complex (A, Y, X), got {u.dtype} {u.shape}")
    if not (0 < max_residue_fraction < 1):
        raise ValueError(f"max_residue_fraction must be in (0, 1), got {max_residue_fraction}")
    if z_threshold <= 0:
        raise ValueError(f"z_threshold must be positive, got {z_threshold}")
    a, ny, nx = u.shape
    cos_theta = _obliquity(illumination_na, medium_index, a)
    if unwrapped is None:
        from .unwrap import unwrap_phase

        unwrapped = unwrap_phase(u)
    phi = np.asarray(unwrapped, np.float32)
    if phi.shape != u.shape:
        raise ValueError(f"unwrapped shape {phi.shape} differs from fields {u.shape}")
    nonfinite = (~np.isfinite(u)).sum(axis=(1, 2)) + (~np.isfinite(phi)).sum(axis=(1, 2))
    residues = phase_residues(u)
    disc = phase_discontinuities(phi)
    with np.errstate(divide="ignore", invalid="ignore"):
        mabs_phi = np.abs(phi).reshape(a, -1).mean(axis=1).astype(np.float64)
        mabs_la = np.abs(np.log(np.maximum(np.abs(u), 1e-30))).reshape(a, -1).mean(axis=1).astype(np.float64)
    reasons = _unwrap_failures(nonfinite, residues, disc, (ny, nx), max_residue_fraction)
    usable = np.array([not r for r in reasons]) & np.isfinite(mabs_phi) & np.isfinite(mabs_la)
    z_phi = _robust_log_z(np.where(np.isfinite(mabs_phi), mabs_phi * cos_theta, 0.0), usable)
    z_la = _robust_log_z(np.where(np.isfinite(mabs_la), mabs_la, 0.0), usable)
    _add_outliers(reasons, z_phi, mabs_phi, cos_theta, z_threshold)
    valid = np.array([not r for r in reasons], bool)
    reports = [
        {
            "frame": i,
            "valid": bool(valid[i]),
            "reasons": reasons[i],
            "nonfinite": int(nonfinite[i]),
            "residues": int(residues[i]),
            "discontinuities": int(disc[i]),
            "mean_abs_phase_rad": float(mabs_phi[i]),
            "mean_abs_log_amplitude": float(mabs_la[i]),
            "obliquity_cos": float(cos_theta[i]),
            "z_phase": float(z_phi[i]),
            "z_amplitude": float(z_la[i]),
        }
        for i in range(a)
    ]
    return valid, reports


def _unwrap_failures(nonfinite, residues, disc, shape_yx, max_residue_fraction: float) -> list[list[str]]:
    """Reasons (per frame) for non-finite values and unwrap failures (too many residues or
    discontinuities per loop / pixel pair)."""
    ny, nx = shape_yx
    n_loops = max((ny - 1) * (nx - 1), 1)
    n_pairs = max(ny * (nx - 1) + nx * (ny - 1), 1)
    reasons: list[list[str]] = [[] for _ in range(len(nonfinite))]
    for i in range(len(nonfinite)):
        if nonfinite[i]:
            reasons[i].append(f"non-finite values ({int(nonfinite[i])} pixels)")
            continue
        if residues[i] > max_residue_fraction * n_loops:
            reasons[i].append(f"unwrap failure: {int(residues[i])} phase residues")
        elif disc[i] > max_residue_fraction * n_pairs:
            reasons[i].append(f"unwrap failure: {int(disc[i])} phase discontinuities")
    return reasons


def _add_outliers(reasons, z_phi, mabs_phi, cos_theta, z_threshold: float) -> None:
    """Append the outlier reason to the frames not yet rejected whose |z_phase| > z_threshold."""
    for i in range(len(reasons)):
        if reasons[i]:
            continue
        if abs(z_phi[i]) > z_threshold:
            corrected = "" if cos_theta[i] == 1.0 else f" (× cosθ: {mabs_phi[i] * cos_theta[i]:.3g})"
            reasons[i].append(f"outlier: mean |phase| {mabs_phi[i]:.3g} rad{corrected}, robust z = {z_phi[i]:.1f}")


def excluded_list(reports: list[dict]) -> list[tuple[int, str]]:
    """(frame index, reasons joined by '; ') of every rejected frame."""
    return [(int(r["frame"]), "; ".join(r["reasons"])) for r in reports if not r["valid"]]
