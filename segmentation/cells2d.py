"""Cells in a 2D phase map (single-hologram QPI): segmentation and per-cell measurements.

Segmentation. A pixel belongs to a cell when its phase exceeds t = max(½·Otsu threshold of
the phase map, k·σ) (Otsu's level splits cells from background about half-way up their
phase; half of it follows the thin cell edge, where a sphere's phase falls to zero) with σ the robust noise of the background phase (median absolute deviation
of the pixels ``background`` marks, k = 5); holes are filled, objects smaller than
``min_area_um2`` dropped, and touching cells split by a watershed of the distance transform
(one marker per maximum at least one minimal cell radius apart).

Measurements (conventions: :mod:`holo.conventions`; α the refractive increment):

* projected area A = N_pixels Δx² of the cell's mask, µm²;
* phase volume V_φ = ∫ OPD dA = (λ/2π) ∫ φ dA, µm³ — the integral of (n − n_m) over the
  cell's volume for a thin object;
* dry mass m = V_φ/α = λ/(2πα) ∫ φ dA, pg (α in µm³/pg).

The integrals run over the cell's *share* of the map, not its tight mask: the imaging blurs
a cell's phase over about one resolution length δ = λ/NA beyond its edge (the phase integral
itself is kept, the transfer function holds f = 0), so each cell's mask is grown by
``margin_px`` pixels, pixels claimed by two cells going to the nearer
(:func:`skimage.segmentation.expand_labels`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from holo.conventions import ALPHA_PROTEIN_UM3_PER_PG
from holo.segmentation.instances import relabel_sequential

__all__ = ["segment_cells_2d", "measure_cells_2d", "CELL2D_COLUMNS"]

CELL2D_COLUMNS = (
    "cell_id", "area_um2", "dry_mass_pg", "phase_volume_um3", "mean_phase_rad", "max_phase_rad",
    "centroid_y_um", "centroid_x_um", "touches_border",
)


def _noise_sigma(phase: np.ndarray, background: np.ndarray | None) -> float:
    vals = phase[background] if background is not None and background.any() else phase
    med = np.median(vals)
    return float(1.4826 * np.median(np.abs(vals - med)))


def segment_cells_2d(
    phase_rad,
    pixel_size_um: float,
    *,
    background=None,
    min_area_um2: float = 10.0,
    threshold_sigma: float = 5.0,
    threshold_rad: float | None = None,
) -> np.ndarray:
    """Instance labels (Y, X) int32 of the cells in a phase map (module docstring).

    Parameters
    ----------
    phase_rad : (Y, X) float
        Unwrapped phase, ≈ 0 on the background.
    pixel_size_um : float
    background : (Y, X) bool, optional
        Pixels known to be background (noise estimate); default all pixels (robust MAD).
    min_area_um2 : float
        Smallest cell kept; also sets the minimal marker distance √(A_min/π).
    threshold_sigma : float
        k of the noise floor k·σ.
    threshold_rad : float, optional
        Fixed phase threshold instead of the automatic one.
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    phi = np.asarray(phase_rad, np.float64)
    if phi.ndim != 2:
        raise ValueError(f"phase_rad must be (Y, X), got shape {phi.shape}")
    phi = np.nan_to_num(phi, nan=0.0)
    if threshold_rad is None:
        bg = None if background is None else np.asarray(background, bool)
        threshold_rad = max(0.5 * float(threshold_otsu(phi)), threshold_sigma * _noise_sigma(phi, bg))
    mask = ndi.binary_fill_holes(phi > threshold_rad)
    min_px = max(1, int(round(min_area_um2 / pixel_size_um**2)))
    mask = remove_small_objects(mask, max_size=min_px - 1) if min_px > 1 else mask
    if not mask.any():
        return np.zeros(phi.shape, np.int32)
    dist = ndi.distance_transform_edt(mask)
    r_min_px = max(1, int(np.sqrt(min_px / np.pi)))
    comp, _ = ndi.label(mask)
    peaks = peak_local_max(dist, min_distance=r_min_px, labels=comp, exclude_border=False)
    markers = np.zeros(phi.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=mask)
    # a component without a marker (flat plateau) keeps one label of its own
    lost = mask & (labels == 0)
    if lost.any():
        extra, n_extra = ndi.label(lost)
        labels[lost] = extra[lost] + labels.max()
    return relabel_sequential(labels, np.bincount(labels.ravel()) > 0)


def measure_cells_2d(
    phase_rad,
    labels,
    pixel_size_um: float,
    wavelength_um: float,
    *,
    margin_px: int = 0,
    alpha_um3_per_pg: float = ALPHA_PROTEIN_UM3_PER_PG,
) -> pd.DataFrame:
    """One row per cell (columns :data:`CELL2D_COLUMNS`; formulas in the module docstring).

    ``margin_px`` grows each mask into its share for the integrals (dry mass, phase volume);
    the area is the tight mask's.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import expand_labels

    phi = np.nan_to_num(np.asarray(phase_rad, np.float64))
    lab = np.asarray(labels, np.int32)
    if lab.shape != phi.shape:
        raise ValueError(f"labels {lab.shape} and phase {phi.shape} differ in shape")
    ids = np.unique(lab)
    ids = ids[ids > 0]
    if not ids.size:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in CELL2D_COLUMNS})
    share = expand_labels(lab, distance=int(margin_px)) if margin_px > 0 else lab
    da = pixel_size_um**2
    n_px = ndi.sum(np.ones_like(phi), lab, ids)
    phase_sum = ndi.sum(phi, share, ids)
    opd_factor = wavelength_um / (2.0 * np.pi)
    cy, cx = (np.asarray(v) for v in zip(*ndi.center_of_mass(np.ones_like(phi), lab, ids)))
    border = np.zeros_like(lab, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    touching = set(np.unique(lab[border]).tolist())
    vol = opd_factor * phase_sum * da
    return pd.DataFrame({
        "cell_id": ids.astype(int),
        "area_um2": n_px * da,
        "dry_mass_pg": vol / alpha_um3_per_pg,
        "phase_volume_um3": vol,
        "mean_phase_rad": ndi.mean(phi, lab, ids),
        "max_phase_rad": ndi.maximum(phi, lab, ids),
        "centroid_y_um": cy * pixel_size_um,
        "centroid_x_um": cx * pixel_size_um,
        "touches_border": [int(i) in touching for i in ids],
    })
