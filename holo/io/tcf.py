"""Tomocube TCF files (HDF5): reading every known variant and writing them back.

Layout (see the TCF section of the shared domain notes)
-------------------------------------------------------
* Every attribute is a 1-element array; strings are fixed-length bytes.
* Root attributes ``FormatVersion``, ``SoftwareVersion``, ``CreateDate``, ``Title``, ...
* ``/Data/3D``: attributes ``DataCount``, ``SizeX/Y/Z``, ``ResolutionX/Y/Z`` (µm),
  ``TimeInterval`` (s), ``RIMin``, ``RIMax``; frames ``/Data/3D/000000``, ``000001``, ...
  as (Z, Y, X) datasets. Stored values: FormatVersion < 1.3 → float RI; ≥ 1.3 → uint16
  v = RI × 10⁴ (versions compared numerically, "1.10" > "1.3").
* Tiled "LDM" frames: a frame is a group with ``NumberOfTiles``, ``ScalarType`` (0 → uint16,
  RI = v/10⁴; 1 → uint8, RI = v/10³ + ``RIMin``), ``DataSizeX/Y/Z`` and tiles ``TILE_nn``
  carrying ``SamplingStep`` (1 = full resolution; others are skipped) and
  ``DataIndexOffsetPoint{X,Y,Z}`` / ``DataIndexLastPoint{X,Y,Z}`` (0-based, inclusive). A tile
  dataset may be larger than its index range (padding), only the range is used.
* ``/Data/2DMIP``: (Y, X) frames, same encodings. ``/Data/3DFL``: attribute ``Channels``,
  frames ``/Data/3DFL/CH{n}/{%06d}`` (uint8 or uint16 intensities), each ``CHn`` with
  ``OffsetZ`` (µm); its own ``DataCount`` and resolution.
* ``/Info/Device``: ``RI`` (medium), ``Wavelength`` (µm), ``NA``, ``Magnification``.
* ``RIMin``/``RIMax`` values above 100 are RI × 10⁴.

RI frames are returned as a lazy dask array (one chunk per frame, each a delayed read that
opens the file), so a long time-lapse opens at once and the Tomogram pickles cleanly.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

import hdf5plugin  # noqa: F401 - registers the HDF5 compression filters (LZ4, ...)
import numpy as np

from holo.errors import FormatError, ValidationError
from holo.io._atomic import atomic_path
from holo.io._hdf5_safety import check_hdf5_file
from holo.memory import check_memory
from holo.model import FluorescenceChannel, Tomogram, software_version

__all__ = ["read_tcf", "write_tcf", "tcf_version", "is_tcf_file"]

_TILE_RE = re.compile(r"^TILE_(\d+)$")
_ROOT_STRING_ATTRS = (
    "FormatVersion",
    "SoftwareVersion",
    "CreateDate",
    "RecordingTime",
    "Title",
    "Description",
    "DataID",
    "UniqueID",
    "UserID",
    "DeviceHost",
    "DeviceSerial",
    "DeviceModelType",
)


# -- attribute helpers ---------------------------------------------------------------------
def _scalar(value: Any) -> Any:
    """A TCF attribute (1-element array, bytes for strings) -> Python scalar."""
    arr = np.asarray(value)
    if arr.size == 1:
        v = arr.reshape(-1)[0]
        if isinstance(v, bytes):
            return v.decode("utf-8", errors="replace").rstrip("\x00")
        if isinstance(v, np.generic):
            return v.item()
        return v
    if arr.dtype.kind == "S":
        return [b.decode("utf-8", errors="replace") for b in arr.reshape(-1)]
    return arr.tolist()


def _get(obj, name: str, path, *, default: Any = ...) -> Any:
    if name not in obj.attrs:
        if default is ...:
            raise FormatError("missing attribute", path=path, item=f"{obj.name.rstrip('/')}/{name}".lstrip("/"))
        return default
    return _scalar(obj.attrs[name])


def _num(obj, name: str, path, default: Any = ...) -> float:
    v = _get(obj, name, path, default=default)
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValidationError(f"must be a number, got {v!r}", path=path, item=f"{obj.name}/{name}".lstrip("/")) from None


def tcf_version(text: str) -> tuple[int, ...]:
    """Parse a TCF ``FormatVersion`` such as ``"1.4.1"`` into a tuple compared numerically.

    >>> tcf_version("1.10") > tcf_version("1.3")
    True
    """
    parts = re.findall(r"\d+", str(text))
    if not parts:
        raise ValueError(f"FormatVersion: cannot parse {text!r}")
    return tuple(int(p) for p in parts)


def _ri_from_attr(v: float) -> float:
    """RIMin/RIMax may be stored as RI or as RI × 10⁴ (values above 100)."""
    return v / 1e4 if v > 100 else v


def is_tcf_file(path: str | Path) -> bool:
    """True when ``path`` is HDF5 with a root ``FormatVersion`` attribute and a ``Data`` group."""
    import h5py

    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89HDF\r\n\x1a\n":
                return False
        with h5py.File(path, "r") as f:
            return "FormatVersion" in f.attrs and "Data" in f
    except OSError:
        return False


# -- frame decoding ------------------------------------------------------------------------
def _decode_values(raw: np.ndarray, *, kind: str, scalar_type: int | None, ri_min: float | None) -> np.ndarray:
    """Stored values -> float32 RI (kind 'ri') or the raw intensities (kind 'raw')."""
    if kind == "raw":
        return raw
    if raw.dtype.kind == "f":
        return raw.astype(np.float32, copy=False)
    if scalar_type == 1:
        if ri_min is None:
            raise ValueError("uint8 LDM frame without RIMin")
        return (raw.astype(np.float32) / np.float32(1e3) + np.float32(ri_min)).astype(np.float32)
    return (raw.astype(np.float32) / np.float32(1e4)).astype(np.float32)


def _assemble_ldm(g, path, ndim: int) -> tuple[np.ndarray, int, float | None]:
    """Assemble the full-resolution tiles of an LDM frame group into one array."""
    axes = "ZYX"[3 - ndim :]
    size = tuple(int(_num(g, f"DataSize{a}", path)) for a in axes)
    if min(size) < 1:
        raise FormatError(f"frame size {size} must be positive", path=path, item=f"{g.name}/DataSize{axes}")
    scalar_type = int(_num(g, "ScalarType", path, default=0))
    if scalar_type not in (0, 1):
        raise FormatError(f"unknown ScalarType {scalar_type}", path=path, item=f"{g.name}/ScalarType")
    out = None
    covered = np.zeros(size, dtype=bool)  # which voxels a full-resolution tile has filled
    for key in g:
        if not _TILE_RE.match(key):
            continue
        t = g[key]
        if int(_num(t, "SamplingStep", path, default=1)) != 1:
            continue
        lo = [int(_num(t, f"DataIndexOffsetPoint{a}", path)) for a in axes]
        hi = [int(_num(t, f"DataIndexLastPoint{a}", path)) for a in axes]
        n = [h - l_ + 1 for l_, h in zip(lo, hi)]
        if any(v <= 0 for v in n) or any(h >= s for h, s in zip(hi, size)) or len(t.shape) != ndim or any(
            v > s for v, s in zip(n, t.shape)
        ):
            raise FormatError(f"index range {lo}..{hi} does not fit the tile {t.shape} or frame {size}", path=path, item=t.name)
        region = tuple(slice(l_, h + 1) for l_, h in zip(lo, hi))
        if covered[region].any():
            raise FormatError(f"index range {lo}..{hi} overlaps another tile", path=path, item=t.name)
        if out is None:
            out = np.zeros(size, dtype=t.dtype)
        out[region] = t[tuple(slice(0, v) for v in n)]
        covered[region] = True
    if out is None:
        raise FormatError("no full-resolution tile (SamplingStep 1)", path=path, item=g.name)
    if not covered.all():
        first = tuple(int(v) for v in np.argwhere(~covered)[0])
        raise FormatError(f"tiles leave {int(np.count_nonzero(~covered))} of {covered.size} voxels uncovered "
                          f"(first at index {first})", path=path, item=g.name)
    ri_min = None
    if scalar_type == 1:
        holder = g if "RIMin" in g.attrs else g.parent
        ri_min = _ri_from_attr(_num(holder, "RIMin", path))
    return out, scalar_type, ri_min


def _read_frame(path: str, name: str, kind: str, ndim: int) -> np.ndarray:
    """Read one frame (dataset or LDM group) of a TCF file and decode it."""
    import h5py

    with h5py.File(path, "r") as f:
        obj = f[name]
        shape, dtype = _frame_info(obj, path, ndim)
        # stored values, float32 RI and (LDM) the coverage mask, all at once
        check_memory(float(np.prod(shape, dtype=np.float64)) * (dtype.itemsize + 4 + 1), path=path, item=name,
                     what="reading this frame")
        if isinstance(obj, h5py.Group):
            raw, scalar_type, ri_min = _assemble_ldm(obj, path, ndim)
        else:
            raw, scalar_type, ri_min = obj[()], None, None
            if raw.ndim != ndim:
                raise FormatError(f"must be {ndim}D, got shape {raw.shape}", path=path, item=name)
    out = _decode_values(raw, kind=kind, scalar_type=scalar_type, ri_min=ri_min)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValidationError(f"contains {bad} non-finite value(s) (NaN or inf)", path=path, item=name)
    return out


def _frame_info(obj, path, ndim: int) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and stored dtype of a frame without reading it."""
    import h5py

    if isinstance(obj, h5py.Group):
        axes = "ZYX"[3 - ndim :]
        shape = tuple(int(_num(obj, f"DataSize{a}", path)) for a in axes)
        if min(shape) < 1:
            raise FormatError(f"frame size {shape} must be positive", path=path, item=f"{obj.name}/DataSize{axes}")
        st = int(_num(obj, "ScalarType", path, default=0))
        return shape, np.dtype(np.uint8 if st == 1 else np.uint16)
    if len(obj.shape) != ndim:
        raise FormatError(f"must be {ndim}D, got shape {obj.shape}", path=path, item=obj.name)
    return tuple(obj.shape), obj.dtype


def _frame_names(g) -> list[str]:
    names = sorted(k for k in g if re.fullmatch(r"\d{6}", k))
    return names


def _lazy_series(path: str, g, *, kind: str, ndim: int):
    """dask array (T, ...) or (...) of the frames of group ``g``, one chunk per frame."""
    import dask
    import dask.array as da

    names = _frame_names(g)
    if not names:
        raise FormatError("holds no frames (000000, ...)", path=path, item=g.name)
    shape0, dt0 = _frame_info(g[names[0]], path, ndim)
    out_dtype = np.dtype(np.float32) if kind == "ri" else dt0
    if kind == "ri" and dt0.kind not in "uif":
        raise ValidationError(f"unexpected dtype {dt0}", path=path, item=g[names[0]].name)
    parts = []
    for n in names:
        shape, _ = _frame_info(g[n], path, ndim)
        if shape != shape0:
            raise ValidationError(f"shape {shape} differs from the first frame {shape0}", path=path, item=f"{g.name}/{n}")
        d = dask.delayed(_read_frame, pure=True)(path, f"{g.name}/{n}", kind, ndim)
        parts.append(da.from_delayed(d, shape=shape0, dtype=out_dtype))
    if len(parts) == 1:
        return parts[0]
    return da.stack(parts)


def _resolution(g, path) -> tuple[float, float, float]:
    vs = tuple(_num(g, f"Resolution{a}", path) for a in "ZYX")
    if not all(np.isfinite(v) and v > 0 for v in vs):
        raise ValidationError(f"must be positive, got {vs}", path=path, item=f"{g.name}/ResolutionZ/Y/X")
    return vs


def _time_step(g, path, n_frames: int) -> float | None:
    if n_frames < 2:
        return None
    dt = _num(g, "TimeInterval", path, default=0.0)
    return dt if np.isfinite(dt) and dt > 0 else None


# -- public API -----------------------------------------------------------------------------
def read_tcf(path: str | Path, *, medium_index: float | None = None) -> Tomogram:
    """Read a Tomocube TCF file (any variant of the module docstring) as a lazy Tomogram.

    Parameters
    ----------
    path : str or Path
    medium_index : float, optional
        Used only when the file does not record ``/Info/Device/RI``.

    Returns
    -------
    Tomogram
        ``ri`` float32 dask array (Z, Y, X) or (T, Z, Y, X), one chunk per frame;
        ``voxel_size_um`` from ``ResolutionZ/Y/X``; ``time_step_s`` from ``TimeInterval``;
        ``fluorescence`` {"CHn": FluorescenceChannel(dask array, ..., offset_z_um=OffsetZ)};
        ``mip`` (Y, X) float32 dask array (or (T, Y, X) for a time series), read on access;
        ``metadata`` the root attributes plus ``"Device"`` (the ``/Info/Device`` attributes).

    Raises
    ------
    FormatError
        Not HDF5, truncated, not a TCF layout, missing groups/attributes, broken tiles.
    """
    import h5py

    path = Path(path)
    spath = str(path)
    if not path.is_file():
        raise FormatError("no such file", path=path, item="file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"not a readable HDF5 file ({' '.join(str(exc).split())})", path=path, item="file") from None
    try:
        with f:
            check_hdf5_file(f, spath)
            return _read_tcf_open(f, spath, medium_index)
    except OSError as exc:
        raise FormatError(f"unreadable HDF5 content ({' '.join(str(exc).split())})", path=path, item="file") from None


def _read_tcf_open(f, path: str, medium_index: float | None) -> Tomogram:
    if "FormatVersion" not in f.attrs:
        raise FormatError("missing root attribute (not a TCF file)", path=path, item="FormatVersion")
    version_text = str(_scalar(f.attrs["FormatVersion"]))
    try:
        tcf_version(version_text)
    except ValueError:
        raise FormatError(f"cannot parse {version_text!r}", path=path, item="FormatVersion") from None
    if "Data/3D" not in f:
        raise FormatError("missing group", path=path, item="Data/3D")
    g3 = f["Data/3D"]
    ri = _lazy_series(path, g3, kind="ri", ndim=3)
    n_frames = ri.shape[0] if ri.ndim == 4 else 1
    voxel = _resolution(g3, path)

    device: dict[str, Any] = {}
    if "Info/Device" in f:
        device = {k: _scalar(v) for k, v in f["Info/Device"].attrs.items()}
    n_m = device.get("RI", medium_index)
    if n_m is None:
        raise FormatError("medium index not recorded; pass medium_index=", path=path, item="Info/Device/RI")
    wavelength = device.get("Wavelength")
    wavelength = float(wavelength) if wavelength is not None and float(wavelength) > 0 else None

    fluorescence = {}
    if "Data/3DFL" in f:
        gfl = f["Data/3DFL"]
        fl_voxel = _resolution(gfl, path) if "ResolutionX" in gfl.attrs else voxel
        for ch in sorted((k for k in gfl if re.fullmatch(r"CH\d+", k)), key=lambda s: int(s[2:])):
            gch = f[f"Data/3DFL/{ch}"]
            if not _frame_names(gch):
                continue
            data = _lazy_series(path, gch, kind="raw", ndim=3)
            n_fl = data.shape[0] if data.ndim == 4 else 1
            src = gch if "TimeInterval" in gch.attrs else gfl
            fluorescence[ch] = FluorescenceChannel(
                data=data,
                voxel_size_um=fl_voxel,
                offset_z_um=_num(gch, "OffsetZ", path, default=0.0),
                time_step_s=_time_step(src, path, n_fl),
                name=ch,
            )

    mip = None
    if "Data/2DMIP" in f and _frame_names(f["Data/2DMIP"]):
        mip = _lazy_series(path, f["Data/2DMIP"], kind="ri", ndim=2)  # read on access, like the RI

    metadata = {k: _scalar(v) for k, v in f.attrs.items()}
    metadata["Device"] = device
    return Tomogram(
        ri=ri,
        voxel_size_um=voxel,
        medium_index=float(n_m),
        wavelength_um=wavelength,
        time_step_s=_time_step(g3, path, n_frames),
        fluorescence=fluorescence,
        mip=mip,
        provenance={"source_file": path, "format": f"TCF {version_text}"},
        metadata=metadata,
        source=path,
    )


# -- writing ---------------------------------------------------------------------------------
def _set(obj, name: str, value: Any) -> None:
    """Write a TCF attribute: a 1-element array, strings as fixed-length bytes."""
    if isinstance(value, str):
        obj.attrs[name] = np.array([value.encode("utf-8")])
    elif isinstance(value, (bool, np.bool_)):
        obj.attrs[name] = np.array([int(value)], dtype=np.int64)
    elif isinstance(value, (int, np.integer)):
        obj.attrs[name] = np.array([value], dtype=np.int64)
    else:
        obj.attrs[name] = np.array([float(value)], dtype=np.float64)


def _encode(ri: np.ndarray, scalar_type: int, ri_min: float, item: str) -> np.ndarray:
    if scalar_type == 1:
        v = np.rint((ri.astype(np.float64) - ri_min) * 1e3)
        top = 255
    else:
        v = np.rint(ri.astype(np.float64) * 1e4)
        top = 65535
    if v.min() < 0 or v.max() > top:
        what = "uint8 (RIMin + 0..0.255)" if scalar_type == 1 else "uint16 (RI × 1e4 in 0..65535)"
        raise ValueError(f"scalar_type: RI range [{ri.min():.4f}, {ri.max():.4f}] of {item} does not fit {what}")
    return v.astype(np.uint8 if scalar_type == 1 else np.uint16)


def _compression_kwargs(compression: str | None) -> dict:
    if compression is None:
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4}
    if compression == "lz4":
        return dict(hdf5plugin.LZ4())
    raise ValueError(f"compression: must be None, 'gzip' or 'lz4', got {compression!r}")


def _write_frame(g, name: str, arr: np.ndarray, *, mode: str, ldm: bool, scalar_type: int, tile_shape, ri_min: float, comp: dict):
    """Write one frame as a dataset or, with ``ldm``, as a tiled group.

    mode: 'float' (float32 RI), 'uint16' (RI × 10⁴) or 'raw' (values as given).
    """
    if not ldm:
        if mode == "float":
            data = arr.astype(np.float32)
        elif mode == "uint16":
            data = _encode(arr, 0, 0.0, f"{g.name}/{name}")
        else:
            data = arr
        g.create_dataset(name, data=data, **comp)
        return
    ndim = arr.ndim
    axes = "ZYX"[3 - ndim :]
    fg = g.create_group(name)
    if mode == "raw":
        enc = arr
        st = 1 if arr.dtype == np.uint8 else 0
    else:
        st = scalar_type
        enc = _encode(arr, st, ri_min, f"{g.name}/{name}")
    if tile_shape is None:  # full Z extent, 64 × 64 laterally
        ts = tuple(min(s, 64) if i >= ndim - 2 else s for i, s in enumerate(arr.shape))
    else:
        ts = tuple(int(v) for v in tile_shape)[-ndim:]
        if len(ts) != ndim or min(ts) < 1:
            raise ValueError(f"tile_shape: needs positive (Z, Y, X) sizes, got {tile_shape!r}")
    for a, s in zip(axes, arr.shape):
        _set(fg, f"DataSize{a}", int(s))
    _set(fg, "ScalarType", int(st))
    _set(fg, "RIMin", float(ri_min))
    _set(fg, "RIMax", float(arr.max()))
    starts = np.stack(np.meshgrid(*[np.arange(0, s, t) for s, t in zip(arr.shape, ts)], indexing="ij"), -1).reshape(-1, ndim)
    n_tiles = len(starts) + 1
    width = max(2, len(str(n_tiles - 1)))
    for i, lo in enumerate(starts):
        hi = np.minimum(lo + np.array(ts), arr.shape) - 1
        tile = np.zeros(ts, dtype=enc.dtype)  # padded to the full tile shape
        n = hi - lo + 1
        tile[tuple(slice(0, v) for v in n)] = enc[tuple(slice(l_, h + 1) for l_, h in zip(lo, hi))]
        t = fg.create_dataset(f"TILE_{i:0{width}d}", data=tile, **comp)
        _set(t, "SamplingStep", 1)
        for a, l_, h in zip(axes, lo, hi):
            _set(t, f"DataIndexOffsetPoint{a}", int(l_))
            _set(t, f"DataIndexLastPoint{a}", int(h))
    # One overview tile at half resolution, as LDM files carry; readers must skip it.
    sub = enc[(slice(None, None, 2),) * ndim]
    t = fg.create_dataset(f"TILE_{n_tiles - 1:0{width}d}", data=sub, **comp)
    _set(t, "SamplingStep", 2)
    for a, s in zip(axes, sub.shape):
        _set(t, f"DataIndexOffsetPoint{a}", 0)
        _set(t, f"DataIndexLastPoint{a}", int(s) - 1)
    _set(fg, "NumberOfTiles", int(n_tiles))


def write_tcf(
    path: str | Path,
    tomo: Tomogram,
    *,
    format_version: str = "1.4.1",
    ldm: bool = False,
    scalar_type: int = 0,
    tile_shape: tuple[int, ...] | None = None,
    compression: str | None = None,
    progress=None,
) -> Path:
    """Write ``tomo`` as a TCF file of the requested variant, atomically.

    Parameters
    ----------
    path : str or Path
    tomo : Tomogram
    format_version : str
        Written to ``FormatVersion``; below 1.3 (numerically) frames are float32 RI, from 1.3
        on uint16 RI × 10⁴ (quantisation step 10⁻⁴, error ≤ 0.5·10⁻⁴).
    ldm : bool
        Tiled LDM frames (groups of ``TILE_nn``, padded at the edges, plus one
        half-resolution overview tile with ``SamplingStep`` 2).
    scalar_type : {0, 1}
        LDM encoding: 0 → uint16 RI × 10⁴; 1 → uint8 (RI − RIMin) × 10³ with RIMin the
        frame minimum rounded down to 10⁻³ (step 10⁻³; the frame's RI range must be < 0.255).
    tile_shape : tuple, optional
        LDM tile shape (Z, Y, X); default the full Z extent × 64 × 64.
    compression : {None, "gzip", "lz4"}
    progress : callable, optional
        ``progress(done, total)`` after each RI time frame.

    Returns
    -------
    Path
    """
    import h5py

    frame_kw = dict(mode=_frame_mode(format_version, ldm, scalar_type), ldm=ldm, scalar_type=scalar_type,
                    tile_shape=tile_shape, comp=_compression_kwargs(compression))
    path = Path(path)
    meta = dict(tomo.metadata or {})
    device = dict(meta.pop("Device", {}) or {})
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_root_attrs(f, meta, format_version)
            _write_ri(f, tomo, frame_kw, progress)
            if tomo.mip is not None:
                _write_mip(f, tomo, frame_kw)
            if tomo.fluorescence:
                _write_fluorescence(f, tomo, ldm=ldm, tile_shape=tile_shape, comp=frame_kw["comp"])
            _write_device(f, tomo, device)
    return path


def _frame_mode(format_version: str, ldm: bool, scalar_type: int) -> str:
    """``"float"`` (FormatVersion < 1.3) or ``"uint16"`` frames; a ValueError for a variant
    that does not exist."""
    if scalar_type not in (0, 1):
        raise ValueError(f"scalar_type: must be 0 or 1, got {scalar_type!r}")
    if scalar_type == 1 and not ldm:
        raise ValueError("scalar_type: uint8 (1) exists only in LDM files (ldm=True)")
    try:
        float_frames = tcf_version(format_version) < (1, 3)
    except ValueError:
        raise ValueError(f"format_version: cannot parse {format_version!r}") from None
    if ldm and float_frames:
        raise ValueError("format_version: LDM files need FormatVersion >= 1.3")
    return "float" if float_frames else "uint16"


def _write_root_attrs(f, meta: dict, format_version: str) -> None:
    """The tomogram's scalar metadata, then the TCF root attributes it lacks, then FormatVersion."""
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    for k, v in meta.items():
        if isinstance(v, (str, int, float, np.integer, np.floating)):
            _set(f, k, v)
    defaults = {
        "SoftwareVersion": f"holo {software_version()}",
        "CreateDate": now,
        "RecordingTime": now,
        "Title": "",
        "Description": "",
        "DataID": "",
        "UniqueID": "",
        "UserID": "",
        "DeviceHost": "",
        "DeviceSerial": "",
        "DeviceModelType": "",
    }
    for k, v in defaults.items():
        if k not in meta:
            _set(f, k, v)
    _set(f, "FormatVersion", str(format_version))


def _write_ri(f, tomo: Tomogram, frame_kw: dict, progress) -> None:
    """``Data/3D``: one frame per time point, with its RI range, time and position."""
    g3 = f.create_group("Data/3D")
    n_t = tomo.n_times
    ri_lo, ri_hi = np.inf, -np.inf
    for t in range(n_t):
        vol = tomo.frame(t)
        if not np.all(np.isfinite(vol)):
            raise ValidationError(f"frame {t} contains non-finite values", path=tomo.source, item="ri")
        lo, hi = float(vol.min()), float(vol.max())
        ri_lo, ri_hi = min(ri_lo, lo), max(ri_hi, hi)
        _write_frame(g3, f"{t:06d}", vol, ri_min=np.floor(lo * 1e3) / 1e3, **frame_kw)
        fr = g3[f"{t:06d}"]
        if not frame_kw["ldm"]:
            _set(fr, "RIMin", lo)
            _set(fr, "RIMax", hi)
        _set(fr, "Time", float(t * (tomo.time_step_s or 0.0)))
        for a in "XYZC":
            _set(fr, f"Position{a}", 0.0)
        if progress is not None:
            progress(t + 1, n_t)
    _write_group_attrs(g3, n_t, tomo.shape_zyx, tomo.voxel_size_um, tomo.time_step_s)
    _set(g3, "RIMin", ri_lo)
    _set(g3, "RIMax", ri_hi)


def _write_mip(f, tomo: Tomogram, frame_kw: dict) -> None:
    """``Data/2DMIP``: the 2D maximum-intensity projection(s)."""
    mip = np.asarray(tomo.mip, dtype=np.float32)
    mips = mip[None] if mip.ndim == 2 else mip
    g2 = f.create_group("Data/2DMIP")
    for t, m in enumerate(mips):
        _write_frame(g2, f"{t:06d}", m, ri_min=np.floor(float(m.min()) * 1e3) / 1e3, **frame_kw)
    _, Y, X = tomo.shape_zyx
    _write_group_attrs(g2, len(mips), (1, Y, X), tomo.voxel_size_um, tomo.time_step_s)
    _set(g2, "RIMin", float(mips.min()))
    _set(g2, "RIMax", float(mips.max()))


def _fluorescence_frame(vol, name: str) -> np.ndarray:
    """One fluorescence volume as uint8/uint16 (other dtypes rounded; must fit uint16)."""
    vol = np.asarray(vol.compute() if hasattr(vol, "compute") else vol)
    if vol.dtype not in (np.uint8, np.uint16):
        if vol.min() < 0 or vol.max() > 65535:
            raise ValueError(f"tomo.fluorescence[{name!r}]: values outside uint16")
        vol = np.rint(vol).astype(np.uint16)
    return vol


def _write_fluorescence(f, tomo: Tomogram, *, ldm: bool, tile_shape, comp: dict) -> None:
    """``Data/3DFL/CHn``: each channel (named CHn when its name is not of that form)."""
    gfl = f.create_group("Data/3DFL")
    first = None
    for i, (name, ch) in enumerate(tomo.fluorescence.items()):
        gname = str(name) if re.fullmatch(r"CH(\d+)", str(name)) else f"CH{i}"
        data = ch.data
        gch = gfl.create_group(gname)
        n_fl = int(data.shape[0]) if len(data.shape) == 4 else 1
        for t in range(n_fl):
            vol = _fluorescence_frame(data[t] if len(data.shape) == 4 else data, name)
            _write_frame(gch, f"{t:06d}", vol, mode="raw", ldm=ldm, scalar_type=0, tile_shape=tile_shape, ri_min=0.0, comp=comp)
        _set(gch, "OffsetZ", float(ch.offset_z_um))
        _write_group_attrs(gch, n_fl, tuple(data.shape[-3:]), ch.voxel_size_um, ch.time_step_s)
        if first is None:
            first = (n_fl, tuple(data.shape[-3:]), ch.voxel_size_um, ch.time_step_s)
    _write_group_attrs(gfl, *first)
    _set(gfl, "Channels", len(tomo.fluorescence))


def _write_device(f, tomo: Tomogram, device: dict) -> None:
    """``Info/Device``: the tomogram's device metadata with its medium index and wavelength."""
    gd = f.create_group("Info/Device")
    device = dict(device, RI=float(tomo.medium_index))
    if tomo.wavelength_um is not None:
        device["Wavelength"] = float(tomo.wavelength_um)
    device.setdefault("Wavelength", 0.0)
    device.setdefault("NA", 0.0)
    device.setdefault("Magnification", 0.0)
    for k, v in device.items():
        if isinstance(v, (str, int, float, np.integer, np.floating)):
            _set(gd, k, v)


def _write_group_attrs(g, n_frames: int, shape_zyx, voxel_zyx, time_step_s) -> None:
    _set(g, "DataCount", int(n_frames))
    for a, s, v in zip("ZYX", shape_zyx, voxel_zyx):
        _set(g, f"Size{a}", int(s))
        _set(g, f"Resolution{a}", float(v))
    _set(g, "TimeInterval", float(time_step_s or 0.0))
