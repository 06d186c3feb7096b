"""Digital-twin phantoms: physics and behaviour of the RI volumes and their ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull
from skimage.morphology import convex_hull_image

from holo.twin.phantoms import (
    CELL_CLASSES,
    CYTOPLASM,
    FAMILY_OF,
    KINDS,
    NUCLEATED_CLASSES,
    NUCLEOLUS,
    NUCLEUS,
    RI_RANGES,
    SEMANTIC_NAMES,
    UNSEEN_CLASSES,
    UNSEEN_KINDS,
    Phantom,
    grid_axes_um,
    make_cell,
    make_phantom,
    make_sphere_phantom,
)

N_M = 1.337
VOX = (0.2, 0.2, 0.2)
CUBE = np.ones((3, 3, 3), bool)


def _ball(radius_vox: int) -> np.ndarray:
    k = int(radius_vox)
    return np.sum(np.mgrid[-k : k + 1, -k : k + 1, -k : k + 1] ** 2, axis=0) <= k * k


def _touching_pairs(instance: np.ndarray) -> set:
    """Pairs of different cell ids that share a voxel face."""
    pairs = set()
    for ax in range(3):
        a = np.moveaxis(instance, ax, 0)
        x, y = a[:-1], a[1:]
        m = (x > 0) & (y > 0) & (x != y)
        pairs |= {tuple(sorted(p)) for p in zip(x[m].tolist(), y[m].tolist())}
    return pairs


def _solidity(mask: np.ndarray, step: int = 2) -> float:
    """Fraction of the voxel centres inside the convex hull of the mask's voxel centres that
    belong to the mask (1 for a convex object), counted on every ``step``-th voxel."""
    pts = np.argwhere(mask).astype(float)
    hull = ConvexHull(pts)
    lo, hi = pts.min(0).astype(int), pts.max(0).astype(int) + 1
    g = np.stack(np.meshgrid(*[np.arange(a, b, step) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    inside = np.all(g @ hull.equations[:, :3].T + hull.equations[:, 3] <= 1e-9, axis=1)
    return float(mask[tuple(g[inside].T)].sum() / inside.sum())


def _check_ri_ranges(ph: Phantom) -> int:
    """Every voxel of a structure that is not next to another label or cell (one-voxel
    erosion of the per-cell, per-label mask) lies in RI_RANGES. Why one voxel suffices:
    the partial-volume ramp of a surface reaches |d| < w/2 (w = voxel size), and any voxel
    centre with d < w/2 < w/√3 has a 26-neighbour on the other side, so erosion by the
    3×3×3 cube removes every mixed voxel. Returns the number of voxels checked."""
    n = 0
    for cid, cls in ph.classes.items():
        in_cell = ph.instance == cid
        for label, (lo, hi) in RI_RANGES[FAMILY_OF[cls]].items():
            core = ndi.binary_erosion(in_cell & (ph.semantic == label), CUBE)
            if not core.any():
                continue
            v = ph.ri[core]
            assert v.min() >= lo - 1e-6 and v.max() <= hi + 1e-6, (cls, SEMANTIC_NAMES[label], v.min(), v.max())
            n += v.size
    return n


# --------------------------------------------------------------------------------------
def test_grid_axes_centre_convention():
    z, y, x = grid_axes_um((5, 6, 7), (0.5, 0.2, 0.1))
    assert z[5 // 2] == 0 and y[6 // 2] == 0 and x[7 // 2] == 0
    np.testing.assert_allclose(np.diff(y), 0.2, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_determinism_and_partition(kind):
    a = make_phantom(kind, shape_zyx=(56, 112, 112), seed=7)
    b = make_phantom(kind, shape_zyx=(56, 112, 112), seed=7)
    c = make_phantom(kind, shape_zyx=(56, 112, 112), seed=8)
    assert np.array_equal(a.ri, b.ri) and np.array_equal(a.semantic, b.semantic)
    assert np.array_equal(a.instance, b.instance) and a.classes == b.classes
    assert not np.array_equal(a.ri, c.ri)

    assert a.ri.dtype == np.float32 and a.semantic.dtype == np.uint8 and a.instance.dtype == np.int32
    assert a.kind == kind and len(a.classes) >= 1
    # Labels are a partition: a voxel belongs to a cell exactly when it has a structure label.
    assert np.array_equal(a.instance > 0, a.semantic > 0)
    assert a.semantic.max() < len(SEMANTIC_NAMES)
    assert set(np.unique(a.instance)) - {0} == set(a.classes)
    for cid, cls in a.classes.items():
        assert cls in CELL_CLASSES
        assert kind == "mixed" or FAMILY_OF[cls] == kind
        if FAMILY_OF[cls] != "cell":  # red cells and bacteria are one compartment
            assert set(np.unique(a.semantic[a.instance == cid])) == {CYTOPLASM}
    # Far from every cell the volume is pure medium.
    far = ~ndi.binary_dilation(a.instance > 0, CUBE, iterations=2)
    assert np.all(a.ri[far] == np.float32(N_M))

    gt = a.ground_truth()
    assert set(gt) == {"ri", "semantic", "instance", "voxel_size_um", "medium_index", "classes", "semantic_names"}
    assert gt["semantic_names"] == list(SEMANTIC_NAMES) and gt["voxel_size_um"] == VOX
    assert gt["medium_index"] == N_M and gt["classes"] == a.classes


@pytest.mark.parametrize("kind, seed", [("cell", 1), ("rbc", 2), ("bacteria", 3), ("mixed", 4)])
def test_ri_ranges_inside_structures(kind, seed):
    ph = make_phantom(kind, shape_zyx=(64, 128, 128), seed=seed)
    assert _check_ri_ranges(ph) > (20 if kind == "bacteria" else 1000)
    assert ph.ri.min() >= N_M - 1e-6  # every structure is denser than the medium


@pytest.mark.parametrize(
    "radius_um, voxel, centre",
    [
        (2.5, (0.2, 0.2, 0.2), (0.0, 0.0, 0.0)),
        (2.5, (0.2, 0.2, 0.2), (0.037, -0.061, 0.083)),
        (3.0, (0.3, 0.15, 0.15), (0.11, 0.07, -0.029)),
    ],
)
def test_sphere_volume_and_values(radius_um, voxel, centre):
    n_s = 1.40
    ph = make_sphere_phantom(radius_um, n_s, shape_zyx=(48, 64, 64), voxel_size_um=voxel, center_um=centre)
    frac = (ph.ri.astype(np.float64) - N_M) / (n_s - N_M)
    volume = frac.sum() * np.prod(voxel)
    exact = 4.0 / 3.0 * np.pi * radius_um**3
    # Bound: the ramp f = clip(1/2 − d/w) integrates a plane exactly; on a sphere the shell
    # 4π r² grows across the ramp, adding ∫ 4π(R+t)²(1/2 − t/w) dt − … = (π/3) R w², i.e.
    # a relative bias of w²/(4R²) (0.16 % for w = 0.2, R = 2.5; ≤ 0.25 % for w ≤ 0.3,
    # R = 3). The lattice sampling error of the ramp is zero-mean with an amplitude
    # ≤ h²/(6w) per column crossing; summed incoherently over ~πR²/h² columns it stays
    # below ~0.1 %. Tolerance: bias + 0.3 %, well inside 1 %.
    w = max(voxel)
    rel = volume / exact - 1.0
    assert abs(rel) <= w**2 / (4 * radius_um**2) + 3e-3
    assert abs(rel) < 0.01
    # Values: pure sphere RI inside, pure medium outside, labels from the SDF sign.
    z, y, x = np.meshgrid(*grid_axes_um(ph.shape_zyx, voxel), indexing="ij")
    r = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    assert np.allclose(ph.ri[r < radius_um - w], n_s, atol=1e-6)
    assert np.all(ph.ri[r > radius_um + w] == np.float32(N_M))
    assert np.array_equal(ph.semantic > 0, r < radius_um) or np.mean((ph.semantic > 0) != (r < radius_um)) < 1e-5
    assert ph.classes == {1: "sphere"}
    # The RI excess is centred on the requested centre (the volume centre is index N//2).
    com = [float((frac * g).sum() / frac.sum()) for g in (z, y, x)]
    np.testing.assert_allclose(com, centre, atol=0.01)


def test_discocyte_dimensions():
    # Disc flat in the focal plane (body z = lab z). The projected thickness
    # T(y, x) = Σ_z (n − n_m)/(n_rbc − n_m) dz is exact for surfaces perpendicular to z
    # (partial-volume ramp of one voxel), which is the case at the centre and on the rim
    # crest where dT/dρ = 0; curvature and lattice errors there are ≪ 0.05 µm.
    for seed in range(3):
        ph = make_cell("rbc_discocyte", shape_zyx=(32, 64, 64), voxel_size_um=VOX, rng=seed, orientation=np.eye(3))
        info = ph.cells[1]
        n_rbc = info["ri_cytoplasm"]
        assert 1.39 <= n_rbc <= 1.41
        T = ((ph.ri.astype(np.float64) - N_M) / (n_rbc - N_M)).sum(axis=0) * VOX[0]
        D = info["diameter_um"]
        assert 7.3 <= D <= 8.3
        # Diameter: labelled extent through the centre, within one voxel of D.
        row = (ph.semantic > 0).any(axis=0)[32]
        assert abs(row.sum() * VOX[2] - D) <= VOX[2] + 1e-9
        # Evans–Fung: centre thickness 0.81 µm × D/7.82, rim crest ≈ 2.57 µm × D/7.82.
        centre_t, rim_t = T[32, 32], T.max()
        assert abs(centre_t - 0.81 * D / 7.82) < 0.05
        assert abs(rim_t - 2.57 * D / 7.82) < 0.05
        assert 2.3 < rim_t < 2.8 and centre_t < 0.45 * rim_t
        # The crest is a ring at ρ ≈ 0.71 R0.
        iy, ix = np.unravel_index(np.argmax(T), T.shape)
        rho = np.hypot((iy - 32) * VOX[1], (ix - 32) * VOX[2])
        assert abs(rho - 0.71 * D / 2) < 0.35


@pytest.mark.parametrize("cls, n_lobes", [("neutrophil", 3), ("neutrophil", 4), ("neutrophil", 5), ("eosinophil", 2)])
def test_lobed_nuclei_have_the_claimed_lobes(cls, n_lobes):
    ph = make_cell(cls, shape_zyx=(64, 80, 80), voxel_size_um=VOX, rng=11 + n_lobes, n_lobes=n_lobes)
    assert ph.cells[1]["n_lobes"] == n_lobes
    nuc = (ph.semantic == NUCLEUS) | (ph.semantic == NUCLEOLUS)
    # The lobes are joined by chromatin strands into one nucleus ...
    assert ndi.label(nuc, CUBE)[1] == 1
    # ... of radius ≤ 0.35 µm: erosion by a ball of 3 voxels (0.6 µm) removes them, while
    # lobes of radius ≥ 1.1 µm survive and stay ≥ 0.4 µm (2 voxels) apart.
    assert ph.cells[1]["strand_radius_um"] <= 0.35
    eroded = ndi.binary_erosion(nuc, _ball(3))
    assert ndi.label(eroded, CUBE)[1] == n_lobes


def test_nucleus_shape_differs_between_classes():
    sol = {}
    for cls in NUCLEATED_CLASSES:
        vals = []
        for seed in range(2):
            ph = make_cell(cls, shape_zyx=(64, 80, 80), voxel_size_um=VOX, rng=seed)
            vals.append(_solidity((ph.semantic == NUCLEUS) | (ph.semantic == NUCLEOLUS)))
        sol[cls] = vals
    # Round lymphocyte nucleus is convex; the bean of the monocyte is indented; lobed nuclei
    # are far from convex.
    assert min(sol["lymphocyte"]) > 0.97
    assert 0.8 < max(sol["monocyte"]) < min(sol["lymphocyte"]) - 0.03
    assert max(sol["neutrophil"] + sol["eosinophil"]) < 0.85
    assert max(sol["neutrophil"] + sol["eosinophil"]) < min(sol["monocyte"])


# Size window (µm) of each class: the footprint diameter √(4A/π) of the label projected
# along z (cells, red cells, cocci) or the mean width (rods, chains).
_SIZE = {
    "lymphocyte": (6.5, 9.0), "monocyte": (10.5, 15.5), "neutrophil": (9.5, 12.5), "eosinophil": (11.0, 13.5),
    "rbc_discocyte": (7.0, 8.6), "rbc_echinocyte": (5.5, 9.0), "rbc_stomatocyte": (6.4, 8.0), "rbc_spherocyte": (5.2, 6.8),
    "bacteria_rod": (0.7, 1.1), "bacteria_coccus": (0.7, 1.3), "bacteria_chain": (0.7, 1.25),
}


@pytest.mark.parametrize("cls", CELL_CLASSES)
def test_each_class_is_produced_with_realistic_size_and_ri(cls):
    fam = FAMILY_OF[cls]
    shape = (72, 88, 88) if fam != "bacteria" else (32, 64, 64)
    ph = make_phantom(fam, shape_zyx=shape, voxel_size_um=VOX, n_cells=1, seed=5, classes=[cls])
    assert ph.classes == {1: cls}
    info = ph.cells[1]
    assert info.get("scale", 1.0) == 1.0  # fits without shrinking
    cell = ph.instance == 1
    labels = set(np.unique(ph.semantic[cell]).tolist())
    if fam == "cell":
        assert {CYTOPLASM, NUCLEUS} <= labels
        nuc_frac = np.isin(ph.semantic[cell], (NUCLEUS, NUCLEOLUS)).mean()
        # High nucleus/cytoplasm ratio for lymphocytes only.
        assert (nuc_frac > 0.35) if cls == "lymphocyte" else (0.04 < nuc_frac < 0.35)
    else:
        assert labels == {CYTOPLASM}
    area = (cell.any(axis=0)).sum() * VOX[1] * VOX[2]
    d_eq = np.sqrt(4 * area / np.pi)
    lo, hi = _SIZE[cls]
    if fam == "bacteria":
        # Long axis from the footprint's principal direction; mean width = area / length
        # (a capsule of width d and length L gives d (1 − (1 − π/4) d/L) ≈ 0.95 d).
        pts = np.argwhere(cell.any(axis=0)) * VOX[1]
        centred = pts - pts.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        length = np.ptp(centred @ axis) + VOX[1]
        width = area / length
        if cls == "bacteria_coccus":
            assert lo <= d_eq <= hi
        else:
            assert lo - 0.1 <= width <= hi
            assert (2.0 <= length <= 4.2) if cls == "bacteria_rod" else (length >= 2.0)
    else:
        assert lo <= d_eq <= hi, d_eq
    assert _check_ri_ranges(ph) > 0
    # Settled at the focal plane: centre within 0.5 µm of z = 0.
    assert abs(info["center_um"][0]) <= 0.5 + 1e-9


def test_mixed_field_has_touching_cells_and_several_classes():
    ph = make_phantom("mixed", shape_zyx=(64, 160, 160), seed=2)
    assert len(set(ph.classes.values())) >= 3
    assert len({FAMILY_OF[c] for c in ph.classes.values()}) >= 2
    assert len(_touching_pairs(ph.instance)) >= 1
    assert np.array_equal(ph.instance > 0, ph.semantic > 0)
    # Touching cells keep their own RI: the per-cell check excludes only the contact layer.
    assert _check_ri_ranges(ph) > 1000
    # Every cell is one connected piece (overlaps were resolved without cutting a cell).
    for cid in ph.classes:
        assert ndi.label(ph.instance == cid, CUBE)[1] == 1


def test_touching_guaranteed_for_two_cells():
    for seed in range(3):
        ph = make_phantom("rbc", shape_zyx=(64, 128, 128), n_cells=2, seed=seed)
        assert len(ph.classes) == 2 and _touching_pairs(ph.instance) == {(1, 2)}


def test_random_orientation_of_rods():
    ph = make_phantom("bacteria", shape_zyx=(24, 128, 128), n_cells=8, seed=3, classes=["bacteria_rod"])
    angles = []
    for cid in ph.classes:
        pts = np.argwhere((ph.instance == cid).any(axis=0)).astype(float)
        w, v = np.linalg.eigh(np.cov(pts.T))
        angles.append(np.degrees(np.arctan2(v[0, 1], v[1, 1])) % 180.0)
    # Azimuths uniform on [0, 180): 8 draws spread over far more than 30°.
    assert np.ptp(angles) > 30.0
    rots = [np.asarray(c["rotation"]) for c in ph.cells.values()]
    assert not np.allclose(rots[0], rots[1])


def test_classes_restriction_is_balanced():
    ph = make_phantom("rbc", shape_zyx=(48, 160, 160), n_cells=6, seed=1, classes=["rbc_echinocyte", "rbc_spherocyte"])
    names = list(ph.classes.values())
    assert set(names) == {"rbc_echinocyte", "rbc_spherocyte"}


def test_anisotropic_voxels_keep_partition_and_ranges():
    ph = make_phantom("mixed", shape_zyx=(40, 160, 160), voxel_size_um=(0.4, 0.15, 0.15), n_cells=3, seed=6)
    assert np.array_equal(ph.instance > 0, ph.semantic > 0)
    assert _check_ri_ranges(ph) > 100


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        make_phantom("plant")
    with pytest.raises(ValueError, match="classes"):
        make_phantom("rbc", classes=["lymphocyte"])
    with pytest.raises(ValueError, match="classes"):
        make_phantom("mixed", classes=["amoeba"])
    with pytest.raises(ValueError, match="n_cells"):
        make_phantom("cell", shape_zyx=(64, 64, 64), n_cells=30)
    with pytest.raises(ValueError, match="voxel_size_um"):
        make_phantom("cell", voxel_size_um=(0.2, -1, 0.2))
    with pytest.raises(ValueError, match="shape_zyx"):
        make_phantom("cell", shape_zyx=(64, 64))
    with pytest.raises(ValueError, match="class_name"):
        make_cell("platelet")
    with pytest.raises(ValueError, match="radius_um"):
        make_sphere_phantom(-1.0, 1.4)


def test_cell_larger_than_volume_is_laid_flat_then_shrunk_with_a_warning():
    with pytest.warns(UserWarning, match="shrunk"):
        ph = make_phantom("cell", shape_zyx=(20, 96, 96), n_cells=1, seed=2, classes=["monocyte"])
    info = ph.cells[1]
    assert info["tilt_removed"] and info["scale"] < 0.8
    # Nothing is cut by the volume faces: the outer voxel layer is pure medium.
    faces = [ph.ri[0], ph.ri[-1], ph.ri[:, 0], ph.ri[:, -1], ph.ri[:, :, 0], ph.ri[:, :, -1]]
    assert all(np.all(f == np.float32(N_M)) for f in faces)


# --------------------------------------------------------------------------------------
# Unseen object types (holo.twin._unseen): HL60-like cells, adherent cells, debris, and
# out-of-focus neighbours. They are not classifier classes.
# --------------------------------------------------------------------------------------
def _core_ri(ph: Phantom, cid: int, label: int) -> np.ndarray:
    """RI of the voxels of one cell's structure, one voxel away from any other label."""
    return ph.ri[ndi.binary_erosion((ph.instance == cid) & (ph.semantic == label), CUBE)]


def _check_unseen_ri_ranges(ph: Phantom) -> None:
    for cid, cls in ph.classes.items():
        for label, (lo, hi) in RI_RANGES[FAMILY_OF[cls]].items():
            v = _core_ri(ph, cid, label)
            assert v.size == 0 or (v.min() >= lo - 1e-6 and v.max() <= hi + 1e-6), (cls, SEMANTIC_NAMES[label])


def test_existing_seeds_give_the_phantoms_the_shipped_models_were_trained_on():
    """Adding kinds and options must not change what the existing kinds and seeds produce.
    Reference values were taken before the unseen types were added (integers: exact;
    the RI excess sum Σ(n − n_m), float64 of float32 voxels, to 1e-9 relative)."""
    ref = {("cell", 1): ({1: "neutrophil"}, [220622, 32205, 3152, 0, 21], [220622, 35378], 822.7783267498016),
           ("mixed", 4): ({1: "neutrophil", 2: "bacteria_coccus"}, [217800, 33497, 4687, 0, 16], [217800, 38142, 58],
                          822.4907002449036)}
    for (kind, seed), (classes, sem, inst, excess) in ref.items():
        ph = make_phantom(kind, shape_zyx=(40, 80, 80), seed=seed)
        assert ph.classes == classes
        assert np.bincount(ph.semantic.ravel(), minlength=5).tolist() == sem
        assert np.bincount(ph.instance.ravel()).tolist() == inst
        assert float(np.float64(ph.ri - np.float32(N_M)).sum()) == pytest.approx(excess, rel=1e-9)


def test_unseen_types_are_not_classifier_classes():
    assert not set(UNSEEN_CLASSES) & set(CELL_CLASSES)
    assert set(UNSEEN_KINDS).isdisjoint(KINDS)


def test_hl60_like_cell_nucleus_lower_than_textured_cytoplasm():
    ph = make_phantom("hl60_like", shape_zyx=(48, 56, 56), voxel_size_um=0.25, n_cells=1, seed=3)
    assert ph.classes == {1: "hl60_like"} and ph.kind == "hl60_like"
    info = ph.cells[1]
    assert 10.0 <= info["diameter_um"] <= 12.0 and info["unseen"]
    cyto, nuc = _core_ri(ph, 1, CYTOPLASM), _core_ri(ph, 1, NUCLEUS)
    # Drawn: nucleus 0.003–0.008 below the cytoplasm; texture means average over ≥ 1000 voxels.
    assert cyto.size > 1000 and nuc.size > 1000
    assert 0.0015 < cyto.mean() - nuc.mean() < 0.0095
    # Texture: σ of the fields over the cell box is 0.0032 (cytoplasm) and 0.002 (nucleus);
    # inside the cell the long-correlation layer varies less (measured 0.0024 / 0.0017):
    # clearly above the white blood cells' 0.0013 and below the nucleus-cytoplasm step × 3.
    assert 0.0018 < cyto.std() < 0.0040 and 0.0010 < nuc.std() < 0.0030
    assert (ph.semantic == NUCLEOLUS).any()
    _check_unseen_ri_ranges(ph)
    # A large nucleus: 30–60 % of the cell volume (the cell is ≈ 10–12 µm, the nucleus ≈ 0.6–0.75 of its radius).
    frac = np.isin(ph.semantic, (NUCLEUS, NUCLEOLUS)).sum() / (ph.instance == 1).sum()
    assert 0.2 < frac < 0.6


def test_adherent_cell_is_flat_wide_and_irregular():
    ph = make_phantom("adherent", shape_zyx=(16, 112, 112), voxel_size_um=0.4, n_cells=1, seed=1)
    assert ph.classes == {1: "adherent"} and ph.cells[1].get("scale", 1.0) == 1.0
    m = ph.instance == 1
    h = 0.4
    thickness = m.sum(axis=0).max() * h  # lies flat: the thickest column
    assert 3.0 - h <= thickness <= 5.0 + h
    foot = np.argwhere(m.any(axis=0)) * h
    angles = np.linspace(0.0, np.pi, 36, endpoint=False)
    feret = max(np.ptp(foot @ np.array([np.sin(a), np.cos(a)])) for a in angles)
    assert 20.0 <= feret <= 40.0 + 2 * h
    # Irregular outline (protrusions and bays): the footprint fills clearly less than its
    # convex hull (solidity 0.85–0.94 over seeds 0–7; a disc or an ellipse gives ≥ 0.98).
    fp = m.any(axis=0)
    assert fp.sum() < 0.96 * convex_hull_image(fp).sum()
    cyto, nuc = _core_ri(ph, 1, CYTOPLASM), _core_ri(ph, 1, NUCLEUS)
    assert nuc.size > 20 and nuc.mean() < cyto.mean()
    _check_unseen_ri_ranges(ph)


def test_debris_is_small_without_nucleus_and_out_of_focus_neighbours_are_cut():
    kw = dict(shape_zyx=(32, 56, 56), voxel_size_um=0.3, n_cells=1, seed=5, classes=["lymphocyte"])
    plain = make_phantom("cell", **kw)
    ph = make_phantom("cell", **kw, n_debris=3, n_out_of_focus=2)
    names = list(ph.classes.values())
    assert names[0] == plain.classes[1] and names.count("debris") >= 1
    extras = ph.instance > 1
    # The field's own cell is unchanged away from the extras.
    far = ~ndi.binary_dilation(extras, CUBE, iterations=2)
    assert np.array_equal(ph.ri[far], plain.ri[far])
    faces = lambda a: np.concatenate([a[0].ravel(), a[-1].ravel(), a[:, 0].ravel(), a[:, -1].ravel(),  # noqa: E731
                                      a[:, :, 0].ravel(), a[:, :, -1].ravel()])
    n_cut = 0
    for cid, cls in ph.classes.items():
        m = ph.instance == cid
        if cls == "debris":
            assert set(np.unique(ph.semantic[m])) == {CYTOPLASM}  # no nucleus
            assert max(np.ptp(np.argwhere(m), axis=0)) * 0.3 <= 5.0
        elif ph.cells[cid].get("out_of_focus"):
            n_cut += 1
            assert cls in NUCLEATED_CLASSES and faces(m).any()  # cut by the volume
    assert n_cut >= 1
    _check_unseen_ri_ranges(make_phantom("debris", shape_zyx=(24, 48, 48), n_cells=3, seed=2))
    one = make_cell("hl60_like", shape_zyx=(48, 56, 56), voxel_size_um=0.25, rng=1)
    assert one.kind == "hl60_like" and one.classes == {1: "hl60_like"}
