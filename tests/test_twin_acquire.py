"""Digital-twin acquisitions: illumination patterns, hologram physics, camera statistics,
simulate_acquisition end to end and dataset generation.

Tolerances are derived in comments from the physics (quantisation, shot noise, sample sizes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.fft as sfft

from holo.model import Acquisition
from holo.twin import acquire
from holo.reconstruction.forward.propagation import angular_spectrum_propagate
from holo.twin.acquire import (
    camera_grid,
    check_carrier,
    default_pixel_size_um,
    default_carrier,
    fourier_resample,
    fourier_shift,
    hologram_intensity,
    parasitic_transmittance,
    plane_wave,
    reference_wave,
    simulate_acquisition,
)
from holo.twin.camera import CameraModel, expose
from holo.twin.illumination import illumination_pattern, rotation_angles

LAM, NA, NM = 0.532, 1.2, 1.337
RHO = NA / LAM  # pupil radius in cycles/µm


# -- illumination ----------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["spiral", "rings"])
@pytest.mark.parametrize("n", [1, 2, 13, 49, 100])
def test_illumination_pattern_geometry(pattern, n):
    na = illumination_pattern(n, condenser_na=1.1, pattern=pattern, medium_index=NM)
    assert na.shape == (n, 2)
    assert np.array_equal(na[0], [0.0, 0.0])  # frame 0 at normal incidence
    r = np.hypot(na[:, 0], na[:, 1])
    assert r.max() <= 1.1 + 1e-12  # inside the condenser NA
    assert np.all(r < NM)
    if n > 1:
        assert r.max() == pytest.approx(1.1, abs=1e-12)  # the scan reaches the rim
        assert np.all(r[1:] > 0)  # only frame 0 is at normal incidence
        # all directions distinct
        d = np.hypot(*(na[:, None, :] - na[None, :, :]).transpose(2, 0, 1)) + np.eye(n)
        assert d.min() > 1e-6


def test_spiral_samples_the_condenser_disc_uniformly():
    # Fermat spiral: equal area ⇒ equal counts. The disc of radius NA_c/√2 holds half the area;
    # its count is k with √(k/(A−1)) ≤ 1/√2, i.e. exactly (A−1)/2 of the tilted frames.
    na = illumination_pattern(101, 1.1, "spiral")
    r = np.hypot(*na[1:].T)
    assert np.count_nonzero(r <= 1.1 / np.sqrt(2) + 1e-12) == 50


def test_rings_lie_on_few_radii_with_points_growing_outwards():
    na = illumination_pattern(49, 1.1, "rings")
    r = np.round(np.hypot(*na[1:].T), 9)
    radii, counts = np.unique(r, return_counts=True)
    assert 3 <= radii.size <= 5
    assert radii[-1] == pytest.approx(1.1)
    assert np.all(np.diff(counts) > 0)
    assert np.allclose(np.diff(radii), radii[0])  # equally spaced rings


def test_illumination_pattern_rejects_bad_arguments():
    with pytest.raises(ValueError, match="condenser_na"):
        illumination_pattern(49, condenser_na=1.4, medium_index=NM)
    with pytest.raises(ValueError, match="pattern"):
        illumination_pattern(49, pattern="grid")
    with pytest.raises(ValueError, match="n_angles"):
        illumination_pattern(0)


def test_rotation_angles():
    a = rotation_angles(60)
    assert a.shape == (60,) and a[0] == 0.0
    assert np.allclose(np.diff(a), np.pi / 60)
    assert a[-1] < np.pi  # end point excluded: no duplicate view
    full = rotation_angles(8, span_rad=2 * np.pi)
    assert np.allclose(full, np.arange(8) * np.pi / 4)
    with pytest.raises(ValueError, match="span_rad"):
        rotation_angles(10, span_rad=360.0)


# -- carrier and camera geometry ------------------------------------------------------------
def test_default_pixel_and_carrier_separate_the_sidebands():
    p = default_pixel_size_um(NA, LAM)
    assert 0.065 < p < 0.072  # ≈ 0.07 µm for NA 1.2 at 532 nm (see module docstring)
    shape, pix = camera_grid((12.8, 12.8), objective_na=NA, wavelength_um=LAM)
    assert pix <= p and shape[0] * pix == pytest.approx(12.8)
    fy, fx = default_carrier(NA, LAM, pix, shape)
    assert fx == pytest.approx(fy)  # diagonal
    # carrier on the camera FFT grid
    assert fx * shape[1] * pix == pytest.approx(round(fx * shape[1] * pix), abs=1e-9)
    assert np.hypot(fx, fy) >= 3 * RHO
    assert max(fx, fy) + RHO <= 0.5 / pix


def test_check_carrier_rejects_overlap_and_aliasing():
    p = default_pixel_size_um(NA, LAM)
    with pytest.raises(ValueError, match="autocorrelation"):
        check_carrier((0.0, 2.0 * RHO), objective_na=NA, wavelength_um=LAM, pixel_size_um=p)
    with pytest.raises(ValueError, match="alias"):
        check_carrier((3.2 * RHO / np.sqrt(2),) * 2, objective_na=NA, wavelength_um=LAM, pixel_size_um=0.1)
    with pytest.raises(ValueError, match="tile"):
        camera_grid((12.8, 12.8), 0.07)


# -- hologram physics ------------------------------------------------------------------------
def _plane_wave_sum(coef, freqs, y, x):
    """Σ_j c_j exp(i 2π (f_yj y + f_xj x)) evaluated exactly (complex128)."""
    out = np.zeros(np.broadcast(y, x).shape, complex)
    for c, (fy, fx) in zip(coef, freqs):
        out += c * np.exp(2j * np.pi * (fy * y + fx * x))
    return out


def _grid_freqs(rng, n, d, radius_cpum, count):
    """``count`` random frequencies of an n-point grid of pitch d inside a disc."""
    f = sfft.fftfreq(n, d)
    out = []
    while len(out) < count:
        fy, fx = rng.choice(f, 2)
        if np.hypot(fy, fx) <= radius_cpum:
            out.append((fy, fx))
    return out


def _demodulate(holo, carrier, pixel_um, radius_cpum):
    """Simple FFT demodulation: keep the disc of radius NA/λ around the u·r* sideband at −f and
    move it to the origin (the carrier (f_y, f_x) is on the FFT grid). The roll multiplies by
    e^{+i2πf·m p} (m the index) while the reference phase is e^{i2πf·(m − M//2) p}; the
    constant left, e^{i2πf·(M//2) p}, is divided out."""
    my, mx = holo.shape
    fy_c, fx_c = carrier
    spec = sfft.fft2(np.asarray(holo, dtype=np.float64))
    fy = sfft.fftfreq(my, pixel_um)[:, None]
    fx = sfft.fftfreq(mx, pixel_um)[None, :]
    crop = np.where((fy + fy_c) ** 2 + (fx + fx_c) ** 2 <= radius_cpum**2, spec, 0)
    shift = (int(round(fy_c * my * pixel_um)), int(round(fx_c * mx * pixel_um)))
    const = np.exp(2j * np.pi * (fy_c * (my // 2) + fx_c * (mx // 2)) * pixel_um)
    return sfft.ifft2(np.roll(crop, shift, axis=(0, 1))) / const


def test_fourier_upsampling_is_exact_for_band_limited_fields():
    rng = np.random.default_rng(3)
    n, d = 48, 0.2
    freqs = _grid_freqs(rng, n, d, RHO, 12)
    coef = rng.normal(size=12) + 1j * rng.normal(size=12)
    c = (np.arange(n) - n // 2) * d
    u = _plane_wave_sum(coef, freqs, c[:, None], c[None, :]).astype(np.complex64)
    shape, p = camera_grid((n * d, n * d), objective_na=NA, wavelength_um=LAM)
    cy = (np.arange(shape[0]) - shape[0] // 2) * p
    exact = _plane_wave_sum(coef, freqs, cy[:, None], cy[None, :])
    up = fourier_resample(u, shape)
    # float32 FFTs: relative rounding ~ 1e-7·log2(N) per transform; 1e-5 of the peak is ample
    assert np.abs(up - exact).max() <= 1e-5 * np.abs(exact).max()


def test_hologram_sideband_reproduces_the_field():
    rng = np.random.default_rng(4)
    n, d = 48, 0.2
    shape, p = camera_grid((n * d, n * d), objective_na=NA, wavelength_um=LAM)
    carrier = default_carrier(NA, LAM, p, shape)
    freqs = _grid_freqs(rng, n, d, 0.95 * RHO, 10)
    coef = 0.1 * (rng.normal(size=10) + 1j * rng.normal(size=10))
    cy = (np.arange(shape[0]) - shape[0] // 2) * p
    u = 1.0 + _plane_wave_sum(coef, freqs, cy[:, None], cy[None, :])  # band-limited field
    a = 0.8
    intensity = hologram_intensity(u, reference_wave(shape, p, carrier, a))
    # I = |u|² + a² + a·u·e^{−i2πf·r} + c.c.: the crop keeps a·u exactly when the discs are separate
    got = _demodulate(intensity, carrier, p, RHO) / a
    # float32 intensity: relative rounding 6e-8 of I ≤ (|u| + a)² ≈ 5, spread over the crop → ≪ 1e-5
    assert np.abs(got - u).max() < 1e-5


def _fake_forward(coef, freqs):
    """A forward model returning a known u/u0 = 1 + Σ c_j e^{i2π f_j·r} for every frame."""

    def fwd(ri, voxel_size_um, *, illumination_na=None, angles=None, progress=None, **kw):
        n_frames = len(illumination_na) if illumination_na is not None else len(angles)
        ny, nx = ri.shape[1:]
        y = (np.arange(ny) - ny // 2)[:, None] * voxel_size_um[1]
        x = (np.arange(nx) - nx // 2)[None, :] * voxel_size_um[2]
        f = 1.0 + _plane_wave_sum(coef, freqs, y, x)
        if progress:
            progress(n_frames, n_frames)
        return np.repeat(f[None].astype(np.complex64), n_frames, axis=0)

    return fwd


class _FlatPhantom:
    """Duck-typed phantom: uniform medium (the fake forward model supplies the fields)."""

    def __init__(self, shape_zyx=(4, 48, 48), voxel_size_um=0.2):
        self.ri = np.full(shape_zyx, NM, np.float32)
        self.voxel_size_um = (voxel_size_um,) * 3
        self.medium_index = NM
        self.kind = "flat"
        self.classes = {}

    def ground_truth(self):
        z = np.zeros(self.ri.shape, np.uint8)
        return {"ri": self.ri, "semantic": z, "instance": z.astype(np.int32), "voxel_size_um": self.voxel_size_um,
                "medium_index": NM, "classes": {}, "semantic_names": ["background"]}


def test_background_division_gives_u_over_u0(monkeypatch):
    rng = np.random.default_rng(5)
    n, d = 48, 0.2
    # u/u0 with frequencies ≤ 0.5 ρ and illumination NA ≤ 0.5 (|k_in|/2π ≤ 0.42 ρ): the total
    # field (u/u0)·u_in stays inside the pupil, so u/u0 must come back exactly
    freqs = _grid_freqs(rng, n, d, 0.5 * RHO, 8)
    coef = 0.05 * (rng.normal(size=8) + 1j * rng.normal(size=8))
    monkeypatch.setattr(acquire, "_forward", lambda name: _fake_forward(coef, freqs))
    cam = CameraModel(noise=False, bit_depth=16, gain_e_per_adu=1.0, full_well_e=60000.0)
    acq = simulate_acquisition(_FlatPhantom(), n_angles=5, condenser_na=0.5, camera=cam, reference_ratio=1.0, seed=0)
    p = acq.pixel_size_um
    carrier = acq.metadata["carrier_cycles_per_um"]
    cy = (np.arange(acq.frame_shape[0]) - acq.frame_shape[0] // 2) * p
    truth = 1.0 + _plane_wave_sum(coef, freqs, cy[:, None], cy[None, :])
    # Noise-free camera: ADU = round(7000·|u + r|²/2), so the sideband a·u appears with 3500 ADU
    # per unit field. Rounding adds white noise of 1/√12 ADU; the crop keeps the fraction
    # π ρ² p² ≈ 0.076 of its power: σ ≈ 0.29·0.28/3500 ≈ 2.3e-5 of the field per pixel, ×√2 for
    # the ratio; the maximum over ≈ 2·10⁴ pixels stays below 5σ ≈ 1.6e-4. Tolerance 3e-4.
    for a in range(acq.n_frames):
        ratio = _demodulate(acq.holograms[a], carrier, p, RHO) / _demodulate(acq.background[a], carrier, p, RHO)
        assert np.abs(ratio - truth).max() < 3e-4
    # the background sideband alone is the tilted illumination, 3500 ADU per unit field
    bg = _demodulate(acq.background[3], carrier, p, RHO)
    u_in = plane_wave(acq.frame_shape, p, acq.illumination_na[3], LAM)
    assert np.abs(bg / 3500.0 - u_in).max() < 3e-4


def test_fringes_are_common_to_sample_and_background(monkeypatch):
    rng = np.random.default_rng(6)
    n, d = 48, 0.2
    freqs = _grid_freqs(rng, n, d, 0.5 * RHO, 6)
    coef = 0.05 * (rng.normal(size=6) + 1j * rng.normal(size=6))
    monkeypatch.setattr(acquire, "_forward", lambda name: _fake_forward(coef, freqs))
    cam = CameraModel(noise=False, bit_depth=16, gain_e_per_adu=1.0, full_well_e=60000.0)
    eps = 0.05
    acq = simulate_acquisition(_FlatPhantom(), n_angles=3, condenser_na=0.5, camera=cam, fringes=eps, seed=2)
    p, carrier = acq.pixel_size_um, acq.metadata["carrier_cycles_per_um"]
    cy = (np.arange(acq.frame_shape[0]) - acq.frame_shape[0] // 2) * p
    truth = 1.0 + _plane_wave_sum(coef, freqs, cy[:, None], cy[None, :])
    for a in range(acq.n_frames):
        bg = _demodulate(acq.background[a], carrier, p, RHO) / 3500.0
        u_in = plane_wave(acq.frame_shape, p, acq.illumination_na[a], LAM)
        pattern = np.std(bg / u_in - 1)  # the parasitic pattern as seen in the background
        assert pattern > 0.3 * eps
        ratio = _demodulate(acq.holograms[a], carrier, p, RHO) / 3500.0 / bg
        residual = np.std(ratio - truth)
        # the pattern multiplies u and u0 alike; what survives the division comes only from the
        # pupil acting between the product and the camera, a second-order term ~ ε·|u/u0 − 1|
        # (≤ 0.05·0.4): far below the first-order pattern itself
        assert residual < 0.2 * pattern


def test_parasitic_pattern_is_band_limited_and_weak():
    t = parasitic_transmittance((64, 64), 0.2, 0.03, 1, objective_na=NA, wavelength_um=LAM)
    spec = np.abs(sfft.fft2(t - t.mean())) ** 2
    f = np.hypot(sfft.fftfreq(64, 0.2)[:, None], sfft.fftfreq(64, 0.2)[None, :])
    # the ring chirp reaches 0.25 ρ at two widths; Gaussian tails beyond carry ≪ 1 % of the power
    assert spec[f > 0.5 * RHO].sum() < 0.01 * spec.sum()
    assert np.abs(t - 1).max() < 0.03 * 4  # ½ + three unit-peak dust terms


def test_fourier_shift_and_defocus_are_exact_operations():
    rng = np.random.default_rng(7)
    n, d = 32, 0.2
    freqs = _grid_freqs(rng, n, d, RHO, 6)
    coef = rng.normal(size=6) + 1j * rng.normal(size=6)
    c = (np.arange(n) - n // 2) * d
    u = _plane_wave_sum(coef, freqs, c[:, None], c[None, :])
    # a whole-pixel shift is a roll; a sub-pixel shift matches the analytic field at r − s
    assert np.allclose(fourier_shift(u, (2 * d, -3 * d), d), np.roll(u, (2, -3), axis=(0, 1)), atol=1e-4)
    s = (0.037, -0.061)
    assert np.allclose(fourier_shift(u, s, d), _plane_wave_sum(coef, freqs, c[:, None] - s[0], c[None, :] - s[1]), atol=1e-4)
    # a plane wave of transverse frequency f gains exp(i k_z Δz), k_z = √(k_m² − (2πf)²)
    na_in = (3 * LAM / (n * d), 0.0)
    w = plane_wave((n, n), d, na_in, LAM)
    kz = np.sqrt((2 * np.pi * NM / LAM) ** 2 - (2 * np.pi * na_in[0] / LAM) ** 2)
    assert np.allclose(angular_spectrum_propagate(w, 1.5, d, LAM, NM), w * np.exp(1j * kz * 1.5), atol=1e-4)
    assert np.allclose(angular_spectrum_propagate(angular_spectrum_propagate(u, 2.0, d, LAM, NM), -2.0, d, LAM, NM), u, atol=1e-4)


# -- camera ----------------------------------------------------------------------------------
def test_flat_exposure_has_poisson_plus_read_noise_statistics():
    cam = CameraModel(photons_per_pixel=2000.0, quantum_efficiency=0.6, read_noise_e=5.0, full_well_e=60000.0,
                      bit_depth=16, gain_e_per_adu=0.5, offset_adu=100.0)
    n = 200_000
    img = expose(np.full(n, 0.75), cam, np.random.default_rng(0)).astype(np.float64)
    mean_e = 0.75 * 2000 * 0.6  # 900 e⁻
    mean = mean_e / 0.5 + 100.0
    var = (mean_e + 5.0**2) / 0.5**2 + 1.0 / 12.0  # shot + read noise in ADU², + rounding
    # standard errors: σ/√n for the mean, var·√(2/(n−1)) for the variance (≈ Gaussian); 5σ bounds
    assert abs(img.mean() - mean) < 5 * np.sqrt(var / n)
    assert abs(img.var() - var) < 5 * var * np.sqrt(2.0 / (n - 1))


def test_camera_saturation_bit_depth_and_noiseless_mode():
    i = np.array([0.0, 0.5, 1.0, 50.0])
    c12 = CameraModel(noise=False)
    out = expose(i, c12)
    assert out.dtype == np.uint16
    assert out[-1] == 4095  # full well → largest 12-bit value, no wrap-around
    assert out[2] == round(10000 * 0.7 / (20000 / 4095))
    c8 = CameraModel(bit_depth=8)
    out8 = expose(np.full((64, 64), 100.0), c8, 1)
    assert out8.dtype == np.uint8 and np.all(out8 == 255)
    c16 = CameraModel(bit_depth=16, noise=False)
    assert expose(i, c16).max() == 65535
    with pytest.raises(ValueError, match="bit_depth"):
        CameraModel(bit_depth=11)
    with pytest.raises(ValueError, match="quantum_efficiency"):
        CameraModel(quantum_efficiency=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        expose(np.array([-1.0]), c12)


def test_exposure_is_deterministic_by_seed():
    img = np.ones((32, 32))
    assert np.array_equal(expose(img, CameraModel(), 3), expose(img, CameraModel(), 3))
    assert not np.array_equal(expose(img, CameraModel(), 3), expose(img, CameraModel(), 4))


def _wave_sum_total(coef, freqs, na_in, y, x, defocus_um=0.0):
    """u/u0 expected at the camera for the fake forward model, with an exact defocus: each
    plane-wave component of the total field, transverse frequency q + NA_in/λ, gains
    exp(i k_z(q + NA_in/λ) Δz), and u0 gains exp(i k_z(NA_in/λ) Δz)."""
    km = 2 * np.pi * NM / LAM
    fin = np.array([na_in[1], na_in[0]]) / LAM  # (f_y, f_x) of the illumination

    def kz(f):
        return np.sqrt(km**2 - (2 * np.pi) ** 2 * (f[0] ** 2 + f[1] ** 2))

    out = np.ones(np.broadcast(y, x).shape, complex)
    for c, f in zip(coef, freqs):
        g = np.exp(1j * (kz(np.asarray(f) + fin) - kz(fin)) * defocus_um)
        out += c * g * np.exp(2j * np.pi * (f[0] * y + f[1] * x))
    return out


def test_drift_and_defocus_follow_the_wave_physics(monkeypatch):
    rng = np.random.default_rng(8)
    n, d = 48, 0.2
    freqs = _grid_freqs(rng, n, d, 0.5 * RHO, 6)
    coef = 0.05 * (rng.normal(size=6) + 1j * rng.normal(size=6))
    monkeypatch.setattr(acquire, "_forward", lambda name: _fake_forward(coef, freqs))
    cam = CameraModel(noise=False, bit_depth=16, gain_e_per_adu=1.0, full_well_e=60000.0)
    dz = 1.5
    acq = simulate_acquisition(_FlatPhantom(), n_angles=4, condenser_na=0.5, camera=cam, drift_um=0.05,
                               defocus_um=dz, seed=9)
    shifts = np.array(json.loads(acq.metadata["drift_shifts_yx_um"]))
    assert shifts.shape == (4, 2) and np.all(shifts[0] == 0) and np.all(np.abs(shifts[1:]) > 0)
    p, carrier = acq.pixel_size_um, acq.metadata["carrier_cycles_per_um"]
    c = (np.arange(acq.frame_shape[0]) - acq.frame_shape[0] // 2) * p
    for a in range(acq.n_frames):
        ratio = _demodulate(acq.holograms[a], carrier, p, RHO) / _demodulate(acq.background[a], carrier, p, RHO)
        sy, sx = shifts[a]
        truth = _wave_sum_total(coef, freqs, acq.illumination_na[a], c[:, None] - sy, c[None, :] - sx, dz)
        # same rounding-noise budget as test_background_division_gives_u_over_u0
        assert np.abs(ratio - truth).max() < 3e-4


def test_simulate_rejects_inconsistent_optics():
    ph = _FlatPhantom()
    with pytest.raises(ValueError, match="condenser_na"):
        simulate_acquisition(ph, condenser_na=1.25, objective_na=1.2)
    with pytest.raises(ValueError, match="alias"):
        simulate_acquisition(ph, pixel_size_um=0.2)
    with pytest.raises(ValueError, match="autocorrelation"):
        simulate_acquisition(ph, carrier_cycles_per_um=(0.0, 3.0))
    with pytest.raises(ValueError, match="geometry"):
        simulate_acquisition(ph, geometry="tilt")
    coarse = _FlatPhantom(voxel_size_um=0.3)
    with pytest.raises(ValueError, match="voxel"):
        simulate_acquisition(coarse)


# -- end to end with the phantoms and the BPM forward model ---------------------------------
@pytest.fixture(scope="module")
def sphere():
    from holo.twin.phantoms import make_sphere_phantom

    return make_sphere_phantom(2.0, 1.357, shape_zyx=(24, 48, 48), voxel_size_um=(0.2, 0.2, 0.2), medium_index=NM)


def test_simulated_sphere_acquisition_end_to_end(sphere, tmp_path):
    from holo.reconstruction.forward.propagation import snap_illumination_na

    acq = simulate_acquisition(sphere, n_angles=7, seed=11)
    assert isinstance(acq, Acquisition) and acq.geometry == "illumination-scan"
    assert acq.holograms.shape == acq.background.shape == (7, *acq.frame_shape)
    assert acq.holograms.dtype == np.uint16 and acq.holograms.max() <= 4095
    assert acq.frame_shape[0] * acq.pixel_size_um == pytest.approx(48 * 0.2)
    na = acq.illumination_na
    assert np.array_equal(na[0], [0, 0])
    assert np.allclose(snap_illumination_na(na, (48, 48), 0.2, LAM), na)  # the snapped NAs are recorded
    step = LAM / (48 * 0.2)  # snapping moves each component by at most half a grid step
    assert np.hypot(*na.T).max() <= 1.1 + step
    gt = acq.ground_truth
    assert gt["ri"].shape == sphere.ri.shape and gt["classes"] == {1: "sphere"}
    assert acq.metadata["carrier_cycles_per_um"] and json.loads(acq.metadata["camera"])["bit_depth"] == 12
    # physics: the central phase of u/u0 at normal incidence is close to the projection
    # k0 (n_s − n_m) 2R = 2π/0.532·0.02·4 = 0.945 rad. The thin-object estimate ignores
    # diffraction inside the 4 µm sphere (a few %), the shot noise is ~0.01 rad: 10 % tolerance.
    p, carrier = acq.pixel_size_um, acq.metadata["carrier_cycles_per_um"]
    ratio = _demodulate(acq.holograms[0], carrier, p, RHO) / _demodulate(acq.background[0], carrier, p, RHO)
    cy, cx = (s // 2 for s in acq.frame_shape)
    phase = np.angle(ratio[cy - 2 : cy + 3, cx - 2 : cx + 3]).mean() - np.angle(ratio[:8, :8]).mean()
    assert phase == pytest.approx(2 * np.pi / LAM * 0.02 * 4.0, rel=0.10)
    # deterministic by seed; another seed changes the noise only
    again = simulate_acquisition(sphere, n_angles=7, seed=11)
    assert np.array_equal(again.holograms, acq.holograms) and np.array_equal(again.background, acq.background)
    other = simulate_acquisition(sphere, n_angles=7, seed=12)
    assert not np.array_equal(other.holograms, acq.holograms)
    diff = other.background.astype(float) - acq.background.astype(float)
    # independent noise: both frames have Poisson variance 7000 e⁻ on average over the fringes
    # (variance ∝ intensity, whose mean is 1) plus read noise 3², i.e. (7000 + 9)/g² ADU² each,
    # + 1/12 rounding. The standard error of an std over n ≈ 1.3·10⁵ pixels is 1/√(2n) ≈ 0.2 %:
    # 1 % is a 5σ bound.
    g = 20000 / 4095
    assert np.std(diff) == pytest.approx(np.sqrt(2 * (7000 + 9) / g**2 + 2 / 12), rel=0.01)
    # writes and reads back with its ground truth
    from holo.io.acquisition import read_acquisition, write_acquisition

    path = write_acquisition(tmp_path / "sphere.h5", acq)
    back = read_acquisition(path, lazy=False)
    assert np.array_equal(back.holograms, acq.holograms) and np.array_equal(back.illumination_na, na)
    assert back.ground_truth["classes"] == {1: "sphere"}
    assert back.metadata["carrier_cycles_per_um"] is not None


def test_simulated_sample_rotation(sphere):
    acq = simulate_acquisition(sphere, geometry="sample-rotation", n_angles=4, seed=1,
                               camera=CameraModel(noise=False))
    assert acq.geometry == "sample-rotation" and acq.illumination_na is None
    assert np.allclose(acq.angles, np.arange(4) * np.pi / 4)
    assert acq.metadata["rotation_span_rad"] == pytest.approx(np.pi)
    # a centred sphere looks the same from every angle: noise-free holograms agree up to the
    # trilinear interpolation of the turned volume, which only moves the partial-volume
    # edge (Δn·(edge voxels) ≪ the phase 0.95 rad): well under 1 % of the mean level
    h = acq.holograms.astype(float)
    assert np.array_equal(h[2], h[0]) or np.abs(h[2] - h[0]).mean() < 1e-3 * h[0].mean()  # π/2 turn: exact up to rounding
    assert np.abs(h[1] - h[0]).mean() < 0.01 * h[0].mean()


# -- datasets --------------------------------------------------------------------------------
def test_generate_dataset_is_deterministic_resumable_and_parallel(tmp_path):
    from holo.io.acquisition import read_acquisition
    from holo.twin.dataset import generate_dataset, sample_seed

    kw = dict(kinds=("bacteria", "rbc"), frame_shape_yx=64, n_z=12, n_angles=3, seed=3)
    index = generate_dataset(tmp_path / "a", 3, **kw)
    doc = json.loads(index.read_text())
    assert doc["complete"] and doc["n"] == 3 and [r["file"] for r in doc["samples"]] == [
        "sample_0000.h5", "sample_0001.h5", "sample_0002.h5"]
    assert [r["seed"] for r in doc["samples"]] == [3 * 100003 + i for i in range(3)] == [sample_seed(3, i) for i in range(3)]
    assert [r["kind"] for r in doc["samples"]] == ["bacteria", "rbc", "bacteria"]
    first = read_acquisition(tmp_path / "a" / "sample_0001.h5", lazy=False)
    assert first.frame_shape == (64, 64) and first.ground_truth is not None
    assert set(first.ground_truth["classes"].values()) <= {"rbc_discocyte", "rbc_echinocyte", "rbc_stomatocyte", "rbc_spherocyte"}
    assert {str(k): v for k, v in first.ground_truth["classes"].items()} == doc["samples"][1]["classes"]
    # a rerun with the same parameters keeps the files (resume)
    mtime = (tmp_path / "a" / "sample_0000.h5").stat().st_mtime_ns
    generate_dataset(tmp_path / "a", 3, **kw)
    assert (tmp_path / "a" / "sample_0000.h5").stat().st_mtime_ns == mtime
    # two worker processes produce the same samples (seed per sample, not per process)
    generate_dataset(tmp_path / "b", 2, workers=2, **kw)
    for i in range(2):
        a = read_acquisition(tmp_path / "a" / f"sample_{i:04d}.h5", lazy=False)
        b = read_acquisition(tmp_path / "b" / f"sample_{i:04d}.h5", lazy=False)
        assert np.array_equal(a.holograms, b.holograms) and np.array_equal(a.ground_truth["ri"], b.ground_truth["ri"])
    with pytest.raises(ValueError, match="n must"):
        generate_dataset(tmp_path / "c", 0)
