"""Illumination sequences of simulated instruments: illumination-scan patterns and rotation angles.

Illumination directions are transverse numerical apertures (NA_x, NA_y) as defined in
:mod:`holo.conventions`; rotation angles are in radians about the frame's Y (or X) axis.
"""

from __future__ import annotations

import numpy as np

__all__ = ["illumination_pattern", "rotation_angles", "PATTERNS"]

#: Illumination-scan patterns understood by :func:`illumination_pattern`.
PATTERNS = ("spiral", "rings")

#: Golden angle π(3 − √5) in radians, the azimuth step of a Fermat (sunflower) spiral.
GOLDEN_ANGLE_RAD = np.pi * (3.0 - np.sqrt(5.0))


def _spiral(n_tilted: int, condenser_na: float) -> np.ndarray:
    """Fermat spiral: point k = 1..n at radius NA_c √(k/n) and azimuth k·golden angle.

    Equal areas of the condenser disc hold equal numbers of points (r² ∝ k), so the
    illumination directions sample the disc uniformly; the last point lies on the rim.
    """
    k = np.arange(1, n_tilted + 1, dtype=np.float64)
    r = condenser_na * np.sqrt(k / n_tilted)
    phi = k * GOLDEN_ANGLE_RAD
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def _ring_counts(n_tilted: int) -> np.ndarray:
    """Points per ring for ``n_tilted`` tilted frames on concentric rings.

    The number of rings R is the one of a hexagonal packing (3R(R+1) points), and ring j
    gets a share of the points proportional to its radius j (constant arc spacing),
    rounded by largest remainders so that the counts add up to ``n_tilted``.
    """
    n_rings = max(1, int(round((np.sqrt(1.0 + 4.0 * n_tilted / 3.0) - 1.0) / 2.0)))
    n_rings = min(n_rings, n_tilted)
    share = n_tilted * np.arange(1, n_rings + 1) / (n_rings * (n_rings + 1) / 2.0)
    counts = np.floor(share).astype(int)
    rest = n_tilted - counts.sum()
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[:rest]] += 1
    # a ring with no point would leave a gap in radius: move one point from the outermost ring
    for j in range(n_rings):
        if counts[j] == 0:
            counts[j] += 1
            counts[np.argmax(counts)] -= 1
    return counts


def _rings(n_tilted: int, condenser_na: float) -> np.ndarray:
    """Concentric rings at radii NA_c·j/R (j = 1..R), the outer ring on the condenser rim.

    Successive rings are rotated by half their azimuth step so that points of neighbouring
    rings do not line up radially.
    """
    counts = _ring_counts(n_tilted)
    n_rings = len(counts)
    pts = []
    for j, m in enumerate(counts, start=1):
        r = condenser_na * j / n_rings
        phi = 2.0 * np.pi * (np.arange(m) + 0.5 * (j % 2)) / m
        pts.append(np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1))
    return np.concatenate(pts, axis=0)


def illumination_pattern(
    n_angles: int = 49,
    condenser_na: float = 1.1,
    pattern: str = "spiral",
    medium_index: float = 1.337,
) -> np.ndarray:
    """Illumination directions of an illumination-scan acquisition.

    Frame 0 is at normal incidence, (0, 0); the ``n_angles − 1`` others cover the condenser
    disc |NA| ≤ ``condenser_na`` either on a Fermat spiral (radius NA_c √(k/(A−1)), azimuth
    k × golden angle, uniform density over the disc) or on concentric rings (R rings at
    radius NA_c j/R with a number of points ∝ j). Both end on the rim |NA| = NA_c.

    Parameters
    ----------
    n_angles : int
        Number of frames A ≥ 1.
    condenser_na : float
        Largest illumination NA, 0 < NA_c < ``medium_index``. Keep it below the objective NA
        so that the unscattered beam stays inside the detection pupil.
    pattern : {"spiral", "rings"}
    medium_index : float
        RI of the immersion medium n_m; |NA| = n_m sinθ must stay below it.

    Returns
    -------
    (A, 2) float64 ndarray
        (NA_x, NA_y) per frame, see :mod:`holo.conventions`.

    Raises
    ------
    ValueError
        ``n_angles`` < 1, ``condenser_na`` not in (0, ``medium_index``), unknown pattern.
    """
    n_angles = int(n_angles)
    if n_angles < 1:
        raise ValueError(f"n_angles must be at least 1, got {n_angles}")
    condenser_na = float(condenser_na)
    medium_index = float(medium_index)
    if not np.isfinite(medium_index) or medium_index < 1.0:
        raise ValueError(f"medium_index must be a refractive index ≥ 1, got {medium_index}")
    if not (0.0 < condenser_na < medium_index):
        raise ValueError(f"condenser_na must be in (0, medium_index={medium_index}), got {condenser_na}")
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    out = np.zeros((n_angles, 2), dtype=np.float64)
    if n_angles > 1:
        out[1:] = _spiral(n_angles - 1, condenser_na) if pattern == "spiral" else _rings(n_angles - 1, condenser_na)
    return out


def rotation_angles(n_angles: int = 60, span_rad: float = np.pi) -> np.ndarray:
    """Equally spaced sample-rotation angles θ_k = k·span/A, k = 0..A−1 (radians).

    The end point ``span_rad`` is excluded, so a full turn (2π) has no duplicate view.
    With a real scattering potential, a half turn (π) already fills the Fourier space by
    Hermitian symmetry; a full turn also serves absorbing samples.

    Parameters
    ----------
    n_angles : int
        Number of views A ≥ 1.
    span_rad : float
        Angular range in radians, 0 < span ≤ 2π.

    Returns
    -------
    (A,) float64 ndarray
    """
    n_angles = int(n_angles)
    if n_angles < 1:
        raise ValueError(f"n_angles must be at least 1, got {n_angles}")
    span_rad = float(span_rad)
    if not (0.0 < span_rad <= 2.0 * np.pi + 1e-12):
        raise ValueError(f"span_rad must be in (0, 2π] radians, got {span_rad}")
    return np.arange(n_angles, dtype=np.float64) * (span_rad / n_angles)
