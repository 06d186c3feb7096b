"""Morphometrics of analytic shapes: volume, surface area, sphericity, dry mass, organelles."""

from __future__ import annotations

import numpy as np
import pytest

from holo.conventions import ALPHA_PROTEIN_UM3_PER_PG
from holo.segmentation.morphometrics import PG_PER_UM3_TO_G_PER_DL, measure_cells, sphericity, surface_area_um2

N_M = 1.337


def _grid(shape, vs, centre_um):
    ax = [np.arange(n) * v - c for n, v, c in zip(shape, vs, centre_um)]
    return np.meshgrid(*ax, indexing="ij")


def _ellipsoid(shape, vs, centre_um, semi_axes_um):
    z, y, x = _grid(shape, vs, centre_um)
    a, b, c = semi_axes_um
    return (z / a) ** 2 + (y / b) ** 2 + (x / c) ** 2 <= 1.0


# Anisotropic grid as reconstructed by the instrument (dz ≈ 3 dx).
VS = (0.4, 0.13, 0.13)


def test_sphere_volume_area_sphericity():
    # Ball of radius R = 3.5 µm: 8.75 voxels along Z, 27 laterally. Digitisation error of the
    # voxel-count volume ~ (random surface offsets of ±d/2 averaging out) ≪ 1 %; the area
    # estimator is unbiased to ≈ σ²/(2R)·2/R ≈ 0.3 % with σ = 0.2 µm. The bar is 2 %.
    R = 3.5
    m = _ellipsoid((24, 64, 64), VS, (4.61, 4.1, 4.13), (R, R, R))
    inst = m.astype(np.int32)
    ri = np.where(m, 1.36, N_M).astype(np.float32)
    df = measure_cells(ri, None, inst, VS, N_M)
    assert len(df) == 1
    row = df.iloc[0]
    v_true = 4.0 / 3.0 * np.pi * R**3
    a_true = 4.0 * np.pi * R**2
    assert row.volume_um3 == pytest.approx(v_true, rel=0.02)
    assert row.surface_area_um2 == pytest.approx(a_true, rel=0.02)
    assert row.sphericity == pytest.approx(1.0, rel=0.02)
    # centroid in µm from the first voxel's centre
    assert row.centroid_z_um == pytest.approx(4.61, abs=0.5 * VS[0])
    assert row.centroid_x_um == pytest.approx(4.13, abs=0.5 * VS[2])


def test_prolate_spheroid_sphericity():
    # Prolate spheroid a = 3 µm (along X), b = c = 1.8 µm: A = 2πb² (1 + a/(b e) asin e),
    # e = √(1 − b²/a²); Ψ from the analytic V and A. Same 2 % bar as for the sphere (the
    # smallest curvature radius b²/a ≈ 1.1 µm is still ≫ σ²/… bias).
    a, b = 3.0, 1.8
    m = _ellipsoid((20, 48, 72), VS, (3.9, 3.1, 4.6), (b, b, a))
    e = np.sqrt(1 - b * b / (a * a))
    area = 2 * np.pi * b * b * (1 + a / (b * e) * np.arcsin(e))
    vol = 4.0 / 3.0 * np.pi * a * b * b
    assert surface_area_um2(m, VS) == pytest.approx(area, rel=0.02)
    df = measure_cells(np.where(m, 1.36, N_M).astype(np.float32), None, m.astype(np.int32), VS, N_M)
    assert df.sphericity.iloc[0] == pytest.approx(sphericity(vol, area), rel=0.02)
    assert df.sphericity.iloc[0] < 0.97  # clearly not a sphere


@pytest.mark.parametrize("radius_um", [0.5, 0.8, 1.2])
def test_sphericity_of_small_objects_never_exceeds_one(radius_um):
    # A closed surface of enclosed volume V has area A ≥ π^{1/3}(6V)^{2/3} (isoperimetric
    # inequality), so Ψ ≤ 1 for every object. A ball a few voxels across (R = 0.5 µm is 2.5
    # voxels along Z) is still a sphere: its Ψ stays near 1 (the voxel staircase of so few
    # voxels allows ≈ 15 % less).
    m = _ellipsoid((16, 32, 32), VS, (3.0, 2.05, 2.07), (radius_um,) * 3)
    df = measure_cells(np.where(m, 1.38, N_M).astype(np.float32), None, m.astype(np.int32), VS, N_M)
    assert 0.85 <= df.sphericity.iloc[0] <= 1.0


def test_dry_mass_of_uniform_sphere_is_exact():
    # m = (1/α) Σ (n − n_m) ΔV is exact for a uniform object: (n − n_m)·N·ΔV/α. Float32 RI
    # (ulp 1.2e-7 at 1.37) limits the relative error of n − n_m = 0.038 to ≈ 3e-6.
    R, n = 2.5, 1.375
    m = _ellipsoid((20, 56, 56), VS, (3.8, 3.6, 3.6), (R, R, R))
    ri = np.where(m, n, N_M).astype(np.float32)
    df = measure_cells(ri, None, m.astype(np.int32), VS, N_M)
    dv = np.prod(VS)
    expected = (n - N_M) * m.sum() * dv / ALPHA_PROTEIN_UM3_PER_PG
    assert df.dry_mass_pg.iloc[0] == pytest.approx(expected, rel=1e-5)
    # concentration (⟨n⟩ − n_m)/α = 0.038/0.19 = 0.2 pg/µm³ = 20 g/dL
    assert df.concentration_pg_per_um3.iloc[0] == pytest.approx(0.2, rel=1e-5)
    assert df.concentration_g_per_dl.iloc[0] == pytest.approx(0.2 * PG_PER_UM3_TO_G_PER_DL, rel=1e-5)
    assert df.mean_ri.iloc[0] == pytest.approx(n, abs=1e-6)
    assert df.max_ri.iloc[0] == pytest.approx(n, abs=1e-6)


def test_organelles_counts_and_ratio():
    shape = (30, 90, 90)
    c = (6.0, 5.85, 5.85)
    cell = _ellipsoid(shape, VS, c, (5.0, 5.0, 5.0))
    nucleus = _ellipsoid(shape, VS, c, (2.5, 2.5, 2.5))
    sem = np.where(cell, 1, 0).astype(np.uint8)
    sem[nucleus] = 2
    for k, (dy, dx) in enumerate(((3.5, 0.0), (-3.5, 0.0), (0.0, 3.5))):
        drop = _ellipsoid(shape, VS, (c[0], c[1] + dy, c[2] + dx), (0.6, 0.6, 0.6))
        sem[drop & cell] = 4
    inst = cell.astype(np.int32)
    ri = np.where(cell, 1.36, N_M).astype(np.float32)
    df = measure_cells(ri, sem, inst, VS, N_M)
    row = df.iloc[0]
    dv = np.prod(VS)
    assert row.lipid_droplet_count == 3
    assert row.nucleolus_count == 0
    assert row.nucleus_volume_um3 == pytest.approx(nucleus.sum() * dv)
    # V_n / (V_cell − V_n) = 2.5³ / (5³ − 2.5³) = 1/7 for the analytic balls; 2 % digitisation
    assert row.nucleus_cytoplasm_ratio == pytest.approx(1.0 / 7.0, rel=0.03)
    assert row.nucleus_sphericity == pytest.approx(1.0, rel=0.03)


def test_several_cells_and_empty_ids():
    m1 = _ellipsoid((16, 60, 60), VS, (3.0, 2.0, 2.0), (1.5, 1.5, 1.5))
    m2 = _ellipsoid((16, 60, 60), VS, (3.0, 5.5, 5.5), (1.5, 1.5, 1.5))
    inst = np.zeros(m1.shape, np.int32)
    inst[m1] = 1
    inst[m2] = 5  # ids need not be contiguous
    ri = np.where(inst > 0, 1.36, N_M).astype(np.float32)
    df = measure_cells(ri, None, inst, VS, N_M)
    assert list(df.cell_id) == [1, 5]
    assert df.volume_um3.iloc[0] == pytest.approx(df.volume_um3.iloc[1], rel=0.02)


def test_bad_arguments():
    with pytest.raises(ValueError, match="voxel_size_um"):
        measure_cells(np.zeros((4, 4, 4), np.float32), None, np.zeros((4, 4, 4), int), (0.1, 0.1), N_M)
    with pytest.raises(ValueError, match="instance shape"):
        measure_cells(np.zeros((4, 4, 4), np.float32), None, np.zeros((4, 4, 5), int), (0.1, 0.1, 0.1), N_M)


def test_cells_cut_by_the_field_edge_are_flagged():
    # a ball whose centre lies on the x = 0 face keeps half its volume: flagged as cut, the
    # whole ball beside it is not (only the lateral faces count: the field's edge)
    inst = np.zeros((16, 40, 40), np.int32)
    inst[_ellipsoid(inst.shape, VS, (3.0, 2.6, 0.0), (1.5, 1.5, 1.5))] = 1
    inst[_ellipsoid(inst.shape, VS, (3.0, 2.6, 2.6), (1.0, 1.0, 1.0))] = 2
    df = measure_cells(np.where(inst > 0, 1.37, N_M).astype(np.float32), None, inst, VS, N_M)
    assert df.set_index("cell_id").touches_border.to_dict() == {1: True, 2: False}
