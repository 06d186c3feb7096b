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

Figures (all in radians, over the pixels of each frame)::

    r_a  = √( mean_r (φ_model,a − φ_a)² )                  per-frame RMS residual
    rms  = √( mean_a r_a² )                                 all valid frames
    dry-mass ratio = Σ_a Σ_r φ_model,a / Σ_a Σ_r φ_a        (phase ∝ dry mass, Barer 1952)

A frame is flagged when r_a exceeds three times the median residual of its six nearest frames (in
illumination NA, or in rotation angle). The residual of good frames rises smoothly with the
tilt (Rytov and pupil errors: 0.02 rad on the axis to 0.03–0.1 rad at the rim on exact Mie
fields), so a global threshold would flag the rim (good rim frames reach 1.6–2× their neighbours); a frame with a 0.5 rad phase ramp added
stands at ≈ 7× its neighbours. A dry-mass ratio far from 1 says the volume lost or gained optical
path; a few flagged frames say the data held frames the model cannot explain (a bubble, a
drift, a failed retrieval).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from holo.threads import fft_workers

__all__ = ["data_consistency", "flag_frames", "MODELS"]

MODELS = ("rytov", "bpm")


def flag_frames(frame_rms, positions=None, *, n_neighbours: int = 6, ratio: float = 3.0) -> list[int]:
    """Positions of outlying residuals: r_a > ratio × the median residual of its
    ``n_neighbours`` nearest frames (in illumination NA, or in rotation angle).

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


def _model_phase(ri, voxel_size_um, fs, use, model: str) -> np.ndarray:
    """Re-projected phase (len(use), Y_vol, X_vol) of the volume at the frames ``use``."""
    opts = dict(wavelength_um=fs.wavelength_um, medium_index=fs.medium_index, objective_na=fs.objective_na,
                rotation_axis=getattr(fs, "rotation_axis", "y") or "y", snap=False)
    if fs.geometry == "illumination-scan":
        opts["illumination_na"] = np.asarray(fs.illumination_na, float)[use]
    else:
        opts["angles"] = np.asarray(fs.angles, float)[use]
    if model == "bpm":
        from holo.reconstruction.forward import bpm_fields
        from holo.reconstruction.fields.unwrap import unwrap_about_border

        return unwrap_about_border(bpm_fields(ri, voxel_size_um, **opts))
    from holo.reconstruction.forward.born import born_scattered_envelopes
    from holo.reconstruction.forward.propagation import prepare_forward

    setup = prepare_forward(ri, voxel_size_um, **opts)
    psi = born_scattered_envelopes(setup, within_pupil=True)
    return np.stack([setup.crop(p.imag) for p in psi]).astype(np.float32)


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
        ``rms_phase_residual_rad``, ``dry_mass_ratio``, ``frame_rms_phase_residual_rad``
        (one value per valid frame, in the order of ``frames``; frames excluded by QC are
        left out), ``frames`` (the frame indices that list refers to), ``flagged_frames``
        (frame indices), ``flag_rule``, ``model``.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    n = int(fieldset.fields.shape[0])
    valid = getattr(fieldset, "valid", None)
    use = np.flatnonzero(np.ones(n, bool) if valid is None else np.asarray(valid, bool))
    measured = _measured_phase(fieldset, use)
    predicted = _resample_yx(_model_phase(np.asarray(ri, np.float32), tuple(voxel_size_um), fieldset, use, model), measured.shape[1:])
    diff = predicted - measured
    frame_rms = np.sqrt(np.mean(diff.astype(np.float64) ** 2, axis=(1, 2)))
    meas_sum = float(measured.astype(np.float64).sum())
    if fieldset.geometry == "illumination-scan":
        positions = np.asarray(fieldset.illumination_na, float)[use]
    else:
        ang = np.asarray(fieldset.angles, float)[use]
        positions = np.c_[np.cos(ang), np.sin(ang)]
    flagged = [int(use[i]) for i in flag_frames(frame_rms, positions)]
    return {
        "rms_phase_residual_rad": float(np.sqrt(np.mean(frame_rms**2))),
        "dry_mass_ratio": float(predicted.astype(np.float64).sum() / meas_sum) if meas_sum != 0 else float("nan"),
        "frame_rms_phase_residual_rad": [float(v) for v in frame_rms],
        "frames": [int(i) for i in use],
        "flagged_frames": flagged,
        "flag_rule": "r > 3 x median r of the 6 nearest frames (illumination NA or rotation angle)",
        "model": model,
    }
