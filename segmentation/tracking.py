"""Linking per-frame cell instances over time: tracks, divisions, gaps (laptrack).

A detection is one labelled cell in one frame: its centroid r (µm) and its dry mass m (pg;
its volume when no RI is at hand). Frames are linked by the linear-assignment tracker of
laptrack (Jaqaman et al. 2008, LAP with gap closing and splitting) with a cost that uses
both, since a cell's dry mass changes by a few percent per frame while its position
changes by a fraction of its size:

* **frame to frame** (and across ``gap_frames`` missing frames):
  C = |Δr|² + (w Δln m)², accepted while C ≤ d_max²; starting or ending a track costs
  d_max² (not laptrack's percentile of the link costs, which with few cells in view
  would refuse ordinary links);
* **division** (mother M at t, daughters A, B at t + 1): both daughters within d_max of
  M and C = |Δr_A|² + |Δr_B|² + (w ln((m_A + m_B)/m_M))², since the daughters share
  their mother's mass;
* w = ``mass_weight_um`` converts a factor e in mass into a distance: with w = 2 d_max a
  mass change by e^{1/2} ≈ 1.65 alone reaches the cutoff, so neither a division (× ½) nor
  a merge of two cells (× 2) is ever a frame-to-frame link: a merged frame is bridged by
  gap closing, and a division is found by mass conservation (:func:`find_divisions`).

Gap closing can bridge a mother to a frame where her two daughters are merged (it carries
her mass); :func:`cut_at_hidden_divisions` cuts such a track where two daughters live in the
gap. The divisions kept are the set of least total cost (an exact set packing, so that two
neighbours dividing at once are not given each other's daughters). A division is kept only
when both daughter branches last ``min_branch_frames`` frames (or reach the end of the
series, or the sister of a short branch stays at a daughter's mass after it ends: a daughter
lost, :func:`_lost_daughters`): an over-segmented frame (one cell cut in two, which also
halves the mass) otherwise looks like a division. The short branch of a rejected division
becomes a track of its own and the long one continues the mother's track.

A cell the segmentation missed for one frame (its track bridged by gap closing) can be given
a mask after linking: its mask of the frame before, moved half-way to where it is seen next,
written where the segmentation left background (:func:`fill_one_frame_gaps`; no mass is read
through an invented mask).

Output: the detections table with ``track_id`` (one id per branch between divisions, Cell
Tracking Challenge convention) and ``parent_id`` (the mother branch, 0 for none).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import ndimage

from holo.segmentation.morphometrics import border_labels


__all__ = ["COORDINATES", "BOUNDARY_VOXELS", "TRACK_MARGIN_RESOLUTIONS", "TRACK_CONE_FRACTION", "territory_dry_mass_pg", "territory_neighbours", "contact_groups", "border_labels", "frame_detections", "link_cells", "join_fragments", "find_divisions", "cut_at_hidden_divisions", "prune_divisions", "one_frame_gaps", "fill_one_frame_gaps", "track_graph"]

#: Centroid columns of a detections table (µm, array order).
COORDINATES = ("centroid_z_um", "centroid_y_um", "centroid_x_um")
_LN2 = math.log(2.0)
#: Floor of the dry-mass share margins in voxels (boundary placement uncertainty of a segmenter).
BOUNDARY_VOXELS = 2.0


def frame_detections(instance: np.ndarray, voxel_size_um, *, ri: np.ndarray | None = None,
                     medium_index: float | None = None, frame: int = 0, wavelength_um: float = 0.532,
                     boundary_voxels: float = BOUNDARY_VOXELS) -> pd.DataFrame:
    """Detections of one labelled frame: ``frame, label, centroid_*_um, volume_um3``,
    ``touches_border`` (:func:`border_labels`: left out of growth fits) and, when ``ri`` is
    given, ``dry_mass_pg`` over each cell's territory of the excess RI.

    The share is the cell's territory (:func:`territory_dry_mass_pg`), its margins each
    floored at ``boundary_voxels`` voxels: a segmenter places a boundary to about a voxel,
    and a mask shifted by one voxel along y and x leaves true cell voxels up to √2 voxels
    outside it. These stay in the share, so the mass does not move with the mask (the
    tight-mask sum changes by the RI of a boundary layer, several percent for a small cell).
    """
    lab = np.asarray(instance)
    ids = np.unique(lab[lab > 0])
    vs = np.asarray(voxel_size_um, float)
    dv = float(vs.prod())
    out = {"frame": np.full(len(ids), int(frame), np.int64), "label": ids.astype(np.int64)}
    com = np.array(ndimage.center_of_mass(np.ones_like(lab, np.float32), lab, ids)).reshape(-1, 3)
    for i, col in enumerate(COORDINATES):
        out[col] = com[:, i] * vs[i] if len(ids) else np.zeros(0)
    out["volume_um3"] = np.asarray(ndimage.sum_labels(np.ones_like(lab, np.float32), lab, ids)) * dv
    out["touches_border"] = np.isin(ids, list(border_labels(lab)))
    if ri is not None:
        share = territory_dry_mass_pg(lab, ri, float(medium_index), vs, wavelength_um=wavelength_um,
                                      floor_um=float(boundary_voxels) * vs)
        out["dry_mass_pg"] = np.array([share.get(int(k), 0.0) for k in ids])
    return pd.DataFrame(out)


#: Margins of a time-lapse cell's share: c resolution lengths and κ missing-cone smears
#: (:func:`holo.segmentation.drymass.cell_margins_um`), three times the single-volume ones.
TRACK_MARGIN_RESOLUTIONS = 6.0
TRACK_CONE_FRACTION = 3.0


def territory_dry_mass_pg(instance: np.ndarray, ri: np.ndarray, medium_index: float, voxel_size_um, *,
                          wavelength_um: float = 0.532, floor_um=None, split: bool = False) -> dict[int, float]:
    """Dry mass (pg) of every cell over its territory, a share with wide margins: {label: m_k}.

    A growth rate is the slope of ln m over time, so the fraction of a cell's excess RI that
    its integration region holds must not change as the cell grows. The tomograph's transfer
    function keeps K = 0 (the total excess RI is conserved) but spreads it: laterally with
    the ringing tails of its sharp cut-off, axially over the missing cone (≈ a cot θ_ill for a
    cell of lateral radius a). The single-volume share (c = 2, κ = ½) holds a size-dependent
    fraction: a ball of radius 2 / 3 / 4 µm blurred by the twin's transfer function keeps
    0.75 / 0.77 / 0.82 of its mass in it, twin cells 0.75–0.9 (small) to 0.95–0.99 (large),
    so a growing cell gains fraction and its fitted k comes out high by up to 15 %. With
    c = :data:`TRACK_MARGIN_RESOLUTIONS`, κ = :data:`TRACK_CONE_FRACTION` the share holds
    0.94 / 0.99 / 1.00 of those balls; touching cells split the excess at equal normalised
    distance (:func:`holo.segmentation.drymass.mass_partition`), and

        m_k = (1/α) Σ_{owner = k} (n − n_m) ΔV.

    With ``split`` the overlapping territories share each voxel's excess in proportion to each
    cell's expected blurred contribution instead (:mod:`holo.segmentation.mass_split`; same
    total): more robust to a one-voxel mask shift between two touching balls, but on the twin
    series it left growth within 5 % unchanged (pipeline 20/30, degraded 105/113) at 10× the
    cost (one FFT pair per touching cell), so it is not the default.

    A whole-volume Voronoi territory in one common metric was measured worse on crowded
    twin series (the median cell's metric mis-splits small cells beside large ones). The
    medium index must be right: an error δn_m biases m_k by −δn_m V_share / α.
    """
    from holo.segmentation import drymass

    lab = np.asarray(instance)
    vs = np.asarray(voxel_size_um, float)
    margins = drymass.cell_margins_um(lab, vs, wavelength_um, float(medium_index), resolutions=TRACK_MARGIN_RESOLUTIONS,
                                      cone_fraction=TRACK_CONE_FRACTION, floor_um=floor_um)
    if split:
        from holo.segmentation.data import otf_support
        from holo.segmentation.mass_split import split_dry_mass_pg

        otf = otf_support(lab.shape, vs, wavelength_um=wavelength_um, medium_index=float(medium_index))
        return split_dry_mass_pg(lab, ri, float(medium_index), vs, margins, otf)
    return drymass.partition_dry_mass_pg(ri, drymass.mass_partition(lab, vs, margins), float(medium_index), vs)


def _surface_voxels(instance: np.ndarray):
    """``(coords (n, 3), labels (n,))`` of the labelled voxels with a 6-neighbour of another value,
    sorted by label. The voxel of a label nearest to any point outside it is one of these."""
    lab = np.asarray(instance)
    edge = np.zeros(lab.shape, bool)
    for ax in range(lab.ndim):
        a, e = np.moveaxis(lab, ax, 0), np.moveaxis(edge, ax, 0)
        step = a[1:] != a[:-1]
        e[1:] |= step
        e[:-1] |= step
    coords = np.argwhere(edge & (lab > 0))
    labels = lab[tuple(coords.T)]
    order = np.argsort(labels, kind="stable")
    return coords[order], labels[order]


def territory_neighbours(instance: np.ndarray, voxel_size_um, medium_index: float, wavelength_um: float = 0.532, *,
                         labels=None, floor_um=None) -> dict[int, set]:
    """{k: the other labels with a voxel within cell k's territory margin} for every cell k of
    ``labels`` (default: all): ρ_k ≤ 1 in the metric of :func:`territory_dry_mass_pg`
    (:func:`holo.segmentation.drymass.cell_distance`). A neighbour's excess RI is blurred into
    k's territory there, and k's into the neighbour's: their masses share the contact zone.

    The nearest voxels of two labels are surface voxels of both, so ρ_k is evaluated between
    surface voxels only (a k-d tree of k's surface in the metric scaled by its margins, queried
    within 1) instead of a distance transform of k's whole box: the same relation (identical on
    160 twin frames), 0.5 instead of 1.5 CPU-s on a 96 × 512² frame with 30 cells."""
    from scipy.spatial import cKDTree

    from holo.segmentation import drymass

    inst = np.asarray(instance)
    vs = np.asarray(voxel_size_um, float)
    margins = drymass.cell_margins_um(inst, vs, wavelength_um, float(medium_index), resolutions=TRACK_MARGIN_RESOLUTIONS,
                                      cone_fraction=TRACK_CONE_FRACTION, floor_um=floor_um)
    wanted = margins if labels is None else [int(k) for k in labels if int(k) in margins]
    coords, owner = _surface_voxels(inst)
    out = {}
    for k in wanted:
        scale = vs / np.asarray(margins[k], float)
        lo, hi = np.searchsorted(owner, [k, k + 1])
        own = coords[lo:hi]
        reach = np.ceil(1.0 / scale).astype(int)
        near = np.flatnonzero((owner != k) & np.all((coords >= own.min(0) - reach) & (coords <= own.max(0) + reach), axis=1))
        if near.size == 0:
            out[int(k)] = set()
            continue
        dist, _ = cKDTree(own * scale).query(coords[near] * scale, distance_upper_bound=1.0 + 1e-6)
        out[int(k)] = {int(j) for j in np.unique(owner[near][np.isfinite(dist)])}
    return out


def contact_groups(instance: np.ndarray, voxel_size_um, medium_index: float, wavelength_um: float = 0.532, *,
                   floor_um=None, near: dict | None = None) -> dict[int, int]:
    """{label: group} of one frame: cells joined (transitively) by :func:`territory_neighbours`
    share a group id 1, 2, … (in the order of their smallest label); a cell alone gets 0.

    The partition splits the blurred excess of a contact zone by distance, and that share drifts
    by several percent from frame to frame (twin series: SD of ln m 3.3 % against 1.1 % for a
    cell alone), while the group's total is conserved (0.7 %): the growth fit weighs such
    frames less and fits the group's total (:func:`holo.segmentation.growth.fit_growth_rates`).
    ``near``: the frame's :func:`territory_neighbours` of every label when already computed."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if near is None:
        near = territory_neighbours(instance, voxel_size_um, medium_index, wavelength_um, floor_um=floor_um)
    labels = sorted(near)
    index = {k: i for i, k in enumerate(labels)}
    edges = np.array([(index[k], index[j]) for k in labels for j in near[k] if j in index], int).reshape(-1, 2)
    n = len(labels)
    _, comp = connected_components(coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)),
                                   directed=False)
    size = np.bincount(comp, minlength=1)
    ids, out = {}, {}
    for k, c in zip(labels, comp):
        out[k] = ids.setdefault(int(c), len(ids) + 1) if size[c] > 1 else 0
    return out


def link_cells(det: pd.DataFrame, *, max_distance_um: float = 10.0, mass_weight_um: float | None = None,
               gap_frames: int = 2, divisions: bool = True, min_branch_frames: int = 2,
               field_um=None, join: bool = True) -> pd.DataFrame:
    """Link detections into tracks with divisions (costs in the module docstring).

    Parameters
    ----------
    det : DataFrame
        ``frame``, :data:`COORDINATES` and ``dry_mass_pg`` (or ``volume_um3``); other
        columns are carried through.
    max_distance_um
        d_max: the farthest a cell centre moves between frames (and from mother to daughter).
    mass_weight_um
        w (default 2 d_max). 0 links by position only.
    gap_frames
        Frames a cell may be missing (segmentation dropout) and still keep its track.
    divisions
        Look for divisions (:func:`find_divisions`).
    min_branch_frames
        See :func:`prune_divisions`.
    field_um : (Y, X) µm, optional
        Lateral size of the field (centroids measured from its corner): a daughter branch
        that ends within d_max of its edge left the field and counts as long.
    join
        Rejoin cells cut in two by the segmenter first (:func:`join_fragments`).

    Returns
    -------
    DataFrame
        ``det`` sorted by frame with ``track_id`` (1..N) and ``parent_id`` (0 = none)
        (and ``label_joined`` with ``join``).
    """
    from laptrack import LapTrack

    det = det.reset_index(drop=True).copy()
    if det.empty:
        return det.assign(track_id=pd.Series(dtype=np.int64), parent_id=pd.Series(dtype=np.int64))
    w = 2.0 * max_distance_um if mass_weight_um is None else float(mass_weight_um)
    if join:
        det = join_fragments(det, max_distance_um=max_distance_um, mass_weight_um=w)
    det["_q"] = w * np.log(_size(det))
    cut = float(max_distance_um) ** 2
    lt = LapTrack(metric="sqeuclidean", cutoff=cut, gap_closing_metric="sqeuclidean", gap_closing_cutoff=cut,
                  gap_closing_max_frame_count=int(gap_frames), splitting_cutoff=False, merging_cutoff=False,
                  track_start_cost=cut, track_end_cost=cut, segment_start_cost=cut, segment_end_cost=cut)
    det["_row"] = np.arange(len(det))
    tdf, _, _ = lt.predict_dataframe(det, [*COORDINATES, "_q"], frame_col="frame", only_coordinate_cols=False)
    track = tdf.sort_values("_row")["track_id"].to_numpy()
    parents = {}
    if divisions:
        track = cut_at_hidden_divisions(det, track, max_distance_um=max_distance_um, mass_weight_um=w)
        parents = find_divisions(det, track, max_distance_um=max_distance_um, mass_weight_um=w, gap_frames=gap_frames)
    frames = det["frame"].to_numpy()
    if field_um is not None:
        yx = det[list(COORDINATES[1:])].to_numpy(float)
        edge = np.min(np.concatenate([yx, np.asarray(field_um, float)[None, :] - yx], axis=1), axis=1)
        left = {int(t) for t in np.unique(track) if edge[track == t][np.argmax(frames[track == t])] < max_distance_um}
    else:
        left = set()
    left |= _lost_daughters(det, track, parents)
    track, parents = prune_divisions(frames, track, parents, int(min_branch_frames), left=left)
    uniq = {t: i for i, t in enumerate(sorted(set(track.tolist())), start=1)}
    det["track_id"] = [uniq[t] for t in track]
    det["parent_id"] = [uniq.get(parents.get(t, -1), 0) for t in track]
    return det.drop(columns=["_q", "_row"]).sort_values(["frame", "track_id"]).reset_index(drop=True)


def join_fragments(det: pd.DataFrame, *, max_distance_um: float, mass_weight_um: float) -> pd.DataFrame:
    """Rejoin a cell the segmenter cut in two, using the next frames: one row per cell.

    Two detections a, b of frame t are the halves of one cell when they touch
    (|r_a − r_b| ≤ R_a + R_b, R the radius of each one's volume), each holds 20–80 % of
    the pair's mass, their union u (m_u = m_a + m_b, r_u their mass-weighted centroid) links
    to one detection c of frame t + 1 (C = |r_c − r_u|² + (w ln(m_c/m_u))² ≤ d_max²),
    c itself goes on as one cell (links to a detection d of t + 2; not tested, so not
    joined, in the last two frames), and either neither half alone links to c (halves of
    about equal mass: (w ln 2)² > d_max²) or the union explains the mass better than the
    larger half a does: C_u < C_a and |ln(m_d/m_u)| < |ln(m_d/m_a)| (an unequal cut, 60/40 to
    70/30, whose larger half alone is still within the cut-off). A cell and a small touching
    neighbour do not qualify: the cell alone links to c more cheaply than the pair.
    Daughters just born fail the test: at t + 1 they are two cells again. The cheapest pairs
    are joined first, each detection once.

    A joined row sums ``dry_mass_pg`` and ``volume_um3``, takes the size-weighted mean of
    the centroid and ``mean_ri``, touches the border when either half does, takes the other
    columns of the larger half, and names the smaller half's label in ``label_joined`` (0
    elsewhere), so that both labels map to its track.
    """
    det = det.reset_index(drop=True)
    frames = det["frame"].to_numpy()
    r = det[list(COORDINATES)].to_numpy(float)
    m, radius = _size(det), _radius_um(det)
    d2max, w = float(max_distance_um) ** 2, float(mass_weight_um)
    rows = {int(f): np.flatnonzero(frames == f) for f in np.unique(frames)}

    def link(ru, mu, f):  # cheapest one-to-one link cost of (ru, mu) into frame f, and its row
        js = rows.get(f, np.zeros(0, int))
        if not len(js):
            return math.inf, -1
        c = _link_cost(ru, mu, r[js], m[js], w)
        return float(c.min()), int(js[np.argmin(c)])

    last = int(frames.max()) if len(frames) else 0
    cands = []
    for f, js in rows.items():
        if f >= last:
            continue
        for ai, a in enumerate(js):
            for b in js[ai + 1:]:
                if not 0.2 <= m[a] / (m[a] + m[b]) <= 0.8 or np.sqrt(np.sum((r[a] - r[b]) ** 2)) > radius[a] + radius[b]:
                    continue
                mu = m[a] + m[b]
                cost, c = link((m[a] * r[a] + m[b] * r[b]) / mu, mu, f + 1)
                if cost > d2max or f + 1 >= last:
                    continue
                c_next, d = link(r[c], m[c], f + 2)
                if c_next > d2max:
                    continue
                alone = min(_link_cost(r[a], m[a], r[c], m[c], w), _link_cost(r[b], m[b], r[c], m[c], w))
                big = max(m[a], m[b])
                if alone > d2max or (cost < alone and abs(math.log(m[d] / mu)) < abs(math.log(m[d] / big))):
                    cands.append((cost, int(a), int(b)))
    used, pairs = set(), []
    for cost, a, b in sorted(cands):
        if a not in used and b not in used:
            used |= {a, b}
            pairs.append((a, b) if m[a] >= m[b] else (b, a))
    return _merge_rows(det, pairs)


def _link_cost(r0, m0, r1, m1, w):
    """Frame-to-frame link cost |r₁ − r₀|² + (w ln(m₁/m₀))² (broadcasts over rows of r1, m1)."""
    return np.sum((np.asarray(r1) - r0) ** 2, axis=-1) + (w * np.log(np.asarray(m1) / m0)) ** 2


def _merge_rows(det: pd.DataFrame, pairs: list) -> pd.DataFrame:
    """Rows ``a`` absorb rows ``b`` (pairs (a, b)) as :func:`join_fragments` describes."""
    det = det.copy()
    det["label_joined"] = np.int64(0)
    if not pairs:
        return det
    a, b = (np.array(v, int) for v in zip(*pairs))
    wa, wb = _size(det)[a], _size(det)[b]
    for col in [*COORDINATES, "mean_ri"]:
        if col in det:
            vals = det[col].to_numpy(float)
            det.loc[a, col] = (wa * vals[a] + wb * vals[b]) / (wa + wb)
    for col in ("dry_mass_pg", "volume_um3"):
        if col in det:
            vals = det[col].to_numpy(float)
            det.loc[a, col] = vals[a] + vals[b]
    if "touches_border" in det:
        tb = det["touches_border"].to_numpy(bool)
        det.loc[a, "touches_border"] = tb[a] | tb[b]
    if "contact_group" in det:
        cg = det["contact_group"].to_numpy(np.int64)
        det.loc[a, "contact_group"] = np.maximum(cg[a], cg[b])
    if "label" in det:
        det.loc[a, "label_joined"] = det["label"].to_numpy()[b]
    det = det.drop(index=b).reset_index(drop=True)
    if "contact_group" in det:  # two halves that touched only each other: the joined cell is alone
        cg = det["contact_group"].to_numpy(np.int64)
        size = det.groupby(["frame", "contact_group"])["contact_group"].transform("size").to_numpy()
        det["contact_group"] = np.where((cg > 0) & (size < 2), 0, cg)
    return det


def _size(det: pd.DataFrame) -> np.ndarray:
    """Dry mass (pg), or volume (µm³) without RI, floored at 1e-6."""
    col = "dry_mass_pg" if "dry_mass_pg" in det else "volume_um3"
    return np.maximum(np.asarray(det[col], float), 1e-6)


def find_divisions(det: pd.DataFrame, track: np.ndarray, *, max_distance_um: float, mass_weight_um: float,
                   gap_frames: int = 2) -> dict:
    """Mothers of track starts by conservation of mass and of the centre of mass:
    {daughter track: mother track}.

    A track M last seen at frame f_M (before the last frame) and two tracks A, B first seen
    at f_A, f_B in (f_M, f_M + 1 + gap_frames] form a candidate division when

    * the daughters' centre of mass r_c = (m_A r_A + m_B r_B)/(m_A + m_B) lies within
      d_max √Δf of M's last centroid (Δf = min(f_A, f_B) − f_M; a division does not move
      the centre of mass, a random walk spreads as √Δf), as for a frame-to-frame link;
    * the daughters touch: |r_A − r_B| ≤ R_A + R_B + d_max, R = (3V/4π)^{1/3} the radius of
      each one's volume (born side by side, each moves at most d_max before seen);
    * each holds 20–80 % of the pair's mass.

    Its cost, accepted up to 2 d_max², is |r_c − r_M|²/Δf + (w ln((m_A + m_B)/m_M))²
    + ½ d_max² n_miss, where n_miss = (min(f_A, f_B) − 1 − f_M) + |f_A − f_B| is the fewest
    detections the segmentation must have missed (mother frames before the division,
    daughter frames after it, the division placed at min(f_A, f_B)): an explanation that
    needs more misses is less likely. The
    divisions kept are the set of largest total gain Σ (2 d_max² − C) (:func:`_best_divisions`),
    each track once a mother and once a daughter.
    """
    frames = det["frame"].to_numpy()
    r = det[list(COORDINATES)].to_numpy(float)
    m = _size(det)
    radius = _radius_um(det)
    last_frame = int(frames.max())
    first = {int(t): int(np.flatnonzero(track == t)[np.argmin(frames[track == t])]) for t in np.unique(track)}
    last = {int(t): int(np.flatnonzero(track == t)[np.argmax(frames[track == t])]) for t in np.unique(track)}
    d2max = float(max_distance_um) ** 2
    cands = []
    for mom, i in last.items():
        if frames[i] >= last_frame:
            continue
        near = [t for t, j in first.items() if t != mom and 1 <= frames[j] - frames[i] <= 1 + int(gap_frames)
                and np.sum((r[j] - r[i]) ** 2) <= 4.0 * d2max * (frames[j] - frames[i])]
        for ai, a in enumerate(near):
            for b in near[ai + 1:]:
                cost = _division_cost(i, first[a], first[b], frames, r, m, radius, float(max_distance_um),
                                      float(mass_weight_um))
                if cost <= 2.0 * d2max:
                    cands.append((cost, mom, a, b))
    parents = {}
    for k in _best_divisions([(mom, (a, b)) for _, mom, a, b in cands], [2.0 * d2max - c for c, *_ in cands]):
        parents[cands[k][2]] = parents[cands[k][3]] = cands[k][1]
    return parents


def _best_divisions(items: list, gains: list) -> list:
    """Indices of the candidates (mother, (daughters…)) of largest total gain, each track
    once a mother and once a daughter: max Σ g_c x_c, x_c ∈ {0, 1}, subject to
    Σ_{c: mother(c) = M} x_c ≤ 1 and Σ_{c ∋ daughter D} x_c ≤ 1 (a set packing; a few dozen
    candidates, solved exactly by scipy's HiGHS MILP), g_c = 2 d_max² − C_c ≥ 0 for an
    accepted cost. Two adjacent mothers dividing at once then get the pairing of least total
    cost, not the one that takes the cheapest division first."""
    if not items:
        return []
    from scipy.optimize import LinearConstraint, milp
    from scipy.sparse import coo_matrix

    rows, cols = [], []
    keys: dict = {}
    for k, (mom, kids) in enumerate(items):
        for key in (("m", mom), *(("d", d) for d in kids)):
            rows.append(keys.setdefault(key, len(keys)))
            cols.append(k)
    a_mat = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(keys), len(items)))
    res = milp(-np.asarray(gains, float), constraints=LinearConstraint(a_mat, -np.inf, 1.0),
               integrality=np.ones(len(items)), bounds=(0, 1))
    if res.x is None:  # HiGHS found no solution (not expected for a packing): cheapest first
        return _greedy_divisions(items, gains)
    return [int(k) for k in np.flatnonzero(res.x > 0.5)]


def _greedy_divisions(items: list, gains: list) -> list:
    """Candidates taken from the largest gain down, each track once a mother and once a daughter."""
    out, mothers, daughters = [], set(), set()
    for k in np.argsort(-np.asarray(gains, float), kind="stable"):
        mom, kids = items[k]
        if gains[k] <= 0 or mom in mothers or daughters & set(kids):
            continue
        mothers.add(mom)
        daughters |= set(kids)
        out.append(int(k))
    return out


def _radius_um(det: pd.DataFrame) -> np.ndarray:
    """Radius of the sphere of each detection's volume (0 without ``volume_um3``)."""
    if "volume_um3" not in det:
        return np.zeros(len(det))
    return np.cbrt(3.0 * np.maximum(np.asarray(det["volume_um3"], float), 0.0) / (4.0 * math.pi))


def _division_cost(i, ja, jb, frames, r, m, radius, d_max, w) -> float:
    """Cost of mother row i dividing into daughter rows ja, jb (:func:`find_divisions`); inf
    when the daughters' shares, contact or centre of mass rule it out."""
    ma, mb = m[ja], m[jb]
    if not 0.2 <= ma / (ma + mb) <= 0.8:
        return math.inf
    if np.sqrt(np.sum((r[ja] - r[jb]) ** 2)) > radius[ja] + radius[jb] + d_max:
        return math.inf
    fa, fb, fm = int(frames[ja]), int(frames[jb]), int(frames[i])
    df = min(fa, fb) - fm
    d2 = float(np.sum(((ma * r[ja] + mb * r[jb]) / (ma + mb) - r[i]) ** 2)) / df
    if d2 > d_max**2:
        return math.inf
    n_miss = (df - 1) + abs(fa - fb)
    return d2 + (w * math.log((ma + mb) / m[i])) ** 2 + 0.5 * d_max**2 * n_miss


def cut_at_hidden_divisions(det: pd.DataFrame, track: np.ndarray, *, max_distance_um: float,
                            mass_weight_um: float) -> np.ndarray:
    """Cut a track bridged across a division: new track ids after the gap.

    Gap closing may link a mother (frame f₀) to a detection at f₁ > f₀ + 1 in which her two
    daughters are merged (it has the mother's mass). The daughters then exist in between:
    two tracks that start at the same frame in (f₀, f₁) within d_max √Δf of the mother, whose
    masses sum to hers (|w ln((m_A + m_B)/m_M)| ≤ d_max) and that both go on past f₁ (the
    halves of a cell cut in one frame do not). Such a track is cut after f₀, so that
    :func:`find_divisions` sees the mother end.
    """
    frames = det["frame"].to_numpy()
    r = det[list(COORDINATES)].to_numpy(float)
    m = _size(det)
    track = np.asarray(track).copy()
    starts: dict[int, list] = {}
    for t in np.unique(track):
        j = int(np.flatnonzero(track == t)[np.argmin(frames[track == t])])
        starts.setdefault(int(frames[j]), []).append((j, int(frames[track == t].max())))
    next_id = int(track.max()) + 1
    for t in np.unique(track):
        rows = np.flatnonzero(track == t)
        rows = rows[np.argsort(frames[rows])]
        for i, k in zip(rows[:-1], rows[1:]):
            if not _division_in_gap(i, k, frames, r, m, starts, max_distance_um, mass_weight_um):
                continue
            later = rows[frames[rows] > frames[i]]
            track[later] = next_id
            next_id += 1
            break
    return track


def _division_in_gap(i, k, frames, r, m, starts, d_max, w) -> bool:
    """Whether two tracks starting at one frame strictly between detections i and k, both
    ending after k (``starts``: {frame: [(first row, last frame)]}), sum to m_i."""
    for f in range(int(frames[i]) + 1, int(frames[k])):
        df = f - int(frames[i])
        near = [j for j, end in starts.get(f, []) if end > frames[k] and np.sum((r[j] - r[i]) ** 2) <= d_max**2 * df]
        for a, ja in enumerate(near):
            for jb in near[a + 1:]:
                if abs(w * math.log((m[ja] + m[jb]) / m[i])) <= d_max and 0.2 <= m[ja] / (m[ja] + m[jb]) <= 0.8:
                    return True
    return False


def _lost_daughters(det: pd.DataFrame, track: np.ndarray, parents: dict) -> set:
    """Daughters whose branch ends while her sister keeps a daughter's mass: a cell cut in
    two by the segmenter is whole again when its small half ends (the other half then
    regains the mother's mass m_M), whereas a daughter that was lost (left the field, missed
    in the last frames) leaves her sister at her own birth mass m_S0. Daughter A is lost when
    her sister's mass m_S at her first detection after A's last one satisfies
    |ln(m_S/m_S0)| < |ln(m_S/m_M)|; :func:`prune_divisions` counts her branch as long."""
    frames = det["frame"].to_numpy()
    m = _size(det)
    kids: dict[int, list] = {}
    for c, p in parents.items():
        kids.setdefault(p, []).append(c)
    out = set()
    for p, cs in kids.items():
        if len(cs) != 2:
            continue
        pm = np.flatnonzero(track == p)
        m_mom = m[pm[np.argmax(frames[pm])]]
        for a, sis in (cs, cs[::-1]):
            ra, rs = np.flatnonzero(track == a), np.flatnonzero(track == sis)
            rs = rs[np.argsort(frames[rs])]
            after = rs[frames[rs] > frames[ra].max()]
            if len(after) and abs(math.log(m[after[0]] / m[rs[0]])) < abs(math.log(m[after[0]] / m_mom)):
                out.add(int(a))
    return out


def prune_divisions(frames: np.ndarray, track: np.ndarray, parents: dict, min_branch_frames: int, *, left=()):
    """Undo divisions whose daughter branches do not both last ``min_branch_frames``.

    A branch lasts from its first to its last detection (inclusive); one that reaches the
    last frame of the series, divides again or is in ``left`` (left the field) counts as long. For a rejected division the
    longest daughter (the most frames) takes the mother's track id and her children, the
    other becomes a parentless track. A mother with more than two children keeps the two
    longest.

    Returns
    -------
    (track, parents)
        Updated per-detection track ids and the {child: parent} map.
    """
    track = np.asarray(track).copy()
    parents = dict(parents)
    last = int(np.max(frames)) if len(frames) else 0
    changed = True
    while changed:
        changed = False
        span = {t: (int(frames[track == t].min()), int(frames[track == t].max())) for t in np.unique(track)}
        kids: dict[int, list] = {}
        for c, p in parents.items():
            kids.setdefault(p, []).append(c)
        for p, cs in sorted(kids.items()):
            def long(c):
                b, e = span[c]
                return e - b + 1 >= min_branch_frames or e == last or c in kids or c in left
            cs = sorted(cs, key=lambda c: -(span[c][1] - span[c][0]))
            if len(cs) == 2 and all(long(c) for c in cs):
                continue
            keep = cs[:2] if len(cs) > 2 and all(long(c) for c in cs[:2]) else []
            for c in cs:
                if c in keep:
                    continue
                parents.pop(c)
                if not keep and c == cs[0]:
                    track[track == c] = p  # the longest daughter continues the mother
                    for gc in kids.get(c, []):
                        parents[gc] = p
            changed = True
            break
    return track, parents


def one_frame_gaps(tracks: pd.DataFrame) -> list[tuple[int, int]]:
    """``(track_id, frame)`` of every frame t that a track skips between detections at t − 1
    and t + 1 (a one-frame segmentation dropout bridged by gap closing)."""
    out = []
    for tid, f in tracks.groupby("track_id")["frame"]:
        f = np.sort(f.to_numpy())
        out += [(int(tid), int(t) + 1) for t in f[:-1][np.diff(f) == 2]]
    return out


def fill_one_frame_gaps(labels: np.ndarray, tracks: pd.DataFrame, voxel_size_um, *,
                        min_free_fraction: float = 0.5) -> tuple[np.ndarray, pd.DataFrame]:
    """Masks for the cells a track skips for one frame (:func:`one_frame_gaps`).

    ``labels`` is the series labelled by track id. A cell seen at t − 1 and t + 1 and missing
    at t has moved about half its displacement in between, so its mask at t is taken as its
    mask at t − 1 moved by round((r(t+1) − r(t−1)) / 2 / voxel) voxels along each axis (cells
    move a fraction of their size per frame, so the moved mask covers most of the cell).
    Only background voxels of frame t are written (a detected cell is never overwritten), and
    only where the segmentation left the place empty: at least ``min_free_fraction`` of the
    moved mask is background. A cell merged with a neighbour or cut at t also leaves a gap
    in its track, but its place is then occupied, so no mask is invented.

    Returns
    -------
    (labels, rows)
        The filled series (a copy) and one row per filled mask (``frame``, ``track_id``,
        ``parent_id``, centroids, ``volume_um3``, ``interpolated`` = True, ``dry_mass_pg``
        NaN: the mass of an invented mask is not measured, so growth fits skip it).
    """
    lab = np.array(labels, copy=True)
    vs = np.asarray(voxel_size_um, float)
    parent = tracks.groupby("track_id")["parent_id"].first()
    position = tracks.groupby(["track_id", "frame"])[list(COORDINATES)].first()  # one lookup table, not a scan per gap
    rows = []
    for tid, t in one_frame_gaps(tracks):
        r0, r1 = position.loc[(tid, t - 1)].to_numpy(float), position.loc[(tid, t + 1)].to_numpy(float)
        shift = tuple(np.round((r1 - r0) / 2.0 / vs).astype(int))
        moved = _shifted(lab[t - 1] == tid, shift)
        free = moved & (lab[t] == 0)
        if not moved.any() or free.sum() < min_free_fraction * moved.sum():
            continue
        lab[t][free] = tid
        com = np.argwhere(free).mean(axis=0) * vs
        rows.append({"frame": t, "track_id": tid, "parent_id": int(parent[tid]),
                     **dict(zip(COORDINATES, com)), "volume_um3": float(free.sum() * vs.prod()),
                     "dry_mass_pg": np.nan, "interpolated": True})
    cols = ["frame", "track_id", "parent_id", *COORDINATES, "volume_um3", "dry_mass_pg", "interpolated"]
    return lab, pd.DataFrame(rows, columns=cols)


def _shifted(mask: np.ndarray, shift) -> np.ndarray:
    """``mask`` moved by integer ``shift`` voxels per axis; what leaves the volume is dropped."""
    out = np.zeros_like(mask)
    src = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, mask.shape))
    dst = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(shift, mask.shape))
    out[dst] = mask[src]
    return out


def track_graph(tracks: pd.DataFrame, *, label_col: str = "label"):
    """The lineage graph of a tracks table (networkx DiGraph): one node per detection
    (integer id; ``t``, ``segmentation_id``, ``z``, ``y``, ``x``), edges between consecutive detections
    of a track (across gaps) and from a mother's last detection to her daughters' first."""
    import networkx as nx

    g = nx.DiGraph()
    first, lastnode = {}, {}
    for tid, grp in tracks.sort_values("frame").groupby("track_id", sort=False):
        prev = None
        for r in grp.itertuples(index=False):
            node = g.number_of_nodes() + 1
            g.add_node(node, t=int(r.frame), segmentation_id=int(getattr(r, label_col)),
                       z=float(r.centroid_z_um), y=float(r.centroid_y_um), x=float(r.centroid_x_um))
            if prev is not None:
                g.add_edge(prev, node)
            prev = node
            first.setdefault(int(tid), node)
        lastnode[int(tid)] = prev
    for tid, pid in tracks.groupby("track_id")["parent_id"].first().items():
        if int(pid) and int(pid) in lastnode:
            g.add_edge(lastnode[int(pid)], first[int(tid)])
    return g
