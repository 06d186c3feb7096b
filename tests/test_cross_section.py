"""Splitting merged bacteria by their cross-section (holo.segmentation.cross_section)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from holo.segmentation.cross_section import (bent_cross_section_um2, cross_section_um2, saddle_heights,
                                             split_by_cross_section)

VS = (0.4, 0.2, 0.2)  # the U-Net's grid, µm
SHAPE = (12, 45, 45)  # odd: a voxel centre on each axis
CHI_MAX, RATIO = 0.08, 0.6  # the shipped unet.json values


def _grid():
    return [(np.arange(n) - (n - 1) / 2) * v for n, v in zip(SHAPE, VS)]


def _capsule(a, b, r):
    """Voxels within r (µm) of the segment a–b (points (z, y, x) in µm)."""
    z, y, x = np.meshgrid(*_grid(), indexing="ij")
    p = np.stack([z, y, x], -1)
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = np.clip(((p - a) @ (b - a)) / max((b - a) @ (b - a), 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1) <= r


def _seen(*bodies):
    """Instrument-like view of homogeneous bacteria (Δn 0.05): blurred contrast s and the
    half-maximum mask taken as ONE instance (what a merged network mask gives)."""
    truth = np.zeros(SHAPE, np.int32)
    for k, b in enumerate(bodies, 1):
        truth[b & (truth == 0)] = k
    s = ndi.gaussian_filter(0.05 * (truth > 0).astype(np.float32), (0.6, 0.75, 0.75))
    lab = (s >= 0.5 * s.max()).astype(np.int32)
    return lab, s, truth


def _best_iou(pred, truth, k):
    t = truth == k
    return max(((pred == j) & t).sum() / ((pred == j) | t).sum() for j in range(1, pred.max() + 1))


def test_cross_section_of_a_cylinder_is_r2_over_4():
    # straight rod r = 0.45 µm, 3 µm long, sampled on 0.05 µm voxels: σ₂σ₃ = r²/4 (caps: within 10 %)
    vs = (0.05, 0.05, 0.05)
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * 0.05 for n in (24, 24, 80)], indexing="ij")
    rod = (z ** 2 + y ** 2 <= 0.45 ** 2) & (np.abs(x) <= 1.5)
    assert cross_section_um2(rod, vs) == pytest.approx(0.45 ** 2 / 4, rel=0.1)
    assert cross_section_um2(np.zeros((2, 2, 2), bool), vs) == 0.0


def test_two_rods_side_by_side_are_split_and_one_rod_is_kept():
    r = 0.45
    rods = [_capsule((0, y, -1.2), (0, y, 1.2), r) for y in (-0.5, 0.5)]  # one voxel apart along their length
    lab, s, truth = _seen(*rods)
    assert lab.max() == 1 and cross_section_um2(lab > 0, VS) > CHI_MAX
    out = split_by_cross_section(lab, s, VS, max_cross_section_um2=CHI_MAX, max_piece_ratio=RATIO)
    assert out.max() == 2
    assert min(_best_iou(out, truth, k) for k in (1, 2)) > 0.6
    assert np.array_equal(out > 0, lab > 0)  # a partition: no voxel gained or lost
    one, s1, _ = _seen(rods[0])
    assert np.array_equal(split_by_cross_section(one, s1, VS, max_cross_section_um2=CHI_MAX, max_piece_ratio=RATIO), one)


def test_coccus_against_the_side_of_a_rod_is_split():
    rod = _capsule((0, 0, -1.5), (0, 0, 1.0), 0.45)
    coccus = _capsule((0, 1.15, 0.0), (0, 1.15, 0.0), 0.5)  # beside the rod, one voxel apart
    lab, s, truth = _seen(rod, coccus)
    out = split_by_cross_section(lab, s, VS, max_cross_section_um2=CHI_MAX, max_piece_ratio=RATIO)
    assert out.max() == 2 and min(_best_iou(out, truth, k) for k in (1, 2)) > 0.5


def test_chain_of_three_fused_cocci_is_kept_whole():
    d = 1.0
    cocci = [_capsule((0, 0, x), (0, 0, x), d / 2) for x in (-0.85 * d, 0.0, 0.85 * d)]
    chain = np.logical_or.reduce(cocci)
    lab, s, _ = _seen(chain)
    assert cross_section_um2(lab > 0, VS) <= CHI_MAX  # one tube: the score says "one bacterium"
    assert np.array_equal(split_by_cross_section(lab, s, VS, max_cross_section_um2=CHI_MAX, max_piece_ratio=RATIO), lab)


def test_curved_chain_stays_whole_because_its_pieces_do_not_explain_its_width():
    # four fused cocci turning 45° at each step: wider than one tube (χ > χ_max), but cut at
    # its necks each piece is as wide as the whole's tube, so the pieces' χ is not below
    # RATIO · χ: the split does not explain the width and the chain is kept
    d, turn = 1.0, np.deg2rad(45)
    pts, th = [np.zeros(3)], 0.0
    for _ in range(3):
        th += turn
        pts.append(pts[-1] + 0.85 * d * np.array([0.0, np.sin(th), np.cos(th)]))
    pts = np.array(pts) - np.mean(pts, axis=0)
    lab, s, _ = _seen(np.logical_or.reduce([_capsule(p, p, d / 2) for p in pts]))
    assert cross_section_um2(lab > 0, VS) > CHI_MAX
    assert np.array_equal(split_by_cross_section(lab, s, VS, max_cross_section_um2=CHI_MAX, max_piece_ratio=RATIO), lab)
    assert split_by_cross_section(lab, s, VS, max_cross_section_um2=CHI_MAX, max_piece_ratio=1.0).max() == 2


def test_large_instances_and_disabled_step_are_untouched():
    rods = [_capsule((0, y, -1.2), (0, y, 1.2), 0.45) for y in (-0.5, 0.5)]
    lab, s, _ = _seen(*rods)
    assert np.array_equal(split_by_cross_section(lab, s, VS, max_cross_section_um2=0.0), lab)
    v = (lab > 0).sum() * np.prod(VS)
    assert np.array_equal(split_by_cross_section(lab, s, VS, max_cross_section_um2=CHI_MAX,
                                                 max_volume_um3=0.9 * v), lab)
    with pytest.raises(ValueError, match="shape"):
        split_by_cross_section(lab, s[:-1], VS, max_cross_section_um2=CHI_MAX, max_piece_ratio=RATIO)


def test_saddle_is_the_highest_pass_between_regions():
    lab = np.zeros((1, 1, 5), np.int32)
    lab[0, 0, :2], lab[0, 0, 2:] = 1, 2
    s = np.array([[[5.0, 3.0, 4.0, 1.0, 0.0]]])
    assert saddle_heights(lab, s) == {(1, 2): 3.0}


def _arc_chain(n, turn_rad, d=1.0):
    """Centres (µm) of n cocci at spacing 0.85 d whose heading turns by ``turn_rad`` in all."""
    step = turn_rad / max(n - 2, 1)
    pts, th = [np.zeros(3)], -turn_rad / 2 - step
    for _ in range(n - 1):
        th += step
        pts.append(pts[-1] + 0.85 * d * np.array([0.0, np.sin(th), np.cos(th)]))
    return np.array(pts) - np.mean(pts, axis=0)


def test_bent_cross_section_follows_a_gentle_arc_not_a_v_or_a_pair():
    vs = (0.1, 0.1, 0.1)
    grid = [(np.arange(n) - (n - 1) / 2) * 0.1 for n in (14, 40, 70)]
    p = np.stack(np.meshgrid(*grid, indexing="ij"), -1)

    def tube(pts, r=0.45):  # voxel centres within r of the polyline through pts
        d = np.full(p.shape[:3], np.inf)
        for a, b in zip(pts[:-1], pts[1:]):
            t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
            d = np.minimum(d, np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1))
        return np.argwhere(d <= r) * 0.1

    line = tube(_arc_chain(8, 0.0, 0.8))  # straight, 5.5 µm long
    straight_um2 = bent_cross_section_um2(line, vs)
    assert straight_um2 == pytest.approx(0.45 ** 2 / 4, rel=0.1)  # a cylinder's σ₂σ₃ (module docstring)
    arc = tube(_arc_chain(8, 1.0, 0.8))  # a chain bent by 1 rad (57°)
    assert bent_cross_section_um2(arc, vs) == pytest.approx(straight_um2, rel=0.1)
    assert bent_cross_section_um2(arc, vs, 0.3) > 1.3 * straight_um2  # turn over 0.3 rad: straight axis
    v = tube(np.array([[0, -1.5, -1.5], [0, 0.0, 0.0], [0, -1.5, 1.5]]))  # two rods in an L (turn 90°)
    assert bent_cross_section_um2(v, vs, 1.2) > 1.8 * straight_um2
    pair = np.concatenate([tube(np.array([[0, y, -1.5], [0, y, 1.5]])) for y in (-0.5, 0.5)])  # side by side
    assert bent_cross_section_um2(pair, vs) > 2 * straight_um2
    assert bent_cross_section_um2(arc[:3], vs) == 0.0


def test_bent_split_keeps_an_arc_chain_and_still_splits_rods_side_by_side():
    # six cocci turning 100° in all: wider than a straight tube (χ > χ_max) and cut by the
    # straight score, one tube about its arc
    lab, s, _ = _seen(np.logical_or.reduce([_capsule(c, c, 0.5) for c in _arc_chain(6, np.deg2rad(100))]))
    assert cross_section_um2(lab > 0, VS) > CHI_MAX
    kw = dict(max_cross_section_um2=CHI_MAX, max_piece_ratio=1.0, min_piece_um3=0.6)
    assert split_by_cross_section(lab, s, VS, **kw).max() >= 2
    assert np.array_equal(split_by_cross_section(lab, s, VS, max_turn_rad=2.0, **kw), lab)
    rods = [_capsule((0, y, -1.2), (0, y, 1.2), 0.45) for y in (-0.5, 0.5)]
    lab, s, truth = _seen(*rods)
    out = split_by_cross_section(lab, s, VS, max_turn_rad=2.0, **kw)
    assert out.max() == 2 and min(_best_iou(out, truth, k) for k in (1, 2)) > 0.6
