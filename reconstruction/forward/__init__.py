"""Forward models of holotomography: fields u/u0 in the focal plane from a RI volume.

``bpm_fields`` (multi-slice beam propagation), ``born_fields`` (first Born) and
``rytov_fields`` (first Rytov) share one signature (``docs/design.md``, "Forward models").
``snap_illumination_na`` gives the grid-periodic illumination NAs the models use.
Only NumPy and SciPy are needed.
"""

from holo.reconstruction.forward.propagation import grid_coordinates, rotate_volume, snap_illumination_na
from holo.reconstruction.forward.born import born_fields
from holo.reconstruction.forward.bpm import bpm_fields
from holo.reconstruction.forward.rytov import rytov_fields

__all__ = ["bpm_fields", "born_fields", "rytov_fields", "snap_illumination_na", "grid_coordinates", "rotate_volume"]
