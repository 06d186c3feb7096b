"""OME-Zarr (NGFF, written by ome-zarr as version 0.5 on zarr v3) for tomograms and labels.

Layout written: the root group is a single-resolution multiscale image ``ri`` (float32,
axes z, y, x — plus t first for a time series) whose ``scale`` coordinate transformation is
the voxel size in µm (axis unit ``micrometer``; the t axis has unit ``second`` and the time
step as scale). Labels live in ``labels/<name>`` with the same spatial axes and scale.
Fluorescence channels are multiscale images in ``fluorescence/<name>``. The root attribute
``holo`` is a JSON object with the medium index, vacuum wavelength, time step, provenance,
metadata and the fluorescence channel list (name, path, Z offset). Scale is passed
explicitly as coordinate transformations.

A label-only store (:func:`write_labels_zarr`, e.g. a segmentation saved on its own) has
the integer label volume as its root multiscale image, the NGFF ``image-label`` key, and
``holo = {"kind": "labels", "name": ...}``.

Reading parses the NGFF metadata of version 0.4 or 0.5 directly with zarr (no pyramid levels
other than the first are used) and returns dask arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from holo.errors import FormatError, ValidationError
from holo.io._atomic import atomic_path
from holo.io.ometiff import _checked_labels, _jsonable, _tomogram_meta
from holo.model import FluorescenceChannel, Tomogram

__all__ = [
    "write_ome_zarr",
    "write_labels_zarr",
    "read_ome_zarr",
    "read_ome_zarr_labels",
    "ome_zarr_label_names",
    "ome_zarr_kind",
    "is_ome_zarr",
]

_UNIT_TO_UM = {"micrometer": 1.0, "µm": 1.0, "um": 1.0, "nanometer": 1e-3, "nm": 1e-3, "millimeter": 1e3, "mm": 1e3, "meter": 1e6}


def _ome_attrs(attrs: dict) -> dict:
    """The NGFF metadata dict: under ``ome`` (v0.5) or at the top level (v0.4)."""
    return dict(attrs.get("ome", attrs))


def is_ome_zarr(path: str | Path) -> bool:
    """True for a folder holding a zarr group with NGFF ``multiscales`` metadata."""
    path = Path(path)
    if not path.is_dir():
        return False
    for meta in ("zarr.json", ".zattrs"):
        p = path / meta
        if p.is_file():
            try:
                d = json.loads(p.read_text())
            except (OSError, ValueError):
                return False
            attrs = d.get("attributes", d) if meta == "zarr.json" else d
            return "multiscales" in _ome_attrs(attrs)
    return False


def _axes(names: str, time_step_s=None) -> list[dict]:
    out = []
    for n in names:
        if n == "t":
            out.append({"name": "t", "type": "time", "unit": "second"})
        else:
            out.append({"name": n, "type": "space", "unit": "micrometer"})
    return out


def _write_image(group, data, voxel_size_um, *, name: str, time_step_s=None, labels: bool = False) -> None:
    from ome_zarr.writer import write_multiscale, write_multiscale_labels

    names = "tzyx" if data.ndim == 4 else "zyx"
    scale = [float(v) for v in voxel_size_um]
    if data.ndim == 4:
        scale = [float(time_step_s or 1.0), *scale]
    chunks = tuple([1] * (data.ndim - 3) + [min(s, 256) for s in data.shape[-3:]])
    kw = dict(
        axes=_axes(names),
        coordinate_transformations=[[{"type": "scale", "scale": scale}]],
        storage_options={"chunks": chunks},
    )
    if labels:
        write_multiscale_labels([data], group, name=name, **kw)
    else:
        write_multiscale([data], group, name=name, **kw)


def write_ome_zarr(path: str | Path, tomo: Tomogram, labels: dict[str, np.ndarray] | None = None) -> Path:
    """Write a tomogram (and optional label volumes) as OME-Zarr, atomically.

    The store is written to a temporary folder beside ``path`` and renamed on success.

    Parameters
    ----------
    path : str or Path
        Folder to create (``.ome.zarr`` by convention); replaced if it exists.
    tomo : Tomogram
    labels : dict of name -> (Z, Y, X) integer array, optional
        On the tomogram's spatial grid (same Z, Y, X shape).

    Returns
    -------
    Path
    """
    import zarr

    path = Path(path)
    labels = dict(labels or {})
    for name, lab in labels.items():
        if tuple(lab.shape) != tomo.shape_zyx:
            raise ValueError(f"labels[{name!r}]: shape {tuple(lab.shape)} differs from the tomogram {tomo.shape_zyx}")
        if np.dtype(lab.dtype).kind not in "iub":
            raise ValueError(f"labels[{name!r}]: must be integer, got dtype {lab.dtype}")
    with atomic_path(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        ri = tomo.ri
        if hasattr(ri, "map_blocks"):
            ri = ri.astype(np.float32)
        else:
            ri = np.asarray(ri, dtype=np.float32)
        _write_image(root, ri, tomo.voxel_size_um, name="ri", time_step_s=tomo.time_step_s)
        fl_list = []
        if tomo.fluorescence:
            gfl = root.create_group("fluorescence")
            for i, (name, ch) in enumerate(tomo.fluorescence.items()):
                sub = f"ch{i}"
                g = gfl.create_group(sub)
                _write_image(g, ch.data, ch.voxel_size_um, name=str(name), time_step_s=ch.time_step_s)
                fl_list.append(
                    {"name": str(name), "path": f"fluorescence/{sub}", "offset_z_um": float(ch.offset_z_um), "time_step_s": ch.time_step_s}
                )
        for name, lab in labels.items():
            lab = np.asarray(lab)
            if lab.dtype.kind == "b":
                lab = lab.astype(np.uint8)
            _write_image(root, lab, tomo.voxel_size_um, name=str(name), labels=True)
        root.attrs["holo"] = _jsonable({**_tomogram_meta(tomo), "fluorescence": fl_list, "mip": tomo.mip is not None})
        if tomo.mip is not None:
            root.create_array("mip", data=np.asarray(tomo.mip, dtype=np.float32))
    return path


def write_labels_zarr(path: str | Path, labels, voxel_size_um, *, name: str = "labels",
                      time_step_s: float | None = None) -> Path:
    """Write one integer label volume (Z, Y, X) as a label-only OME-Zarr store, atomically.

    The labels are the root multiscale image (scale = ``voxel_size_um`` in µm) with the NGFF
    ``image-label`` metadata; :func:`read_ome_zarr_labels` returns ``{name: labels}``. A time
    series (T, Z, Y, X), NumPy or dask (written frame by frame, never whole in memory), gets a
    ``t`` axis of scale ``time_step_s`` (s).
    """
    import zarr

    if getattr(labels, "ndim", 0) == 4:
        _, vs = _checked_labels(labels[0, :1], voxel_size_um)
        lab = labels
    else:
        lab, vs = _checked_labels(labels, voxel_size_um)
    path = Path(path)
    with atomic_path(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        _write_image(root, lab, vs, name=str(name), time_step_s=time_step_s)
        ome = dict(root.attrs["ome"])
        ome["image-label"] = {"version": ome.get("version", "0.5")}
        root.attrs["ome"] = ome
        root.attrs["holo"] = {"kind": "labels", "name": str(name)}
    return path


def ome_zarr_kind(path: str | Path) -> str:
    """``"labels"`` for a label-only store (:func:`write_labels_zarr`), else ``"tomogram"``."""
    root = _open_root(Path(path))
    return "labels" if dict(root.attrs.get("holo", {}) or {}).get("kind") == "labels" else "tomogram"


def _open_root(path: Path):
    import zarr

    if not path.exists():
        raise FormatError("no such file or folder", path=path, item="file")
    if not is_ome_zarr(path):
        raise FormatError("not an OME-Zarr image (no NGFF multiscales metadata)", path=path, item="multiscales")
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises various errors on a broken store
        raise FormatError(f"unreadable zarr store ({' '.join(str(exc).split())})", path=path, item="file") from None


class _CheckedChunks:
    """A zarr array whose reads raise :class:`FormatError` naming the store and the array
    (a corrupt or missing chunk) and :class:`ValidationError` on NaN or inf in float data."""

    def __init__(self, arr, path: str, item: str):
        self.arr, self.path, self.item = arr, path, item
        self.shape, self.dtype, self.ndim = tuple(arr.shape), np.dtype(arr.dtype), len(arr.shape)

    def __getitem__(self, key):
        try:
            block = np.asarray(self.arr[key])
        except Exception as exc:  # noqa: BLE001 - codec, shape and IO errors of a broken chunk
            where = ", ".join(f"{k.start}:{k.stop}" if isinstance(k, slice) else str(k) for k in (key if isinstance(key, tuple) else (key,)))
            raise FormatError(f"unreadable chunk data at [{where}] ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                              path=self.path, item=self.item) from None
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise ValidationError(f"contains {int(np.count_nonzero(~np.isfinite(block)))} non-finite value(s) (NaN or inf)",
                                  path=self.path, item=self.item)
        return block


def _read_multiscale(group, path: Path, item: str):
    """First resolution level of a multiscale group -> (dask array, axis names, scale per axis)."""
    import dask.array as da

    ome = _ome_attrs(dict(group.attrs))
    try:
        ms = ome["multiscales"][0]
        ds0 = ms["datasets"][0]
        axes = [a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes", [])]
        units = [a.get("unit") if isinstance(a, dict) else None for a in ms.get("axes", [])]
    except (KeyError, IndexError, TypeError):
        raise FormatError("malformed multiscales metadata", path=path, item=f"{item}/multiscales") from None
    try:
        arr = group[ds0["path"]]
    except KeyError:
        raise FormatError(f"missing array {ds0['path']!r}", path=path, item=item) from None
    except Exception as exc:  # noqa: BLE001 - zarr raises JSON, value and type errors on broken metadata
        raise FormatError(f"broken array metadata ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                          path=path, item=f"{item}/{ds0['path']}") from None
    if not axes:
        axes = list("tczyx"[-len(arr.shape) :])
        units = [None] * len(axes)
    if len(axes) != len(arr.shape):
        raise FormatError(f"{len(axes)} axes for an array of shape {arr.shape}", path=path, item=item)
    scale = [1.0] * len(axes)
    for tr in list(ms.get("coordinateTransformations", [])) + list(ds0.get("coordinateTransformations", [])):
        if tr.get("type") == "scale":
            scale = [a * float(b) for a, b in zip(scale, tr["scale"])]
    for i, (ax, u) in enumerate(zip(axes, units)):
        if ax in "zyx":
            if u is not None and u not in _UNIT_TO_UM:
                raise FormatError(f"unsupported unit {u!r} on axis {ax}", path=path, item=item)
            scale[i] *= _UNIT_TO_UM.get(u, 1.0) if u else 1.0
    data = da.from_array(_CheckedChunks(arr, str(path), f"{item}/{ds0['path']}".lstrip("/")), chunks=arr.chunks,
                         asarray=False, fancy=False, inline_array=True)
    # drop singleton channel axes, keep t z y x
    keep = []
    for i, ax in enumerate(axes):
        if ax in ("t", "z", "y", "x"):
            keep.append(i)
        elif data.shape[i] != 1:
            raise FormatError(f"axis {ax!r} of length {data.shape[i]} is not supported", path=path, item=item)
    idx = tuple(slice(None) if i in keep else 0 for i in range(len(axes)))
    data = data[idx]
    names = [axes[i] for i in keep]
    sc = {axes[i]: scale[i] for i in keep}
    order = [names.index(a) for a in "tzyx" if a in names]
    data = data.transpose(order)
    names = [names[i] for i in order]
    if names[-3:] != ["z", "y", "x"]:
        raise FormatError(f"needs z, y, x axes, got {axes}", path=path, item=item)
    return data, names, sc


def read_ome_zarr(path: str | Path, *, medium_index: float | None = None) -> Tomogram:
    """Read an OME-Zarr tomogram (lazy dask arrays).

    Parameters
    ----------
    path : str or Path
    medium_index : float, optional
        Used only when the store does not record the medium index (foreign files).

    Returns
    -------
    Tomogram
        ``ri`` float32 dask array; integer images are read as RI × 10⁴.
    """
    path = Path(path)
    root = _open_root(path)
    holo = dict(root.attrs.get("holo", {}) or {})
    if holo.get("kind") == "labels":
        raise FormatError("holds labels, not a tomogram (read it with read_ome_zarr_labels)", path=path, item="image")
    data, names, sc = _read_multiscale(root, path, "image")
    if data.dtype.kind in "iu":
        ri = (data.astype(np.float32) / np.float32(1e4)).astype(np.float32)
    elif data.dtype.kind == "f":
        ri = data.astype(np.float32)
    else:
        raise ValidationError(f"must be real, got dtype {data.dtype}", path=path, item="image")
    n_m = holo.get("medium_index", medium_index)
    if n_m is None:
        raise FormatError("medium index not recorded; pass medium_index=", path=path, item="holo/medium_index")
    fluorescence = {}
    for ch in holo.get("fluorescence", []) or []:
        try:
            g = root[ch["path"]]
        except KeyError:
            raise FormatError("missing group", path=path, item=ch["path"]) from None
        fdata, fnames, fsc = _read_multiscale(g, path, ch["path"])
        fluorescence[ch["name"]] = FluorescenceChannel(
            data=fdata,
            voxel_size_um=(fsc["z"], fsc["y"], fsc["x"]),
            offset_z_um=float(ch.get("offset_z_um", 0.0)),
            time_step_s=ch.get("time_step_s"),
            name=ch["name"],
        )
    mip = np.asarray(root["mip"][...], dtype=np.float32) if holo.get("mip") and "mip" in root else None
    provenance = dict(holo.get("provenance") or {})
    provenance.setdefault("source_file", str(path))
    time_step = holo.get("time_step_s") or (sc.get("t") if "t" in names else None)
    return Tomogram(
        ri=ri,
        voxel_size_um=(sc["z"], sc["y"], sc["x"]),
        medium_index=float(n_m),
        wavelength_um=holo.get("wavelength_um"),
        time_step_s=time_step if "t" in names else None,
        fluorescence=fluorescence,
        mip=mip,
        provenance=provenance,
        metadata=dict(holo.get("metadata") or {}),
        source=str(path),
    )


def ome_zarr_label_names(path: str | Path) -> list[str]:
    """Names of the label images listed in an OME-Zarr store (nothing is read)."""
    root = _open_root(Path(path))
    holo = dict(root.attrs.get("holo", {}) or {})
    if holo.get("kind") == "labels":
        return [str(holo.get("name", "labels"))]
    if "labels" not in root:
        return []
    return [str(n) for n in _ome_attrs(dict(root["labels"].attrs)).get("labels", [])]


def read_ome_zarr_labels(path: str | Path) -> dict[str, np.ndarray]:
    """All label images of an OME-Zarr store: ``{name: (Z, Y, X) integer NumPy array}``."""
    path = Path(path)
    root = _open_root(path)
    holo = dict(root.attrs.get("holo", {}) or {})
    if holo.get("kind") == "labels":
        data, _, _ = _read_multiscale(root, path, "labels")
        return {str(holo.get("name", "labels")): np.asarray(data.compute())}
    if "labels" not in root:
        return {}
    lg = root["labels"]
    names = _ome_attrs(dict(lg.attrs)).get("labels", [])
    out = {}
    for name in names:
        try:
            g = lg[name]
        except KeyError:
            raise FormatError("listed but missing", path=path, item=f"labels/{name}") from None
        data, _, _ = _read_multiscale(g, path, f"labels/{name}")
        arr = np.asarray(data.compute())
        if arr.dtype.kind not in "iu":
            raise ValidationError(f"must be integer, got dtype {arr.dtype}", path=path, item=f"labels/{name}")
        out[name] = arr
    return out
