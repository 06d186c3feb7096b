"""Classical baseline: RI threshold + distance-transform watershed (no learning).

1. Smooth the RI with a Gaussian of physical width ``smooth_um``.
2. Foreground = n > t, with t = n_m + δ (``delta_ri``) or, with ``threshold="otsu"``,
   Otsu's threshold of the smoothed RI (never below n_m + δ/2, so that noise in an empty
   field is not segmented); holes are filled slice by slice and in 3D.
3. Euclidean distance to the background with the physical voxel size (``sampling``).
4. Seeds: h-maxima of the distance map with h = ``h_um`` (µm), one per cell; watershed of the
   negated distance restricted to the foreground; instances smaller than ``min_volume_um3``
   are dropped.

Semantic output: 0 background, 1 cytoplasm for every foreground voxel (the baseline does not
find organelles).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from holo.labels import BACKGROUND, CYTOPLASM

__all__ = ["classic_segment", "foreground_mask", "watershed_instances"]


def foreground_mask(ri: np.ndarray, voxel_size_um, medium_index: float, *, threshold="otsu",
                    delta_ri: float = 0.006, smooth_um: float = 0.3) -> np.ndarray:
    """Binary cell mask by RI threshold (see module docstring)."""
    from skimage.filters import threshold_otsu

    if delta_ri <= 0:
        raise ValueError(f"delta_ri must be > 0, got {delta_ri}")
    vs = np.asarray(voxel_size_um, dtype=float)
    sm = ndi.gaussian_filter(np.asarray(ri, dtype=np.float32), smooth_um / vs) if smooth_um > 0 else np.asarray(ri, np.float32)
    if threshold == "otsu":
        t = float(threshold_otsu(sm))
        t = max(t, medium_index + 0.5 * delta_ri)
    elif threshold == "delta":
        t = medium_index + delta_ri
    else:
        raise ValueError(f"threshold must be 'otsu' or 'delta', got {threshold!r}")
    fg = sm > t
    if fg.any():  # a hole is background cut off from the border: the box of fg and one voxel around decides
        box = _foreground_box(fg)
        fg[box] = ndi.binary_fill_holes(fg[box])
    return fg


def watershed_instances(fg: np.ndarray, voxel_size_um, *, h_um: float = 0.6,
                        min_volume_um3: float = 0.3, distance: np.ndarray | None = None) -> np.ndarray:
    """Split a foreground mask into instances by watershed on the distance map.

    Parameters
    ----------
    fg : (Z, Y, X) bool
    voxel_size_um : (dz, dy, dx)
    h_um : float
        Minimum height (µm of distance) of a maximum to seed its own instance.
    min_volume_um3 : float
        Instances below this volume are removed.
    distance : array, optional
        A distance-like map to use instead of the Euclidean distance transform (same units
        as ``h_um``).
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    vs = tuple(float(v) for v in voxel_size_um)
    fg = np.asarray(fg, dtype=bool)
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    # everything below runs on the box of the foreground and one voxel of background around it:
    # the nearest background voxel and every h-maxima reconstruction path have an equivalent
    # inside it, so the labels are those of the whole volume (memory and time scale with the box)
    # (a given distance map may be non-zero off the foreground: it keeps the whole volume)
    box = _foreground_box(fg) if distance is None else tuple(slice(None) for _ in fg.shape)
    fg_box = fg[box]
    if distance is None:
        distance = ndi.distance_transform_edt(fg_box, sampling=vs).astype(np.float32)
    peaks = h_maxima(np.asarray(distance, np.float32), h_um) & fg_box
    markers, _ = ndi.label(peaks, structure=np.ones((3, 3, 3), bool))
    lab = np.zeros(fg.shape, np.int32)
    lab[box] = watershed(-distance, markers, mask=fg_box)
    return remove_small(lab, vs, min_volume_um3)


def _foreground_box(fg: np.ndarray) -> tuple:
    """Slices of the bounding box of ``fg`` grown by one voxel (clipped to the volume)."""
    sl = ndi.find_objects(fg.astype(np.uint8))[0]
    return tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(sl, fg.shape))


def remove_small(lab: np.ndarray, voxel_size_um, min_volume_um3: float) -> np.ndarray:
    """Drop instances under ``min_volume_um3`` and renumber 1..K in order of first appearance."""
    dv = float(np.prod(voxel_size_um))
    counts = np.bincount(lab.ravel())
    keep = counts * dv >= min_volume_um3
    keep[0] = False
    remap = np.zeros(len(counts), np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[lab]


def classic_segment(ri: np.ndarray, voxel_size_um, medium_index: float, *, threshold="otsu",
                    delta_ri: float = 0.006, smooth_um: float = 0.3, h_um: float = 0.6,
                    min_volume_um3: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Semantic (uint8, 0/1) and instance (int32) labels of an RI volume by threshold + watershed."""
    ri = np.asarray(ri, dtype=np.float32)
    if ri.ndim != 3:
        raise ValueError(f"ri must be 3D (Z, Y, X), got shape {ri.shape}")
    fg = foreground_mask(ri, voxel_size_um, medium_index, threshold=threshold, delta_ri=delta_ri, smooth_um=smooth_um)
    inst = watershed_instances(fg, voxel_size_um, h_um=h_um, min_volume_um3=min_volume_um3)
    sem = np.where(inst > 0, CYTOPLASM, BACKGROUND).astype(np.uint8)
    return sem, inst
