"""2D phase unwrapping of field stacks and the diagnostics of its success.

Unwrapping uses the reliability-sorting algorithm of :func:`skimage.restoration.unwrap_phase`
(pixels joined in order of the second-difference reliability), frame by frame. The complex
field stays the deliverable; the unwrapped phase serves the tilt/offset fit, the Rytov field
and quality control.

Residues: the sum of the wrapped phase differences W(Δφ) around each elementary 2×2 loop is
2π·q with q ∈ {−1, 0, 1}; q ≠ 0 marks a residue, a point no path-independent unwrapping can
pass (noise in dark pixels, phase vortices, undersampling). Discontinuities: neighbour pairs
whose *unwrapped* phases still differ by more than π, where an unwrapping had to cut.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wrap", "unwrap_phase", "phase_residues", "phase_discontinuities"]


def wrap(phase):
    """Wrap phases to [−π, π): W(φ) = φ − 2π·round(φ/2π)."""
    phase = np.asarray(phase)
    return phase - (2.0 * np.pi) * np.round(phase / (2.0 * np.pi))


def _as_stack(a, name: str) -> tuple[np.ndarray, bool]:
    a = np.asarray(a)
    if a.ndim == 2:
        return a[None], True
    if a.ndim != 3:
        raise ValueError(f"{name} must be (Y, X) or (A, Y, X), got shape {a.shape}")
    return a, False


def unwrap_phase(phase_or_field) -> np.ndarray:
    """Unwrapped phase of each frame, float32, same shape as the input.

    Parameters
    ----------
    phase_or_field : (Y, X) or (A, Y, X) array
        Wrapped phase (real, radians) or a complex field (its angle is unwrapped).

    Returns
    -------
    ndarray float32
        φ_u with W(φ_u) = φ (up to rounding) and |Δφ_u| < π between neighbours wherever the
        data allow; each frame carries an arbitrary multiple of 2π (fixed later by the offset
        fit). Non-finite frames come back as NaN.
    """
    from skimage.restoration import unwrap_phase as _sk_unwrap

    a, squeeze = _as_stack(phase_or_field, "phase_or_field")
    phase = np.angle(a) if np.iscomplexobj(a) else a
    out = np.empty(phase.shape, np.float32)
    for i in range(phase.shape[0]):
        p = np.asarray(phase[i], np.float64)
        if not np.all(np.isfinite(p)):
            out[i] = np.nan
            continue
        out[i] = _sk_unwrap(p)
    return out[0] if squeeze else out


def phase_residues(phase_or_field) -> np.ndarray:
    """Number of residues (2×2 loops with a net 2π circulation) per frame, int64 (A,) or scalar.

    Non-finite pixels make their loops count as residues.
    """
    a, squeeze = _as_stack(phase_or_field, "phase_or_field")
    phase = np.angle(a) if np.iscomplexobj(a) else np.asarray(a, np.float32)
    d1 = wrap(np.diff(phase, axis=-1))  # along x
    d2 = wrap(np.diff(phase, axis=-2))  # along y
    circ = d1[:, :-1, :] + d2[:, :, 1:] - d1[:, 1:, :] - d2[:, :, :-1]
    bad = ~np.isfinite(circ)
    q = np.abs(np.round(np.where(bad, 0.0, circ) / (2.0 * np.pi))) > 0
    count = (q | bad).sum(axis=(-2, -1)).astype(np.int64)
    return count[0] if squeeze else count


def phase_discontinuities(unwrapped) -> np.ndarray:
    """Number of neighbour pairs with |Δφ| > π in an unwrapped phase, per frame (int64).

    Non-finite pixels count as discontinuities.
    """
    a, squeeze = _as_stack(unwrapped, "unwrapped")
    a = np.asarray(a, np.float32)
    dx = np.abs(np.diff(a, axis=-1))
    dy = np.abs(np.diff(a, axis=-2))
    count = (~(dx <= np.pi)).sum(axis=(-2, -1)) + (~(dy <= np.pi)).sum(axis=(-2, -1))
    count = count.astype(np.int64)
    return count[0] if squeeze else count
