"""Raw off-axis holograms in the qpformat HDF5 layout → frames, background and optics.

The layout (written by qpformat/qpimage users for raw off-axis holography, single and series;
docs/acquisition-format.md):

* root attributes ``file_format = "qpformat"`` and ``imaging_modality = "off-axis holography"``;
* one 2D dataset per hologram named ``"0"``, ``"1"``, … (an unbroken sequence; one dataset
  ``"0"`` is a single hologram);
* optionally a 2D dataset ``"reference"`` (the sample-free hologram, used as the background
  frame) and an entry ``"logs"`` (ignored);
* optics as attributes of each hologram dataset, in SI units: ``wavelength`` (m),
  ``pixel size`` (m, at the sample), ``medium index``, ``numerical aperture``; others
  (``focus``, ``time``, ``pos x``, ``pos y``) are not needed here.

Optics found are returned as sidecar keys (µm), which a sidecar or options override
(:func:`holo.io.camera.read_camera`). Any other HDF5 file gives one line saying what was
expected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from holo.errors import FormatError, ValidationError
from holo.memory import check_memory

__all__ = ["RAW_OAH_SUFFIXES", "is_raw_oah_hdf5", "read_raw_oah_hdf5"]

#: Suffixes of raw off-axis hologram HDF5 files (lower case).
RAW_OAH_SUFFIXES = (".h5", ".hdf5")
_FORMAT = {"file_format": "qpformat", "imaging_modality": "off-axis holography"}
#: Dataset attribute (SI) → (sidecar key, factor to the key's unit).
_OPTICS_ATTRS = {
    "wavelength": ("wavelength_um", 1e6),
    "pixel size": ("pixel_size_um", 1e6),
    "medium index": ("medium_index", 1.0),
    "numerical aperture": ("objective_na", 1.0),
}
_NOT_FRAMES = ("reference", "logs")


def _text(value) -> str:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def is_raw_oah_hdf5(path: str | Path) -> bool:
    """True for an HDF5 file whose root attributes name the raw off-axis layout."""
    import h5py

    p = Path(path)
    if not (p.is_file() and p.suffix.lower() in RAW_OAH_SUFFIXES):
        return False
    try:
        with h5py.File(p, "r") as f:
            return all(_text(f.attrs.get(k, "")) == v for k, v in _FORMAT.items())
    except OSError:
        return False


def _frame_names(f, path: Path) -> list[str]:
    """``"0"``, ``"1"``, … in order; anything else but ``reference``/``logs`` is refused."""
    names = [n for n in f.keys() if n not in _NOT_FRAMES]
    bad = [n for n in names if not n.isdigit()]
    if bad:
        raise FormatError(f"unexpected entry (holograms are datasets '0', '1', …, plus 'reference')", path=path, item=bad[0])
    nums = sorted(int(n) for n in names)
    if not nums:
        raise FormatError("no hologram dataset '0'", path=path, item="0")
    for i, n in enumerate(nums):
        if n != i:
            raise ValidationError(f"hologram {i} missing (datasets run to {nums[-1]})", path=path, item=str(i))
    return [str(n) for n in nums]


def _optics(ds, path: Path) -> dict:
    out = {}
    for attr, (key, factor) in _OPTICS_ATTRS.items():
        if attr in ds.attrs:
            try:
                out[key] = float(np.asarray(ds.attrs[attr]).reshape(-1)[0]) * factor
            except (TypeError, ValueError):
                raise ValidationError(f"attribute {attr!r} is not a number", path=path, item=ds.name.lstrip("/")) from None
    return out


def read_raw_oah_hdf5(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Holograms (A, Y, X), the reference (1, Y, X) or None, and the optics (sidecar keys).

    Raises
    ------
    FormatError
        Not this layout (one line naming what was found), an unexpected entry, a dataset that
        is not a 2D real image, or HDF5 content pointing outside the file.
    ValidationError
        A missing hologram number, sizes or optics differing between holograms.
    """
    import h5py

    from holo.io._hdf5_safety import check_hdf5_file

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"not readable as HDF5 ({' '.join(str(exc).split())})", path=path, item="file") from None
    with f:
        found = {k: _text(f.attrs.get(k, "(none)")) for k in _FORMAT}
        if found != _FORMAT:
            raise FormatError(
                "not a raw off-axis hologram HDF5 (expected root attributes file_format='qpformat', "
                f"imaging_modality='off-axis holography'; found {found['file_format']!r}, {found['imaging_modality']!r})",
                path=path, item="file_format")
        check_hdf5_file(f, path)
        names = _frame_names(f, path)
        first = f[names[0]]
        if not isinstance(first, h5py.Dataset) or first.ndim != 2 or first.dtype.kind not in "uif":
            raise FormatError("a hologram is a 2D dataset of real pixels", path=path, item=names[0])
        shape, dtype = first.shape, first.dtype
        check_memory((len(names) + 1) * first.size * dtype.itemsize, path=path, item="holograms", what="reading the holograms")
        optics = _optics(first, path)
        out = np.empty((len(names),) + shape, dtype)
        for i, name in enumerate(names):
            ds = f[name]
            if not isinstance(ds, h5py.Dataset) or ds.shape != shape or ds.dtype != dtype:
                got = f"{ds.dtype} {ds.shape}" if isinstance(ds, h5py.Dataset) else "a group"
                raise ValidationError(f"{got} differs from {dtype} {shape} of hologram '0'", path=path, item=name)
            if _optics(ds, path) != optics:
                raise ValidationError("optics attributes differ from those of hologram '0'", path=path, item=name)
            out[i] = ds[()]
        ref = None
        if "reference" in f:
            r = f["reference"]
            if not isinstance(r, h5py.Dataset) or r.shape != shape:
                raise ValidationError(f"the reference must be one {shape} frame", path=path, item="reference")
            ref = np.asarray(r[()])[None]
    return out, ref, optics
