"""Angular-spectrum refocusing and autofocus of u/u0 (holo.reconstruction.fields.refocus).

Depth-of-field tolerance used for the autofocus (derivation)
-----------------------------------------------------------
A defocus d adds the pupil phase 2π d (η(0) − η(f)) with η(f) = √((n_m/λ)² − f²); at the pupil
edge f = NA/λ it is 2π d (n_m − √(n_m² − NA²))/λ = 2π d/DOF with DOF = λ/(n_m − √(n_m² − NA²))
(0.71 µm for λ 0.532, n_m 1.337, NA 1.2). Rayleigh's quarter-wave criterion (wavefront error
≤ λ/4, i.e. ≤ π/2 at the pupil edge) makes |d| ≤ DOF/4 ≈ 0.18 µm indistinguishable from focus
for imaging, so the autofocus must land within DOF/4 of the true plane.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from holo.reconstruction.fields import autofocus, depth_of_field_um, refocus, retrieve_fields

LAM, NM, NA = 0.532, 1.337, 1.2
P = 0.2  # µm, field grid (≤ λ/(2 NA) = 0.22)


def _pupil_limited(field, na_xy=(0.0, 0.0), p=P):
    """u/u0 whose total field u·u_in lies inside the pupil (|f + ν| ≤ NA/λ)."""
    n = field.shape[-1]
    y = (np.arange(n) * p)[:, None]
    x = (np.arange(n) * p)[None, :]
    uin = np.exp(2j * np.pi * (na_xy[0] * x + na_xy[1] * y) / LAM)
    f = np.fft.fftfreq(n, p)
    keep = (f[:, None] ** 2 + f[None, :] ** 2) <= (NA / LAM) ** 2
    return (np.fft.ifft2(np.fft.fft2(field * uin) * keep) / uin).astype(np.complex64)


def _phase_object(n=96, p=P, seed=0):
    """A cell-like transparent object: a 1.5 rad bump with 0.3 rad fine texture."""
    rng = np.random.default_rng(seed)
    y, x = (np.mgrid[:n, :n] - n / 2) * p
    r2 = (x * x + y * y) / 3.0**2
    phi = 1.5 * np.clip(1 - r2, 0, None) ** 1.5
    tex = np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * np.exp(-(np.fft.fftfreq(n, p)[:, None] ** 2 + np.fft.fftfreq(n, p)[None, :] ** 2) / 1.0)).real
    phi = phi + 0.3 * tex / tex.std() * (r2 < 1)
    return np.exp(1j * phi)


def test_depth_of_field_value():
    assert depth_of_field_um(LAM, NM, NA) == pytest.approx(LAM / (NM - math.sqrt(NM**2 - NA**2)))
    assert 0.70 < depth_of_field_um(LAM, NM, NA) < 0.72


@pytest.mark.parametrize("na_xy", [(0.0, 0.0), (0.7, -0.5)])
def test_forward_then_back_returns_the_field(na_xy):
    """|H| = 1 on the propagating band and H(−d) = H(d)*: +d then −d is the identity for a
    band-limited periodic field, up to complex64 round-off (~1e-6 per FFT). The illumination
    is snapped to the grid's frequencies so that u/u0 is periodic on the frame."""
    step = LAM / (96 * P)
    na_xy = tuple(round(v / step) * step for v in na_xy)
    u = _pupil_limited(_phase_object(), na_xy)
    there = refocus(u, 4.0, P, LAM, NM, illumination_na=na_xy)
    back = refocus(there, -4.0, P, LAM, NM, illumination_na=na_xy)
    assert np.max(np.abs(back - u)) < 1e-4
    assert np.max(np.abs(there - u)) > 0.1  # it did propagate


def test_plane_wave_gets_the_exact_axial_phase():
    """A plane-wave component f of u/u0 under illumination ν propagates by
    exp(i2π d (η(f + ν) − η(ν))) exactly (the e^{+ikz} convention of holo.conventions)."""
    n = 64
    na_xy = (0.3, 0.2)
    ky, kx = 5, -7
    fy, fx = ky / (n * P), kx / (n * P)
    y = (np.arange(n) * P)[:, None]
    x = (np.arange(n) * P)[None, :]
    u = np.exp(2j * np.pi * (fy * y + fx * x)).astype(np.complex64)
    d = 3.3
    out = refocus(u, d, P, LAM, NM, illumination_na=na_xy)
    nu_x, nu_y = na_xy[0] / LAM, na_xy[1] / LAM
    eta = lambda gy, gx: math.sqrt((NM / LAM) ** 2 - gy * gy - gx * gx)  # noqa: E731
    expected = u * np.exp(2j * np.pi * d * (eta(fy + nu_y, fx + nu_x) - eta(nu_y, nu_x)))
    assert np.max(np.abs(out - expected)) < 1e-4


def test_evanescent_components_are_dropped():
    """A component beyond n_m/λ (2.51 cycles/µm) cannot propagate: it is removed, not grown."""
    n = 64
    p = 0.15  # Nyquist 3.33 cycles/µm
    x = (np.arange(n) * p)[None, :] * np.ones((n, 1))
    f_ev = 27 / (n * p)  # 2.81 cycles/µm > n_m/λ
    u = (1.0 + 0.5 * np.exp(2j * np.pi * f_ev * x)).astype(np.complex64)
    out = refocus(u, -2.0, p, LAM, NM)
    assert np.allclose(out, 1.0, atol=1e-5)


def test_refocus_is_vectorised_over_frames_with_per_frame_distance():
    u = _pupil_limited(_phase_object())
    stack = np.stack([u, u, u])
    out = refocus(stack, np.array([0.0, 2.0, -2.0]), P, LAM, NM)
    assert np.max(np.abs(out[0] - u)) < 1e-5
    assert np.max(np.abs(out[1] - refocus(u, 2.0, P, LAM, NM))) < 1e-5
    with pytest.raises(ValueError, match="distance_um"):
        refocus(stack, [1.0, 2.0], P, LAM, NM)


@pytest.mark.parametrize("defocus_um", [-3.0, 2.2])
def test_autofocus_finds_known_defocus(defocus_um):
    """Field recorded ``defocus_um`` downstream of focus: autofocus returns −defocus within
    DOF/4 (module docstring)."""
    u_focus = _pupil_limited(_phase_object())
    recorded = refocus(u_focus, defocus_um, P, LAM, NM, objective_na=NA)
    d = autofocus(recorded, P, LAM, NM, objective_na=NA, z_range_um=(-6.0, 6.0))
    assert abs(d - (-defocus_um)) < depth_of_field_um(LAM, NM, NA) / 4


def test_autofocus_on_a_tilted_stack():
    na = np.array([[0.0, 0.0], [0.6, 0.2], [-0.4, 0.7]])
    u_focus = np.stack([_pupil_limited(_phase_object(), v) for v in na])
    recorded = refocus(u_focus, 2.5, P, LAM, NM, illumination_na=na, objective_na=NA)
    d = autofocus(recorded, P, LAM, NM, illumination_na=na, objective_na=NA, z_range_um=(-5.0, 5.0))
    assert abs(d + 2.5) < depth_of_field_um(LAM, NM, NA) / 4


def test_retrieve_fields_with_autofocus_on_simulated_defocus():
    """Digital twin with the camera focused 2 µm downstream (defocus_um = 2): the retrieval's
    autofocus must find −2 µm within DOF/4, and the explicit ``refocus_um`` must be applied."""
    twin = pytest.importorskip("holo.twin.acquire")
    phantoms = pytest.importorskip("holo.twin.phantoms")
    ph = phantoms.make_sphere_phantom(2.0, 1.36, shape_zyx=(32, 64, 64), voxel_size_um=(0.2, 0.2, 0.2))
    acq = twin.simulate_acquisition(ph, n_angles=5, forward="rytov", defocus_um=2.0, seed=0)
    fs = retrieve_fields(acq, autofocus=True)
    assert abs(fs.metadata["refocus_um"] + 2.0) < depth_of_field_um(acq.wavelength_um, acq.medium_index, acq.objective_na) / 4
    fs2 = retrieve_fields(acq, refocus_um=-2.0)
    assert fs2.metadata["refocus_um"] == -2.0
    # Refocused by −2 µm, the fields equal those of the same sample imaged in focus (the
    # twin's defocus and the pupil commute with the angular spectrum), up to the shot noise
    # of two independent acquisitions: σ_φ ≈ 0.0066 rad each (test_fields docstring), so
    # √2·σ ≈ 0.0093 rad RMS for the difference; 1.5× that allows for the offset fits.
    in_focus = retrieve_fields(twin.simulate_acquisition(ph, n_angles=5, forward="rytov", seed=1))
    diff = np.angle(fs2.fields * np.conj(in_focus.fields))
    assert np.sqrt(np.mean(diff**2)) < 1.5 * math.sqrt(2) * 0.0066
    # the in-focus phase of a sphere peaks at its centre: 2 k0 Δn R ≈ 1.09 rad (thin object)
    expected = 2 * (2 * math.pi / acq.wavelength_um) * (1.36 - 1.337) * 2.0
    assert 0.8 * expected < fs2.unwrapped_phase()[0].max() < 1.1 * expected


def test_refocus_arguments_are_checked():
    u = np.ones((8, 8), np.complex64)
    with pytest.raises(ValueError, match="complex"):
        refocus(np.ones((8, 8)), 1.0, P, LAM, NM)
    with pytest.raises(ValueError, match="z_range_um"):
        autofocus(u, P, LAM, NM, z_range_um=(2.0, 1.0))
    with pytest.raises(ValueError, match="illumination_na"):
        refocus(u, 1.0, P, LAM, NM, illumination_na=(1.4, 0.0))
