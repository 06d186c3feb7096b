"""Acquisition HDF5 files (layout version 1 of ``docs/acquisition-format.md``).

Layout (exactly as the spec): root attributes ``format`` = ``"holo-acquisition"``,
``format_version`` = 1, ``geometry``, ``wavelength_um``, ``pixel_size_um``, ``medium_index``,
``objective_na`` (plus any further attributes, kept in ``Acquisition.metadata`` and written
back on rewrite); datasets ``holograms`` (A, Y, X) real, ``background`` (A, Y, X) or (Y, X)
real, ``fields`` (A, Y, X) complex u/u0, ``illumination_na`` (A, 2), ``angles`` (A,) with the
attribute ``rotation_axis``. A simulated acquisition may carry the group ``/ground_truth``
(datasets ``ri``, ``semantic``, ``instance``; attributes ``voxel_size_um``, ``medium_index``,
``classes`` JSON object, ``semantic_names`` JSON list). Physics conventions: holo.conventions.

Lazy reading
------------
``read_acquisition(path, lazy=True)`` returns an :class:`~holo.model.Acquisition` whose
``holograms``, ``background`` and ``fields`` are read-only ``h5py.Dataset`` objects. Each
dataset keeps its HDF5 file open for as long as the dataset (or the Acquisition holding it) is
referenced, so the arrays stay readable; the file is closed when the last of them is garbage
collected, or at once with :func:`close_acquisition`. ``lazy=False`` loads every array into
memory and closes the file before returning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from holo.errors import FormatError, ValidationError
from holo.io._atomic import atomic_path
from holo.io._hdf5_safety import check_hdf5_file
from holo.memory import check_memory
from holo.model import Acquisition

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "read_acquisition",
    "write_acquisition",
    "close_acquisition",
    "is_acquisition_file",
    "check_acquisition_frames",
]

FORMAT_NAME = "holo-acquisition"
FORMAT_VERSION = 1

_REQUIRED_ATTRS = ("geometry", "wavelength_um", "pixel_size_um", "medium_index", "objective_na")
_RESERVED_ATTRS = ("format", "format_version", *_REQUIRED_ATTRS, "rotation_axis")
_DATASETS = ("holograms", "background", "fields", "illumination_na", "angles")
_GT_ARRAYS = {"ri": np.float32, "semantic": np.uint8, "instance": np.int32}

#: Bytes read at once when scanning frames for non-finite values.
_SCAN_BLOCK_BYTES = 64 * 2**20

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# -- small helpers -------------------------------------------------------------------------
def _to_python(value: Any) -> Any:
    """HDF5 attribute value -> plain Python (str, int, float, list) where it is a scalar."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO" and value.size == 1:
            return _to_python(value.reshape(-1)[0])
        if value.dtype.kind in "SO":
            return [_to_python(v) for v in value.reshape(-1)]
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attr_for_hdf5(value: Any) -> Any:
    """Python metadata value -> an HDF5 attribute: numbers and strings as they are, lists of
    strings as string arrays, lists of numbers as arrays, anything else as a JSON string."""
    import h5py

    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return np.asarray(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return "null"
    return value


def is_acquisition_file(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file whose root attribute ``format`` is holo-acquisition."""
    import h5py

    try:
        with open(path, "rb") as fh:
            if fh.read(8) != HDF5_SIGNATURE:
                return False
        with h5py.File(path, "r") as f:
            return _to_python(f.attrs.get("format")) == FORMAT_NAME
    except OSError:
        return False


def _open_h5(path: Path):
    import h5py

    if not path.exists():
        raise FormatError("no such file", path=path, item="file")
    if path.is_dir():
        raise FormatError("is a folder, expected an HDF5 file", path=path, item="file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"not a readable HDF5 file ({' '.join(str(exc).split())})", path=path, item="file") from None
    try:
        check_hdf5_file(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _root_attr(f, name: str, path: Path) -> Any:
    if name not in f.attrs:
        raise FormatError("missing required root attribute", path=path, item=name)
    try:
        return _to_python(f.attrs[name])
    except (OSError, TypeError, ValueError) as exc:
        raise FormatError(f"unreadable attribute ({exc})", path=path, item=name) from None


def _number_attr(f, name: str, path: Path) -> float:
    v = _root_attr(f, name, path)
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(-1)[0].item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValidationError(f"must be a number, got {v!r}", path=path, item=name)
    return float(v)


def _dataset(f, name: str, path: Path):
    import h5py

    if name not in f:
        return None
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise FormatError("must be a dataset, found a group", path=path, item=name)
    return obj


def _small_float_array(ds, name: str, path: Path) -> np.ndarray:
    if ds.dtype.kind not in "uif":
        raise ValidationError(f"must be a real number array, got dtype {ds.dtype}", path=path, item=name)
    try:
        arr = np.asarray(ds[()], dtype=np.float64)
    except OSError as exc:
        raise FormatError(f"unreadable dataset ({' '.join(str(exc).split())})", path=path, item=name) from None
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValidationError(f"contains {bad} non-finite value(s) (NaN or inf)", path=path, item=name)
    return arr


def scan_frames_finite(ds, name: str, path: Path | str | None = None, *, constant: bool = False) -> None:
    """Raise :class:`ValidationError` if a frame of ``ds`` (A, Y, X) holds NaN or inf, or,
    with ``constant``, if a frame is constant (e.g. all zero: no hologram was recorded).

    Frames are read in blocks of about 64 MiB and reduced to one sum per frame
    (a sum is non-finite exactly when a term is non-finite, barring float64 overflow of
    finite data, which needs values near 1e300), so memory stays bounded. Integer data
    cannot be non-finite; it is read only for the ``constant`` check.
    """
    kind = np.dtype(ds.dtype).kind
    if kind not in "fc" and not constant:
        return
    shape = tuple(ds.shape)
    if len(shape) == 2:
        shape = (1, *shape)
        frames = lambda a, b: np.asarray(ds[()])[None]  # noqa: E731 - single frame
    else:
        frames = lambda a, b: np.asarray(ds[a:b])  # noqa: E731
    frame_bytes = max(1, int(np.prod(shape[1:])) * np.dtype(ds.dtype).itemsize)
    step = max(1, _SCAN_BLOCK_BYTES // frame_bytes)
    for a in range(0, shape[0], step):
        b = min(shape[0], a + step)
        try:
            block = frames(a, b)
        except OSError as exc:
            raise FormatError(
                f"frames {a}..{b - 1} unreadable ({' '.join(str(exc).split())})", path=path, item=name
            ) from None
        if kind == "c":
            sums = block.real.sum(axis=(1, 2), dtype=np.float64) + block.imag.sum(axis=(1, 2), dtype=np.float64)
        else:
            sums = block.sum(axis=(1, 2), dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(sums))
        if bad.size:
            raise ValidationError(
                f"frame {a + int(bad[0])} contains non-finite values (NaN or inf)", path=path, item=name
            )
        if constant:
            flat = np.flatnonzero(block.max(axis=(1, 2)) == block.min(axis=(1, 2)))
            if flat.size:
                i = int(flat[0])
                raise ValidationError(f"frame {a + i} is constant (every pixel {block[i].flat[0]!r}): no hologram recorded",
                                      path=path, item=name)


def _read_ground_truth(g, path: Path) -> dict:
    import h5py

    item = "ground_truth"
    if not isinstance(g, h5py.Group):
        raise FormatError("must be a group", path=path, item=item)
    gt: dict[str, Any] = {}
    shape = None
    for key, dtype in _GT_ARRAYS.items():
        if key not in g or not isinstance(g[key], h5py.Dataset):
            raise FormatError("missing dataset", path=path, item=f"{item}/{key}")
        ds = g[key]
        if len(ds.shape) != 3:
            raise ValidationError(f"must be 3D (Z, Y, X), got shape {ds.shape}", path=path, item=f"{item}/{key}")
        if shape is None:
            shape = ds.shape
        elif ds.shape != shape:
            raise ValidationError(f"shape {ds.shape} differs from ri {shape}", path=path, item=f"{item}/{key}")
        expected_kind = "f" if key == "ri" else "iu"
        if ds.dtype.kind not in expected_kind:
            raise ValidationError(f"wrong dtype {ds.dtype}", path=path, item=f"{item}/{key}")
        arr = np.asarray(ds[()]).astype(dtype, copy=False)
        if key == "ri" and not np.all(np.isfinite(arr)):
            raise ValidationError("contains non-finite values", path=path, item=f"{item}/{key}")
        gt[key] = arr
    for key in ("voxel_size_um", "medium_index", "classes", "semantic_names"):
        if key not in g.attrs:
            raise FormatError("missing attribute", path=path, item=f"{item}/{key}")
    vs = np.asarray(g.attrs["voxel_size_um"], dtype=np.float64).reshape(-1)
    if vs.shape != (3,) or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValidationError(f"must be 3 positive numbers, got {vs.tolist()}", path=path, item=f"{item}/voxel_size_um")
    gt["voxel_size_um"] = tuple(float(v) for v in vs)
    n_m = float(np.asarray(g.attrs["medium_index"]).reshape(-1)[0])
    if not np.isfinite(n_m) or n_m <= 0:
        raise ValidationError(f"invalid value {n_m}", path=path, item=f"{item}/medium_index")
    gt["medium_index"] = n_m
    try:
        classes = json.loads(_to_python(g.attrs["classes"]))
        names = json.loads(_to_python(g.attrs["semantic_names"]))
        gt["classes"] = {int(k): str(v) for k, v in dict(classes).items()}
        gt["semantic_names"] = [str(v) for v in names]
    except (TypeError, ValueError) as exc:
        raise FormatError(f"invalid JSON ({exc})", path=path, item=f"{item}/classes") from None
    return gt


# -- public API ------------------------------------------------------------------------------
def read_acquisition(path: str | Path, lazy: bool = True, *, check_frames: bool = True) -> Acquisition:
    """Read and validate an acquisition HDF5 file.

    Parameters
    ----------
    path : str or Path
        File in the layout of ``docs/acquisition-format.md`` (version 1).
    lazy : bool
        Keep ``holograms``, ``background`` and ``fields`` as ``h5py.Dataset`` (read on
        slicing; see the module docstring for when the file closes). ``False`` loads them.
    check_frames : bool
        Scan every floating-point frame for NaN/inf (block-wise, one sum per frame).

    Returns
    -------
    Acquisition
        With ``metadata`` = the further root attributes, ``ground_truth`` when present
        (NumPy arrays), ``source`` = ``str(path)``.

    Raises
    ------
    FormatError
        Unreadable, truncated or non-HDF5 file; wrong ``format``/``format_version``; missing
        attribute or dataset.
    ValidationError
        Wrong dtypes, mismatched shapes, NA > medium index, NaN in arrays or frames.
    """
    path = Path(path)
    f = _open_h5(path)
    ok = False
    try:
        acq = _read_open_file(f, path, check_frames=check_frames)
        if not lazy:
            loaded = [getattr(acq, k) for k in ("holograms", "background", "fields")]
            check_memory(sum(float(np.prod(a.shape, dtype=np.float64)) * a.dtype.itemsize for a in loaded if a is not None),
                         path=path, item="holograms" if acq.holograms is not None else "fields", what="loading the frames")
            for key in ("holograms", "background", "fields"):
                val = getattr(acq, key)
                if val is not None:
                    setattr(acq, key, np.asarray(val[()]))
            f.close()
        else:
            acq._h5file = f  # keeps the handle reachable for close_acquisition()
        ok = True
        return acq
    except OSError as exc:
        raise FormatError(f"unreadable HDF5 content ({' '.join(str(exc).split())})", path=path, item="file") from None
    finally:
        if not ok:
            f.close()


def close_acquisition(acq: Acquisition) -> None:
    """Close the HDF5 file behind a lazily read acquisition (its datasets become unreadable)."""
    f = getattr(acq, "_h5file", None)
    if f is not None:
        f.close()
        acq._h5file = None


def _read_open_file(f, path: Path, *, check_frames: bool) -> Acquisition:
    fmt = _root_attr(f, "format", path)
    if fmt != FORMAT_NAME:
        raise FormatError(f"must be {FORMAT_NAME!r}, got {fmt!r}", path=path, item="format")
    ver = _root_attr(f, "format_version", path)
    if isinstance(ver, np.ndarray) and ver.size == 1:
        ver = ver.reshape(-1)[0].item()
    if isinstance(ver, bool) or not isinstance(ver, (int, float)) or float(ver) != FORMAT_VERSION:
        raise FormatError(f"unsupported version {ver!r} (this reader handles {FORMAT_VERSION})", path=path, item="format_version")
    geometry = _root_attr(f, "geometry", path)
    if not isinstance(geometry, str):
        raise ValidationError(f"must be a string, got {geometry!r}", path=path, item="geometry")
    numbers = {k: _number_attr(f, k, path) for k in _REQUIRED_ATTRS[1:]}

    ds = {k: _dataset(f, k, path) for k in _DATASETS}
    if ds["holograms"] is None and ds["fields"] is None:
        raise FormatError("missing dataset: the file needs 'holograms' or 'fields'", path=path, item="holograms")
    if ds["holograms"] is not None and ds["background"] is None:
        raise FormatError("missing dataset (required with 'holograms')", path=path, item="background")
    for key in ("holograms", "background"):
        if ds[key] is not None and ds[key].dtype.kind not in "uif":
            raise ValidationError(f"must be a real dtype, got {ds[key].dtype}", path=path, item=key)
    if ds["fields"] is not None and ds["fields"].dtype.kind != "c":
        raise ValidationError(f"must be complex (complex64/complex128), got {ds['fields'].dtype}", path=path, item="fields")

    illum = None if ds["illumination_na"] is None else _small_float_array(ds["illumination_na"], "illumination_na", path)
    angles = None if ds["angles"] is None else _small_float_array(ds["angles"], "angles", path)
    rotation_axis = "y"
    if ds["angles"] is not None and "rotation_axis" in ds["angles"].attrs:
        rotation_axis = _to_python(ds["angles"].attrs["rotation_axis"])
    elif "rotation_axis" in f.attrs:
        rotation_axis = _to_python(f.attrs["rotation_axis"])

    metadata = {k: _to_python(f.attrs[k]) for k in f.attrs if k not in _RESERVED_ATTRS}
    gt = _read_ground_truth(f["ground_truth"], path) if "ground_truth" in f else None

    # The model checks geometry, ranges, NA <= n_m, shapes and the small arrays.
    acq = Acquisition(
        geometry=geometry,
        holograms=ds["holograms"],
        background=ds["background"],
        fields=ds["fields"],
        illumination_na=illum,
        angles=angles,
        rotation_axis=rotation_axis,
        metadata=metadata,
        ground_truth=gt,
        source=str(path),
        **numbers,
    )
    if check_frames:
        check_acquisition_frames(acq)
    return acq


def check_acquisition_frames(acq: Acquisition) -> None:
    """Scan the frames a reconstruction uses (``fields``, else ``holograms`` and
    ``background``) for NaN/inf and constant hologram frames (:func:`scan_frames_finite`),
    block-wise. :func:`read_acquisition` calls it unless ``check_frames=False``."""
    used = ("fields",) if acq.fields is not None else ("holograms", "background")
    for key in used:
        scan_frames_finite(getattr(acq, key), key, acq.source, constant=key in ("holograms", "background"))


def _write_big(f, name: str, arr, *, compression=None) -> None:
    """Copy an array-like (NumPy, h5py, dask) into a new dataset, one block of frames at a time."""
    shape = tuple(int(s) for s in arr.shape)
    dtype = np.dtype(arr.dtype)
    chunks = (1, *shape[1:]) if len(shape) == 3 else None
    dset = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, compression=compression)
    if isinstance(arr, np.ndarray) or len(shape) < 3:
        dset[...] = np.asarray(arr)
        return
    frame_bytes = max(1, int(np.prod(shape[1:])) * dtype.itemsize)
    step = max(1, _SCAN_BLOCK_BYTES // frame_bytes)
    for a in range(0, shape[0], step):
        block = arr[a : a + step]
        if hasattr(block, "compute"):
            block = block.compute()
        dset[a : a + step] = np.asarray(block)


def write_acquisition(path: str | Path, acq: Acquisition, *, compression: str | None = None) -> Path:
    """Write ``acq`` in the layout of ``docs/acquisition-format.md`` (version 1), atomically.

    The file is written under a temporary name beside ``path`` and renamed on success, so
    rewriting the file an acquisition was lazily read from is safe. ``acq.metadata`` becomes
    further root attributes (dicts/lists of non-numbers as JSON strings); ``acq.ground_truth``
    becomes the group ``/ground_truth``. Frames are chunked one per chunk.

    Parameters
    ----------
    path : str or Path
    acq : Acquisition
    compression : {None, "gzip", "lzf"}
        HDF5 compression of the frame datasets.

    Returns
    -------
    Path
    """
    import h5py

    if not isinstance(acq, Acquisition):
        raise ValueError(f"acq: expected an Acquisition, got {type(acq).__name__}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in acq.metadata.items():
                if k in _RESERVED_ATTRS:
                    continue
                f.attrs[k] = _attr_for_hdf5(v)
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["geometry"] = acq.geometry
            for k in _REQUIRED_ATTRS[1:]:
                f.attrs[k] = np.float64(getattr(acq, k))
            for key in ("holograms", "background", "fields"):
                arr = getattr(acq, key)
                if arr is not None:
                    _write_big(f, key, arr, compression=compression)
            if acq.illumination_na is not None:
                f.create_dataset("illumination_na", data=np.asarray(acq.illumination_na, dtype=np.float64))
            if acq.angles is not None:
                d = f.create_dataset("angles", data=np.asarray(acq.angles, dtype=np.float64))
                d.attrs["rotation_axis"] = acq.rotation_axis
            if acq.ground_truth is not None:
                _write_ground_truth(f, acq.ground_truth)
    return path


def _write_ground_truth(f, gt: dict) -> None:
    g = f.create_group("ground_truth")
    for key, dtype in _GT_ARRAYS.items():
        if key not in gt:
            raise ValueError(f"acq.ground_truth: missing {key!r}")
        g.create_dataset(key, data=np.asarray(gt[key]).astype(dtype, copy=False), compression="gzip", compression_opts=1)
    g.attrs["voxel_size_um"] = np.asarray(gt["voxel_size_um"], dtype=np.float64)
    g.attrs["medium_index"] = np.float64(gt["medium_index"])
    g.attrs["classes"] = json.dumps({str(int(k)): str(v) for k, v in dict(gt.get("classes", {})).items()})
    g.attrs["semantic_names"] = json.dumps([str(v) for v in gt.get("semantic_names", [])])
