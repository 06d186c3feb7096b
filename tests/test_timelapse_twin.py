"""Twin time-lapses: the dry mass rendered in every frame follows the planned exponential
growth (m = m₁ s³, checked on the rendered RI, not on the plan), divisions conserve mass,
labels are track ids, and the segmentation-error model does what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from holo.conventions import ALPHA_PROTEIN_UM3_PER_PG
from holo.twin.timelapse import degrade_labels, make_timelapse, plan_timelapse, render_frame

GRID = dict(shape_zyx=(16, 96, 96), voxel_size_um=(0.5, 0.5, 0.5), classes=("lymphocyte",))


def _rendered_mass_pg(ri, medium_index, voxel_size_um, mask=None):
    dn = ri.astype(np.float64) - medium_index
    if mask is not None:
        dn = dn * mask
    return float(dn.sum() * np.prod(voxel_size_um) / ALPHA_PROTEIN_UM3_PER_PG)


@pytest.fixture(scope="module")
def dividing():
    """One cell that doubles every ~0.5 h, imaged every 10 min, barely moving."""
    return make_timelapse(6, 600.0, n_cells=1, doubling_time_h=(0.5, 0.5), speed_um_per_h=1.0,
                          enter_rate_per_h=0.0, seed=5, **GRID)


def test_rendered_dry_mass_grows_exponentially_and_divisions_conserve_it(dividing):
    tl, ri, sem, inst = dividing
    k = next(iter(tl.tracks.values()))["growth_per_h"]
    # Frames where every cell lies whole inside the field (6 µm from the lateral edges).
    half = 0.5 * GRID["shape_zyx"][1] * GRID["voxel_size_um"][1]
    inside = [t for t, cells in enumerate(tl.frames) if all(np.abs(c.center_um[1:]).max() < half - 6 for c in cells)]
    assert len(inside) >= 4
    total = np.array([_rendered_mass_pg(ri[t], tl.medium_index, tl.voxel_size_um) for t in inside])
    t_h = tl.times_s()[inside] / 3600.0
    # Whole-field mass (divisions included) is m(0) e^{k t}; daughters' k differ by ≤ 5 %.
    k_fit = np.polyfit(t_h, np.log(total), 1)[0]
    assert k_fit == pytest.approx(k, rel=0.05)
    assert any(v["parent_id"] for v in tl.tracks.values()), "no division in the series"
    # Per frame, the rendered mass equals the planned Σ m₁ s³ (partial volumes, texture noise).
    planned = np.array([sum(c.dry_mass_pg for c in tl.frames[t]) for t in inside])
    np.testing.assert_allclose(total, planned, rtol=0.02)


def test_labels_are_track_ids_and_cover_the_cells(dividing):
    tl, ri, sem, inst = dividing
    assert np.array_equal(inst > 0, sem > 0)
    for t in range(tl.n_frames):
        ids = set(np.unique(inst[t]).tolist()) - {0}
        planned = {c.track_id for c in tl.frames[t]}
        assert ids == planned
        for tid in ids:
            tr = tl.tracks[tid]
            assert tr["start"] <= t <= tr["end"]
    daughters = [tid for tid, tr in tl.tracks.items() if tr["parent_id"]]
    assert len(daughters) % 2 == 0
    for tid in daughters:
        mom = tl.tracks[tl.tracks[tid]["parent_id"]]
        assert mom["fate"] == "divided" and mom["end"] + 1 == tl.tracks[tid]["start"]
        # a daughter is born with half of her mother's division mass
        assert tl.tracks[tid]["birth_mass_pg"] == pytest.approx(mom["birth_mass_pg"])


def test_plan_is_deterministic_and_cells_move_and_leave():
    a = plan_timelapse(8, 600.0, n_cells=3, speed_um_per_h=60.0, seed=11, **GRID)
    b = plan_timelapse(8, 600.0, n_cells=3, speed_um_per_h=60.0, seed=11, **GRID)
    assert a.tracks == b.tracks
    c0 = {c.track_id: c.center_um for c in a.frames[0]}
    moved = [np.hypot(*(c.center_um - c0[c.track_id])[1:]) for c in a.frames[1] if c.track_id in c0]
    assert max(moved) > 0.5
    half = 0.5 * 96 * 0.5
    for cells in a.frames:
        assert all(np.all(np.abs(c.center_um[1:]) <= half) for c in cells)
    with pytest.raises(ValueError, match="classes"):
        plan_timelapse(2, 60.0, classes=("rbc_discocyte",))


def test_degraded_labels_merge_split_drop_and_renumber(dividing):
    tl, ri, sem, inst = dividing
    clean = degrade_labels(inst, merge_rate=0, split_rate=0, dropout_rate=0, jitter_voxels=0)
    for t in range(tl.n_frames):
        assert len(np.unique(clean[t])) == len(np.unique(inst[t]))
        assert np.array_equal(clean[t] > 0, inst[t] > 0)
    split = degrade_labels(inst, merge_rate=0, split_rate=1.0, dropout_rate=0, jitter_voxels=0)
    assert all(len(np.unique(split[t])) > len(np.unique(inst[t])) for t in range(tl.n_frames))
    gone = degrade_labels(inst, merge_rate=0, split_rate=0, dropout_rate=1.0, jitter_voxels=0)
    assert not gone.any()
    frame = render_frame(tl, 0)
    assert math.isclose(sum(v["dry_mass_pg"] for v in frame.cells.values()),
                        sum(c.dry_mass_pg for c in tl.frames[0]))
