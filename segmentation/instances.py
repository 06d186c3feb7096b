"""Instance clean-up after the watershed: merging of over-split fragments, removal of faint objects.

Merging by contact area. A watershed of a distance-like relief splits a lobed cell (bilobed
nucleus, pseudopod) or a chain of fused cocci into several regions that share a wide face,
whereas two distinct cells pressed against each other touch along a thin rim only (the network
predicts background or a low distance between them). For two adjacent regions a, b with
shared face area A (µm², the sum of voxel faces between them: dy·dx along Z, dz·dx along Y,
dz·dy along X) and the smaller volume V_min, the contact ratio is

    ρ = A / (π r²),   r = (3 V_min / 4π)^(1/3),

i.e. the face relative to the equatorial cross-section of a sphere of the smaller volume.
A cut through the middle of one convex object gives ρ ≈ 1 (more with the voxel staircase);
distinct touching cells give ρ ≪ 1. Regions with ρ ≥ ``min_contact_ratio`` are merged
(transitively: connected components of the graph of such pairs). A chain of fused cocci
(spacing ≈ 0.85 d, neck radius ≈ 0.53 r, ρ ≈ 0.3) is below any threshold that keeps
touching cells apart, so chains cut at their necks are not re-joined by this rule.

Faint objects. Reconstruction artefacts (ringing, field-edge residues) produce low-contrast
blobs; an instance is kept only if the peak of its Gaussian-smoothed RI contrast
(σ = ``smooth_voxels`` voxels), max (n − n_m), reaches ``min_peak_delta_ri``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from holo.threads import thread_map

__all__ = ["contact_areas", "merge_by_contact", "drop_faint", "refine_small_by_half_max", "relabel_sequential",
           "seeded_watershed_by_component"]

_FULL = np.ones((3, 3, 3), bool)


def relabel_sequential(lab: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Renumber the kept labels 1..K (``keep`` a bool array indexed by label, keep[0] ignored)."""
    keep = np.asarray(keep, bool).copy()
    keep[0] = False
    remap = np.zeros(len(keep), np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[lab]


def label_maxima(values: np.ndarray, lab: np.ndarray, n: int, fill: float) -> np.ndarray:
    """max of ``values`` over each label 1..n of ``lab`` (float64; index 0 and absent labels:
    ``fill``), each on the label's bounding box; the same numbers as ``ndimage.maximum``,
    which sorts every voxel of the volume."""
    peak = np.full(n + 1, fill, np.float64)
    for k, sl in enumerate(ndi.find_objects(lab, max_label=n), start=1):
        if sl is not None:
            peak[k] = values[sl][lab[sl] == k].max()
    return peak


def contact_areas(lab: np.ndarray, voxel_size_um) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared face area (µm²) of every pair of 6-adjacent labels a < b (background excluded).

    Returns (a, b, area), 1D arrays over the adjacent pairs.
    """
    lab = np.asarray(lab)
    vs = np.asarray(voxel_size_um, float)
    if lab.ndim != 3 or vs.shape != (3,):
        raise ValueError(f"lab must be 3D and voxel_size_um have 3 entries, got {lab.shape}, {vs.shape}")
    n = int(lab.max(initial=0))

    def faces_along(ax):
        la = np.moveaxis(lab, ax, 0)
        a, b = la[:-1], la[1:]
        m = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[m], b[m]).astype(np.int64)
        hi = np.maximum(a[m], b[m]).astype(np.int64)
        return lo * (n + 1) + hi, np.full(lo.size, float(np.prod(np.delete(vs, ax))))

    keys, faces = zip(*thread_map(faces_along, range(3)))  # the three axes on several threads
    keys = np.concatenate(keys)
    if keys.size == 0:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    u, inv = np.unique(keys, return_inverse=True)
    return u // (n + 1), u % (n + 1), np.bincount(inv, np.concatenate(faces))


def merge_by_contact(lab: np.ndarray, voxel_size_um, min_contact_ratio: float) -> np.ndarray:
    """Merge adjacent instances whose contact ratio ρ = A / (π r²) ≥ ``min_contact_ratio``
    (module docstring); labels renumbered 1..K. ``min_contact_ratio`` ≤ 0 disables merging."""
    lab = np.asarray(lab)
    if min_contact_ratio <= 0 or int(lab.max(initial=0)) < 2:
        return lab.astype(np.int32, copy=False)
    n = int(lab.max())
    a, b, area = contact_areas(lab, voxel_size_um)
    vol = np.bincount(lab.ravel(), minlength=n + 1) * float(np.prod(voxel_size_um))
    r = np.cbrt(3.0 * np.minimum(vol[a], vol[b]) / (4.0 * np.pi))
    join = area >= min_contact_ratio * np.pi * r * r
    if not join.any():
        return lab.astype(np.int32, copy=False)
    graph = coo_matrix((np.ones(int(join.sum())), (a[join], b[join])), shape=(n + 1, n + 1))
    _, comp = connected_components(graph, directed=False)
    present = np.bincount(lab.ravel(), minlength=n + 1) > 0
    present[0] = False
    # one new id per component that holds a present label, in order of the smallest label
    new = np.zeros(n + 1, np.int32)
    seen: dict[int, int] = {}
    for k in np.nonzero(present)[0]:
        new[k] = seen.setdefault(int(comp[k]), len(seen) + 1)
    return new[lab]


def drop_faint(lab: np.ndarray, delta_ri: np.ndarray, min_peak_delta_ri: float, *,
               smooth_voxels: float = 0.5) -> np.ndarray:
    """Remove instances whose peak smoothed contrast max(n − n_m) < ``min_peak_delta_ri``.

    ``delta_ri`` is n − n_m on the grid of ``lab``; labels renumbered 1..K.
    """
    lab = np.asarray(lab)
    if lab.shape != np.shape(delta_ri):
        raise ValueError(f"delta_ri must have the shape of lab {lab.shape}, got {np.shape(delta_ri)}")
    n = int(lab.max(initial=0))
    if n == 0 or min_peak_delta_ri <= 0:
        return lab.astype(np.int32, copy=False)
    sm = ndi.gaussian_filter(np.asarray(delta_ri, np.float32), smooth_voxels) if smooth_voxels > 0 else delta_ri
    peak = label_maxima(sm, lab, n, -np.inf)
    return relabel_sequential(lab, peak >= min_peak_delta_ri)


def refine_small_by_half_max(lab: np.ndarray, delta_ri: np.ndarray, max_volume_um3: float, voxel_size_um, *,
                             fraction: float = 0.5, grow_voxels: int = 2, smooth_voxels: float = 0.5) -> np.ndarray:
    """Redraw the boundary of small instances (volume < ``max_volume_um3``, bacteria-sized) at
    a fraction of their own peak contrast.

    A homogeneous object of contrast Δn blurred by the instrument's point-spread function has
    its edge where the blurred contrast falls to ½ Δn (for an object wider than the PSF), so
    the half-maximum contour of the smoothed contrast s = G_σ * (n − n_m) locates a small
    object's edge independently of a network whose masks are a few voxels wide. Each small
    instance k is first grown (watershed of −s, within ``grow_voxels`` voxels of the
    foreground, large instances keep their voxels) and then restricted to the voxels where
    s ≥ ``fraction`` · max_k s. Instances that vanish are dropped; labels renumbered 1..K.
    ``smooth_voxels`` ≤ 0: ``delta_ri`` is already the smoothed contrast s.
    Large cells are left alone: their nucleus is less refractive than their cytoplasm, so no
    single fraction of their peak follows their edge.
    """
    lab = np.asarray(lab).astype(np.int32, copy=False)
    n = int(lab.max(initial=0))
    if n == 0 or max_volume_um3 <= 0:
        return lab
    vol = np.bincount(lab.ravel(), minlength=n + 1) * float(np.prod(voxel_size_um))
    small = vol < max_volume_um3
    small[0] = False
    if not small.any():
        return lab
    s = ndi.gaussian_filter(np.asarray(delta_ri, np.float32), smooth_voxels) if smooth_voxels > 0 else delta_ri
    peak = label_maxima(s, lab, n, 0.0).astype(np.float32)
    grown = _grow_small(lab, s, small, int(grow_voxels))
    out = np.where(small[grown] & (s < fraction * peak[grown]), 0, grown).astype(np.int32)
    present = np.bincount(out.ravel(), minlength=n + 1) > 0
    return relabel_sequential(out, present)


def _grow_small(lab: np.ndarray, s: np.ndarray, small: np.ndarray, grow_voxels: int) -> np.ndarray:
    """Labels with the small instances (``small[k]``) grown by a watershed of −s within
    ``grow_voxels`` voxels of the foreground; large instances keep exactly their voxels.

    The watershed (6-connected, as skimage's default) runs only on the boxes of the
    6-connected parts of the reach that hold a small instance: a flood never leaves its part,
    and a part without a small instance gives back ``lab`` (its large instances keep their
    voxels and the voxels they would gain are dropped), so the result is the whole-volume one.
    """
    from skimage.segmentation import watershed

    reach = ndi.binary_dilation(lab > 0, iterations=grow_voxels)
    parts, _ = ndi.label(reach)
    del reach
    out = lab.copy()
    with_small = np.unique(parts[small[lab]])
    slices = ndi.find_objects(parts)

    def flood(p):
        box = slices[p - 1]
        part = parts[box] == p
        return box, part, watershed(-s[box], np.where(part, lab[box], 0), mask=part).astype(np.int32)

    for box, part, grown in thread_map(flood, with_small[with_small > 0]):  # parts on several threads
        # large cells keep their voxels; voxels a large cell would gain stay background
        o = out[box]
        o[part] = np.where(small[grown], grown, o)[part]
    return out


def _first_flat_index(lab: np.ndarray, n: int, box, shape) -> np.ndarray:
    """Flat index in the whole volume (of ``shape``) of the first voxel, in raster order, of
    each label 1..n of ``lab`` (a crop starting at ``box``)."""
    flat = lab.ravel()
    nz = np.flatnonzero(flat)
    ids, first = np.unique(flat[nz], return_index=True)
    loc = np.unravel_index(nz[first], lab.shape)
    out = np.ravel_multi_index(tuple(c + b.start for c, b in zip(loc, box)), shape)
    if not np.array_equal(ids, np.arange(1, n + 1)):
        raise AssertionError("labels of a crop are not 1..n")
    return out


def _component_watershed(relief: np.ndarray, own: np.ndarray, h: float):
    """Seeds (h-maxima of ``relief`` inside ``own``) grown by a watershed of −relief inside
    ``own``, and the 26-connected parts of ``own`` no seed reached: (markers, labels,
    n_seeded, orphans, n_orphans), seeds and parts numbered in raster order."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    markers, n = ndi.label(h_maxima(relief, h).astype(bool) & own, structure=_FULL)
    lab = watershed(-relief, markers, mask=own).astype(np.int32) if n else np.zeros(own.shape, np.int32)
    orphans, n_orphans = ndi.label(own & (lab == 0), structure=_FULL)
    return markers, lab, n, orphans, n_orphans


def seeded_watershed_by_component(fg: np.ndarray, relief_of, voxel_size_um, h_um: float, *,
                                  threads: int | None = None) -> np.ndarray:
    """Instances of a foreground mask: h-maxima seeds of a relief grown by its watershed, and
    every 26-connected part no seed reaches as an instance of its own — computed on the
    bounding box (plus one voxel) of each 26-connected foreground component instead of the
    whole volume.

    ``relief_of(fg_box, box)`` returns the relief (float32) on ``box`` given the foreground
    there, e.g. D = E · (½ + d̂) with E the Euclidean distance to the background. Exactness:
    (i) E at a voxel p of component C is the same on the box as on the volume: along each axis
    the first voxel after p that is not in C is background (it is 6-adjacent to C) and lies
    within one voxel of C's box, so the nearest background voxel cannot lie farther out;
    (ii) the h-maxima of D inside C depend on C alone when D ≥ 0, D = 0 on the background and
    some voxel reaches h: a path of the grey reconstruction that leaves C crosses the
    background and contributes at most 0, no more than a path inside C from a voxel of C ≥ h;
    a component that never reaches h has no h-maximum either way (up to h within the float
    resolution skimage adds); (iii) the watershed (6-connected) and the 26-connected parts
    never cross between components, and its queue order restricted to one component is the
    same. Numbering as for the whole volume: seeded instances by the raster order of their
    seed's first voxel, then unseeded parts by their first voxel (scipy's ``label`` numbers in
    raster order). Voxels sorted: those of the boxes, not the volume. The components are
    processed on ``threads`` threads (:func:`holo.threads.thread_map`, default all allowed
    CPUs; ``relief_of`` must then be safe to call from several threads) and numbered in their
    order, so the labels do not depend on the thread count.
    """
    fg = np.asarray(fg, bool)
    comp, n_comp = ndi.label(fg, structure=_FULL)
    out = np.zeros(fg.shape, np.int32)
    keys, groups = [], []  # per temporary id: (group 0 seeded / 1 unseeded, first flat index)
    next_id = 1

    def one(c_sl):
        c, sl = c_sl
        box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(sl, fg.shape))
        markers, lab, n, orphans, n_orphans = _component_watershed(relief_of(fg[box], box), comp[box] == c, h_um)
        return box, [(labels, _first_flat_index(first_of, k, box, fg.shape), k, group)
                     for labels, first_of, k, group in ((lab, markers, n, 0), (orphans, orphans, n_orphans, 1)) if k]

    # components on separate threads (thread_map), written in their order: the serial result
    for box, parts in thread_map(one, enumerate(ndi.find_objects(comp), start=1), threads=threads):
        for labels, first, k, group in parts:
            keys.append(first)
            groups.append(np.full(k, group))
            o = out[box]
            o[labels > 0] = labels[labels > 0] + (next_id - 1)
            next_id += k
    del comp
    if next_id == 1:
        return out
    order = np.lexsort((np.concatenate(keys), np.concatenate(groups)))
    remap = np.zeros(next_id, np.int32)
    remap[order + 1] = np.arange(1, next_id, dtype=np.int32)
    return remap[out]
