"""First-Rytov forward model of holotomography.

The Rytov approximation writes the field as u = u0·exp(φ_s) and approximates the complex
phase by the first-Born scattered field divided by the illumination,

    φ_s = u_s^Born / u_in,

evaluated in the focal plane z = 0 (u_s^Born from :mod:`holo.reconstruction.forward.born`, all
propagating components |q + k_in⊥| < k_m, before the pupil). Then u/u0 = exp(φ_s), and the
objective pupil |q + k_in⊥| ≤ 2π NA/λ is applied to the total field u = u0·exp(φ_s), i.e.
to the envelope with the shifted pupil.

For a thin object φ_s ≈ i k0 ∫ (n − n_m) dz (see the sign check in ``born``), so the phase
of u/u0 is the optical path difference also when it exceeds π/2, where the Born field
fails. Rytov's neglected term is (∇φ_s)² against k0²(n² − n_m²): it is valid while
|n − n_m| ≫ (λ/2π)² |∇φ|², i.e. its error is governed by the phase *gradients* (refraction),
second order in Δn; for a 6 µm sphere its RMS phase error grows from 0.5 % of the peak
phase at Δn = 0.02 to 1.7 % at Δn = 0.06 (``docs/forward_models.md``).
"""

from __future__ import annotations

from typing import Callable, Unpack

import numpy as np

from holo.reconstruction.forward.propagation import ForwardOptions, filter_pupil, frequency_grid, prepare_forward, pupil_mask
from holo.reconstruction.forward.born import born_scattered_envelopes

__all__ = ["rytov_fields"]


def rytov_fields(
    ri,
    voxel_size_um,
    *,
    progress: Callable[[int, int], object] | None = None,
    **options: Unpack[ForwardOptions],
) -> np.ndarray:
    """Fields u/u0 in the focal plane in the first Rytov approximation (module docstring).

    Parameters and return value as :func:`holo.reconstruction.forward.bpm.bpm_fields` (``progress``
    and the shared keywords ``**options``, without ``batch_size`` and ``wide_angle``).
    Returns (A, Y, X) complex64 P[exp(φ_s)] with φ_s = u_s^Born/u_in at z = 0.
    """
    setup = prepare_forward(ri, voxel_size_um, **options)
    phi = born_scattered_envelopes(setup, within_pupil=False, progress=progress)
    qy, qx = frequency_grid(setup.padded_shape_yx, setup.voxel_size_um[1:])
    out = np.empty((setup.n_frames,) + setup.ri.shape[1:], dtype=np.complex64)
    for i in range(setup.n_frames):
        kin = setup.kin[i]
        pupil = pupil_mask(qy, qx, kin[0], kin[1], setup.wavelength_um, setup.objective_na)
        out[i] = setup.crop(filter_pupil(np.exp(phi[i]), pupil))
    return out
