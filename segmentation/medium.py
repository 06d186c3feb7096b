"""The medium's refractive index n_m estimated from the background of a tomogram.

Why. Dry mass integrates n − n_m over each cell's share of the volume
(:mod:`holo.segmentation.drymass`), so an error δ of n_m biases a cell's mass by
−δ · V_share / α: +0.002 on a 10 µm cell with its share of ≈ 1000 µm³ is ≈ 10 pg, 10–20 % of
its mass. The metadata's n_m can be wrong (a medium other than the one declared, a
reconstruction with a constant offset); the tomogram's own background says what it is.

Estimate. The background B is the set of voxels outside every cell's share (owner 0 of
:func:`holo.segmentation.drymass.mass_partition`), further than the blur margin from any cell.
Its values are the medium plus noise (band-limited, zero-mean) and residues of ringing, so
n̂_m is their *mode*: a histogram over median ± 5 σ with bins of σ/8 (σ = 1.4826 · MAD, the
robust noise standard deviation, at least :data:`RI_FLOOR`), smoothed by a 3-bin box, its
highest bin refined by a parabola through it and its two neighbours.

When it differs. Band-limited noise has about one independent value per resolution cell
V_res = δ_⊥² δ_z (δ_⊥ = λ/(NA_obj + NA_ill), δ_z = λ / (2 n_m − √(n_m² − NA_obj²) −
√(n_m² − NA_ill²)), the axial extent of the transfer function's support), so the
standard error of a location estimate from B is ≈ σ √(V_res / V_B) (the mode is less efficient
than the mean; a factor 3 covers it). The metadata value is flagged as inconsistent when

    |n̂_m − n_m(metadata)| > max(3 σ √(V_res / V_B), RI_FLOOR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from holo.segmentation.drymass import DEFAULT_ILLUMINATION_NA, DEFAULT_OBJECTIVE_NA, blur_lengths_um

__all__ = ["RI_FLOOR", "MediumEstimate", "estimate_medium_index"]

#: Smallest RI difference reported (the RI precision tomographs state, ≈ 1e-4).
RI_FLOOR = 1e-4


@dataclass(frozen=True)
class MediumEstimate:
    """n̂_m from the background, the metadata value, the tolerance and whether they disagree."""

    medium_index: float
    metadata_index: float
    tolerance: float
    noise_std: float
    n_background_voxels: int

    @property
    def differs(self) -> bool:
        return abs(self.medium_index - self.metadata_index) > self.tolerance

    def warning(self) -> str | None:
        """One sentence for a report, or None when the two agree."""
        if not self.differs:
            return None
        return (f"medium index from the tomogram's background {self.medium_index:.5f} differs from the metadata "
                f"{self.metadata_index:.5f} by {self.medium_index - self.metadata_index:+.5f} (> {self.tolerance:.5f}); "
                "dry masses relative to the metadata value are biased by −Δn·V/α")


def _mode(values: np.ndarray, sigma: float) -> float:
    med = float(np.median(values))
    edges = np.arange(med - 5 * sigma, med + 5 * sigma + sigma / 16, sigma / 8)
    h, _ = np.histogram(values, bins=edges)
    h = np.convolve(h, np.ones(3) / 3, mode="same")
    i = int(np.argmax(h))
    shift = 0.0
    if 0 < i < len(h) - 1:
        den = h[i - 1] - 2 * h[i] + h[i + 1]
        shift = 0.5 * (h[i - 1] - h[i + 1]) / den if den < 0 else 0.0
    return float(0.5 * (edges[i] + edges[i + 1]) + shift * (edges[1] - edges[0]))


def _background_sample(background_flat: np.ndarray, n_bg: int, max_samples: int, seed: int,
                       chunk: int = 1 << 23) -> np.ndarray:
    """Flat indices of at most ``max_samples`` background voxels drawn without replacement
    (seeded), without an index array of the whole background: the drawn ranks among the
    background voxels are mapped to positions chunk by chunk (the same voxels as drawing from
    ``np.flatnonzero(background)``, sorted)."""
    if n_bg <= max_samples:
        return np.flatnonzero(background_flat)
    ranks = np.sort(np.random.default_rng(seed).choice(n_bg, max_samples, replace=False))
    out, seen = [], 0
    for start in range(0, background_flat.size, chunk):
        pos = np.flatnonzero(background_flat[start:start + chunk])
        lo, hi = np.searchsorted(ranks, [seen, seen + pos.size])
        out.append(pos[ranks[lo:hi] - seen] + start)
        seen += pos.size
    return np.concatenate(out)


def estimate_medium_index(ri: np.ndarray, background: np.ndarray, voxel_size_um, metadata_index: float, *,
                          wavelength_um: float = 0.532, objective_na: float = DEFAULT_OBJECTIVE_NA,
                          illumination_na: float = DEFAULT_ILLUMINATION_NA, max_samples: int = 2_000_000,
                          seed: int = 0) -> MediumEstimate:
    """Robust mode of the background voxels and its agreement with the metadata (module docstring).

    Parameters
    ----------
    ri : (Z, Y, X) absolute RI
    background : (Z, Y, X) bool, the voxels outside every cell's share
    voxel_size_um : (dz, dy, dx)
    metadata_index : n_m the tomogram declares
    max_samples : at most this many background voxels are drawn (seeded) for the histogram

    Returns
    -------
    MediumEstimate
        With ``medium_index = metadata_index`` and an infinite tolerance when fewer than 1000
        background voxels remain (no evidence either way).
    """
    ri = np.asarray(ri)
    background = np.asarray(background, bool)
    if background.shape != ri.shape:
        raise ValueError(f"background shape {background.shape} differs from ri {ri.shape}")
    n_bg = int(np.count_nonzero(background))
    if n_bg < 1000:
        return MediumEstimate(float(metadata_index), float(metadata_index), math.inf, float("nan"), n_bg)
    vals = ri.reshape(-1)[_background_sample(background.reshape(-1), n_bg, max_samples, seed)].astype(np.float64)
    sigma = max(1.4826 * float(np.median(np.abs(vals - np.median(vals)))), RI_FLOOR)
    n_hat = _mode(vals, sigma)
    lam, n_m = float(wavelength_um), float(metadata_index)
    d_perp, _ = blur_lengths_um(lam, n_m, objective_na, illumination_na)
    d_z = lam / (2 * n_m - math.sqrt(n_m**2 - objective_na**2) - math.sqrt(n_m**2 - illumination_na**2))
    v_bg = n_bg * float(np.prod(np.asarray(voxel_size_um, float)))
    tol = max(3.0 * sigma * math.sqrt(d_perp * d_perp * d_z / v_bg), RI_FLOOR)
    return MediumEstimate(n_hat, n_m, tol, sigma, n_bg)
