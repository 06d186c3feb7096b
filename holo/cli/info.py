"""``holo info FILE [--json]``: what a file holds (any supported format).

The description goes to stdout (a rich table, or plain JSON with ``--json``); only metadata
is read (shapes and dtypes; no frame is read or scanned), so it is fast on any size of file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

__all__ = ["register", "info_cmd", "describe"]


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
    import numpy as np

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


def _fmt(v) -> str:
    if v is None or (isinstance(v, (list, dict)) and not v):
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict) and set(v) >= {"shape", "dtype"}:
        extra = {k: x for k, x in v.items() if k not in ("shape", "dtype")}
        s = f"{tuple(v['shape'])} {v['dtype']}"
        return s + (" " + ", ".join(f"{k}={_fmt(x)}" for k, x in extra.items()) if extra else "")
    if isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _print_table(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{info['file']} ({info['format']}, {info['kind']})", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    for key, val in info.items():
        if key in ("file", "format", "kind"):
            continue
        if key == "channels":
            if not val:
                table.add_row("channels", "—")
            for name, ch in val.items():
                table.add_row(f"channel {name}", _fmt(ch))
            continue
        table.add_row(key, _fmt(val))
    Console(file=sys.stdout, soft_wrap=True).print(table)


def info_cmd(
    file: Path = typer.Argument(..., help="Acquisition .h5, TCF, OME-TIFF or OME-Zarr."),
    as_json: bool = typer.Option(False, "--json", help="Print plain JSON on stdout."),
) -> None:
    """Show what a file holds: kind, shapes, voxel/pixel size, wavelength, medium, frames, channels."""
    info = describe(file)
    if as_json:
        sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")
    else:
        _print_table(info)


def register(app: typer.Typer) -> None:
    """Add ``info`` to ``app``."""
    app.command("info")(info_cmd)
