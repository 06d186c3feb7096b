"""OME-TIFF for tomograms and label volumes (tifffile).

A tomogram file holds the RI as float32 in its first image (axes ZYX, or TZYX for a time
series) with ``PhysicalSizeX/Y/Z`` in µm (``PhysicalSize*Unit`` = µm) and, for a time series,
``TimeIncrement`` in s. Further images hold the 2D MIP (``Name="mip"``) and each fluorescence
channel (``Name="fluorescence:<name>"``) with its own physical sizes. Every image's OME
``Description`` is a JSON object ``{"holo": {...}}`` carrying what OME has no field for:
medium index, vacuum wavelength, provenance, metadata, Z offset of a fluorescence channel.

Reading accepts foreign OME-TIFFs too: an integer RI image is taken as RI × 10⁴ (the usual
uint16 export), physical sizes in nm/mm are converted to µm, and the medium index may be
passed when the file does not record it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from holo.errors import FormatError, ValidationError
from holo.io._atomic import atomic_path
from holo.memory import check_memory
from holo.model import FluorescenceChannel, Tomogram

__all__ = ["write_ome_tiff", "read_ome_tiff", "describe_ome_tiff", "write_labels_tiff", "read_labels_tiff", "is_ome_tiff", "ome_tiff_kind"]

_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micrometer": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "m": 1e6, "Å": 1e-4}
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _jsonable(obj: Any) -> Any:
    """Make metadata JSON-serialisable (NumPy scalars/arrays, tuples, paths)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 4096 else f"<array {obj.shape} {obj.dtype}>"
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def check_finite(arr: np.ndarray, path, item: str) -> np.ndarray:
    """``arr`` unchanged, or :class:`ValidationError` naming ``item`` when it holds NaN or inf
    (a count and the first (T,) Z, Y, X index)."""
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        first = tuple(int(v) for v in np.argwhere(bad)[0])
        raise ValidationError(f"contains {int(np.count_nonzero(bad))} non-finite value(s) (NaN or inf), first at index {first}",
                              path=path, item=item)
    return arr


def is_ome_tiff(path: str | Path) -> bool:
    """True for a TIFF file whose first ImageDescription is OME-XML."""
    import tifffile

    try:
        with open(path, "rb") as fh:
            if fh.read(4) not in _TIFF_MAGICS:
                return False
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome)
    except (OSError, ValueError, tifffile.TiffFileError):
        return False


def _image_meta(name: str, voxel_size_um, holo: dict, *, axes: str, time_step_s=None) -> dict:
    dz, dy, dx = (float(v) for v in voxel_size_um)
    md = {
        "axes": axes,
        "Name": name,
        "PhysicalSizeX": dx,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": dy,
        "PhysicalSizeYUnit": "µm",
        "Description": json.dumps({"holo": _jsonable(holo)}),
    }
    if "Z" in axes:
        md.update({"PhysicalSizeZ": dz, "PhysicalSizeZUnit": "µm"})
    if "T" in axes and time_step_s:
        md.update({"TimeIncrement": float(time_step_s), "TimeIncrementUnit": "s"})
    return md


def _as_numpy(a) -> np.ndarray:
    return np.asarray(a.compute() if hasattr(a, "compute") else a)


def _tomogram_meta(tomo: Tomogram) -> dict:
    """The ``holo`` metadata record of a tomogram that the OME writers store beside the RI."""
    return {
        "kind": "tomogram",
        "medium_index": tomo.medium_index,
        "wavelength_um": tomo.wavelength_um,
        "time_step_s": tomo.time_step_s,
        "provenance": tomo.provenance,
        "metadata": tomo.metadata,
    }


def _checked_labels(labels, voxel_size_um) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Validate a label volume to write: ``(labels (Z, Y, X) integer, voxel_size_um)``.

    Boolean masks become uint8; a dask array is computed.

    Raises
    ------
    ValueError
        ``labels`` not 3D or not integer/bool, ``voxel_size_um`` not 3 positive values.
    """
    arr = _as_numpy(labels)
    if arr.ndim != 3:
        raise ValueError(f"labels: must be 3D (Z, Y, X), got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise ValueError(f"labels: must be an integer array, got dtype {arr.dtype}")
    vs = tuple(float(v) for v in voxel_size_um)
    if len(vs) != 3 or not all(np.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size_um: needs 3 positive values (dz, dy, dx), got {voxel_size_um!r}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    return arr, vs


def write_ome_tiff(path: str | Path, tomo: Tomogram, *, compression: str | None = None, progress=None) -> Path:
    """Write a tomogram as OME-TIFF (float32 RI, ZYX or TZYX, sizes in µm), atomically.

    Parameters
    ----------
    path : str or Path
    tomo : Tomogram
    compression : str or None
        tifffile compression of every image: None (default; float RI compresses poorly
        and zlib costs ≈0.1 s per MB) or e.g. ``"zlib"`` (lossless).
    progress : callable, optional
        ``progress(done, total)`` after each RI time frame.

    Returns
    -------
    Path
    """
    import tifffile

    path = Path(path)
    holo = _tomogram_meta(tomo)
    axes = "TZYX" if tomo.has_time else "ZYX"
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, ome=True, bigtiff=True) as tw:
            # one time frame in memory at a time: the pages (Y, X) come from a generator
            def pages():
                for t in range(tomo.n_times):
                    if t and progress is not None:
                        progress(t, tomo.n_times)  # frames 0..t-1 are written
                    yield from tomo.frame(t)

            tw.write(
                pages(),
                shape=tuple(int(s) for s in tomo.ri.shape),
                dtype=np.float32,
                compression=compression,
                metadata=_image_meta("ri", tomo.voxel_size_um, holo, axes=axes, time_step_s=tomo.time_step_s),
            )
            if progress is not None:
                progress(tomo.n_times, tomo.n_times)
            if tomo.mip is not None:
                mip = np.asarray(tomo.mip, dtype=np.float32)
                tw.write(mip, compression=compression, metadata=_image_meta("mip", tomo.voxel_size_um, {"kind": "mip"}, axes="TYX"[3 - mip.ndim :]))
            for name, ch in tomo.fluorescence.items():
                data = _as_numpy(ch.data)
                ax = "TZYX" if data.ndim == 4 else "ZYX"
                info = {"kind": "fluorescence", "name": str(name), "offset_z_um": ch.offset_z_um, "time_step_s": ch.time_step_s}
                tw.write(data, compression=compression, metadata=_image_meta(f"fluorescence:{name}", ch.voxel_size_um, info, axes=ax, time_step_s=ch.time_step_s))
    return path


def _parse_ome(xml: str, path) -> list[dict]:
    """Per OME Image: name, physical sizes (µm), time increment, axes order, holo JSON."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise FormatError(f"invalid OME-XML ({exc})", path=path, item="OME-XML") from None
    out = []
    for img in root.iter():
        if not img.tag.endswith("}Image") and img.tag != "Image":
            continue
        info: dict[str, Any] = {"name": img.get("Name", ""), "holo": {}}
        for child in img:
            if child.tag.endswith("Description") and child.text:
                try:
                    info["holo"] = dict(json.loads(child.text).get("holo", {}))
                except (ValueError, AttributeError):
                    info["holo"] = {}
            if child.tag.endswith("Pixels"):
                for a in "XYZ":
                    v = child.get(f"PhysicalSize{a}")
                    if v is not None:
                        unit = child.get(f"PhysicalSize{a}Unit", "µm")
                        if unit not in _UNIT_TO_UM:
                            raise FormatError(f"unsupported unit {unit!r}", path=path, item=f"PhysicalSize{a}Unit")
                        try:
                            size = float(v)
                        except ValueError:
                            raise FormatError(f"must be a number, got {v!r}", path=path, item=f"PhysicalSize{a}") from None
                        if not (np.isfinite(size) and size > 0):
                            raise ValidationError(f"must be positive and finite, got {v!r}", path=path, item=f"PhysicalSize{a}")
                        info[a] = size * _UNIT_TO_UM[unit]
                ti = child.get("TimeIncrement")
                if ti is not None:
                    scale = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}.get(child.get("TimeIncrementUnit", "s"), 1.0)
                    try:
                        info["T"] = float(ti) * scale
                    except ValueError:
                        raise FormatError(f"must be a number, got {ti!r}", path=path, item="TimeIncrement") from None
        out.append(info)
    return out


def _open_tiff(path: Path):
    import tifffile

    if not path.is_file():
        raise FormatError("no such file", path=path, item="file")
    try:
        tif = tifffile.TiffFile(path)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise FormatError(f"not a readable TIFF file ({' '.join(str(exc).split())})", path=path, item="file") from None
    if not tif.is_ome:
        tif.close()
        raise FormatError("TIFF without OME-XML metadata", path=path, item="OME-XML")
    return tif


def _series_array(s, path, item: str) -> np.ndarray:
    """The image data of series ``s``, after checking that it fits in memory (declared shape:
    the stored array plus its float32 copy)."""
    n = float(np.prod(s.shape, dtype=np.float64))
    check_memory(n * (np.dtype(s.dtype).itemsize + 4), path=path, item=item, what="reading this image")
    try:
        return s.asarray()
    except (OSError, ValueError, IndexError) as exc:
        raise FormatError(f"unreadable image data ({' '.join(str(exc).split())})", path=path, item=item) from None


def _squeezed_axes(shape, axes: str, keep: str, path, item: str) -> tuple[list[int], str]:
    """Metadata half of :func:`_squeeze_to`: the axes of ``shape`` to drop (singletons not in
    ``keep``) as indices, and the kept axes in ``keep`` order."""
    axes = axes.upper()
    drop = []
    for i, a in enumerate(axes):
        if a not in keep:
            if shape[i] != 1:
                raise FormatError(f"axis {a} of length {shape[i]} is not supported", path=path, item=item)
            drop.append(i)
    return drop, "".join(a for a in keep if a in axes)


def _squeezed_shape(shape, axes: str, keep: str, path, item: str) -> tuple[tuple[int, ...], str]:
    """The shape and axes an image of ``shape``/``axes`` has once read by :func:`_squeeze_to`."""
    drop, out_axes = _squeezed_axes(shape, axes, keep, path, item)
    left = {a: int(n) for i, (a, n) in enumerate(zip(axes.upper(), shape)) if i not in drop}
    return tuple(left[a] for a in out_axes), out_axes


def _squeeze_to(arr: np.ndarray, axes: str, keep: str, path, item: str) -> tuple[np.ndarray, str]:
    """Drop singleton axes not in ``keep`` and reorder to ``keep`` order (present ones)."""
    drop, out_axes = _squeezed_axes(arr.shape, axes, keep, path, item)
    rest = [a for i, a in enumerate(axes.upper()) if i not in drop]
    arr = np.squeeze(arr, axis=tuple(drop)) if drop else arr
    return np.transpose(arr, [rest.index(a) for a in out_axes]), out_axes


def _voxel(info: dict, path, item: str) -> tuple[float, float, float]:
    missing = [a for a in "ZYX" if a not in info]
    if missing:
        raise FormatError(f"PhysicalSize{'/'.join(missing)} not recorded", path=path, item=item)
    return (info["Z"], info["Y"], info["X"])


def ome_tiff_kind(path: str | Path) -> str:
    """``"labels"`` for a label file written by :func:`write_labels_tiff`, else ``"tomogram"``."""
    path = Path(path)
    with _open_tiff(path) as tif:
        images = _parse_ome(tif.ome_metadata, path)
    return "labels" if images and images[0]["holo"].get("kind") == "labels" else "tomogram"


def _ome_layout(tif, path: Path, medium_index: float | None) -> dict:
    """What an OME-TIFF tomogram holds, from its OME-XML and series headers only (no pixel is
    read): ``ri`` (series, axes once squeezed to TZYX), ``info`` (the first image's OME
    record), ``holo`` (its holo JSON), ``medium_index``, ``mip`` (series or None) and
    ``fluorescence`` (list of (name, series, OME record))."""
    images = _parse_ome(tif.ome_metadata, path)
    series = list(tif.series)
    if not series or not images:
        raise FormatError("holds no image", path=path, item="OME-XML")
    info0 = images[0]
    holo = info0["holo"]
    if holo.get("kind") == "labels":
        raise FormatError("holds labels, not a tomogram (read it with read_labels_tiff)", path=path, item="image")
    _, axes = _squeezed_shape(series[0].shape, series[0].axes, "TZYX", path, "ri")
    if "Z" not in axes:
        raise FormatError(f"needs a Z axis, got axes {series[0].axes}", path=path, item="ri")
    if np.dtype(series[0].dtype).kind not in "iuf":
        raise ValidationError(f"must be real, got dtype {series[0].dtype}", path=path, item="ri")
    n_m = holo.get("medium_index", medium_index)
    if n_m is None:
        raise FormatError("medium index not recorded; pass medium_index=", path=path, item="medium_index")
    mip, fluorescence = None, []
    for s, info in zip(series[1:], images[1:]):
        h = info["holo"]
        if info["name"] == "mip" or h.get("kind") == "mip":
            mip = s
        elif h.get("kind") == "fluorescence" or info["name"].startswith("fluorescence:"):
            fluorescence.append((h.get("name") or info["name"].split(":", 1)[-1], s, info))
    return {"ri": series[0], "axes": axes, "info": info0, "holo": holo, "medium_index": float(n_m), "mip": mip,
            "fluorescence": fluorescence}


def _ri_from_stored(arr: np.ndarray, path) -> np.ndarray:
    """float32 RI of a stored image: integers are RI × 10⁴, floats must be finite."""
    if arr.dtype.kind in "iu":
        return (arr.astype(np.float32) / np.float32(1e4)).astype(np.float32)
    return check_finite(arr.astype(np.float32, copy=False), path, "ri")


def _time_step_s(layout: dict) -> float | None:
    if "T" not in layout["axes"]:
        return None
    return layout["holo"].get("time_step_s") or layout["info"].get("T")


def read_ome_tiff(path: str | Path, *, medium_index: float | None = None) -> Tomogram:
    """Read an OME-TIFF tomogram written by :func:`write_ome_tiff` (or a foreign one).

    Parameters
    ----------
    path : str or Path
    medium_index : float, optional
        Used only when the file does not record the medium index.

    Returns
    -------
    Tomogram
        ``ri`` float32 NumPy array; integer images are read as RI × 10⁴.

    Raises
    ------
    FormatError
        Not a TIFF, no OME-XML, a label file, missing physical sizes or medium index.
    """
    path = Path(path)
    tif = _open_tiff(path)
    with tif:
        lay = _ome_layout(tif, path, medium_index)
        s0 = lay["ri"]
        arr, _ = _squeeze_to(_series_array(s0, path, "ri"), s0.axes, "TZYX", path, "ri")
        ri = _ri_from_stored(arr, path)
        mip = None if lay["mip"] is None else np.asarray(_series_array(lay["mip"], path, "mip"), dtype=np.float32)
        fluorescence = {}
        for name, s, info in lay["fluorescence"]:
            data, _ = _squeeze_to(_series_array(s, path, name), s.axes, "TZYX", path, name)
            fluorescence[name] = FluorescenceChannel(
                data=data,
                voxel_size_um=_voxel(info, path, name),
                offset_z_um=float(info["holo"].get("offset_z_um", 0.0) or 0.0),
                time_step_s=info["holo"].get("time_step_s"),
                name=name,
            )
        holo = lay["holo"]
        provenance = dict(holo.get("provenance") or {})
        provenance.setdefault("source_file", str(path))
        return Tomogram(
            ri=ri,
            voxel_size_um=_voxel(lay["info"], path, "PhysicalSizeZ/Y/X"),
            medium_index=lay["medium_index"],
            wavelength_um=holo.get("wavelength_um"),
            time_step_s=_time_step_s(lay),
            fluorescence=fluorescence,
            mip=mip,
            provenance=provenance,
            metadata=dict(holo.get("metadata") or {}),
            source=str(path),
        )


def describe_ome_tiff(path: str | Path, *, medium_index: float | None = None) -> dict:
    """What :func:`read_ome_tiff` would return, from the OME-XML and TIFF headers only: no pixel
    is read, so it answers at once for a file of any size.

    Returns
    -------
    dict
        ``shape`` and ``dtype`` of the RI as read (float32), ``stored_dtype``,
        ``voxel_size_um``, ``medium_index``, ``wavelength_um``, ``n_times``, ``time_step_s``,
        ``channels`` {name: shape, dtype, voxel_size_um, offset_z_um, time_step_s},
        ``mip`` (shape, dtype) or None, ``provenance``, ``metadata``.
    """
    path = Path(path)
    tif = _open_tiff(path)
    with tif:
        lay = _ome_layout(tif, path, medium_index)
        s0 = lay["ri"]
        shape, axes = _squeezed_shape(s0.shape, s0.axes, "TZYX", path, "ri")
        channels = {}
        for name, s, info in lay["fluorescence"]:
            ch_shape, _ = _squeezed_shape(s.shape, s.axes, "TZYX", path, name)
            channels[name] = {"shape": list(ch_shape), "dtype": str(np.dtype(s.dtype)), "voxel_size_um": list(_voxel(info, path, name)),
                              "offset_z_um": float(info["holo"].get("offset_z_um", 0.0) or 0.0),
                              "time_step_s": info["holo"].get("time_step_s")}
        mip = lay["mip"]
        holo = lay["holo"]
        provenance = dict(holo.get("provenance") or {})
        provenance.setdefault("source_file", str(path))
        return _jsonable(dict(
            shape=list(shape), dtype="float32", stored_dtype=str(np.dtype(s0.dtype)),
            voxel_size_um=list(_voxel(lay["info"], path, "PhysicalSizeZ/Y/X")), medium_index=lay["medium_index"],
            wavelength_um=holo.get("wavelength_um"), n_times=shape[0] if "T" in axes else 1, time_step_s=_time_step_s(lay),
            channels=channels, mip=None if mip is None else {"shape": [int(n) for n in mip.shape], "dtype": "float32"},
            provenance=provenance, metadata=dict(holo.get("metadata") or {}),
        ))


def write_labels_tiff(path: str | Path, labels, voxel_size_um, *, name: str = "labels") -> Path:
    """Write an integer label volume (Z, Y, X) as OME-TIFF with sizes in µm, atomically.

    Parameters
    ----------
    path : str or Path
    labels : (Z, Y, X) integer array
    voxel_size_um : (dz, dy, dx)
    name : str
        Stored as the OME image name.
    """
    import tifffile

    labels, vs = _checked_labels(labels, voxel_size_um)
    path = Path(path)
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, ome=True) as tw:
            tw.write(labels, compression="zlib", metadata=_image_meta(name, vs, {"kind": "labels", "name": name}, axes="ZYX"))
    return path


def read_labels_tiff(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a label OME-TIFF: returns ``(labels (Z, Y, X) integer array, voxel_size_um)``."""
    path = Path(path)
    tif = _open_tiff(path)
    with tif:
        images = _parse_ome(tif.ome_metadata, path)
        s = tif.series[0]
        arr, axes = _squeeze_to(_series_array(s, path, "labels"), s.axes, "ZYX", path, "labels")
        if arr.ndim != 3:
            raise FormatError(f"must be 3D (Z, Y, X), got axes {s.axes}", path=path, item="labels")
        if arr.dtype.kind not in "iu":
            raise ValidationError(f"must be integer labels, got dtype {arr.dtype}", path=path, item="labels")
        return arr, _voxel(images[0], path, "PhysicalSizeZ/Y/X")
