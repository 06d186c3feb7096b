"""Camera frames → acquisition ``.h5`` (docs/acquisition-format.md): ``holo import`` and the
napari import widget.

Chain: :func:`holo.io.camera.read_camera` (frames, background, optics) → for an illumination
scan without illumination NAs, the NAs measured by the field retrieval
(:func:`holo.reconstruction.fields.retrieve_fields`: each frame's illumination plane wave in
the sideband, the sideband holding u chosen by the positive object phase) →
:func:`holo.io.acquisition.write_acquisition` (atomic: nothing is left at the target on
failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from holo.errors import ValidationError
from holo.model import Acquisition

__all__ = ["estimate_illumination", "import_camera"]


def estimate_illumination(acq: Acquisition, progress: Callable | None = None) -> Acquisition:
    """``acq`` with ``illumination_na`` measured from its holograms and background.

    The retrieval locates the background's sideband peak of every frame relative to the
    carrier, (NA_x, NA_y) = λ (f − c) (:mod:`holo.reconstruction.fields.illumination`), and
    resolves the twin ambiguity with the object phase. ``metadata["illumination_na_estimated"]``
    records it. An acquisition that has NAs, or is a sample rotation, is returned unchanged.

    Raises
    ------
    ValidationError
        No finite estimate for some frame (named).
    """
    if acq.geometry != "illumination-scan" or acq.illumination_na is not None:
        return acq
    from holo.reconstruction.fields import retrieve_fields

    fs = retrieve_fields(acq, qc=False, progress=progress)
    na = np.asarray(fs.illumination_na, np.float64)
    bad = np.flatnonzero(~np.isfinite(na).all(axis=1))
    if bad.size:
        raise ValidationError(f"cannot be estimated for frame {int(bad[0])} (no sideband peak)", path=acq.source, item="illumination_na")
    meta = {**acq.metadata, "illumination_na_estimated": True}
    return acq.replace(illumination_na=na, metadata=meta)


def import_camera(
    path: str | Path | Acquisition,
    out: str | Path,
    *,
    sidecar: str | Path | None = None,
    background: str | Path | None = None,
    estimate_na: bool = True,
    compression: str | None = "gzip",
    progress: Callable | None = None,
    **optics,
) -> Acquisition:
    """Read camera frames and write them as an acquisition file.

    Parameters
    ----------
    path : path or Acquisition
        Frame folder, multi-page TIFF stack or raw off-axis HDF5 (:mod:`holo.io.camera`), or what
        :func:`holo.io.camera.read_camera` made of one (then ``sidecar``, ``background`` and
        ``optics`` are not used).
    out : path
        Target ``.h5``; written atomically.
    sidecar, background : path, optional
        As in :func:`holo.io.camera.read_camera`.
    estimate_na : bool
        Measure missing illumination NAs (:func:`estimate_illumination`).
    compression : {None, "gzip", "lzf"}
        HDF5 compression of the frames (camera frames compress well, losslessly).
    **optics
        Sidecar keys given directly (they win over the sidecar).

    Returns
    -------
    Acquisition
        What was written (in memory).
    """
    from holo.io.acquisition import write_acquisition
    from holo.io.camera import read_camera

    out = Path(out)
    if not out.name.lower().endswith((".h5", ".hdf5")):
        raise ValueError(f"out: an acquisition is written as .h5, got {out.name!r}")
    acq = path if isinstance(path, Acquisition) else read_camera(path, sidecar=sidecar, background=background, **optics)
    if estimate_na:
        acq = estimate_illumination(acq, progress=progress)
    write_acquisition(out, acq.replace(source=None), compression=compression)
    return acq
