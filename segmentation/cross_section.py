"""Splitting merged bacteria: the coarsest partition of a small instance whose pieces each
have the cross-section of one bacterium.

Bacteria are tubes of one diameter d (twin and literature: rods 0.8–1.0 µm wide and 2–4 µm
long, cocci 0.9–1.1 µm, chains of 3–8 fused cocci along a gently bent line). For a straight
tube of radius r the voxel coordinates have principal standard deviations σ₁ ≥ σ₂ = σ₃ = r/2
(a cylinder: ⟨x²⟩ = r²/4 across; a sphere: r/√5 along every axis), so the cross-section
product

    χ = σ₂ σ₃ ≈ d² / 16   (sphere: d² / 20)

is 0.04–0.08 µm² whatever the length. Two bacteria side by side, at an angle, or one lying on
another double one of the two smaller deviations and reach χ ≳ 0.1 µm²; a chain or a rod,
however long, does not. χ is therefore the score of a hypothesis "this mask is one
bacterium"; a bent chain and the PSF's blur of a mask raise it a little, so the bound
``max_cross_section_um2`` (χ_max) is chosen on validation volumes (model card).

For an instance smaller than ``max_volume_um3`` (bacteria-sized: the smallest red cell is
≈ 50 µm³) with χ > χ_max, the hypotheses are the partitions along its contrast's saddle
hierarchy:

1. fragments — the h-maxima of the smoothed contrast s = G_σ * (n − n_m) inside the mask
   (height ``h_fraction`` · max s), grown by a watershed of −s within the mask;
2. agglomeration — the adjacent pair with the highest saddle (the largest min(s_a, s_b) over
   their shared voxel faces: the pass between their maxima) is merged if the union has
   χ ≤ χ_max, repeatedly, until no admissible pair is left: the coarsest partition whose
   pieces are all single bacteria by the score above, reached through the most plausible
   (highest-pass) merges first;
3. fragments still under ``min_piece_um3`` (below the smallest coccus, π/6 · 0.9³ ≈ 0.38 µm³)
   join the neighbour of highest saddle;
4. the partition is kept only if it explains the whole's width: its pieces' volume-weighted
   cross-section Σ V_j χ_j / (V χ) ≤ ``max_piece_ratio`` (κ). Two equal tubes of radius r
   side by side have, across, σ² = r²/4 + r² against r²/4 for each, so the ratio is ≈ 0.45;
   a single tube, however curved or blurred (a mask inflated by the reconstruction), cut at
   its necks gives pieces as wide as itself, ratio ≈ 1.

An instance with χ ≤ χ_max is kept whole: collinear bacteria touching end to end (a rod
against a chain, two cocci) look like one tube and are not split by this rule (on the
validation fields neither the contrast's pass between them nor their contact face told them
from a chain's necks: both overlap over their whole range once blurred).

Curved chains (option ``max_turn_rad``). A chain bent along an arc widens χ by the arc's own
spread, so a long bent chain reads as two bacteria and is cut at a neck. The bent score χ_b
(:func:`bent_cross_section_um2`) measures the cross-section about a parabolic centre line
instead of the straight axis, for a parabola whose end tangents turn by at most
``max_turn_rad`` (a gentle bend, not two rods in a V); steps 1–3 then use χ_b, the width test
of step 4 keeps the straight χ.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from holo.segmentation.instances import relabel_sequential

__all__ = ["bent_cross_section_um2", "cross_section_um2", "split_by_cross_section", "saddle_heights"]

_FULL = np.ones((3, 3, 3), bool)


def _moments(lab: np.ndarray, n: int, voxel_size_um) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label 0..n: voxel count, Σ x (µm) and Σ x xᵀ (µm²) of the voxel centres."""
    idx = np.nonzero(lab)
    k = lab[idx]
    x = np.stack(idx, axis=1) * np.asarray(voxel_size_um, float)
    cnt = np.bincount(k, minlength=n + 1).astype(float)
    s1 = np.stack([np.bincount(k, x[:, i], minlength=n + 1) for i in range(3)], axis=1)
    s2 = np.stack([np.stack([np.bincount(k, x[:, i] * x[:, j], minlength=n + 1) for j in range(3)], axis=1)
                   for i in range(3)], axis=1)
    return cnt, s1, s2


def _chi(cnt: float, s1: np.ndarray, s2: np.ndarray, voxel_size_um) -> float:
    """σ₂σ₃ (µm²) from the moments of one voxel set; each voxel a uniform box (+ v²/12)."""
    mu = s1 / cnt
    cov = s2 / cnt - np.outer(mu, mu) + np.diag(np.asarray(voxel_size_um, float) ** 2 / 12.0)
    ev = np.sqrt(np.maximum(np.linalg.eigvalsh(cov), 0.0))  # ascending
    return float(ev[0] * ev[1])


def cross_section_um2(mask: np.ndarray, voxel_size_um) -> float:
    """χ = σ₂σ₃ (µm²), the product of the two smaller principal standard deviations of the
    voxels of ``mask`` (module docstring); 0 for an empty mask."""
    m = np.asarray(mask, bool).astype(np.int32)
    if not m.any():
        return 0.0
    cnt, s1, s2 = _moments(m, 1, voxel_size_um)
    return _chi(cnt[1], s1[1], s2[1], voxel_size_um)


def bent_cross_section_um2(coords_um: np.ndarray, voxel_size_um, max_turn_rad: float = np.pi) -> float:
    """χ_b (µm²): the cross-section σ₂σ₃ about a parabolic centre line instead of a straight one.

    With t the coordinate along the first principal axis e₁ and w = P(x − x̄) the two across
    (P = [e₂ e₃]ᵀ), the centre line is the least-squares fit w ≈ c₀ + c₁ t + c₂ t² and

        χ_b = √det(Cov(w − ŵ) + P diag(v²/12) Pᵀ),

    the voxels' spread about the fitted arc (each voxel a uniform box, as in χ). For a straight
    tube χ_b = χ (the fit removes nothing); a chain bent along an arc of sagitta s keeps its
    tube's d²/16 where χ grows by the arc's own spread (≈ s²/10 on one axis); two bacteria side
    by side, crossing or at a sharp angle stay wide about any parabola. A parabola whose end
    tangents turn by more than ``max_turn_rad`` is no chain's gentle bend (two rods touching
    in a V): χ about the straight axis is returned then. ``coords_um``: (N, 3) voxel centres
    in µm; 0 for fewer than 4 voxels.
    """
    x = np.asarray(coords_um, float)
    if len(x) < 4:
        return 0.0
    x = x - x.mean(axis=0)
    _, vec = np.linalg.eigh(x.T @ x)  # ascending: vec[:, 2] the long axis
    t, w = x @ vec[:, 2], x @ vec[:, :2]
    half_um = max(float(np.abs(t).max()), 1e-9)
    t = t / half_um
    design = np.stack([np.ones_like(t), t, t * t], axis=1)
    coef, *_ = np.linalg.lstsq(design, w, rcond=None)
    box = vec[:, :2].T @ np.diag(np.asarray(voxel_size_um, float) ** 2 / 12.0) @ vec[:, :2]
    ends = [np.r_[1.0, (coef[1] + sign * 2.0 * coef[2]) / half_um] for sign in (-1.0, 1.0)]
    turn = np.arccos(np.clip(ends[0] @ ends[1] / (np.linalg.norm(ends[0]) * np.linalg.norm(ends[1])), -1.0, 1.0))
    r = w - design @ coef if turn <= max_turn_rad else w
    cov = r.T @ r / len(r) + box
    return float(np.sqrt(max(np.linalg.det(cov), 0.0)))


def saddle_heights(lab: np.ndarray, s: np.ndarray) -> dict[tuple[int, int], float]:
    """{(a, b): max over the 6-faces shared by labels a < b of min(s_a, s_b)}: the pass
    between two adjacent regions of a relief s."""
    keys, vals = [], []
    n = int(lab.max(initial=0))
    for ax in range(lab.ndim):
        a, b = np.moveaxis(lab, ax, 0), np.moveaxis(s, ax, 0)
        la, lb = a[:-1], a[1:]
        m = (la != lb) & (la > 0) & (lb > 0)
        keys.append(np.minimum(la[m], lb[m]).astype(np.int64) * (n + 1) + np.maximum(la[m], lb[m]))
        vals.append(np.minimum(b[:-1][m], b[1:][m]))
    keys, vals = np.concatenate(keys), np.concatenate(vals).astype(np.float64)
    if keys.size == 0:
        return {}
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    u, start = np.unique(keys, return_index=True)
    top = np.maximum.reduceat(vals, start)
    return {(int(k // (n + 1)), int(k % (n + 1))): float(v) for k, v in zip(u, top)}


def _fragments(mask: np.ndarray, s: np.ndarray, h_fraction: float) -> tuple[np.ndarray, int]:
    """Watershed of −s inside ``mask`` from the h-maxima of s (h = ``h_fraction`` · max s)."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    peak = float(s[mask].max())
    if peak <= 0:
        return mask.astype(np.int32), 1
    seeds, n = ndi.label(h_maxima(np.where(mask, s, 0).astype(np.float32), h_fraction * peak).astype(bool) & mask,
                         structure=_FULL)
    if n < 2:
        return mask.astype(np.int32), 1
    return watershed(-s, seeds, mask=mask).astype(np.int32), n


def _coords_by_label(lab: np.ndarray, n: int, voxel_size_um) -> list[np.ndarray]:
    """Voxel centres (µm, (N, 3)) of each label 0..n (0: empty)."""
    idx = np.nonzero(lab)
    k = lab[idx]
    order = np.argsort(k, kind="stable")
    x = (np.stack(idx, axis=1) * np.asarray(voxel_size_um, float))[order]
    return [np.zeros((0, 3))] + np.split(x, np.cumsum(np.bincount(k, minlength=n + 1)[1:])[:-1])


def _agglomerate(frag: np.ndarray, n: int, s: np.ndarray, voxel_size_um, max_chi: float,
                 min_piece_vox: float, max_turn_rad: float = 0.0) -> np.ndarray:
    """Lookup table fragment → piece (steps 2 and 3 of the module docstring); ``max_turn_rad``
    > 0: the union's score is χ_b (:func:`bent_cross_section_um2`) instead of χ."""
    bent = max_turn_rad > 0
    cnt, s1, s2 = _moments(frag, n, voxel_size_um)
    stats = {i: [cnt[i], s1[i], s2[i]] for i in range(1, n + 1)}
    coords = _coords_by_label(frag, n, voxel_size_um) if bent else None
    members = {i: [i] for i in range(1, n + 1)}

    def union_chi(p, q):
        if bent:
            return bent_cross_section_um2(np.concatenate([coords[f] for f in members[p] + members[q]]), voxel_size_um,
                                          max_turn_rad)
        return _chi(*[x + y for x, y in zip(stats[p], stats[q])], voxel_size_um)
    edges = saddle_heights(frag, s)
    parent = np.arange(n + 1)

    def merge(a, b):  # b into a
        parent[parent == b] = a
        stats[a] = [p + q for p, q in zip(stats[a], stats.pop(b))]
        members[a] += members.pop(b)
        joined: dict[tuple[int, int], float] = {}
        for (p, q), v in edges.items():
            p, q = (a if p == b else p), (a if q == b else q)
            if p != q:
                key = (min(p, q), max(p, q))
                joined[key] = max(joined.get(key, -np.inf), v)
        edges.clear()
        edges.update(joined)

    merged = True
    while merged:
        merged = False
        for (p, q), _ in sorted(edges.items(), key=lambda e: -e[1]):
            if union_chi(p, q) <= max_chi:
                merge(p, q)
                merged = True
                break
    while True:
        small = [g for g in stats if stats[g][0] < min_piece_vox and any(g in e for e in edges)]
        if not small:
            return parent
        g = min(small, key=lambda g: stats[g][0])
        (p, q), _ = max(((e, v) for e, v in edges.items() if g in e), key=lambda e: e[1])
        merge(q, g) if p == g else merge(p, g)


def _piece_ratio(piece: np.ndarray, ids, voxel_size_um, chi_whole: float) -> float:
    """Σ_j V_j χ_j / (V χ): the pieces' volume-weighted cross-section relative to the whole's
    (the moments of every piece from one pass over the box)."""
    cnt, s1, s2 = _moments(piece, int(piece.max()), voxel_size_um)
    vols = cnt[ids]
    chis = np.array([_chi(cnt[j], s1[j], s2[j], voxel_size_um) for j in ids])
    return float((vols * chis).sum() / (vols.sum() * chi_whole))


def split_by_cross_section(lab: np.ndarray, s: np.ndarray, voxel_size_um, *, max_cross_section_um2: float,
                           max_volume_um3: float = 15.0, h_fraction: float = 0.05,
                           min_piece_um3: float = 0.3, max_piece_ratio: float = 1.0,
                           max_turn_rad: float = 0.0) -> np.ndarray:
    """Split every instance smaller than ``max_volume_um3`` whose cross-section χ = σ₂σ₃
    exceeds ``max_cross_section_um2`` into the coarsest partition of single-bacterium pieces,
    if their cross-section is at most ``max_piece_ratio`` times the whole's (module docstring). ``s`` is the smoothed contrast n − n_m on the grid of ``lab``.
    ``max_turn_rad`` > 0: the trigger and the merges score χ_b about a parabolic centre line
    turning by at most that angle (:func:`bent_cross_section_um2`), so a gently curved chain
    is one tube; the width test keeps the straight χ of the whole and of the pieces (a
    fitted arc would make any cut of a wide, blurred mask look thinner). 0 (default): χ
    about the straight axis everywhere.
    Labels renumbered 1..K (the other instances keep their order). ``max_cross_section_um2``
    ≤ 0 disables the step.
    """
    lab = np.asarray(lab).astype(np.int32, copy=False)
    if lab.shape != np.shape(s):
        raise ValueError(f"s must have the shape of lab {lab.shape}, got {np.shape(s)}")
    n = int(lab.max(initial=0))
    if n == 0 or max_cross_section_um2 <= 0:
        return lab
    vs = np.asarray(voxel_size_um, float)
    vv = float(np.prod(vs))
    cnt = np.bincount(lab.ravel(), minlength=n + 1)
    out, nxt = None, n + 1
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None or cnt[k] * vv >= max_volume_um3:
            continue
        m = lab[sl] == k  # the moments of small instances only, on their boxes
        chi = cross_section_um2(m, vs)
        if (bent_cross_section_um2(np.argwhere(m) * vs, vs, max_turn_rad) if max_turn_rad > 0 else chi) \
                <= max_cross_section_um2:
            continue
        frag, nf = _fragments(m, np.asarray(s[sl], np.float32), h_fraction)
        if nf < 2:
            continue
        piece = _agglomerate(frag, nf, np.asarray(s[sl], np.float32), vs, max_cross_section_um2,
                             min_piece_um3 / vv, max_turn_rad)[frag]
        ids = np.unique(piece[m])
        if len(ids) < 2 or _piece_ratio(piece, ids, vs, chi) > max_piece_ratio:
            continue
        out = lab.copy() if out is None else out
        o = out[sl]
        for j in ids[1:]:
            o[piece == j] = nxt
            nxt += 1
    if out is None:
        return lab
    return relabel_sequential(out, np.bincount(out.ravel(), minlength=nxt) > 0)
