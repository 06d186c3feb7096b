"""holo: holotomography toolkit. Shared core: data model, formats, digital twin, pipeline, CLI.

Physics conventions are stated once in :mod:`holo.conventions`.
"""

from holo.errors import FormatError, HoloError, ValidationError
from holo.model import Acquisition, FluorescenceChannel, Tomogram

__version__ = "0.1.0"


def open(path, **kwargs):  # noqa: A001 - deliberate, mirrors io.open
    """Open any supported file (acquisition HDF5, TCF, OME-TIFF, OME-Zarr) by its content.

    Returns an :class:`Acquisition` or a :class:`Tomogram`. See :func:`holo.io.open_path`.
    """
    from holo.io import open_path

    return open_path(path, **kwargs)


__all__ = ["Acquisition", "Tomogram", "FluorescenceChannel", "HoloError", "FormatError", "ValidationError", "open"]
