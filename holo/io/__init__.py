"""File formats of holo: acquisition HDF5, Tomocube TCF, OME-TIFF, OME-Zarr, camera frames.

``detect_format`` looks at the content (HDF5 signature and root attributes, TIFF magic and
OME-XML, zarr folder with NGFF multiscales, a folder or plain TIFF stack of camera frames with
an optics sidecar — :mod:`holo.io.camera`), not only at the extension; ``open_path`` reads
any of them; ``save_tomogram`` / ``save_labels`` dispatch on the output extension.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from holo.errors import FormatError
from holo.io._hdf5_safety import check_hdf5_file
from holo.io.acquisition import HDF5_SIGNATURE, read_acquisition, write_acquisition
from holo.io.camera import is_camera_input, read_camera
from holo.io.ometiff import read_labels_tiff, read_ome_tiff, write_labels_tiff, write_ome_tiff
from holo.io.omezarr import is_ome_zarr, read_ome_zarr, read_ome_zarr_labels, write_labels_zarr, write_ome_zarr
from holo.io.tcf import read_tcf, write_tcf

__all__ = [
    "FORMATS",
    "FORMAT_SUFFIXES",
    "INPUT_SUFFIXES",
    "strip_format_suffix",
    "detect_format",
    "open_path",
    "save_tomogram",
    "save_labels",
    "read_labels",
    "is_label_file",
    "output_format",
    "read_acquisition",
    "write_acquisition",
    "read_tcf",
    "write_tcf",
    "read_ome_tiff",
    "write_ome_tiff",
    "read_labels_tiff",
    "write_labels_tiff",
    "read_ome_zarr",
    "write_ome_zarr",
    "read_ome_zarr_labels",
    "write_labels_zarr",
    "read_camera",
    "is_camera_input",
]

FORMATS = ("acquisition", "tcf", "ome-tiff", "ome-zarr", "camera")
#: File-name suffixes of each format (lower case, longer first), the one table that output
#: formats and sample names go by.
FORMAT_SUFFIXES = {
    "ome-tiff": (".ome.tiff", ".ome.tif", ".tiff", ".tif"),
    "ome-zarr": (".ome.zarr", ".zarr"),
    "tcf": (".tcf",),
    "acquisition": (".hdf5", ".h5"),
}
#: Suffixes of the files that folders are searched for in batch work: acquisitions, TCF and
#: OME images (plain ``.tif``/``.zarr`` files in a folder are not taken for tomograms).
INPUT_SUFFIXES = (".h5", ".hdf5", ".tcf", ".ome.tif", ".ome.tiff", ".ome.zarr")
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def detect_format(path: str | Path) -> str:
    """Identify a file by its content.

    Returns
    -------
    {"acquisition", "tcf", "ome-tiff", "ome-zarr", "camera"}
        "camera": a folder of frames or a plain TIFF stack with its optics sidecar
        (:func:`holo.io.camera.is_camera_input`), opened as an acquisition.

    Raises
    ------
    FormatError
        Missing path, unreadable file, or content of none of these formats.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise FormatError("no such file or folder", path=path, item="file")
    if path.is_dir():
        if is_ome_zarr(path):
            return "ome-zarr"
        if is_camera_input(path):
            return "camera"
        raise FormatError(
            "folder is neither an OME-Zarr store (NGFF multiscales) nor camera frames with an optics.json/yaml sidecar",
            path=path,
            item="format",
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise FormatError(f"cannot read ({exc.strerror or exc})", path=path, item="file") from None
    if head == HDF5_SIGNATURE:
        try:
            with h5py.File(path, "r") as f:
                check_hdf5_file(f, path)  # nothing outside the file is followed, here or later
                fmt = f.attrs.get("format")
                if isinstance(fmt, bytes):
                    fmt = fmt.decode("utf-8", "replace")
                if fmt is not None and str(fmt) == "holo-acquisition":
                    return "acquisition"
                if "FormatVersion" in f.attrs and "Data" in f:
                    return "tcf"
                if fmt is not None:
                    raise FormatError(f"unknown HDF5 format {fmt!r}", path=path, item="format")
        except OSError as exc:
            raise FormatError(f"not a readable HDF5 file ({' '.join(str(exc).split())})", path=path, item="file") from None
        raise FormatError(
            "HDF5 file is neither a holo acquisition (root attribute format) nor a TCF (FormatVersion, /Data)",
            path=path,
            item="format",
        )
    if head[:4] in _TIFF_MAGICS:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                if tif.is_ome:
                    return "ome-tiff"
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise FormatError(f"not a readable TIFF file ({' '.join(str(exc).split())})", path=path, item="file") from None
        if is_camera_input(path):
            return "camera"
        raise FormatError(
            "TIFF without OME-XML metadata (camera frames: put <name>.json/.yaml optics beside it, or run holo import)",
            path=path,
            item="format",
        )
    raise FormatError("unknown content (not HDF5, OME-TIFF or OME-Zarr)", path=path, item="format")


def open_path(path: str | Path, **kwargs):
    """Open any supported file by its content.

    Keyword arguments go to the reader (``lazy=`` for acquisitions, ``medium_index=`` for
    tomogram formats that may lack it).

    Returns
    -------
    Acquisition or Tomogram
    """
    fmt = detect_format(path)
    reader = {
        "acquisition": read_acquisition, "tcf": read_tcf, "ome-tiff": read_ome_tiff, "ome-zarr": read_ome_zarr, "camera": read_camera,
    }[fmt]
    return reader(path, **kwargs)


def output_format(path: str | Path) -> str:
    """Format chosen for an output path from its extension.

    ``.ome.tif``/``.ome.tiff``/``.tif``/``.tiff`` → ``"ome-tiff"``; ``.ome.zarr``/``.zarr`` →
    ``"ome-zarr"``; ``.tcf`` → ``"tcf"``; ``.h5``/``.hdf5`` → ``"acquisition"``.
    """
    name = Path(path).name.lower()
    for fmt, suffixes in FORMAT_SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    raise ValueError(f"path: cannot tell the output format from the extension of {Path(path).name!r} (use .ome.tif, .ome.zarr, .tcf or .h5)")


def strip_format_suffix(name: str) -> str:
    """``name`` without the suffix of its format (:data:`FORMAT_SUFFIXES`, case-insensitive),
    e.g. ``"cell.ome.tif"`` → ``"cell"``; unchanged when it has none."""
    low = name.lower()
    for suffixes in FORMAT_SUFFIXES.values():
        for suf in suffixes:
            if low.endswith(suf):
                return name[: -len(suf)]
    return name


def save_tomogram(tomo, path: str | Path, labels: dict | None = None, **kwargs) -> Path:
    """Write a tomogram in the format given by the extension of ``path`` (see :func:`output_format`).

    ``labels`` ({name: (Z, Y, X) integer array}) are stored inside an OME-Zarr store; for the
    other formats pass them to :func:`save_labels` separately. Extra keyword arguments go to
    the writer (e.g. ``format_version=`` for TCF).
    """
    fmt = output_format(path)
    if fmt == "ome-zarr":
        return write_ome_zarr(path, tomo, labels=labels, **kwargs)
    if labels:
        raise ValueError(f"labels: only OME-Zarr stores labels beside the image; use save_labels() for {Path(path).name!r}")
    if fmt == "ome-tiff":
        return write_ome_tiff(path, tomo, **kwargs)
    if fmt == "tcf":
        return write_tcf(path, tomo, **kwargs)
    raise ValueError(f"path: {Path(path).name!r} is an acquisition file name; a tomogram goes to .ome.tif, .ome.zarr or .tcf")


def save_labels(labels, path: str | Path, voxel_size_um) -> Path:
    """Write a label volume (Z, Y, X), atomically, by the extension of ``path``.

    ``.tif``/``.ome.tif`` → label OME-TIFF (:func:`write_labels_tiff`). ``.ome.zarr``/``.zarr``:
    if ``path`` is an existing tomogram store, the labels (an array, named ``"labels"``, or a
    dict of name -> array) are added to its ``labels/`` group and the store is rewritten
    atomically with its own voxel size; otherwise a label-only store is written
    (:func:`write_labels_zarr`, one array). Read back with :func:`read_labels`.
    """
    from holo.io.omezarr import ome_zarr_kind

    fmt = output_format(path)
    if fmt == "ome-tiff":
        if isinstance(labels, dict):
            raise ValueError("labels: an OME-TIFF holds one label array, got a dict")
        return write_labels_tiff(path, labels, voxel_size_um)
    if fmt == "ome-zarr":
        p = Path(path)
        if p.exists() and is_ome_zarr(p) and ome_zarr_kind(p) == "tomogram":
            tomo = read_ome_zarr(p)
            tomo = tomo.replace(ri=np.asarray(tomo.ri.compute()), source=None)
            new = labels if isinstance(labels, dict) else {"labels": labels}
            merged = {**read_ome_zarr_labels(p), **new}
            return write_ome_zarr(p, tomo, labels=merged)
        if isinstance(labels, dict):
            if len(labels) != 1:
                raise ValueError(f"labels: a label-only OME-Zarr store holds one array, got {len(labels)}")
            (name, arr), = labels.items()
            return write_labels_zarr(p, arr, voxel_size_um, name=str(name))
        return write_labels_zarr(p, labels, voxel_size_um)
    raise ValueError(f"path: labels are written as .ome.tif or .ome.zarr, not {Path(path).name!r}")


def is_label_file(path: str | Path, fmt: str | None = None) -> bool:
    """Whether ``path`` holds labels only: a label OME-TIFF (:func:`write_labels_tiff`) or a
    label-only OME-Zarr store (:func:`write_labels_zarr`). ``fmt`` is its
    :func:`detect_format` when the caller knows it already."""
    from holo.io.ometiff import ome_tiff_kind
    from holo.io.omezarr import ome_zarr_kind

    fmt = detect_format(path) if fmt is None else fmt
    if fmt == "ome-tiff":
        return ome_tiff_kind(path) == "labels"
    if fmt == "ome-zarr":
        return ome_zarr_kind(path) == "labels"
    return False


def read_labels(path: str | Path) -> tuple[dict[str, np.ndarray], tuple[float, float, float]]:
    """Label volumes of a file: ``({name: (Z, Y, X) integer array}, voxel_size_um)``.

    Works for label OME-TIFFs, label-only OME-Zarr stores and the ``labels/`` group of a
    tomogram OME-Zarr store (then the voxel size is the tomogram's).
    """
    fmt = detect_format(path)
    if fmt == "ome-tiff":
        arr, vs = read_labels_tiff(path)
        return {"labels": arr}, vs
    if fmt == "ome-zarr":
        from holo.io.omezarr import _open_root, _read_multiscale, ome_zarr_kind

        p = Path(path)
        labs = read_ome_zarr_labels(p)
        if ome_zarr_kind(p) == "labels":
            _, _, sc = _read_multiscale(_open_root(p), p, "labels")
        else:
            sc = dict(zip("zyx", read_ome_zarr(p).voxel_size_um))
        return labs, (sc["z"], sc["y"], sc["x"])
    raise FormatError(f"a {fmt} file holds no labels", path=path, item="labels")
