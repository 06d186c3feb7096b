"""Per-frame quality control of retrieved fields u/u0.

A frame is rejected (``valid`` False) with the reasons listed when

* it holds non-finite values (NaN/inf: a dark or missing frame, a failed division);
* unwrapping cannot succeed: the density of phase residues (see :mod:`.unwrap`) exceeds
  ``max_residue_fraction`` of the pixels, or the unwrapped phase keeps more than that
  fraction of neighbour jumps |Δφ| > π. A sample imaged within the NA band has residues only
  in rare dark speckles; a frame of noise has about one residue per three pixels;
* it is an outlier of the stack: the robust z-score of the logarithm of the mean absolute
  phase m = ⟨|φ|⟩, z = (ln m − median ln m) / (1.4826·MAD(ln m)), exceeds ``z_threshold``
  in magnitude (only with ≥ 5 usable frames). The MAD is floored at 0.05 (5 % in m) so that
  nearly identical frames do not turn noise into outliers: with z = 5 a frame must then differ
  from the median by a factor ≥ e^{5·1.4826·0.05} ≈ 1.45. The integrated phase of a sample
  (its dry mass) hardly depends on the illumination angle or the rotation, so m changes little
  across a scan; a bubble, a second object drifting in or a sample leaving the field changes
  it abruptly. The mean absolute log-amplitude ⟨|ln|u||⟩ is reported (``z_amplitude``) but not
  used to reject: oblique illuminations near the pupil edge legitimately raise it.
"""

from __future__ import annotations

import numpy as np

from .unwrap import phase_discontinuities, phase_residues

__all__ = ["frame_qc", "excluded_list"]


def _robust_log_z(values: np.ndarray, use: np.ndarray, mad_floor: float = 0.05) -> np.ndarray:
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


def frame_qc(
    fields,
    unwrapped=None,
    *,
    max_residue_fraction: float = 0.01,
    z_threshold: float = 5.0,
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
        Robust z-score (of ln⟨|φ|⟩) beyond which a frame is an outlier.

    Returns
    -------
    valid : (A,) bool
    reports : list of dict, one per frame, with ``frame``, ``valid``, ``reasons`` (list of
        str), ``nonfinite``, ``residues``, ``discontinuities``, ``mean_abs_phase_rad``,
        ``mean_abs_log_amplitude``, ``z_phase``, ``z_amplitude``.
    """
    u = np.asarray(fields)
    if u.ndim != 3 or not np.iscomplexobj(u):
        raise ValueError(f"fields must be complex (A, Y, X), got {u.dtype} {u.shape}")
    if not (0 < max_residue_fraction < 1):
        raise ValueError(f"max_residue_fraction must be in (0, 1), got {max_residue_fraction}")
    if z_threshold <= 0:
        raise ValueError(f"z_threshold must be positive, got {z_threshold}")
    a, ny, nx = u.shape
    if unwrapped is None:
        from .unwrap import unwrap_phase

        unwrapped = unwrap_phase(u)
    phi = np.asarray(unwrapped, np.float32)
    if phi.shape != u.shape:
        raise ValueError(f"unwrapped shape {phi.shape} differs from fields {u.shape}")
    nonfinite = (~np.isfinite(u)).sum(axis=(1, 2)) + (~np.isfinite(phi)).sum(axis=(1, 2))
    residues = phase_residues(u)
    disc = phase_discontinuities(phi)
    n_loops = max((ny - 1) * (nx - 1), 1)
    n_pairs = max(ny * (nx - 1) + nx * (ny - 1), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mabs_phi = np.abs(phi).reshape(a, -1).mean(axis=1).astype(np.float64)
        mabs_la = np.abs(np.log(np.maximum(np.abs(u), 1e-30))).reshape(a, -1).mean(axis=1).astype(np.float64)
    reasons: list[list[str]] = [[] for _ in range(a)]
    for i in range(a):
        if nonfinite[i]:
            reasons[i].append(f"non-finite values ({int(nonfinite[i])} pixels)")
            continue
        if residues[i] > max_residue_fraction * n_loops:
            reasons[i].append(f"unwrap failure: {int(residues[i])} phase residues")
        elif disc[i] > max_residue_fraction * n_pairs:
            reasons[i].append(f"unwrap failure: {int(disc[i])} phase discontinuities")
    usable = np.array([not r for r in reasons]) & np.isfinite(mabs_phi) & np.isfinite(mabs_la)
    z_phi = _robust_log_z(np.where(np.isfinite(mabs_phi), mabs_phi, 0.0), usable)
    z_la = _robust_log_z(np.where(np.isfinite(mabs_la), mabs_la, 0.0), usable)
    for i in range(a):
        if reasons[i]:
            continue
        if abs(z_phi[i]) > z_threshold:
            reasons[i].append(f"outlier: mean |phase| {mabs_phi[i]:.3g} rad, robust z = {z_phi[i]:.1f}")
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
            "z_phase": float(z_phi[i]),
            "z_amplitude": float(z_la[i]),
        }
        for i in range(a)
    ]
    return valid, reports


def excluded_list(reports: list[dict]) -> list[tuple[int, str]]:
    """(frame index, reasons joined by '; ') of every rejected frame."""
    return [(int(r["frame"]), "; ".join(r["reasons"])) for r in reports if not r["valid"]]
