"""Physics of the Fourier diffraction tomography (holo.reconstruction.tomography).

Independent reference: first-Born fields of homogeneous spheres computed from the *analytic*
Fourier transform of a sphere, F(K) = f0·4πa³·(sin Ka − Ka cos Ka)/(Ka)³·e^{−iK·c}, and the
forward Born relation Û_B(q) = F(K)/(2i k_z) (no gridding, no FFT of a volume). Its sign is
checked on its own against the projection approximation of holo.conventions (phase
φ = k0 ∫(n − n_m) dz > 0 for a denser object). The exact Mie reference and the digital twin
are used when those modules are present.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from holo.conventions import medium_wavenumber, vacuum_wavenumber
from holo.errors import ValidationError
from holo.reconstruction.tomography import default_grid, fourier_map, reconstruct_fdt
from holo.reconstruction.tomography.fdt import cap_rotation
from holo.reconstruction.tomography.grid import axial_voxel_limit_um, lateral_voxel_limit_um

LAM, NM, NA, PX = 0.532, 1.337, 1.2, 0.1


# -- independent analytic first-Born reference ----------------------------------------------

def _sphere_ft(kmag, radius_um, f0):
    x = kmag * radius_um
    xs = np.maximum(x, 1e-3)
    g = np.where(x < 1e-3, (1 - x * x / 10) / 3, (np.sin(xs) - xs * np.cos(xs)) / xs**3)
    return f0 * 4 * np.pi * radius_um**3 * g


def born_sphere_fields(n, spheres, kin_and_rot, *, px=PX, lam=LAM, nm=NM, na=NA):
    """u/u0 − 1 (first Born) of spheres [(radius_um, index, (cz, cy, cx) µm)], one frame per
    (k_in (z, y, x), R) with R mapping lab K to object K; focal plane at the frame centre."""
    k0, km, kp = vacuum_wavenumber(lam), medium_wavenumber(lam, nm), vacuum_wavenumber(lam) * na
    q = 2 * np.pi * np.fft.fftfreq(n, px)
    qy, qx = q[:, None], q[None, :]
    period = 2 * np.pi / px
    out = np.empty((len(kin_and_rot), n, n), np.complex128)
    for i, (kin, rot) in enumerate(kin_and_rot):
        ky = qy + kin[1]
        ky = ky - period * np.floor(ky / period + 0.5)
        kx = qx + kin[2]
        kx = kx - period * np.floor(kx / period + 0.5)
        kp2 = kx**2 + ky**2
        kz = np.sqrt(np.maximum(km**2 - kp2, 1e-12))
        lab = (kz - kin[0], ky - kin[1], kx - kin[2])
        obj = [rot[j, 0] * lab[0] + rot[j, 1] * lab[1] + rot[j, 2] * lab[2] for j in range(3)]
        kmag = np.sqrt(obj[0] ** 2 + obj[1] ** 2 + obj[2] ** 2)
        F = np.zeros(kmag.shape, complex)
        for radius, index, c in spheres:
            f0 = k0**2 * (nm**2 - index**2)
            F += _sphere_ft(kmag, radius, f0) * np.exp(-1j * (obj[0] * c[0] + obj[1] * c[1] + obj[2] * c[2]))
        U = np.where(kp2 <= kp**2, F / (2j * kz), 0.0)
        U = U * np.exp(-1j * (qy + qx) * (n // 2) * px) / px**2
        out[i] = np.fft.ifft2(U)
    return out


def ring_illuminations(rings=(0.4, 0.8, 1.1), per_ring=(8, 16, 24), lam=LAM, nm=NM):
    nas = [(0.0, 0.0)]
    for r, m in zip(rings, per_ring):
        nas += [(r * math.cos(t), r * math.sin(t)) for t in np.linspace(0, 2 * np.pi, m, endpoint=False)]
    nas = np.array(nas)
    k0, km = vacuum_wavenumber(lam), medium_wavenumber(lam, nm)
    kins = [(np.array([math.sqrt(km**2 - (k0 * x) ** 2 - (k0 * y) ** 2), k0 * y, k0 * x]), np.eye(3)) for x, y in nas]
    return nas, kins


def fieldset(u, **kw):
    base = dict(fields=u.astype(np.complex64), wavelength_um=LAM, pixel_size_um=PX, medium_index=NM, objective_na=NA,
                valid=None, qc=[], source=None, rotation_axis="y", angles=None, illumination_na=None)
    base.update(kw)
    return SimpleNamespace(**base)


def radius_grid(tomo, centre=(0.0, 0.0, 0.0)):
    dz, dy, dx = tomo.voxel_size_um
    z, y, x = (np.arange(n) - n // 2 for n in tomo.ri.shape)
    return np.sqrt((z[:, None, None] * dz - centre[0]) ** 2 + (y[None, :, None] * dy - centre[1]) ** 2 + (x[None, None, :] * dx - centre[2]) ** 2)


@pytest.fixture(scope="module")
def weak_sphere_scan():
    """Δn = +0.005, radius 1.5 µm, 49 illuminations up to NA 1.1 (k0·Δn·2a = 0.18 rad: Born regime)."""
    nas, kins = ring_illuminations()
    ub = born_sphere_fields(64, [(1.5, NM + 0.005, (0.0, 0.0, 0.0))], kins)
    return nas, ub


# -- the reference itself ---------------------------------------------------------------------

def test_reference_phase_is_positive_and_matches_projection(weak_sphere_scan):
    nas, ub = weak_sphere_scan
    # normal incidence, centre pixel: thin-object phase k0·Δn·2a = 2π/0.532·0.005·3 = 0.177 rad.
    # For a 3 µm sphere diffraction within the object changes the focal-plane phase by a
    # few % (Fresnel number a²/(λ/n_m · a) ≈ 3.8); 10 % covers it.
    phi = np.imag(ub[0, 32, 32])
    expected = vacuum_wavenumber(LAM) * 0.005 * 3.0
    assert phi > 0
    assert abs(phi - expected) < 0.1 * expected


# -- illumination scan -----------------------------------------------------------------------

def test_born_inverse_weak_sphere_sign_scale_size(weak_sphere_scan):
    nas, ub = weak_sphere_scan
    fs = fieldset(1 + ub, geometry="illumination-scan", illumination_na=nas)
    tomo = reconstruct_fdt(fs, method="born", shape_zyx=(48, 64, 64), voxel_size_um=0.1)
    ri = tomo.ri
    assert ri.dtype == np.float32 and ri.shape == (48, 64, 64)
    dv = float(np.prod(tomo.voxel_size_um))
    # ∫Δn dV over the whole (padded, periodic) working grid is F(K = 0) alone, which every
    # frame measures exactly at q = 0 (the sample falls on the voxel, trilinear weight 1):
    # only float32 rounding remains → 1 %. (The cropped volume loses the missing-cone tails
    # that reach beyond its 4.8 µm in Z instead of wrapping them back in.)
    from holo.reconstruction.tomography.fdt import fourier_map, spectrum_to_ri

    full = spectrum_to_ri(fourier_map(fs, method="born", shape_zyx=(48, 64, 64), voxel_size_um=0.1).spectrum, LAM, NM)
    integral = float(np.sum(full.astype(np.float64) - NM) * dv)
    truth = 0.005 * 4 / 3 * np.pi * 1.5**3
    assert abs(integral - truth) < 0.01 * truth
    # Inside: positive Δn of the right size. The missing cone (no K_z data near the K_z axis)
    # redistributes the sphere's spectrum; for these caps the inner mean moves by ≲ 20 %.
    r = radius_grid(tomo)
    inner = float(ri[r < 0.75].mean() - NM)
    assert 0.8 * 0.005 < inner < 1.2 * 0.005
    # Lateral size: the half-maximum edge of the in-focus profile lies at the radius to within
    # the lateral resolution λ/(2(NA + NA_ill)) ≈ 0.12 µm (+ one voxel).
    prof = ri[24, 32, :] - NM
    half = prof > 0.5 * prof[32]
    xs = (np.arange(64) - 32) * 0.1
    edge = 0.5 * (xs[half].max() - xs[half].min())
    assert abs(edge - 1.5) < 0.22
    # outside the sphere (beyond the resolution) the medium is recovered
    assert abs(float(ri[(r > 2.2) & (r < 3.0)].mean() - NM)) < 0.1 * 0.005


def test_fourier_data_contract(weak_sphere_scan):
    nas, ub = weak_sphere_scan
    fs = fieldset(1 + ub, geometry="illumination-scan", illumination_na=nas)
    fd = fourier_map(fs, method="born", shape_zyx=(32, 64, 64), voxel_size_um=0.1, padding=1.5)
    assert fd.spectrum.dtype == np.complex64 and fd.weight.dtype == np.float32 and fd.support.dtype == bool
    # the working grid is padded 1.5× per axis (nothing wraps); crop_volume gives the grid asked for
    assert fd.spectrum.shape == fd.shape_zyx == (48, 96, 96)
    assert fd.crop_volume(np.zeros(fd.shape_zyx)).shape == (32, 64, 64)
    np.testing.assert_array_equal(fd.support, fd.weight > 1e-6)
    assert np.all(fd.spectrum[~fd.support] == 0)
    # Hermitian placement: the support is point-symmetric about K = 0 and f = ifftn(spectrum)
    # is real (imaginary part at float32 rounding level).
    neg = np.roll(fd.support[::-1, ::-1, ::-1], 1, axis=(0, 1, 2))
    np.testing.assert_array_equal(fd.support, neg)
    f = np.fft.ifftn(fd.spectrum)
    assert np.abs(f.imag).max() < 1e-4 * np.abs(f.real).max()
    # f < 0 where n > n_m (holo.conventions): the centre voxel (volume centre = focal plane)
    assert fd.crop_volume(f.real)[16, 32, 32] < 0
    # the mapping only samples caps: the lateral band is 2·NA·k0 (grid.py), nothing beyond it
    k0 = vacuum_wavenumber(LAM)
    ky = 2 * np.pi * np.fft.fftfreq(96, 0.1)
    kperp = np.hypot(ky[:, None], ky[None, :])
    assert not np.any(fd.support[:, kperp > 2 * NA * k0 + 2 * np.pi / 9.6])


def test_density_compensation_averages_repeated_frames(weak_sphere_scan):
    nas, ub = weak_sphere_scan
    sub = slice(0, 25)
    fs1 = fieldset(1 + ub[sub], geometry="illumination-scan", illumination_na=nas[sub])
    fs2 = fieldset(1 + np.concatenate([ub[sub], ub[sub]]), geometry="illumination-scan", illumination_na=np.concatenate([nas[sub], nas[sub]]))
    a = fourier_map(fs1, method="born", shape_zyx=(16, 64, 64), voxel_size_um=(0.2, 0.1, 0.1))
    b = fourier_map(fs2, method="born", shape_zyx=(16, 64, 64), voxel_size_um=(0.2, 0.1, 0.1))
    # measuring every cap twice doubles the weights but not the normalised spectrum
    np.testing.assert_allclose(b.weight, 2 * a.weight, rtol=1e-5, atol=1e-6)
    scale = np.abs(a.spectrum).max()
    assert np.abs(b.spectrum - a.spectrum).max() < 1e-5 * scale


def test_invalid_frames_are_excluded(weak_sphere_scan):
    nas, ub = weak_sphere_scan
    good = fieldset(1 + ub[:25], geometry="illumination-scan", illumination_na=nas[:25])
    u = (1 + ub[:26]).copy()
    u[25] = 5.0 * np.exp(1j * np.random.default_rng(0).uniform(-3, 3, u[25].shape))  # garbage frame
    valid = np.ones(26, bool)
    valid[25] = False
    bad = fieldset(u, geometry="illumination-scan", illumination_na=nas[:26], valid=valid)
    ta = reconstruct_fdt(good, method="born", shape_zyx=(16, 64, 64), voxel_size_um=(0.2, 0.1, 0.1))
    tb = reconstruct_fdt(bad, method="born", shape_zyx=(16, 64, 64), voxel_size_um=(0.2, 0.1, 0.1))
    np.testing.assert_allclose(tb.ri, ta.ri, atol=1e-6)
    assert tb.provenance["excluded_frames"] == [25] and tb.provenance["method"] == "born"


@pytest.mark.parametrize("radius_um, dn", [(1.5, 0.01), (2.0, 0.05)])
def test_exact_mie_sphere_rytov_holds_born_breaks(radius_um, dn):
    """Exact Mie fields (holo.twin.mie) of a sphere; phase delay k0·Δn·2a = 0.35 and 2.4 rad.

    Theory: both first-order inversions are right for a weak object (error second order in
    the phase, a few % at 0.35 rad, on top of the ≲ 20 % missing-cone redistribution of
    the centre value derived above; we allow ±15 % since both agree to 2 % with Mie here).
    For 2.4 rad, u/u0 − 1 = e^{iφ} − 1 saturates (|·| ≤ 2, wrapping phase), so the first-Born
    inverse collapses (below half the true Δn), while the Rytov phase ln(u/u0) stays linear
    in Δn and holds within the same ±15 %.
    """
    mie = pytest.importorskip("holo.twin.mie")
    nas, _ = ring_illuminations(rings=(0.5, 1.0), per_ring=(8, 16))
    u = np.stack([mie.mie_sphere_field(radius_um, NM + dn, NM, LAM, (64, 64), PX, illumination_na=tuple(na), objective_na=NA) for na in nas])
    fs = fieldset(u, geometry="illumination-scan", illumination_na=nas)
    kw = dict(shape_zyx=(64, 64, 64), voxel_size_um=0.1)
    born = reconstruct_fdt(fs, method="born", **kw)
    ryt = reconstruct_fdt(fs, method="rytov", **kw)
    inner = radius_grid(ryt) < radius_um / 2
    rel_r = float(ryt.ri[inner].mean() - NM) / dn
    rel_b = float(born.ri[inner].mean() - NM) / dn
    assert 0.85 < rel_r < 1.15
    if dn * radius_um * 2 * vacuum_wavenumber(LAM) < 0.5:
        assert 0.85 < rel_b < 1.15
    else:
        assert rel_b < 0.5


@pytest.fixture(scope="module")
def mie_rotation_field():
    """u/u0 of a sphere (d 6 µm, n 1.36 in 1.337) at the rotation centre: the sphere is
    invariant under the rotation, so every angle's field is the exact normal-incidence Mie
    field. NA 0.6 keeps the grid small (λ/(4 NA) = 0.22 µm voxels, 48³)."""
    mie = pytest.importorskip("holo.twin.mie")
    return mie.mie_sphere_field(3.0, 1.36, NM, LAM, (48, 48), 0.22, objective_na=0.6).astype(np.complex64)


@pytest.mark.parametrize("n_angles", [60, 360])
def test_sample_rotation_of_an_exact_mie_sphere(mie_rotation_field, n_angles):
    """60 and 360 angles over a full turn: the issue's targets on exact Mie fields, the
    default chain (gp, full axial tent, gridding-weighted) within 1e-3 inside 0.6 R (measured
    −3e-5 with the K grid refined across the axis, +8.6e-4 gridded on the working grid;
    rytov +1.3e-4 within 2e-3, was +1.0e-3), volume above half contrast within 5 % (+2.1 %,
    was +1.4 %), isotropic (z/x, y/x ≤ 1.15; 1.00) and the background outside 1.2 R within
    ±5e-4 of n_m at the 99th percentile (gp 3.4e-4; the narrow tent of an illumination scan
    gave +2.1e-3 and 3.6e-3 here)."""
    from holo.reconstruction.regularization import reconstruct_regularized
    from holo.reconstruction.tomography.fdt import REGULARIZED_AXIAL_HALFWIDTH

    u = mie_rotation_field
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    fs = fieldset(np.broadcast_to(u, (n_angles,) + u.shape), geometry="sample-rotation", angles=angles, pixel_size_um=0.22, objective_na=0.6)
    ryt = reconstruct_fdt(fs, method="rytov")
    fd = fourier_map(fs, method="rytov", axial_halfwidth=REGULARIZED_AXIAL_HALFWIDTH["sample-rotation"])
    gp = reconstruct_regularized(fd, method="gp", device="cpu")
    for tomo, tol in ((ryt, 2e-3), (gp, 1e-3)):
        r = radius_grid(tomo)
        ri, dv = tomo.ri, float(np.prod(tomo.voxel_size_um))
        assert abs(ri[r < 1.8].mean() - 1.36) < tol
        assert np.count_nonzero(ri > NM + 0.0115) * dv == pytest.approx(4 / 3 * np.pi * 27, rel=0.05)
        c = [s // 2 for s in ri.shape]
        ext = [np.ptp(np.flatnonzero(line > NM + 0.0115)) + 1 for line in (ri[:, c[1], c[2]], ri[c[0], :, c[2]], ri[c[0], c[1], :])]
        assert max(ext[0], ext[1]) / ext[2] <= 1.15
    assert np.percentile(np.abs(gp.ri[radius_grid(gp) > 3.6] - NM), 99) < 5e-4


def _twin():
    twin = pytest.importorskip("holo.twin.acquire")
    phantoms = pytest.importorskip("holo.twin.phantoms")
    return twin, phantoms


def test_noisy_holograms_of_a_cell_phantom_end_to_end():
    """Digital twin: BPM holograms with camera noise → field retrieval → Rytov/Born.

    The mean RI over the cell's interior (eroded by 2 voxels, so the ~λ/(4NA) lateral and
    ~2× coarser axial blur do not reach it) is within 10 % of the truth for Rytov: the
    spheres above show ≲ 15 % at their centres, and the mean over a whole cell sits closer
    to the exactly measured K = 0 term. The cell's phase delay is a few radians, beyond
    first Born: the Born dry mass (∫Δn over the cell) falls well short (< 80 %).
    """
    from scipy import ndimage

    from holo.pipeline import reconstruct

    twin, phantoms = _twin()
    ph = phantoms.make_phantom("cell", shape_zyx=(48, 96, 96), voxel_size_um=(0.2, 0.2, 0.2), n_cells=1, seed=3)
    acq = twin.simulate_acquisition(ph, geometry="illumination-scan", n_angles=49, seed=1)
    mask = ph.instance > 0
    inner = ndimage.binary_erosion(mask, iterations=2)
    truth_dn = float(ph.ri[inner].mean() - NM)
    truth_mass = float((ph.ri[mask] - NM).sum())
    ryt = reconstruct(acq, method="rytov", shape_zyx=ph.ri.shape, voxel_size_um=ph.voxel_size_um)
    assert abs(float(ryt.ri[inner].mean() - NM) - truth_dn) < 0.1 * truth_dn
    assert abs(float((ryt.ri[mask] - NM).sum()) / truth_mass - 1) < 0.1
    born = reconstruct(acq, method="born", shape_zyx=ph.ri.shape, voxel_size_um=ph.voxel_size_um)
    assert float((born.ri[mask] - NM).sum()) / truth_mass < 0.8


def test_noisy_sample_rotation_end_to_end_position_and_value():
    """Sample rotation (60 angles over π about Y) of an off-centre sphere through the twin:
    its centroid is within one voxel of the truth (a wrong rotation sense would mirror the
    1 µm X offset) and its interior RI within 10 % (as above)."""
    from holo.pipeline import reconstruct

    twin, phantoms = _twin()
    ph = phantoms.make_sphere_phantom(1.5, NM + 0.023, shape_zyx=(64, 64, 64), voxel_size_um=0.15, center_um=(0.0, 0.5, 1.0))
    acq = twin.simulate_acquisition(ph, geometry="sample-rotation", n_angles=60, seed=1)
    tomo = reconstruct(acq, method="rytov", shape_zyx=ph.ri.shape, voxel_size_um=ph.voxel_size_um)
    d = tomo.ri - NM
    core = ph.ri > NM + 0.0229
    assert abs(float(d[core].mean()) / 0.023 - 1) < 0.1
    blob = d > 0.5 * 0.023
    centroid = np.array([np.mean(ix) for ix in np.nonzero(blob)])
    truth = np.array([np.mean(ix) for ix in np.nonzero(core)])
    assert np.all(np.abs(centroid - truth) < 1.0)


# -- sample rotation -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rotation_case():
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    km = medium_wavenumber(LAM, NM)
    kins = [(np.array([km, 0.0, 0.0]), cap_rotation(t, "y")) for t in angles]
    spheres = [(0.6, NM + 0.008, (0.0, 0.0, 1.2)), (0.6, NM + 0.008, (0.8, -0.8, 0.0))]
    ub = born_sphere_fields(48, spheres, kins)
    return angles, spheres, ub


def test_sample_rotation_positions_and_values(rotation_case):
    angles, spheres, ub = rotation_case
    fs = fieldset(1 + ub, geometry="sample-rotation", angles=angles)
    tomo = reconstruct_fdt(fs, method="born")
    assert tomo.ri.shape == (48, 48, 48)  # default: dz = dx, Z spans the X extent
    assert tomo.provenance["geometry"] == "sample-rotation"
    d = tomo.ri - NM
    for radius, index, c in spheres:
        r = radius_grid(tomo, c)
        blob = d * ((r < 0.9) & (d > 0.5 * (index - NM)))
        pos = [float((blob * g).sum() / blob.sum()) for g in np.meshgrid(*[(np.arange(n) - n // 2) * 0.1 for n in d.shape], indexing="ij")]
        # the blob's centroid is where the sphere is, to within one voxel (a wrong rotation
        # sense or axis would put the second sphere 1.6 µm away in Z or X); not its argmax,
        # which the Gibbs ripple of a flat top moves by a few voxels
        assert np.allclose(pos, c, atol=0.11)
        # the centre value is Δn to within the resolution loss of a 1.2 µm sphere
        # (lateral/axial resolution ≈ λ/(4 NA) ≈ 0.11 µm → a few %) plus the ≲ 20 %
        # redistribution by the missing cone about Y and angular gaps
        inner = float(d[r < 0.3].mean())
        assert 0.8 * 0.008 < inner < 1.25 * 0.008
    # ∫Δn dV is the K = 0 voxel, which takes the mean of every frame's exact q = 0 sample
    # (Fourier slice theorem), not the trilinear average with cap samples one ΔK away where
    # the off-centre spheres' spectrum has turned by K·c ≈ 1.6 rad (that average gave 0.965);
    # left: the n(f) nonlinearity, ≈ Δn/(4 n_m) ≈ 0.15 %. Measured 0.9993; bounded by 1 %.
    # The identity holds on the whole (padded, periodic) working grid: the cropped 4.8 µm
    # volume leaves out the tails that spill beyond it instead of wrapping back.
    from holo.reconstruction.tomography.fdt import spectrum_to_ri

    full = spectrum_to_ri(fourier_map(fs, method="born").spectrum, LAM, NM) - NM
    dv = 0.1**3
    truth = 2 * 0.008 * 4 / 3 * np.pi * 0.6**3
    assert abs(float(full.astype(np.float64).sum() * dv) - truth) < 0.01 * truth


def test_sample_rotation_agrees_with_odtbrain(rotation_case):
    odt = pytest.importorskip("odtbrain")
    angles, spheres, ub = rotation_case
    fs = fieldset(1 + ub, geometry="sample-rotation", angles=angles)
    ours = reconstruct_fdt(fs, method="born").ri
    f = odt.backpropagate_3d(ub, angles, LAM / PX, NM, onlyreal=True, padding=(False, False), num_cores=1)
    theirs = odt.odt_to_ri(f, LAM / PX, NM).real
    assert theirs.shape == ours.shape
    # Same data, same grid, two discretisations of the same Fourier diffraction theorem
    # (gridding here, filtered backpropagation there): the volumes should agree up to
    # interpolation differences, which live at the highest spatial frequencies.
    corr = np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]
    assert corr > 0.9
    rms_diff = np.sqrt(np.mean((ours - theirs) ** 2))
    assert rms_diff < 0.15 * 0.008


def test_cap_rotation_is_a_rotation_with_the_documented_sense():
    r = cap_rotation(0.3, "y")
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    # object K = R_{-α} K_lab; for a +α turn about Y (+Z → +X), the lab Z direction comes
    # from the object direction turned back: object z component of lab z = cos α, and of
    # lab x = +sin α.
    np.testing.assert_allclose(r @ [1, 0, 0], [math.cos(0.3), 0, -math.sin(0.3)], atol=1e-12)
    np.testing.assert_allclose(cap_rotation(0.3, "x") @ cap_rotation(-0.3, "x"), np.eye(3), atol=1e-12)


# -- grid and errors -------------------------------------------------------------------------

def test_default_grid_follows_the_optics():
    # pixel coarser than λ/(4NA) = 0.111 µm: the grid is refined, keeping the field of view
    g = default_grid((100, 100), 0.2, wavelength_um=LAM, medium_index=NM, objective_na=NA)
    dz, dy, dx = g.voxel_size_um
    assert dx <= lateral_voxel_limit_um(LAM, NA) + 1e-9
    assert abs(g.shape_zyx[2] * dx - 20.0) < 1e-9
    assert dx <= dz <= min(axial_voxel_limit_um(LAM, NM, NA), 2 * dx) + 1e-9
    # axial Nyquist limit λ/(2(n_m − √(n_m² − NA²))) = 0.356 µm for NA 1.2 in water-like n_m
    assert abs(axial_voxel_limit_um(LAM, NM, NA) - 0.532 / (2 * (1.337 - math.sqrt(1.337**2 - 1.44)))) < 1e-12
    # fine pixels are kept; sample rotation is isotropic in the rotation plane
    g2 = default_grid((64, 80), 0.1, wavelength_um=LAM, medium_index=NM, objective_na=NA, geometry="sample-rotation")
    assert g2.voxel_size_um == (0.1, 0.1, 0.1) and g2.shape_zyx == (80, 64, 80)
    g3 = default_grid((64, 64), 0.1, wavelength_um=LAM, medium_index=NM, objective_na=NA, shape_zyx=(20, 64, 64), voxel_size_um=0.2)
    assert g3.shape_zyx == (20, 64, 64) and g3.voxel_size_um == (0.2, 0.2, 0.2)
    with pytest.raises(ValueError, match="voxel_size_um"):
        default_grid((64, 64), 0.1, wavelength_um=LAM, medium_index=NM, objective_na=NA, voxel_size_um=-1)
    with pytest.raises(ValueError, match="shape_zyx"):
        default_grid((64, 64), 0.1, wavelength_um=LAM, medium_index=NM, objective_na=NA, shape_zyx=(4, 4))


def test_errors_name_the_argument(weak_sphere_scan):
    nas, ub = weak_sphere_scan
    fs = fieldset(1 + ub[:3], geometry="illumination-scan", illumination_na=nas[:3])
    with pytest.raises(ValueError, match="method"):
        fourier_map(fs, method="radon")
    with pytest.raises(ValidationError, match="valid"):
        fourier_map(fieldset(1 + ub[:3], geometry="illumination-scan", illumination_na=nas[:3], valid=np.zeros(3, bool)))
    with pytest.raises(ValidationError, match="angles"):
        fourier_map(fieldset(1 + ub[:3], geometry="sample-rotation"))
    with pytest.raises(ValidationError, match="illumination_na"):
        fourier_map(fieldset(1 + ub[:3], geometry="illumination-scan", illumination_na=nas[:2]))
