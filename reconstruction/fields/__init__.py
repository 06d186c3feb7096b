"""Field retrieval: off-axis holograms → complex fields u/u0 (conventions: :mod:`holo.conventions`).

One step per module: :mod:`.carrier` (carrier detection), :mod:`.sideband` (filter,
demodulation, cropping), :mod:`.unwrap` (2D unwrapping and its diagnostics),
:mod:`.background` (residual tilt/offset and amplitude), :mod:`.illumination` (illumination
NA from the background), :mod:`.refocus` (angular spectrum, autofocus), :mod:`.qc`
(per-frame quality control) and :mod:`.retrieve` (the whole chain, :class:`FieldSet`).
"""

from .background import fit_polynomial, object_mask, remove_background
from .carrier import detect_carrier, spectral_peaks
from .illumination import estimate_illumination_na
from .qc import frame_qc
from .refocus import autofocus, depth_of_field_um, refocus
from .retrieve import FieldSet, retrieve_fields
from .sideband import SIDEBAND_SHAPES, demodulate, output_grid, sideband_filter
from .unwrap import phase_discontinuities, phase_residues, unwrap_phase, wrap

__all__ = [
    "FieldSet",
    "retrieve_fields",
    "detect_carrier",
    "spectral_peaks",
    "demodulate",
    "output_grid",
    "sideband_filter",
    "SIDEBAND_SHAPES",
    "unwrap_phase",
    "phase_residues",
    "phase_discontinuities",
    "wrap",
    "remove_background",
    "object_mask",
    "fit_polynomial",
    "estimate_illumination_na",
    "refocus",
    "autofocus",
    "depth_of_field_um",
    "frame_qc",
]
