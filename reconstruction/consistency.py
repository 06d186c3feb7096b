r"""Data consistency of a reconstruction: re-project the RI and compare with the measured phase.

For every valid frame the reconstructed volume is re-projected with a forward model at the
frame's measured illumination (or rotation angle) and its phase compared with the measured,
unwrapped phase φ_a(r⊥) of u/u0:

* ``model="rytov"`` (direct and regularised methods): the first-Rytov complex phase
  ψ_a = u_s^Born/u_in in the focal plane, restricted to the objective pupil
  (:func:`holo.reconstruction.forward.born.born_scattered_envelopes`); the model phase is
  Im ψ_a, a linear functional of the volume, so no unwrapping enters the model side.
* ``model="bpm"``: the phase of the multi-slice fields
  (:func:`holo.reconstruction.forward.bpm_fields`), unwrapped.

Figures (residuals in radians over the pixels of each frame; the ratio is a pure number)::

    r_a  = √( mean_r (φ_model,a − φ_a)² )                  per-frame RMS residual
    rms  = √( mean_a r_a² )                                 all valid frames
    dry-mass ratio = Σ_a Φ_a / Σ_a ∫_frame φ_a dA           (phase ∝ dry mass, Barer 1952)
    Φ_a = ∫_plane Im ψ_a dA = k0 Σ_r (n² − n_m²)/(2 n_m) ΔV / cos θ_a

For an object inside the field of view each measured frame integrates to k0 ∫Δn dV / cos θ_a
(cos θ_a = k_in,z/k_m; 1 for a sample rotation, whose volume is turned in its box), and so
does the model over the *whole* plane: Φ_a is the q = 0 coefficient of the first-order
envelope, −Σ f ΔV/(2 k_in,z) (:func:`phase_integrals_um2`, the same number for ``bpm``). The
model phase is not summed over the frame: what the K⊥ = 0 line of the volume's spectrum holds
at K_z ≠ 0 lies in the missing cone of an illumination scan, so a correct inverse spreads part
of the mass along z (the direct Rytov volume of an exact Mie sphere: every slice's lateral sum
equal), and a tilted projection carries that part sideways by z·tan θ_a, out of the frame.
Summed over the frame the ratio of such a volume read 0.84–0.90 for 1.01 of the sphere's mass
held; over the plane it reads the volume's mass: 1.000 for rytov (its K = 0 is taken from the
frames' own q = 0, so this checks the chain, not the inverse) and 1.03–1.06 for gp (which adds
mass where n ≥ n_m rectifies ripple). On exact Mie fields the measured phase exceeds the
first-order integral by the next order in the contrast (≈ Δn/(2 n_m), +0.6–1 % at Δn 0.023),
so the right volume reads 0.99; a volume with 20 % too little Δn reads 0.8.

A frame is flagged when r_a exceeds three times the median residual of its six nearest frames (in
tilt |NA_illumination|, or in rotation angle). The residual of good frames rises smoothly with the
tilt (Rytov and pupil errors: 0.02 rad on the axis to 0.03–0.1 rad at the rim on exact Mie
fields), so a global threshold would flag the rim; so would neighbours in the 2D NA plane,
which mix a rim frame with the inner ring next to it: with gp's ℓ1 mode, which fits the inner
frames of exact Mie data to 0.005–0.009 rad, rim frames at NA 1.1 (0.025–0.033 rad) stood at
3× such neighbours. Among the frames of nearest tilt they stand at ≤ 1.75× (six patterns); a frame with a
0.5 rad phase ramp added stands at ≈ 7× its neighbours. A dry-mass ratio far from 1 says the volume lost or gained optical
path; a few flagged frames say the data held frames the model cannot explain (a bubble, a
drift, a failed retrieval).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from holo.threads import fft_workers

__all__ = ["data_consistency", "flag_frames", "phase_integrals_um2", "MODELS"]

MODELS = ("rytov", "bpm")


def flag_frames(frame_rms, positions=None, *, n_neighbours: int = 6, ratio: float = 3.0) -> list[int]:
    """Positions of outlying residuals: r_a > ratio × the median residual of its
    ``n_neighbours`` nearest frames (in ``positions``: tilt |NA|, or rotation angle).

    The residual of good frames rises smoothly with the illumination angle (Rytov and pupil
    errors grow with the tilt, 2–5× from the axis to the rim on exact Mie data), so the
    reference is local, not global.
    """
    r = np.asarray(frame_rms, float)
    if r.size < 3:
        return []
    pos = np.arange(r.size, dtype=float)[:, None] if positions is None else np.asarray(positions, float).reshape(r.size, -1)
    k = int(min(n_neighbours, r.size - 1))
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]
    local = np.median(r[near], axis=1)
    return [int(i) for i in np.flatnonzero(r > ratio * local)]


def _resample_yx(a: np.ndarray, shape_yx) -> np.ndarray:
    """Real frames (A, Y, X) → (A, Y', X') on the same field of view by Fourier crop / zero pad."""
    if tuple(a.shape[1:]) == tuple(shape_yx):
        return a
    spec = sfft.fftshift(sfft.fft2(a, workers=fft_workers()), axes=(-2, -1))
    out = np.zeros((a.shape[0],) + tuple(shape_yx), complex)
    sy, sx = (min(n, m) for n, m in zip(a.shape[1:], shape_yx))
    src = tuple(slice(n // 2 - s // 2, n // 2 - s // 2 + s) for n, s in zip(a.shape[1:], (sy, sx)))
    dst = tuple(slice(n // 2 - s // 2, n // 2 - s // 2 + s) for n, s in zip(shape_yx, (sy, sx)))
    out[(slice(None),) + dst] = spec[(slice(None),) + src]
    scale = np.prod(shape_yx) / np.prod(a.shape[1:])
    return (sfft.ifft2(sfft.ifftshift(out, axes=(-2, -1)), workers=fft_workers()).real * scale).astype(np.float32)


def _forward_options(fs, use) -> dict:
    """Keywords of the forward models for the frames ``use`` of a field set."""
    opts = dict(wavelength_um=fs.wavelength_um, medium_index=fs.medium_index, objective_na=fs.objective_na,
                rotation_axis=getattr(fs, "rotation_axis", "y") or "y", snap=False)
    if fs.geometry == "illumination-scan":
        opts["illumination_na"] = np.asarray(fs.illumination_na, float)[use]
    else:
        opts["angles"] = np.asarray(fs.angles, float)[use]
    return opts


def phase_integrals_um2(ri, voxel_size_um, fieldset, use) -> np.ndarray:
    """∫ φ_a dA (rad·µm²) over the whole plane of the first-order re-projection, per frame ``use``.

    The q = 0 coefficient of the Born/Rytov envelope (:mod:`holo.reconstruction.forward.born`):
    Im V̂_s(0) = −Σ f ΔV / (2 k_in,z) = k0 Σ (n² − n_m²)/(2 n_m) ΔV / cos θ_a, with f the
    scattering potential of the volume as frame a sees it (turned for a sample rotation, what
    stays in the box) and cos θ_a = k_in,z/k_m (1 for a sample rotation).
    """
    from holo.conventions import ri_to_potential
    from holo.reconstruction.forward.propagation import prepare_forward

    setup = prepare_forward(ri, voxel_size_um, **_forward_options(fieldset, use), pad_px=0)
    dv = float(np.prod(setup.voxel_size_um))
    nm, lam = setup.medium_index, setup.wavelength_um

    def total(vol):
        return float(np.real(ri_to_potential(np.asarray(vol, np.float64), lam, nm)).sum()) * dv

    if setup.angles is None:
        f0 = np.full(setup.n_frames, total(setup.ri))
    else:
        f0 = np.array([total(setup.volumes([i])[0]) for i in range(setup.n_frames)])
    return -f0 / (2.0 * setup.kin[:, 2])


def _model_phase(ri, voxel_size_um, fs, use, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Re-projected phase (len(use), Y_vol, X_vol) of the volume at the frames ``use``, and
    its integral over the whole plane per frame (rad·µm², :func:`phase_integrals_um2`)."""
    opts = _forward_options(fs, use)
    if model == "bpm":
        from holo.reconstruction.forward import bpm_fields
        from holo.reconstruction.fields.unwrap import unwrap_about_border

        return unwrap_about_border(bpm_fields(ri, voxel_size_um, **opts)), phase_integrals_um2(ri, voxel_size_um, fs, use)
    from holo.reconstruction.forward.born import born_scattered_envelopes
    from holo.reconstruction.forward.propagation import prepare_forward

    setup = prepare_forward(ri, voxel_size_um, **opts)
    phase = born_scattered_envelopes(setup, within_pupil=True, imag_only=True)  # Im ψ_a, float32
    # the padded plane holds all of it: the pupil passes q = 0, so Σ Im ψ ΔA is Im V̂_s(0)
    integrals = phase.sum(axis=(1, 2), dtype=np.float64) * float(np.prod(setup.voxel_size_um[1:]))
    return np.ascontiguousarray(setup.crop(phase)), integrals


def _measured_phase(fs, use) -> np.ndarray:
    """Measured unwrapped phase (len(use), Y, X) of the frames ``use``."""
    unwrapped = getattr(fs, "unwrapped_phase", None)
    if callable(unwrapped):
        return np.asarray(unwrapped()[use], np.float32)
    from holo.reconstruction.fields.unwrap import unwrap_about_border

    frames = np.asarray(fs.fields[[int(i) for i in use]]) if len(use) else np.asarray(fs.fields)[:0]
    return np.asarray(unwrap_about_border(frames), np.float32)


def data_consistency(ri, voxel_size_um, fieldset, *, model: str = "rytov") -> dict:
    """Re-projection residual of an RI volume against the measured phase (module docstring).

    Parameters
    ----------
    ri : (Z, Y, X) float array
        Reconstructed absolute RI, focal plane at slice Z//2, same lateral field of view as
        the frames.
    voxel_size_um : (dz, dy, dx)
    fieldset : FieldSet
        The measured fields (``fields``, ``valid``, ``geometry``, optics, ``illumination_na``
        or ``angles``).
    model : {"rytov", "bpm"}

    Returns
    -------
    dict
        ``rms_phase_residual_rad``, ``dry_mass_ratio`` (model phase integrated over the whole
        plane, measured over the frame: module docstring), ``frame_rms_phase_residual_rad``
        (one value per valid frame, in the order of ``frames``; frames excluded by QC are
        left out), ``frames`` (the frame indices that list refers to), ``flagged_frames``
        (frame indices), ``flag_rule``, ``model``.
    """
    from holo.reconstruction.forward.propagation import _pixel_pair

    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    n = int(fieldset.fields.shape[0])
    valid = getattr(fieldset, "valid", None)
    use = np.flatnonzero(np.ones(n, bool) if valid is None else np.asarray(valid, bool))
    measured = _measured_phase(fieldset, use)
    model_phase, model_integrals = _model_phase(np.asarray(ri, np.float32), tuple(voxel_size_um), fieldset, use, model)
    predicted = _resample_yx(model_phase, measured.shape[1:])
    diff = predicted - measured
    frame_rms = np.sqrt(np.mean(diff.astype(np.float64) ** 2, axis=(1, 2)))
    pixel_area_um2 = float(np.prod(_pixel_pair(fieldset.pixel_size_um)))
    meas_sum = float(measured.astype(np.float64).sum()) * pixel_area_um2
    if fieldset.geometry == "illumination-scan":
        # the model's own error grows with the tilt, not with its azimuth (module docstring)
        positions = np.hypot(*np.asarray(fieldset.illumination_na, float)[use].T)
    else:
        ang = np.asarray(fieldset.angles, float)[use]
        positions = np.c_[np.cos(ang), np.sin(ang)]
    flagged = [int(use[i]) for i in flag_frames(frame_rms, positions)]
    return {
        "rms_phase_residual_rad": float(np.sqrt(np.mean(frame_rms**2))),
        "dry_mass_ratio": float(model_integrals.sum() / meas_sum) if meas_sum != 0 else float("nan"),
        "frame_rms_phase_residual_rad": [float(v) for v in frame_rms],
        "frames": [int(i) for i in use],
        "flagged_frames": flagged,
        "flag_rule": "r > 3 x median r of the 6 nearest frames (in tilt |NA| or rotation angle)",
        "model": model,
    }
