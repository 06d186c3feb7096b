"""Behaviour and analytic physics checks of the forward models (no Mie reference here)."""

from __future__ import annotations

import numpy as np
import pytest

from holo.conventions import medium_wavenumber, vacuum_wavenumber
from holo.reconstruction.forward import born_fields, bpm_fields, rytov_fields, snap_illumination_na
from holo.reconstruction.forward.propagation import WIDE_ANGLE_KZ_FLOOR, envelope_kz, frequency_grid, grid_coordinates, wide_angle_kernels

LAM = 0.532
NM = 1.337
NA = 1.2
K0 = vacuum_wavenumber(LAM)
KM = medium_wavenumber(LAM, NM)
MODELS = {"bpm": bpm_fields, "born": born_fields, "rytov": rytov_fields}


def _ball(shape, voxel, centre_um, radius_um, delta_n):
    """Binary ball (no partial volumes: these tests compare models with each other)."""
    z = grid_coordinates(shape[0], voxel[0]) - centre_um[0]
    y = grid_coordinates(shape[1], voxel[1]) - centre_um[1]
    x = grid_coordinates(shape[2], voxel[2]) - centre_um[2]
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    inside = zz**2 + yy**2 + xx**2 < radius_um**2
    return np.where(inside, NM + delta_n, NM).astype(np.float32)


def _run(name, ri, voxel, **kw):
    return MODELS[name](ri, voxel, wavelength_um=LAM, medium_index=NM, objective_na=NA, **kw)


# -- trivial and analytic cases --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_empty_volume_gives_unit_field(name):
    # Without a sample u = u0, so u/u0 = 1 for every illumination inside the pupil and every
    # rotation; only float32 round-off (~1e-6) remains.
    ri = np.full((8, 32, 32), NM, dtype=np.float32)
    vox = (0.2, 0.15, 0.15)
    tilted = _run(name, ri, vox, illumination_na=[[0.0, 0.0], [0.5, -0.3], [0.9, 0.6]])
    rotated = _run(name, ri, vox, angles=[0.0, 0.7])
    for u in (tilted, rotated):
        assert u.dtype == np.complex64 and u.shape[1:] == (32, 32)
        assert np.max(np.abs(u - 1.0)) < 1e-5


@pytest.mark.parametrize("na_x", [0.0, 0.6])
def test_uniform_slab_phase_is_exact(na_x):
    # A laterally uniform slab (periodic grid, no guard band) of index n and thickness L keeps
    # a plane wave a plane wave. Exact (no reflection): u/u0 = exp(i [√((k0 n)² − k⊥²) − k_z,in] L),
    # which is what BPM must give (its screen is exact for the illumination direction).
    # First order in f = k0²(n_m² − n²): φ_s = −f L / (2 k_z,in) (Born and Rytov). The 1/cos θ
    # tilt factor is tested by NA_x = 0.6 (θ = 26.7°). float32 → 1e-5 relative tolerance.
    nz, n = 20, 16
    dz, dx = 0.15, 0.2
    dn = 0.03
    ri = np.full((nz, n, n), NM, dtype=np.float32)
    ri[5:15] = NM + dn
    length = 10 * dz
    na = snap_illumination_na([[na_x, 0.0]], (n, n), dx, LAM)
    kperp = K0 * na[0, 0]
    kz_in = np.sqrt(KM**2 - kperp**2)
    exact = (np.sqrt((K0 * (NM + dn)) ** 2 - kperp**2) - kz_in) * length
    first_order = K0**2 * ((NM + dn) ** 2 - NM**2) * length / (2 * kz_in)
    kw = dict(illumination_na=na, pad_px=0)
    bpm = _run("bpm", ri, (dz, dx, dx), **kw)[0]
    ryt = _run("rytov", ri, (dz, dx, dx), **kw)[0]
    born = _run("born", ri, (dz, dx, dx), **kw)[0]
    assert np.allclose(np.angle(bpm), exact, rtol=1e-5, atol=1e-5)
    assert np.allclose(np.abs(bpm), 1.0, atol=1e-5)
    assert np.allclose(np.angle(ryt), first_order, rtol=1e-5, atol=1e-5)
    assert np.allclose(born, 1.0 + 1j * first_order, rtol=1e-5, atol=1e-5)
    if na_x > 0:
        assert exact > K0 * dn * length * 1.1  # the tilt lengthens the path by 1/cos θ


@pytest.mark.parametrize("na_x", [0.0, 0.9])
def test_wide_angle_kernels_give_the_slab_phase_of_each_direction(na_x):
    # Across a uniform slab of thickness dz with s = k0²(n² − n_m²), a plane wave of axial
    # wave number k_z gains φ(k_z) = (√(k_z² + s) − k_z) dz relative to the medium. The screen
    # gives every direction the illumination's φ(k_in,z); H1·s + H2·s² must add the rest,
    # φ(k_z) − φ(k_in,z), up to the remainder of the expansion s/(2k) − s²/(8k³) + s³/(16k⁵)
    # − 5s⁴/(128k⁷) + …. For s > 0 the series alternates with decreasing terms (5s/(8k²) < 0.5
    # down to the k_z floor), so each direction's remainder is at most s³dz/(16 k⁵): the
    # tolerance is the sum for the two directions (+1e-12 for float64 round-off). Evanescent
    # components get nothing; grazing ones (k_z below the floor) are not the expansion's and
    # are left out of the comparison. H1 alone misses this bound ~10× (the s² term matters).
    n, dx, dz, dn = 64, 0.1, 0.2, 0.02
    s = K0**2 * ((NM + dn) ** 2 - NM**2)
    qy, qx = frequency_grid((n, n), dx)
    kin_x = K0 * na_x
    kin_z = np.sqrt(KM**2 - kin_x**2)
    delta, prop = envelope_kz(qy, qx, kin_x, 0.0, KM)
    h1, h2 = wide_angle_kernels(delta, prop, kin_z, KM, dz, dtype=np.complex128)
    assert np.all(h1[~prop] == 0) and np.all(h2[~prop] == 0) and (~prop).any()
    kz = delta + kin_z
    ok = prop & (kz > WIDE_ANGLE_KZ_FLOOR * KM)
    phase = lambda k: (np.sqrt(k * k + s) - k) * dz  # noqa: E731
    wanted = phase(kz[ok]) - phase(kin_z)
    got = (h1[ok] * s + h2[ok] * s * s) / 1j
    bound = s**3 / 16 * dz * (1 / kz[ok] ** 5 + 1 / kin_z**5) + 1e-12
    assert np.all(np.abs(got.imag) < 1e-15)
    assert np.all(np.abs(got.real - wanted) <= bound)
    # the illumination direction itself (q = 0) gets no correction (float64 round-off)
    assert abs(h1[0, 0]) <= 1e-9 * dz / kin_z and abs(h2[0, 0]) <= 1e-9 * dz / kin_z**3


def test_absorbing_slab_attenuates_as_beer_lambert():
    # n = n_m + iκ over L: |u/u0| = exp(−k0 κ L) at normal incidence (to first order in κ/n_m).
    ri = np.full((10, 16, 16), NM, dtype=np.complex64)
    kappa = 0.002
    ri[2:8] += 1j * kappa
    u = _run("bpm", ri, (0.2, 0.2, 0.2), pad_px=0)[0]
    assert np.allclose(np.abs(u), np.exp(-K0 * kappa * 6 * 0.2), rtol=1e-4)


def test_models_agree_for_a_weak_object():
    # A small weak sphere (a = 1 µm, Δn = 0.005, phase ≤ k0 Δn 2a = 0.12 rad) is in the
    # regime where Born, Rytov and BPM must coincide: they differ by the second-order term
    # |e^{iφ} − 1 − iφ| ≤ φ²/2 = 0.007. Checked at normal and oblique incidence (which also
    # checks that the three models tilt the same way).
    vox = (0.15, 0.15, 0.15)
    ri = _ball((21, 48, 48), vox, (0, 0, 0), 1.0, 0.005)
    na = [[0.0, 0.0], [0.7, -0.5]]
    u = {k: _run(k, ri, vox, illumination_na=na) for k in MODELS}
    for k in ("born", "rytov"):
        diff = np.abs(u[k] - u["bpm"])
        assert np.max(diff) < 0.012, (k, np.max(diff))
    # and the object is visible: positive phase at its centre (longer optical path)
    assert np.all(np.angle(u["bpm"][:, 24, 24]) > 0.08)


# -- geometry ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bpm", "born"])
@pytest.mark.parametrize("axis", [0, 1])
def test_tilted_illumination_projects_along_the_ray(name, axis):
    # A small sphere at z1 = +2 µm (downstream of the focal plane) seen by a beam tilted
    # towards +x (or +y) is imaged, after back-propagation to z = 0, at −z1·tan θ along that
    # axis (the ray through the sphere crosses z = 0 there) and at 0 along the other one.
    # The centroid of |u/u0 − 1| is located to within a pixel (0.15 µm) of that point.
    vox = (0.15, 0.15, 0.15)
    z1 = 2.0
    ri = _ball((41, 64, 64), vox, (z1, 0, 0), 0.6, 0.02)
    na_xy = [0.0, 0.0]
    na_xy[axis] = 0.6
    na = snap_illumination_na([na_xy], (64, 64), 0.15, LAM)
    u = _run(name, ri, vox, illumination_na=na)[0]
    w = np.abs(u - 1.0)
    y = grid_coordinates(64, 0.15)
    cy = np.sum(w.sum(axis=1) * y) / w.sum()
    cx = np.sum(w.sum(axis=0) * y) / w.sum()
    sin_t = na[0, axis] / NM
    expected = -z1 * sin_t / np.sqrt(1 - sin_t**2)
    along, across = (cx, cy) if axis == 0 else (cy, cx)
    assert abs(along - expected) < 0.15, (along, expected)
    assert abs(across) < 0.15


@pytest.mark.parametrize("name", ["bpm", "born"])
def test_quarter_turn_rotation_moves_the_sample_as_documented(name):
    # Right-handed rotation about +Y: x' = x cos a + z sin a, z' = −x sin a + z cos a; a quarter
    # turn takes a sphere at x = +x0 to z = −x0. About +X: z' = y sin a + z cos a takes y = +y0
    # to z = +y0. On a cubic grid of isotropic voxels a quarter turn maps voxels onto voxels,
    # so the rotated frame must equal the directly placed sphere up to float32 round-off.
    vox = (0.15, 0.15, 0.15)
    shape = (32, 32, 32)
    x0 = 1.2
    src_y = _ball(shape, vox, (0, 0, x0), 0.6, 0.02)
    ref_y = _ball(shape, vox, (-x0, 0, 0), 0.6, 0.02)
    src_x = _ball(shape, vox, (0, x0, 0), 0.6, 0.02)
    ref_x = _ball(shape, vox, (x0, 0, 0), 0.6, 0.02)
    rot_y = _run(name, src_y, vox, angles=[np.pi / 2], rotation_axis="y")
    rot_x = _run(name, src_x, vox, angles=[np.pi / 2], rotation_axis="x")
    assert np.max(np.abs(rot_y - _run(name, ref_y, vox))) < 1e-4
    assert np.max(np.abs(rot_x - _run(name, ref_x, vox))) < 1e-4
    # angle 0 leaves the sample alone
    assert np.max(np.abs(_run(name, src_y, vox, angles=[0.0]) - _run(name, src_y, vox))) < 1e-5


def test_snap_illumination_na_is_periodic_nearest_and_idempotent():
    shape, dx = (50, 64), (0.2, 0.15)
    rng = np.random.default_rng(0)
    na = rng.uniform(-1.1, 1.1, size=(20, 2)) * 0.7
    snapped = snap_illumination_na(na, shape, dx, LAM)
    # k⊥ = 2π NA/λ must be 2π m/(N d): an integer number of periods across the frame
    cycles_x = snapped[:, 0] * shape[1] * dx[1] / LAM
    cycles_y = snapped[:, 1] * shape[0] * dx[0] / LAM
    assert np.allclose(cycles_x, np.round(cycles_x), atol=1e-9)
    assert np.allclose(cycles_y, np.round(cycles_y), atol=1e-9)
    assert np.all(np.abs(snapped[:, 0] - na[:, 0]) <= 0.5 * LAM / (shape[1] * dx[1]) + 1e-12)
    assert np.all(np.abs(snapped[:, 1] - na[:, 1]) <= 0.5 * LAM / (shape[0] * dx[0]) + 1e-12)
    assert np.array_equal(snap_illumination_na(snapped, shape, dx, LAM), snapped)


def test_models_report_progress_and_use_snapped_illumination():
    vox = (0.2, 0.2, 0.2)
    ri = _ball((9, 24, 24), vox, (0, 0, 0), 0.6, 0.02)
    calls = []
    na = [[0.31, 0.0], [0.0, -0.52], [0.2, 0.2]]
    u = bpm_fields(ri, vox, wavelength_um=LAM, medium_index=NM, objective_na=NA, illumination_na=na, progress=lambda i, n: calls.append((i, n)), batch_size=2)
    assert calls[-1] == (3, 3) and len(calls) == 2
    snapped = snap_illumination_na(na, (24, 24), 0.2, LAM)
    u2 = bpm_fields(ri, vox, wavelength_um=LAM, medium_index=NM, objective_na=NA, illumination_na=snapped, snap=False)
    assert np.max(np.abs(u - u2)) < 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(illumination_na=[[0.1, 0.0]], angles=[0.1]), "either"),
        (dict(objective_na=1.5), "objective_na"),
        (dict(illumination_na=[[1.4, 0.0]]), "medium index"),
        (dict(illumination_na=[0.1, 0.2, 0.3]), "illumination_na"),
        (dict(angles=[90.0]), "degrees"),
        (dict(rotation_axis="z", angles=[0.1]), "rotation_axis"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    ri = np.full((4, 8, 8), NM, dtype=np.float32)
    base = dict(wavelength_um=LAM, medium_index=NM, objective_na=NA)
    base.update(kwargs)
    for fn in MODELS.values():
        with pytest.raises(ValueError, match=match):
            fn(ri, 0.2, **base)


def test_index_difference_and_bad_volume_are_rejected():
    kw = dict(wavelength_um=LAM, medium_index=NM, objective_na=NA)
    with pytest.raises(ValueError, match="absolute"):
        bpm_fields(np.zeros((4, 8, 8), np.float32), 0.2, **kw)
    with pytest.raises(ValueError, match="3D"):
        bpm_fields(np.full((8, 8), NM), 0.2, **kw)
    bad = np.full((4, 8, 8), NM)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        born_fields(bad, 0.2, **kw)
    with pytest.raises(ValueError, match="voxel_size_um"):
        rytov_fields(np.full((4, 8, 8), NM), (0.2, -0.1, 0.2), **kw)
