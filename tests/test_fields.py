"""Field retrieval (holo.reconstruction.fields): holograms built from known fields by exact
interference, I = |u·u_in + r|² with a tilted reference r (plus Poisson noise), and one
simulated acquisition of the digital twin.

Noise bound used below (derivation)
-----------------------------------
Let each beam bring N_ph photons per camera pixel (|u·u_in|² = |r|² = N_ph for a phase object).
The hologram's shot noise is white with variance I ≈ 2N_ph per pixel. Demodulation keeps the
fraction β = π (NA/λ)² Δx² of the N² spectral bins (the pupil disc of radius NA/λ out of the
square band 1/Δx²), so the complex noise of the sideband field u·r* has variance 2N_ph·β per
pixel while its modulus is N_ph. Half of a complex noise lies across the field, hence
σ_φ² = 2N_ph β / (2 N_ph²) = β/N_ph for one hologram, and the division by the background
field (same noise, independent) doubles it:

    σ_φ = √(2β/N_ph) = 1/√(2 N_ph,eff),   N_ph,eff = N_ph/(4β).

The log-amplitude error ln|u| has the same σ (the other quadrature).
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from holo.model import Acquisition
from holo.reconstruction.fields import (
    FieldSet,
    demodulate,
    detect_carrier,
    estimate_illumination_na,
    frame_qc,
    output_grid,
    phase_residues,
    remove_background,
    retrieve_fields,
    unwrap_phase,
)

LAM, NM, NA, DX = 0.532, 1.337, 1.2, 0.07
#: u sideband at (fy, fx) cycles/µm: in the half-plane fx < 0, so the twin (fx > 0) is the one
#: a naive detector would take; |c| > 3 NA/λ (6.77) and |c_i| + NA/λ < 1/(2Δx) (7.14).
CARRIER = (4.83, -4.81)


# -- exact synthetic holograms ------------------------------------------------------------


def _xy(n, dx=DX):
    return (np.arange(n) * dx)[:, None], (np.arange(n) * dx)[None, :]


def _plane(na_xy, n):
    y, x = _xy(n)
    return np.exp(2j * np.pi * (na_xy[0] * x + na_xy[1] * y) / LAM)


def _pupil(field, na=NA):
    n = field.shape[-1]
    f = np.fft.fftfreq(n, DX)
    keep = (f[:, None] ** 2 + f[None, :] ** 2) <= (na / LAM) ** 2
    return np.fft.ifft2(np.fft.fft2(field) * keep)


def _bump(n, phi0, radius_um, centre_um=None):
    """Smooth 'lens' profile φ0 (1 − r²/a²)^{3/2}: steepest slope 1.5 φ0/a rad/µm."""
    y, x = _xy(n)
    cy, cx = (n * DX / 2, n * DX / 2) if centre_um is None else centre_um
    r2 = ((y - cy) ** 2 + (x - cx) ** 2) / radius_um**2
    return phi0 * np.clip(1 - r2, 0, None) ** 1.5


def _on_bin(na_xy, n):
    """Snap an illumination NA to the frame's frequency grid (a periodic plane wave)."""
    step = LAM / (n * DX)
    return tuple(float(np.round(v / step) * step) for v in na_xy)


def _hologram(total_field, carrier=CARRIER, photons=None, rng=None, extra_phase=None):
    n = total_field.shape[-1]
    y, x = _xy(n)
    ref = np.exp(-2j * np.pi * (carrier[0] * y + carrier[1] * x))  # u·r* sits at +carrier
    u = total_field if extra_phase is None else total_field * np.exp(1j * extra_phase)
    inten = np.abs(u + ref) ** 2
    if photons is not None:
        inten = rng.poisson(inten * photons)
    return inten.astype(np.float32)


def _object(n, phi, na_xy, log_amp=None):
    """(u_total, u_in): the pupil-limited total field of exp(ln a + iφ) under u_in."""
    uin = _plane(na_xy, n)
    obj = np.exp(1j * phi + (0.0 if log_amp is None else log_amp))
    return _pupil(obj * uin), uin


def _to_grid(field, m):
    """Exact band-limited resampling of a periodic field onto m×m samples (spectrum crop)."""
    n = field.shape[-1]
    o = np.fft.fftfreq(m, 1.0 / m).round().astype(int)
    return np.fft.ifft2(np.fft.fft2(field)[np.ix_(o % n, o % n)]) * (m * m / (n * n))


def _truth_on_output(u_total, uin, m):
    """u/u0 on the output grid: the total field (within the pupil) resampled, over u_in."""
    return _to_grid(u_total, m) / _to_grid(uin, m)


def _sigma_phase(photons, dx=DX):
    beta = math.pi * (NA / LAM) ** 2 * dx**2
    return math.sqrt(2.0 * beta / photons)


def _acq(holograms, background, na=None, geometry="illumination-scan", **kw):
    angles = None
    if geometry == "sample-rotation":
        angles = np.linspace(0, np.pi, len(holograms), endpoint=False)
    return Acquisition(geometry, LAM, DX, NM, NA, holograms=holograms, background=background,
                       illumination_na=None if na is None else np.asarray(na, float), angles=angles, **kw)


# -- carrier --------------------------------------------------------------------------------


@pytest.mark.parametrize("carrier", [(4.83, -4.81), (-4.91, -4.77), (5.003, 4.7)])
def test_carrier_found_to_a_small_fraction_of_a_bin(carrier):
    n = 128
    rng = np.random.default_rng(1)
    bg = _hologram(_plane((0, 0), n), carrier, photons=1000, rng=rng)
    fy, fx = detect_carrier(bg, DX, LAM, NA)
    # the detector returns the sideband in the fx > 0 half-plane; the u sideband is ± that
    sign = 1 if carrier[1] > 0 else -1
    bin_ = 1.0 / (n * DX)
    # Shot-noise limit of a tone's frequency (Cramér–Rao, N² samples, SNR = N_ph/2 = 500) is
    # ~1e-4 bin; the Gaussian-window log-parabola is exact for a tone, so 0.02 bin is a
    # loose "fraction of a frequency pixel".
    assert abs(sign * fy - carrier[0]) < 0.02 * bin_
    assert abs(sign * fx - carrier[1]) < 0.02 * bin_


def test_detect_carrier_rejects_bad_input():
    with pytest.raises(ValueError, match="background_frame"):
        detect_carrier(np.zeros((2, 8, 8)), DX, LAM, NA)
    bg = np.ones((64, 64), np.float32)
    bg[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        detect_carrier(bg, DX, LAM, NA)


# -- sideband grid --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(256, 256), (120, 200)])
def test_output_grid_samples_the_pupil_band_at_nyquist(shape):
    (my, mx), p = output_grid(shape, DX, LAM, NA)
    assert p <= LAM / (2 * NA)  # pixel ≤ λ/(2 NA)
    assert my * p == pytest.approx(shape[0] * DX) and mx * p == pytest.approx(shape[1] * DX)  # same FOV
    assert my % 2 == 0 and mx % 2 == 0


# -- retrieved field against the known field --------------------------------------------------


@pytest.mark.parametrize("shape", ["circle", "tukey", "gaussian"])
def test_noise_free_retrieval_is_exact(shape):
    """Band-limited periodic field, carrier and illumination on frequency bins: the only
    error left is float32 round-off (~1e-6 relative per FFT, ×log N) and the offset/tilt fit;
    1e-3 rad is far below any physical effect."""
    n = 128
    na = _on_bin((0.45, -0.3), n)
    phi = _bump(n, 3.0, 2.5)
    la = -0.3 * _bump(n, 1.0, 2.0)
    carrier = (43 / (n * DX), -43 / (n * DX))  # on bins, |c| = 6.79 > 3 NA/λ
    ut, uin = _object(n, phi, na, la)
    acq = _acq(_hologram(ut, carrier)[None], _hologram(uin, carrier)[None], [na])
    fs = retrieve_fields(acq, sideband=shape)
    truth = _truth_on_output(ut, uin, fs.fields.shape[-1])
    err_phase = np.angle(fs.fields[0] * np.conj(truth))
    err_amp = np.log(np.abs(fs.fields[0]) / np.abs(truth))
    assert np.sqrt(np.mean(err_phase**2)) < 1e-3
    assert np.sqrt(np.mean(err_amp**2)) < 1e-3
    assert fs.metadata["sideband_sign_from"] == "positive object phase"
    assert fs.pixel_size_um <= LAM / (2 * NA)


def test_phase_error_matches_shot_noise_bound():
    """Sub-bin carrier, normal and tilted illumination, N_ph = 1000 photons per beam:
    the RMS phase and log-amplitude errors must equal σ_φ = √(2β/N_ph) (module docstring)
    within 20 % (the RMS of ~7000 band-limited samples fluctuates by a few %). A border of
    1/8 of the field is left out: the reference of a sub-bin carrier is not periodic on the
    frame, which perturbs the edges."""
    n = 256
    rng = np.random.default_rng(3)
    nas = [(0.0, 0.0), _on_bin((0.6, 0.35), n)]
    phi = _bump(n, 3.0, 4.0)
    holos, bgs, truths = [], [], []
    for na in nas:
        ut, uin = _object(n, phi, na)
        holos.append(_hologram(ut, photons=1000, rng=rng))
        bgs.append(_hologram(uin, photons=1000, rng=rng))
        truths.append((ut, uin))
    fs = retrieve_fields(_acq(np.stack(holos), np.stack(bgs), nas))
    m = fs.fields.shape[-1]
    inner = (slice(m // 8, -m // 8), slice(m // 8, -m // 8))
    sigma = _sigma_phase(1000)
    for a, (ut, uin) in enumerate(truths):
        truth = _truth_on_output(ut, uin, m)
        e_phi = np.angle(fs.fields[a] * np.conj(truth))[inner]
        e_amp = np.log(np.abs(fs.fields[a]) / np.abs(truth))[inner]
        assert 0.8 * sigma < np.sqrt(np.mean(e_phi**2)) < 1.2 * sigma
        assert 0.8 * sigma < np.sqrt(np.mean(e_amp**2)) < 1.2 * sigma
    assert fs.valid.all()
    assert fs.metadata["sideband_sign_from"] == "illumination_na"
    # the carrier of u (in the fx < 0 half-plane) is reported, to a fraction of a bin
    assert np.allclose(fs.metadata["carrier_cycles_per_um"], CARRIER, atol=0.02 / (n * DX))


def test_phase_of_many_2pi_is_unwrapped():
    """A 20 rad bump (≈3.2 turns) under tilted illumination: the unwrapped phase must follow
    the true phase everywhere (no 2π slip: max error < π/2; for Gaussian noise of σ_φ ≈ 0.012
    rad a 2π slip would be the only way to exceed that), peak within 5σ."""
    n = 256
    rng = np.random.default_rng(4)
    na = _on_bin((-0.5, 0.4), n)
    phi = _bump(n, 20.0, 5.0)
    ut, uin = _object(n, phi, na)
    fs = retrieve_fields(_acq(_hologram(ut, photons=1000, rng=rng)[None], _hologram(uin, photons=1000, rng=rng)[None], [na]))
    m = fs.fields.shape[-1]
    truth = _truth_on_output(ut, uin, m)
    smooth = _to_grid(phi.astype(complex), m).real  # the bump on the output grid
    true_unwrapped = smooth + np.angle(truth * np.exp(-1j * smooth))
    got = fs.unwrapped_phase()[0]
    inner = (slice(m // 8, -m // 8), slice(m // 8, -m // 8))
    sigma = _sigma_phase(1000)
    assert np.max(np.abs(got - true_unwrapped)[inner]) < np.pi / 2
    assert abs(got.max() - true_unwrapped.max()) < 5 * sigma
    assert true_unwrapped.max() > 19.0
    # complex field and unwrapped phase agree
    assert np.allclose(np.angle(fs.fields[0] * np.exp(-1j * got)), 0.0, atol=1e-3)


def test_residual_tilt_and_offset_are_removed():
    """A drift phase 0.7 + 0.9 x − 0.6 y rad (x, y in µm) between sample and background
    exposures must be removed: the reported fitted slope equals the drift slope and the
    background of the result is flat. Tolerance: a plane fitted on P ≈ 5000 background
    pixels of noise σ_φ over a span L ≈ 18 µm has slope error ≈ σ_φ·√12/(L√P) ≈ 3e-5
    rad/µm; 2e-3 rad/µm covers the object-mask edges as well."""
    n = 256
    rng = np.random.default_rng(5)
    phi = _bump(n, 2.0, 3.0)
    ut, uin = _object(n, phi, (0.0, 0.0))
    y, x = _xy(n)
    drift = 0.7 + 0.9 * x - 0.6 * y
    fs = retrieve_fields(_acq(_hologram(ut, photons=1000, rng=rng, extra_phase=drift)[None],
                              _hologram(uin, photons=1000, rng=rng)[None], [(0.0, 0.0)]))
    p = fs.pixel_size_um
    slope = np.array(fs.qc[0]["slope_rad_per_px"]) / p  # (d/dy, d/dx) in rad/µm
    assert slope == pytest.approx([-0.6, 0.9], abs=2e-3)
    m = fs.fields.shape[-1]
    truth = _truth_on_output(ut, uin, m)
    inner = (slice(m // 8, -m // 8), slice(m // 8, -m // 8))  # sub-bin fringes: edges left out
    err = np.angle(fs.fields[0] * np.conj(truth))[inner]
    yy, xx = np.mgrid[:m, :m] * p
    yy, xx = yy[inner], xx[inner]
    coef = np.linalg.lstsq(np.stack([np.ones(err.size), xx.ravel() - xx.mean(), yy.ravel() - yy.mean()], 1), err.ravel(), rcond=None)[0]
    assert abs(coef[0]) < 5 * _sigma_phase(1000)
    assert np.all(np.abs(coef[1:]) < 2e-3)


def test_quadratic_background_removal():
    """Degree 2: a curvature 0.02 (x² + y²) rad/µm² (defocused reference) is removed too."""
    rng = np.random.default_rng(6)
    m = 128
    yy, xx = (np.mgrid[:m, :m] - m / 2) * DX  # µm, frame 9 µm wide
    obj = _bump(m, 2.0, 1.5)
    bgphase = 0.3 + 0.02 * (xx**2 + yy**2) + 0.1 * xx
    phi = obj + bgphase + rng.normal(0, 0.01, (m, m))
    u = np.exp(1j * phi)[None].astype(np.complex64)
    out, phi_out, info = remove_background(u, unwrap_phase(u), degree=2)
    keep = ~info["mask"][0]
    # residual background = noise only (σ = 0.01): its RMS within 20 %
    assert np.sqrt(np.mean(phi_out[0][keep] ** 2)) < 0.012
    assert np.allclose(np.angle(out[0] * np.exp(-1j * phi_out[0])), 0, atol=1e-4)


# -- illumination NA --------------------------------------------------------------------------


def test_illumination_na_estimated_from_background():
    """NA step per frequency bin is λ/(N Δx) = 0.0297; the estimate must be within 0.05 bin
    (1.5e-3 NA) for off-grid NAs on a ring up to 1.1 (shot noise of 1000 photons moves a
    tone's peak by ~1e-4 bin; the window fit is unbiased for a tone)."""
    n = 256
    rng = np.random.default_rng(7)
    ang = np.linspace(0, 2 * np.pi, 7, endpoint=False)
    nas = np.concatenate([[[0.0, 0.0]], np.stack([1.1 * np.cos(ang), 1.1 * np.sin(ang)], 1) * [[1.0], [0.5], [0.9], [0.3], [1.0], [0.7], [0.2]]])
    bgs = np.stack([_hologram(_plane(v, n), photons=1000, rng=rng) for v in nas])
    est = estimate_illumination_na(bgs, CARRIER, DX, LAM, NA)
    assert est.shape == (8, 2)
    assert np.max(np.abs(est - nas)) < 0.05 * LAM / (n * DX)
    # the same from the twin carrier (the method finds the u sideband itself)
    est2 = estimate_illumination_na(bgs, (-CARRIER[0], -CARRIER[1]), DX, LAM, NA)
    assert np.allclose(est2, -est, atol=1e-9)


def test_retrieval_estimates_missing_illumination_na():
    n = 128
    rng = np.random.default_rng(8)
    nas = [(0.0, 0.0), (0.52, 0.31), (-0.8, 0.4), (0.1, -0.9), (-0.3, -0.2)]
    phi = _bump(n, 2.0, 2.0)
    holos, bgs = [], []
    for na in nas:
        ut, uin = _object(n, phi, na)
        holos.append(_hologram(ut, photons=1000, rng=rng))
        bgs.append(_hologram(uin, photons=1000, rng=rng))
    fs = retrieve_fields(_acq(np.stack(holos), np.stack(bgs)))
    assert fs.metadata["illumination_na_estimated"]
    assert np.max(np.abs(fs.illumination_na - np.asarray(nas))) < 0.05 * LAM / (n * DX)
    # sideband chosen by the (positive) object phase
    assert fs.metadata["sideband_sign_from"] == "positive object phase"
    assert fs.unwrapped_phase()[:, fs.frame_shape[0] // 2, fs.frame_shape[1] // 2].min() > 1.5


def test_single_background_frame_for_all_illuminations():
    """One normal-incidence background (Y, X): the illumination plane wave is divided out with
    the given NA (a bin-snapped NA gives an exact ramp). The carrier is on a frequency bin
    here: with a sub-bin carrier the fringes are not periodic on the frame and the leakage of
    a tilted frame's sideband is not the background's, which a single background cannot
    cancel (per-illumination backgrounds do)."""
    n = 128
    rng = np.random.default_rng(9)
    carrier = (43 / (n * DX), -43 / (n * DX))
    nas = [(0.0, 0.0), _on_bin((0.5, 0.5), n), _on_bin((-0.7, 0.2), n)]
    phi = _bump(n, 2.0, 2.0)
    holos, truths = [], []
    for na in nas:
        ut, uin = _object(n, phi, na)
        holos.append(_hologram(ut, carrier, photons=1000, rng=rng))
        truths.append((ut, uin))
    bg = _hologram(_plane((0, 0), n), carrier, photons=1000, rng=rng)
    fs = retrieve_fields(_acq(np.stack(holos), bg, nas))
    m = fs.fields.shape[-1]
    sigma = _sigma_phase(1000)
    inner = (slice(m // 8, -m // 8), slice(m // 8, -m // 8))
    for a, (ut, uin) in enumerate(truths):
        e = np.angle(fs.fields[a] * np.conj(_truth_on_output(ut, uin, m)))[inner]
        assert np.sqrt(np.mean(e**2)) < 1.3 * sigma
    assert fs.metadata["sideband_sign_from"] == "illumination_na"


def test_sample_rotation_streams_from_hdf5(tmp_path):
    """Sample rotation, holograms read lazily from an HDF5 file in batches: same physics."""
    n = 128
    rng = np.random.default_rng(10)
    a_n = 4
    truths, holos = [], []
    for a in range(a_n):
        phi = _bump(n, 2.0, 2.0, centre_um=(n * DX / 2, n * DX / 2 + 0.5 * a))
        ut, uin = _object(n, phi, (0.0, 0.0))
        truths.append((ut, uin))
        holos.append(_hologram(ut, photons=1000, rng=rng).astype(np.uint16))
    bg = _hologram(_plane((0, 0), n), photons=1000, rng=rng).astype(np.uint16)
    path = tmp_path / "acq.h5"
    with h5py.File(path, "w") as f:
        f["holograms"] = np.stack(holos)
        f["background"] = bg
    with h5py.File(path, "r") as f:
        acq = _acq(f["holograms"], f["background"], geometry="sample-rotation")
        fs = retrieve_fields(acq)
    assert isinstance(fs, FieldSet) and fs.geometry == "sample-rotation" and fs.angles.shape == (a_n,)
    m = fs.fields.shape[-1]
    inner = (slice(m // 8, -m // 8), slice(m // 8, -m // 8))
    for a, (ut, uin) in enumerate(truths):
        e = np.angle(fs.fields[a] * np.conj(_truth_on_output(ut, uin, m)))[inner]
        assert np.sqrt(np.mean(e**2)) < 1.3 * _sigma_phase(1000)


# -- quality control ------------------------------------------------------------------------


def test_qc_flags_corrupted_garbage_and_outlier_frames():
    n = 128
    rng = np.random.default_rng(11)
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    nas = [_on_bin((0.8 * math.cos(t), 0.8 * math.sin(t)), n) for t in ang]
    holos, bgs = [], []
    for a, na in enumerate(nas):
        phi = _bump(n, 2.0, 2.0)
        if a == 8:  # a second object drifting in (a bubble): mean |phase| × ~2
            phi = phi + _bump(n, 2.5, 2.0, centre_um=(2.0, 2.5))
        ut, uin = _object(n, phi, na)
        holos.append(_hologram(ut, photons=1000, rng=rng))
        bgs.append(_hologram(uin, photons=1000, rng=rng))
    holos = np.stack(holos)
    holos[3, 10:20, 40:50] = np.nan  # corrupted read-out
    holos[5] = rng.uniform(0, 4000, (n, n))  # garbage (no interference)
    fs = retrieve_fields(_acq(holos, np.stack(bgs), nas))
    excluded = dict(fs.excluded)
    assert set(excluded) == {3, 5, 8}
    assert "non-finite" in excluded[3]
    assert "unwrap failure" in excluded[5] or "outlier" in excluded[5]
    assert "outlier" in excluded[8]
    assert fs.valid.sum() == 9 and not fs.valid[[3, 5, 8]].any()
    assert fs.metadata["excluded_frames"] == fs.excluded


def test_qc_keeps_noise_free_oblique_frames_and_flags_corrupt_ones():
    """Noise-free first-Born fields of a sphere (Δn 0.01, r 1 µm) at normal incidence and on
    a ring at NA_ill 1.1: every frame is valid although ⟨|φ|⟩ grows by 1/cosθ = 1.76 on the
    ring (∫φ dA = k0∫Δn dV / cosθ; without the obliquity correction the normal-incidence
    frame is the outlier, z < −5), while a second sphere drifting into one frame (mass × 2,
    ln 2 = 0.69 ≫ the 0.37 the 7.4 % spread floor tolerates at z = 5) and a failed tilt fit
    (a ±1 rad ramp across another frame) are rejected as outliers."""
    from test_tomography import born_sphere_fields, ring_illuminations

    nas, kins = ring_illuminations(rings=(1.1,), per_ring=(12,))
    sphere = [(1.0, NM + 0.01, (0.0, 0.0, 0.0))]
    ub = born_sphere_fields(48, sphere, kins)
    ub[5] = born_sphere_fields(48, sphere + [(1.0, NM + 0.01, (0.0, 1.2, -1.5))], kins[5:6])[0]
    fields = np.exp(ub).astype(np.complex64)
    ramp = np.linspace(-1.0, 1.0, 48, dtype=np.float32)[None, :]
    fields[9] *= np.exp(1j * ramp)
    acq = Acquisition("illumination-scan", LAM, 0.1, NM, NA, fields=fields, illumination_na=nas)
    fs = retrieve_fields(acq)
    excluded = dict(fs.excluded)
    assert set(excluded) == {5, 9}
    assert "outlier" in excluded[5] and "outlier" in excluded[9]
    clean = np.delete(np.arange(len(nas)), [5, 9])
    cos_theta = np.array([r["obliquity_cos"] for r in fs.qc])
    assert cos_theta[0] == 1.0 and np.allclose(cos_theta[1:], math.sqrt(1 - (1.1 / NM) ** 2))
    assert max(abs(fs.qc[i]["z_phase"]) for i in clean) < 2.0
    # the physics the correction removes: uncorrected, the valid normal-incidence frame stands out
    valid_raw, rep_raw = frame_qc(fields[clean], fs.unwrapped_phase()[clean])
    assert not valid_raw[0] and rep_raw[0]["z_phase"] < -5


def test_unwrap_is_exact_without_residues_and_consistent_with_them():
    """A smooth phase of ~8 turns with neighbour steps < π has no residues: its unwrapping is
    unique up to 2π·c (module docstring of unwrap), so it must equal the true phase minus a
    multiple of 2π to float32 round-off (|φ| ≤ 60 rad: ~4e-6 rad; 1e-4 allows for it). A
    frame with a phase vortex (two residues) goes to the reliability-sorting path: there the
    result must still be consistent with the wrapped phase, W(φ_u) = φ."""
    yy, xx = np.mgrid[:96, :96].astype(np.float64)
    truth = 50.0 * np.exp(-((xx - 40) ** 2 + (yy - 52) ** 2) / 600.0) + 0.05 * xx
    vortex = np.arctan2(yy - 30.5, xx - 60.5) - np.arctan2(yy - 70.5, xx - 20.5) + truth
    wrapped = np.angle(np.exp(1j * np.stack([truth, vortex])))
    assert phase_residues(wrapped).tolist() == [0, 2]
    got = unwrap_phase(wrapped)
    turns = np.round((got[0] - truth) / (2 * np.pi))
    assert np.ptp(turns) == 0
    assert np.max(np.abs(got[0] - truth - 2 * np.pi * turns)) < 1e-4
    assert np.allclose(np.angle(np.exp(1j * (got[1] - wrapped[1]))), 0.0, atol=1e-4)


def test_frame_qc_counts_residues_of_noise():
    """A frame of random phase has a residue density near 1/3 (each 2×2 loop of independent
    uniform phases circulates with probability 1/3); a smooth phase has none."""
    rng = np.random.default_rng(12)
    noise = np.exp(1j * rng.uniform(-np.pi, np.pi, (64, 64)))
    yy, xx = np.mgrid[:64, :64]
    smooth = np.exp(1j * 0.3 * (xx + 0.5 * yy))
    assert phase_residues(smooth) == 0
    assert 0.28 < phase_residues(noise) / 63**2 < 0.39
    valid, rep = frame_qc(np.stack([smooth, noise]).astype(np.complex64))
    assert valid.tolist() == [True, False] and "unwrap failure" in rep[1]["reasons"][0]


def test_fields_pass_through_qc_only():
    rng = np.random.default_rng(13)
    m = 64
    yy, xx = np.mgrid[:m, :m]
    f = np.exp(1j * 3.0 * np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / 100.0))
    fields = np.repeat(f[None], 6, axis=0).astype(np.complex64)
    fields *= np.exp(1j * rng.normal(0, 0.01, fields.shape)).astype(np.complex64)
    fields[2, 5, 5] = np.nan
    acq = Acquisition("illumination-scan", LAM, 0.2, NM, NA, fields=fields, illumination_na=np.zeros((6, 2)))
    fs = retrieve_fields(acq)
    assert np.array_equal(fs.fields[[0, 1, 3]], fields[[0, 1, 3]])
    assert fs.valid.tolist() == [True, True, False, True, True, True]
    assert fs.pixel_size_um == 0.2
    assert fs.unwrapped_phase()[0].max() == pytest.approx(3.0, abs=0.05)


def test_bad_arguments_raise():
    n = 64
    acq = _acq(np.ones((1, n, n), np.float32), np.ones((n, n), np.float32), [(0.0, 0.0)])
    with pytest.raises(ValueError, match="sideband"):
        retrieve_fields(acq, sideband="square")
    with pytest.raises(ValueError, match="carrier"):
        demodulate(np.ones((n, n)), (np.nan, 1.0), DX, LAM, NA)


# -- end to end on the digital twin ------------------------------------------------------------


def test_simulated_acquisition_end_to_end():
    """Digital-twin acquisition (Rytov forward model, default camera: 10⁴ photons × QE 0.7,
    reference ratio 1 → N = 3500 photo-electrons per beam and pixel). The retrieved total
    field u/u0·u_in must match the forward model's (pupil-limited and resampled onto the
    output grid) to the shot-noise bound σ_φ = √(2β/N) ≈ 0.0066 rad: median over frames
    within 1.5 σ, every frame within 2.5 σ (the offset fit assumes φ = 0 on the background
    pixels, while the diffraction of a cell filling much of a 13 µm field leaves a few mrad
    there for the most tilted frames; noise-free, that offset is the whole error)."""
    twin = pytest.importorskip("holo.twin.acquire")
    phantoms = pytest.importorskip("holo.twin.phantoms")
    from holo.reconstruction.forward import rytov_fields

    ph = phantoms.make_phantom("cell", shape_zyx=(32, 64, 64), voxel_size_um=(0.2, 0.2, 0.2), n_cells=1, seed=1)
    acq = twin.simulate_acquisition(ph, n_angles=9, forward="rytov", seed=0)
    fs = retrieve_fields(acq)
    assert fs.valid.all()
    assert fs.metadata["sideband_sign_from"] == "illumination_na"
    truth = rytov_fields(ph.ri, ph.voxel_size_um, wavelength_um=acq.wavelength_um, medium_index=acq.medium_index,
                         objective_na=acq.objective_na, illumination_na=acq.illumination_na)
    m = fs.frame_shape
    n_e = 0.7 * 1e4 / 2
    beta = math.pi * (acq.objective_na / acq.wavelength_um) ** 2 * acq.pixel_size_um**2
    sigma = math.sqrt(2 * beta / n_e)
    rms = []
    for a in range(acq.n_frames):
        na = acq.illumination_na[a]
        # what the camera sees: the total field within the pupil (the twin's chain)
        t_total = twin.pupil_filter(truth[a] * twin.plane_wave(truth.shape[1:], ph.voxel_size_um[1], na, acq.wavelength_um),
                                    ph.voxel_size_um[1], acq.objective_na, acq.wavelength_um)
        t_total = twin.fourier_resample(t_total, m)
        r_total = fs.fields[a] * twin.plane_wave(m, fs.pixel_size_um, na, acq.wavelength_um)
        rms.append(np.sqrt(np.mean(np.angle(r_total * np.conj(t_total)) ** 2)))
    assert np.median(rms) < 1.5 * sigma
    assert max(rms) < 2.5 * sigma


def test_crowded_frame_gets_offset_only_background_fit():
    """When too few background pixels remain, a plane fitted on them is ill-conditioned, so
    only the offset is removed and no tilt is invented. A cell covering ≈ 60 % of the frame
    leaves < 50 % background after dilation, below the threshold chosen here. Physics: the
    true background phase is a constant 0.3 rad, with 0.01 rad noise, so the offset is found
    to a few noise σ / √N_background."""
    from holo.reconstruction.fields.background import remove_background

    rng = np.random.default_rng(3)
    n = 128
    y, x = np.mgrid[:n, :n] - n / 2
    r = np.hypot(y, x)
    radius = 0.44 * n
    phase = np.where(r < radius, 2.0 * np.sqrt(np.clip(1 - (r / radius) ** 2, 0, None)), 0.0) + 0.3
    phase += rng.normal(0, 0.01, phase.shape)
    u = np.exp(1j * phase)[None].astype(np.complex64)
    out, phi, info = remove_background(u, phase[None].astype(np.float32), min_tilt_fraction=0.5)
    assert info["offset_only"][0] and info["background_fraction"][0] < 0.5
    np.testing.assert_allclose(info["slope_rad_per_px"][0], 0.0, atol=1e-7)
    assert abs(info["offset_rad"][0] - 0.3) < 0.01
    # with the default threshold this frame has enough background for a plane fit
    assert not remove_background(u, phase[None].astype(np.float32))[2]["offset_only"][0]


def test_background_without_a_background_frame_leaves_no_tilt_on_a_measured_hologram():
    # Measured HL60 hologram (qpretrieve's example data, MIT; tests/data/README.md). The phase
    # retrieved with the sample-free frame is the reference; without it the reference beam's
    # own tilt (several radians across the frame) must be found on the background pixels.
    # The plane left in (no frame − with frame) over the background outside the cell must stay
    # under 0.03 rad across the whole frame, and about half the frame (the part outside the
    # cell) must be found as background.
    from pathlib import Path

    from scipy import ndimage

    from holo.reconstruction.fields.background import fit_polynomial
    from holo.reconstruction.fields.qpi import hologram_phase

    d = np.load(Path(__file__).parent / "data" / "hl60_hologram_cell.npz")
    kw = dict(pixel_size_um=0.107, wavelength_um=0.5328)
    ref = hologram_phase(d["data"], d["bg_data"], **kw)
    pm = hologram_phase(d["data"], None, **kw)
    outside = ~ndimage.binary_dilation(ndimage.gaussian_filter(ref.phase, 3) > 0.6, iterations=10)
    plane = fit_polynomial((pm.phase - ref.phase)[None].astype(np.float64), outside[None], degree=1)[0]
    assert np.ptp(plane) < 0.03
    assert 0.4 < 1 - pm.object_mask.mean() < 0.75 and outside.mean() > 0.5
    assert not pm.object_mask[outside].mean() > 0.2
