"""2D phase unwrapping of field stacks and the diagnostics of its success.

Wrap counts: for neighbours i, j the wrapped difference is W(φ_j − φ_i) = φ_j − φ_i − 2π·k
with the integer k = round((φ_j − φ_i)/2π). Unwrapping joins neighbours by W(Δφ), i.e.
φ_u = φ − 2π·n with n the running sum of k along the path that reaches the pixel.

Residues: the sum of the wrapped phase differences W(Δφ) around each elementary 2×2 loop is
2π·q, and since the raw differences sum to zero around the loop, q = −Σ_loop k ∈ {−1, 0, 1};
q ≠ 0 marks a residue, a point no path-independent unwrapping can pass (noise in dark
pixels, phase vortices, undersampling). Discontinuities: neighbour pairs whose *unwrapped*
phases still differ by more than π, where an unwrapping had to cut.

Unwrapping, per frame:

* a frame without residues has a path-independent unwrapping (the circulation of W(Δφ)
  vanishes around every elementary loop, hence around every loop of the simply connected
  grid), unique up to one constant 2π·c. It is computed exactly with integer arithmetic:
  down the first column, then along each row (n = cumulative sums of k), in a few
  vectorised passes; the first pixel keeps its wrapped value. Every other unwrapping of
  such a frame, the reliability-sorting one below included, is this one plus 2π·c;
* a frame with residues goes to the reliability-sorting algorithm of
  :func:`skimage.restoration.unwrap_phase` (pixels joined in order of the second-difference
  reliability), which routes the unavoidable cuts through the least reliable pixels.

Band-limited fields sampled at Nyquist or finer (what :mod:`.sideband` delivers) have no
residues outside dark speckles, so the fast path is the usual one. The complex field stays
the deliverable; the unwrapped phase serves the tilt/offset fit, the Rytov field and quality
control.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wrap", "unwrap_phase", "unwrap_about_border", "phase_residues", "phase_discontinuities"]


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


#: Frames processed together by the vectorised passes (bounds the integer temporaries).
_CHUNK_FRAMES = 16


def _wrap_counts(phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer wrap counts k = round(Δφ/2π) along X (A, Y, X−1) and Y (A, Y−1, X), int16.

    ``phase`` must be finite.
    """
    inv = 1.0 / (2.0 * np.pi)
    kx = np.rint(np.diff(phase, axis=-1) * inv).astype(np.int16)
    ky = np.rint(np.diff(phase, axis=-2) * inv).astype(np.int16)
    return kx, ky


def _loop_counts(kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Circulation Σ_loop k of each elementary loop (A, Y−1, X−1), int16 (0 where no residue).

    Loop (y, x) → (y, x+1) → (y+1, x+1) → (y+1, x) → (y, x).
    """
    return kx[:, :-1, :] + ky[:, :, 1:] - kx[:, 1:, :] - ky[:, :, :-1]


def _integrate_counts(kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """n(y, x) = Σ_{j<y} ky(j, 0) + Σ_{i<x} kx(y, i): the running wrap count down the first
    column and then along each row, int32 (A, Y, X)."""
    b, ny, nx1 = kx.shape
    n = np.zeros((b, ny, nx1 + 1), np.int32)
    np.cumsum(kx, axis=2, dtype=np.int32, out=n[:, :, 1:])
    n[:, 1:, :] += np.cumsum(ky[:, :, :1], axis=1, dtype=np.int32)
    return n


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
        fit; a frame without residues starts at its wrapped first pixel). Non-finite frames
        come back as NaN. Residue-free frames take the exact integer path integration,
        the others the reliability-sorting algorithm (module docstring).
    """
    a, squeeze = _as_stack(phase_or_field, "phase_or_field")
    out = np.empty(a.shape, np.float32)
    two_pi = 2.0 * np.pi
    for i0 in range(0, a.shape[0], _CHUNK_FRAMES):
        chunk = a[i0 : i0 + _CHUNK_FRAMES]
        phase = np.angle(chunk) if np.iscomplexobj(chunk) else np.asarray(chunk)
        if phase.dtype not in (np.float32, np.float64):
            phase = phase.astype(np.float64)
        finite = np.isfinite(phase).all(axis=(1, 2))
        out[i0 : i0 + len(chunk)][~finite] = np.nan
        if not finite.any():
            continue
        ok = np.flatnonzero(finite)
        p = phase[ok]
        kx, ky = _wrap_counts(p)
        clean = ~_loop_counts(kx, ky).any(axis=(1, 2))
        if clean.any():
            sel = np.flatnonzero(clean)
            n = _integrate_counts(kx[sel], ky[sel])
            out[i0 + ok[sel]] = p[sel] - two_pi * n
        for j in np.flatnonzero(~clean):
            from skimage.restoration import unwrap_phase as _reliability_unwrap

            out[i0 + ok[j]] = _reliability_unwrap(np.asarray(p[j], np.float64))
    return out[0] if squeeze else out


def unwrap_about_border(phase_or_field) -> np.ndarray:
    """:func:`unwrap_phase` with each frame shifted by the multiple of 2π that puts the median
    of its border pixels (the background, φ ≈ 0) in (−π, π]; float32, same shape as the input."""
    a, squeeze = _as_stack(phase_or_field, "phase_or_field")
    phi = unwrap_phase(a)
    border = np.concatenate([phi[:, 0, :], phi[:, -1, :], phi[:, :, 0], phi[:, :, -1]], axis=1)
    finite = np.isfinite(border).all(axis=1)
    k = np.zeros(phi.shape[0])
    if finite.any():
        k[finite] = np.round(np.median(border[finite], axis=1) / (2 * np.pi))
    phi -= (2 * np.pi * k)[:, None, None].astype(np.float32)
    return phi[0] if squeeze else phi


def phase_residues(phase_or_field) -> np.ndarray:
    """Number of residues (2×2 loops with a net 2π circulation) per frame, int64 (A,) or scalar.

    Non-finite pixels make their loops count as residues.
    """
    a, squeeze = _as_stack(phase_or_field, "phase_or_field")
    count = np.empty(a.shape[0], np.int64)
    for i0 in range(0, a.shape[0], _CHUNK_FRAMES):
        chunk = a[i0 : i0 + _CHUNK_FRAMES]
        phase = np.angle(chunk) if np.iscomplexobj(chunk) else np.asarray(chunk, np.float32)
        nonfinite = ~np.isfinite(phase)
        if nonfinite.any():
            phase = np.where(nonfinite, 0, phase)
        kx, ky = _wrap_counts(phase)
        q = _loop_counts(kx, ky) != 0
        if nonfinite.any():
            q |= nonfinite[:, :-1, :-1] | nonfinite[:, :-1, 1:] | nonfinite[:, 1:, :-1] | nonfinite[:, 1:, 1:]
        count[i0 : i0 + len(chunk)] = q.sum(axis=(-2, -1))
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
