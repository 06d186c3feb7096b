"""First-Born forward model (Fourier diffraction relation) of holotomography.

Derivation (conventions of :mod:`holo.conventions`)
--------------------------------------------------
With e^{-iωt}, the field obeys ∇²u + k0² n² u = 0. With k_m = k0 n_m and the scattering
potential f = k0² (n_m² − n²) this reads (∇² + k_m²) u = f u. The outgoing Green function
of (∇² + k_m²) G = −δ is G(r) = e^{i k_m |r|} / (4π |r|), whose angular spectrum (Weyl) is

    G(r) = ∫ d²k⊥/(2π)² · (i / (2 k_z)) · exp(i k⊥·r⊥ + i k_z |z|),  k_z = √(k_m² − |k⊥|²).

Hence u = u_in + u_s with u_s(r) = −∫ G(r − r') f(r') u(r') d³r'. The first Born
approximation replaces u by the illumination u_in = exp(i k_in·r) under the integral. For z
beyond the sample, the 2D Fourier transform of u_s in the plane z is

    Û_s(k⊥; z) = (−i / (2 k_z)) e^{i k_z z} F(k⊥ − k_in⊥, k_z − k_in,z),
    F(K) = ∫ f(r) e^{−i K·r} d³r.

The microscope images this outgoing wave propagated back to the focal plane z = 0, so at
z = 0 the envelope of the scattered field, v_s = u_s / u0 with u0 = exp(i k_in⊥·r⊥), has the
spectrum (q = k⊥ − k_in⊥)

    V̂_s(q) = (−i / (2 k_z(q + k_in⊥))) · F(q, k_z(q + k_in⊥) − k_in,z).        (Born)

Sign check: for a thin weak object at normal incidence, k_z ≈ k_m and
f ≈ −2 k0² n_m Δn, so v_s ≈ (−i / (2 k_m)) ∫ f dz = i k0 ∫ Δn dz: the phase of
u/u0 ≈ 1 + v_s is positive where the optical path is longer, as required.

Discretisation: each slice j is a slab of thickness dz centred on z_j, laterally sampled
on the pixel grid, so F(q, K_z) = dz·sinc(K_z dz/2)·Σ_j e^{−i K_z z_j} F2_j(q) with F2_j the
2D FFT of slice j times dy·dx (exact for piecewise-constant slabs and any K_z; evaluated
by Horner's rule over j). u/u0 = P·(1 + v_s) with P the pupil |q + k_in⊥| ≤ 2π NA/λ.

Validity: the Born field is accurate while the phase delay through the object is small,
k0 |Δn| d ≪ 1; it fails visibly once k0 |Δn| d ≳ π/2 (see ``docs/forward_models.md``).
"""

from __future__ import annotations

from typing import Callable, Unpack

import numpy as np
import scipy.fft as sfft

from holo.conventions import medium_wavenumber, ri_to_potential
from holo.threads import fft_workers
from holo.reconstruction.forward._born_kernels import slab_sums, slab_sums_frames
from holo.reconstruction.forward.propagation import (
    ForwardOptions,
    envelope_kz,
    frame_batches,
    frequency_grid,
    prepare_forward,
    pupil_mask,
    report_progress,
)

__all__ = ["born_fields", "born_scattered_envelopes"]


def _slice_spectra(ri: np.ndarray, setup):
    """2D spectra F2_j (scipy.fft layout, ×dy·dx) of the occupied slab range of the potential
    of ``ri`` padded laterally by ``setup.pad_px`` with the medium, as a (Y', X', J) array (one
    contiguous row of slabs per lateral frequency). The potential is laid out (Y', X', J)
    before the lateral FFT, which then writes that layout itself (no transposed copy)."""
    nm = setup.medium_index
    occupied = np.flatnonzero(np.any(ri != np.float32(nm), axis=(1, 2)))
    if occupied.size == 0:
        return None, None
    j0, j1 = occupied[0], occupied[-1] + 1
    f = ri_to_potential(ri[j0:j1], setup.wavelength_um, nm)
    dtype = np.complex64 if np.iscomplexobj(f) else np.float32
    medium = ri_to_potential(np.asarray(nm, ri.dtype), setup.wavelength_um, nm)  # what padding ri with n_m gives
    (py, px), (ny, nx) = setup.pad_px, ri.shape[1:]
    f_yxj = np.full(setup.padded_shape_yx + (j1 - j0,), medium, dtype=dtype)
    f_yxj[py : py + ny, px : px + nx] = f.transpose(1, 2, 0)
    dy, dx = setup.voxel_size_um[1:]
    spec = sfft.fft2(f_yxj, axes=(0, 1), workers=fft_workers(), overwrite_x=True).astype(np.complex64, copy=False)
    spec *= np.float32(dy * dx)
    return spec, setup.z_um[j0:j1]


def _scattered_envelope_spectra(spec, z_slices, kins, setup, qy, qx, within_pupil: bool):
    """V̂_s(q) of equation (Born) for the illuminations ``kins`` (B, 3) that share the slab
    spectra ``spec``: (B, Y, X) complex64, zeros outside each frame's kept region (the pupil
    and the propagating components, or the propagating components alone)."""
    dz = setup.voxel_size_um[0]
    km = medium_wavenumber(setup.wavelength_um, setup.medium_index)
    shape = (len(kins),) + (qy.shape[0], qx.shape[1])
    keep = np.zeros(shape, bool)
    r = np.zeros(shape, np.complex64)
    kzds = []
    for b, kin in enumerate(kins):
        delta, kept = envelope_kz(qy, qx, kin[0], kin[1], km)
        if within_pupil:
            kept &= pupil_mask(qy, qx, kin[0], kin[1], setup.wavelength_um, setup.objective_na)
        keep[b] = kept
        kzds.append(delta[kept])  # K_z = k_z(q + k_in⊥) − k_in,z
        r[b][kept] = np.exp(-1j * kzds[b] * dz).astype(np.complex64)
    out = np.zeros(shape, np.complex64)
    if len(kins) == 1:
        iy, ix = np.nonzero(keep[0])
        out[0][keep[0]] = slab_sums(spec, iy.astype(np.int64), ix.astype(np.int64), r[0][keep[0]])
    else:
        slab_sums_frames(spec, keep, r, out)  # Σ_j F2_j r^j (J on the last axis)
    for b, kin in enumerate(kins):
        kzd = kzds[b]
        slab = dz * np.sinc(kzd * dz / (2.0 * np.pi))  # np.sinc(x) = sin(πx)/(πx)
        factor = (-0.5j / (kzd + kin[2])) * slab * np.exp(-1j * kzd * z_slices[0])  # k_z(q + k_in⊥) = K_z + k_in,z
        out[b][keep[b]] = (factor * out[b][keep[b]]).astype(np.complex64)
    return out


def _imag_half_spectrum(vs):
    """Spectrum of Im v for the spectrum ``vs`` (Y, X) of v: (vs(q) − conj vs(−q))/(2i), on the
    half plane q_x ≥ 0 that a real inverse FFT (``irfft2``) takes, half the work of ``ifft2``."""
    flipped = np.roll(vs[::-1, ::-1], 1, axis=(0, 1))  # vs(−q) in the FFT layout
    half = vs.shape[1] // 2 + 1
    return (vs[:, :half] - np.conj(flipped[:, :half])) * np.complex64(-0.5j)


def born_scattered_envelopes(setup, *, within_pupil: bool, progress=None, imag_only: bool = False):
    """Scattered envelopes v_s = u_s/u0 at z = 0, padded grid, (A, Y', X') complex64.

    ``within_pupil``: keep only the pupil |q + k_in⊥| ≤ 2π NA/λ (True) or every propagating
    component |q + k_in⊥| < k_m (False). ``imag_only``: return Im v_s alone (float32, by a
    real inverse FFT).
    """
    km = medium_wavenumber(setup.wavelength_um, setup.medium_index)
    qy, qx = frequency_grid(setup.padded_shape_yx, setup.voxel_size_um[1:])
    dy, dx = setup.voxel_size_um[1:]
    shape = (setup.n_frames, setup.padded_shape_yx[0], setup.padded_shape_yx[1] // 2 + 1) if imag_only else (setup.n_frames,) + setup.padded_shape_yx
    out = np.zeros(shape, dtype=np.complex64)
    shared = None
    batch = 1
    if setup.angles is None:
        shared = _slice_spectra(setup.ri, setup)
        # frames that share the slab spectra are summed together; their masks, factors and
        # spectra take 17 bytes per pixel and frame
        batch = max(1, (128 * 2**20) // (17 * setup.padded_shape_yx[0] * setup.padded_shape_yx[1]))
    for idx in frame_batches(setup, batch):
        if shared is not None:
            spec, zs = shared
        else:
            spec, zs = _slice_spectra(setup.volumes(idx)[0], setup)
        vs = None if spec is None else _scattered_envelope_spectra(spec, zs, setup.kin[idx], setup, qy, qx, within_pupil)
        for b, i in enumerate(idx):
            if vs is not None:
                out[i] = _imag_half_spectrum(vs[b]) if imag_only else sfft.ifft2(vs[b], workers=fft_workers()) / np.float32(dy * dx)
            report_progress(progress, int(i) + 1, setup.n_frames)
    if imag_only:  # one batched real inverse FFT of all frames
        out = sfft.irfft2(out, s=setup.padded_shape_yx, workers=fft_workers(), overwrite_x=True)
        out /= np.float32(dy * dx)
    return out


def born_fields(
    ri,
    voxel_size_um,
    *,
    progress: Callable[[int, int], object] | None = None,
    **options: Unpack[ForwardOptions],
) -> np.ndarray:
    """Fields u/u0 in the focal plane in the first Born approximation (module docstring).

    Parameters and return value as :func:`holo.reconstruction.forward.bpm.bpm_fields`:
    ``ri`` (Z, Y, X) absolute RI, ``voxel_size_um`` (dz, dy, dx), ``progress(i, n)`` after
    each frame, and the keywords shared by the forward models (``**options``,
    :class:`~holo.reconstruction.forward.propagation.ForwardOptions`): ``wavelength_um``,
    ``medium_index``, ``objective_na``, ``illumination_na`` (A, 2) or ``angles`` (A,)
    radians about ``rotation_axis``, ``snap`` the illumination to the grid, ``pad_px``
    lateral guard band. Returns (A, Y, X) complex64 u/u0 = P(1 + v_s), low-passed by the
    objective pupil.
    """
    setup = prepare_forward(ri, voxel_size_um, **options)
    vs = born_scattered_envelopes(setup, within_pupil=True, progress=progress)
    # the unscattered wave passes the pupil when the illumination lies inside it
    k0na = 2.0 * np.pi * setup.objective_na / setup.wavelength_um
    passes = np.hypot(setup.kin[:, 0], setup.kin[:, 1]) <= k0na * (1.0 + 1e-9)
    vs += passes.astype(np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray(setup.crop(vs))
