"""``holo info FILE [--json]``: what a file holds (any supported format).

The description goes to stdout (aligned ``label: value`` lines, or plain JSON with ``--json``); only metadata
is read (shapes and dtypes; no frame is read or scanned), so it is fast on any size of file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

__all__ = ["register", "info_cmd", "describe", "format_human"]


def _arr(a) -> dict | None:
    if a is None:
        return None
    return {"shape": [int(s) for s in a.shape], "dtype": str(a.dtype)}


def _jsonable(obj):
    from holo.io.ometiff import _jsonable as j

    return j(obj)


def describe(path: str | Path) -> dict:
    """A JSON-serialisable description of a file of any supported format.

    Keys: ``file``, ``format``, ``kind`` (``"acquisition"``/``"tomogram"``) and, for an
    acquisition: geometry, wavelength_um, pixel_size_um, medium_index, objective_na,
    n_frames, frame_shape, holograms/background/fields (shape, dtype), illumination_na,
    angles, rotation_axis, ground_truth, metadata; for a tomogram: shape, dtype,
    voxel_size_um, medium_index, wavelength_um, n_times, time_step_s, channels, mip,
    labels (names, OME-Zarr), provenance, metadata; for a label OME-TIFF (kind
    ``"labels"``): shape, dtype, voxel_size_um, n_labels, max_label.
    """
    from holo.io import detect_format, is_label_file, open_path
    from holo.io.acquisition import close_acquisition
    from holo.io.omezarr import ome_zarr_label_names

    fmt = detect_format(path)
    info: dict = {"file": str(path), "format": fmt}
    if is_label_file(path, fmt):
        info.update(_describe_labels(path))
        return _jsonable(info)
    if fmt == "ome-tiff":  # headers only: no pixel is read
        from holo.io.ometiff import describe_ome_tiff

        d = describe_ome_tiff(path)
        provenance, metadata = d.pop("provenance"), d.pop("metadata")
        info.update(kind="tomogram", **d, labels=[], provenance=provenance, metadata=metadata)
        return _jsonable(info)
    if fmt == "acquisition":  # metadata only: the frames are not scanned
        from holo.io.acquisition import read_acquisition

        obj = read_acquisition(path, lazy=True, check_frames=False)
    else:
        obj = open_path(path)
    if fmt in ("acquisition", "camera"):
        info.update(_describe_acquisition(obj))
        close_acquisition(obj)
    else:
        info.update(_describe_tomogram(obj))
        info["labels"] = ome_zarr_label_names(path) if fmt == "ome-zarr" else []
        info["provenance"] = _jsonable(obj.provenance)
        info["metadata"] = _jsonable(obj.metadata)
    return _jsonable(info)


def _describe_labels(path) -> dict:
    from holo.io import read_labels

    labs, voxel = read_labels(path)
    (name, labels), = labs.items()
    ids = np.unique(labels)
    return dict(kind="labels", name=name, shape=list(labels.shape), dtype=str(labels.dtype), voxel_size_um=list(voxel),
                n_labels=int(np.count_nonzero(ids)), max_label=int(ids.max()) if ids.size else 0)


def _describe_ground_truth(gt: dict | None) -> dict | None:
    if gt is None:
        return None
    return {
        "shape": [int(s) for s in gt["ri"].shape],
        "voxel_size_um": list(gt["voxel_size_um"]),
        "medium_index": gt["medium_index"],
        "n_cells": len(gt.get("classes", {})),
        "classes": sorted(set(gt.get("classes", {}).values())),
    }


def _describe_acquisition(acq) -> dict:
    return dict(
        kind="acquisition",
        geometry=acq.geometry,
        wavelength_um=acq.wavelength_um,
        pixel_size_um=acq.pixel_size_um,
        medium_index=acq.medium_index,
        objective_na=acq.objective_na,
        n_frames=acq.n_frames,
        frame_shape=list(acq.frame_shape),
        holograms=_arr(acq.holograms),
        background=_arr(acq.background),
        fields=_arr(acq.fields),
        illumination_na=acq.illumination_na is not None,
        angles=acq.angles is not None,
        rotation_axis=acq.rotation_axis if acq.angles is not None else None,
        ground_truth=_describe_ground_truth(acq.ground_truth),
        metadata=_jsonable(acq.metadata),
    )


def _describe_tomogram(tomo) -> dict:
    """The tomogram's items of :func:`describe` up to ``mip`` (labels, provenance and
    metadata are added by the caller, in that order)."""
    channels = {
        name: {**_arr(ch.data), "voxel_size_um": list(ch.voxel_size_um), "offset_z_um": ch.offset_z_um,
               "time_step_s": ch.time_step_s}
        for name, ch in tomo.fluorescence.items()
    }
    return dict(
        kind="tomogram",
        shape=[int(s) for s in tomo.ri.shape],
        dtype=str(tomo.ri.dtype),
        voxel_size_um=list(tomo.voxel_size_um),
        medium_index=tomo.medium_index,
        wavelength_um=tomo.wavelength_um,
        n_times=tomo.n_times,
        time_step_s=tomo.time_step_s,
        channels=channels,
        mip=_arr(tomo.mip),
    )


_FORMAT_NAMES = {"acquisition": "holo acquisition HDF5", "tcf": "Tomocube TCF", "ome-tiff": "OME-TIFF",
                 "ome-zarr": "OME-Zarr", "camera": "camera frames"}
# unit suffixes of key names (longest first) and how a person writes the unit
_UNITS = (("_cycles_per_um", "cycles/µm"), ("_e_per_adu", "e⁻/ADU"), ("_per_um", "/µm"), ("_um", "µm"), ("_rad", "rad"), ("_s", "s"),
          ("_e", "e⁻"), ("_adu", "ADU"))
# items whose value says whether something is recorded
_RECORDED = {"illumination_na": "illumination NA per frame", "angles": "rotation angles"}
_SHORT_LIST = 6  # numeric lists up to this length are printed whole


def _label_unit(key: str) -> tuple[str, str]:
    """``("wavelength", "µm")`` for ``"wavelength_um"``; ``(key, "")`` without a unit suffix."""
    for suffix, unit in _UNITS:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], unit
    return key, ""


def _number(x) -> str:
    """4 significant digits; a float holding a whole number below 10⁹ as that integer."""
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() and abs(x) < 1e9 else f"{x:.4g}"
    return str(x)


def _decoded(v):
    """A JSON object or array stored as a string (HDF5 attributes) as the value it holds."""
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _is_numeric_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _summary(key: str, v, unit: str) -> str:
    """One readable value: shapes as ``9 × 64 × 64``, short lists whole, long lists summarised
    (``49 pairs, max 0.3 µm``: the largest Euclidean length of the rows)."""
    u = f" {unit}" if unit else ""
    if v is None or (isinstance(v, (list, dict, str)) and not v):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if _is_numeric_list(v):
        if "shape" in key:
            return " × ".join(str(x) for x in v)
        if len(v) <= _SHORT_LIST:
            return ", ".join(_number(x) for x in v) + u
        a = np.asarray(v, dtype=float)
        return f"{a.size} values, {_number(float(a.min()))} to {_number(float(a.max()))}{u}"
    if isinstance(v, list) and all(_is_numeric_list(r) for r in v) and len({len(r) for r in v}) == 1:
        a = np.asarray(v, dtype=float)
        rows = {2: "pairs", 3: "triples"}.get(a.shape[1], f"rows of {a.shape[1]}")
        return f"{a.shape[0]} {rows}, max {_number(float(np.sqrt((a ** 2).sum(axis=1)).max()))}{u}"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return f"{_number(v)}{u}"


def _lines(info: dict, prefix: str = "") -> list[tuple[str, str]]:
    """``(label, value)`` lines of a description: nested dicts flattened with dotted labels, an
    array record ``{shape, dtype, ...}`` summarised on its own line, units moved from the key
    names to the values."""
    out = []
    for key, v in info.items():
        v = _decoded(v)
        if key in _RECORDED and isinstance(v, bool):
            out.append((prefix + _RECORDED[key], "recorded" if v else "—"))
            continue
        label, unit = _label_unit(key)
        if isinstance(v, dict) and v:
            rest = dict(v)
            if {"shape", "dtype"} <= set(v):
                out.append((prefix + label, f"{_summary('shape', rest.pop('shape'), '')} {rest.pop('dtype')}"))
            out.extend(_lines(rest, f"{prefix}{label}."))
            continue
        out.append((prefix + label, _summary(key, v, unit)))
    return out


def format_human(info: dict) -> str:
    """The description of :func:`describe` as a person reads it: a title line, then aligned
    ``label: value`` lines (see :func:`_lines`)."""
    kind, fmt = info.get("kind", ""), info.get("format", "")
    title = f"{info['file']}: {kind}, {_FORMAT_NAMES.get(fmt, fmt)}"
    lines = _lines({k: v for k, v in info.items() if k not in ("file", "format", "kind")})
    width = max((len(k) for k, _ in lines), default=0) + 1
    return "\n".join([title, *(f"  {k + ':':<{width}} {v}" for k, v in lines)]) + "\n"


def info_cmd(
    file: Path = typer.Argument(..., help="Acquisition .h5, TCF, OME-TIFF or OME-Zarr."),
    as_json: bool = typer.Option(False, "--json", help="Print plain JSON on stdout."),
) -> None:
    """Show what a file holds: kind, shapes, voxel/pixel size, wavelength, medium, frames, channels."""
    info = describe(file)
    if as_json:
        sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_human(info))


def register(app: typer.Typer) -> None:
    """Add ``info`` to ``app``."""
    app.command("info")(info_cmd)
