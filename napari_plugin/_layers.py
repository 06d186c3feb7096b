"""Conversions between holo objects and napari layer-data tuples (no Qt here).

Every layer gets its physical scale in µm (``scale`` in array order, ``units``) and the holo
metadata it needs to be turned back into a Tomogram (medium index, wavelength, provenance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from holo.model import Acquisition, Tomogram

RI_COLORMAP = "turbo"
META_KEY = "holo"
#: Medium index assumed for an image layer whose metadata does not name one.
DEFAULT_MEDIUM_INDEX = 1.337
#: Axis names of a volume (and of a time series of volumes).
ZYX = ("z", "y", "x")
#: napari scale (s) of an acquisition's single instant: the largest time step a Tomogram accepts.
SINGLE_INSTANT_S = 1e9


def holo_kind(layer) -> str | None:
    """What a layer made by holo holds (its metadata's ``kind``: "tomogram", "acquisition", …)."""
    return (getattr(layer, "metadata", None) or {}).get(META_KEY, {}).get("kind")


def ri_contrast_limits(tomo: Tomogram, vol=None) -> tuple[float, float]:
    """Contrast limits from one frame (never the whole time series): the 0.5–99.9 % range of
    the RI, widened to at least medium ± 0.005 so a flat medium shows as such. ``vol``: the
    first frame when the caller has read it already."""
    vol = tomo.frame(0) if vol is None else vol
    sub = vol[:: max(1, vol.shape[0] // 16), ::2, ::2]
    lo, hi = np.nanpercentile(sub, [0.5, 99.9])
    lo = min(float(lo), tomo.medium_index - 0.005)
    hi = max(float(hi), tomo.medium_index + 0.005)
    return (lo, hi)


def contrast_slice(vol: np.ndarray, medium_index: float) -> int:
    """The z index of the slice that differs most from the medium: argmax over z of
    Σ_yx |n(z, y, x) − n_m| (the slice through the most matter, where cells are)."""
    dev = np.abs(np.asarray(vol, dtype=np.float32) - np.float32(medium_index))
    return int(np.argmax(np.nansum(dev, axis=(1, 2))))


def busiest_slice(labels: np.ndarray) -> int:
    """The z index of the slice of a (Z, Y, X) label volume that cuts the most distinct
    labels; ties go to the slice with the most labelled voxels."""
    labels = np.asarray(labels)
    best, best_key = 0, (-1, -1)
    for z in range(labels.shape[0]):
        plane = labels[z].ravel()
        plane = plane[plane > 0]
        key = (int(np.unique(plane).size), int(plane.size))
        if key > best_key:
            best, best_key = z, key
    return best


def _units(n: int) -> tuple[str, ...]:
    return ("µm",) * n


def tomogram_layers(tomo: Tomogram, name: str = "RI") -> list[tuple]:
    """RI image (time on the first slider, lazily), fluorescence channels aligned by their Z
    offset, and the 2D MIP if present."""
    scale = tuple(tomo.voxel_size_um)
    meta = {
        META_KEY: {
            "kind": "tomogram",
            "medium_index": tomo.medium_index,
            "wavelength_um": tomo.wavelength_um,
            "time_step_s": tomo.time_step_s,
            "provenance": dict(tomo.provenance),
            "source": tomo.source,
        }
    }
    vol0 = np.asarray(tomo.frame(0), dtype=np.float32)  # read once: contrast and the slice to open on
    meta[META_KEY]["contrast_z"] = contrast_slice(vol0, tomo.medium_index)
    t_scale = ((tomo.time_step_s or 1.0),) if tomo.has_time else ()
    t_units = ("s",) if tomo.has_time else ()
    layers = [
        (
            tomo.ri,
            {
                "name": name,
                "scale": t_scale + scale,
                "units": t_units + _units(3),
                "axis_labels": (("t",) if tomo.has_time else ()) + ZYX,
                "colormap": RI_COLORMAP,
                "contrast_limits": ri_contrast_limits(tomo, vol0),
                "metadata": meta,
            },
            "image",
        )
    ]
    for ch_name, ch in (tomo.fluorescence or {}).items():
        data = ch.data
        has_t = len(data.shape) == 4
        ch_t_scale = ((ch.time_step_s or tomo.time_step_s or 1.0),) if has_t else ()
        layers.append(
            (
                data,
                {
                    "name": f"{name} FL {ch_name}",
                    "scale": ch_t_scale + tuple(ch.voxel_size_um),
                    "translate": ((0.0,) if has_t else ()) + (float(ch.offset_z_um), 0.0, 0.0),
                    "units": (("s",) if has_t else ()) + _units(3),
                    "axis_labels": (("t",) if has_t else ()) + ZYX,
                    "colormap": "green",
                    "blending": "additive",
                    "metadata": {META_KEY: {"kind": "fluorescence", "channel": ch_name}},
                },
                "image",
            )
        )
    if tomo.mip is not None:
        mip = np.asarray(tomo.mip)
        layers.append(
            (
                mip,
                {
                    "name": f"{name} MIP",
                    "scale": tuple(scale[-mip.ndim :]) if mip.ndim <= 3 else None,
                    "units": _units(min(mip.ndim, 3)),
                    "colormap": RI_COLORMAP,
                    "visible": False,
                    "metadata": {META_KEY: {"kind": "mip"}},
                },
                "image",
            )
        )
    return layers


def acquisition_layers(acq: Acquisition, name: str = "acquisition") -> list[tuple]:
    """The raw holograms (or |u/u0| and phase when the file holds fields), one frame per
    illumination on the slider; the file path is kept for the Reconstruct widget."""
    import dask.array as da

    meta = {
        META_KEY: {
            "kind": "acquisition",
            "path": acq.source,
            "geometry": acq.geometry,
            "wavelength_um": acq.wavelength_um,
            "medium_index": acq.medium_index,
            "objective_na": acq.objective_na,
            "n_frames": acq.n_frames,
        }
    }
    px = acq.pixel_size_um
    # (frame, t, z, y, x) with a single instant and a single z plane: the illumination frames
    # get their own slider ("frame", no unit) instead of sharing (and mislabelling) the t or z
    # axis of a tomogram opened beside them, and every axis a tomogram has carries the same
    # unit (s, µm) so napari's units stay consistent across layers. napari steps a slider by
    # the smallest scale of the layers on it, so the single t and z planes take scales no
    # tomogram's time step or voxel exceeds (the validation bound, the field of view).
    fov_um = float(max(acq.frame_shape)) * px
    common = {"scale": (1.0, SINGLE_INSTANT_S, fov_um, px, px), "units": ("", "s", "µm", "µm", "µm"),
              "axis_labels": ("frame", "t") + ZYX, "metadata": meta}
    if acq.fields is not None:
        f = da.from_array(acq.fields, chunks=(1,) + tuple(acq.frame_shape))[:, None, None]
        return [
            (da.angle(f), {**common, "name": f"{name} phase", "colormap": "twilight"}, "image"),
            (da.absolute(f), {**common, "name": f"{name} amplitude", "colormap": "gray", "visible": False}, "image"),
        ]
    h = da.from_array(acq.holograms, chunks=(1,) + tuple(acq.frame_shape))[:, None, None]
    first = np.asarray(acq.holograms[0], dtype=np.float32)
    lims = tuple(float(v) for v in np.percentile(first, [0.5, 99.5]))
    return [(h, {**common, "name": f"{name} holograms", "colormap": "gray", "contrast_limits": lims}, "image")]


def cells_features(cells):
    """A cells table (one row per cell, ``cell_id``) as napari Labels ``features``: a copy
    with the label value in an ``index`` column first."""
    features = cells.copy()
    id_col = "cell_id" if "cell_id" in features.columns else features.columns[0]
    if "index" in features.columns:
        features = features.drop(columns="index")
    features.insert(0, "index", features[id_col].astype(int))
    return features


def cells_table_beside(path, labels: np.ndarray):
    """Features from the ``cells.csv`` that ``holo run`` / ``holo demo`` write next to an
    instance-label file, or None when there is none or its ``cell_id`` do not cover the
    labels (a semantic file, or a table of another segmentation)."""
    import pandas as pd

    csv = Path(str(path)).parent / "cells.csv"
    if not csv.is_file():
        return None
    try:
        cells = pd.read_csv(csv)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if "cell_id" not in cells.columns or cells.empty:
        return None
    ids = np.unique(np.asarray(labels))
    if not set(int(i) for i in ids[ids > 0]) <= set(cells["cell_id"].astype(int)):
        return None
    return cells_features(cells)


def labels_layer(labels: np.ndarray, voxel_size_um, name: str, features=None) -> tuple:
    kw = {"name": name, "scale": tuple(voxel_size_um), "units": _units(3), "axis_labels": ZYX,
          "metadata": {META_KEY: {"kind": "labels"}}}
    if features is not None:
        kw["features"] = features
    return (labels, kw, "labels")


def layer_to_tomogram(data, scale, metadata: dict | None, source: str | None = None) -> Tomogram:
    """A Tomogram from an image layer's data, ``scale`` (its last three entries are the voxel
    size in µm) and ``metadata`` (the holo entry: medium index, else
    :data:`DEFAULT_MEDIUM_INDEX`, wavelength, time step, provenance); integer data become
    float32."""
    meta = (metadata or {}).get(META_KEY, {})
    ri = data if np.issubdtype(np.dtype(data.dtype), np.floating) else np.asarray(data, dtype=np.float32)
    return Tomogram(
        ri=ri,
        voxel_size_um=tuple(float(s) for s in tuple(scale)[-3:]),
        medium_index=float(meta.get("medium_index") or DEFAULT_MEDIUM_INDEX),
        wavelength_um=meta.get("wavelength_um"),
        time_step_s=meta.get("time_step_s") if np.ndim(data) == 4 else None,
        provenance=dict(meta.get("provenance") or {}),
        source=source,
    )


def image_layer_to_tomogram(layer) -> Tomogram:
    """A napari Image layer (made by this plugin or any 3D float layer) as a Tomogram; the
    scale is taken as the voxel size in µm, medium index from the metadata (else
    :data:`DEFAULT_MEDIUM_INDEX`)."""
    data = layer.data
    if data.ndim not in (3, 4):
        raise ValueError(f"layer {layer.name!r} is {data.ndim}D; an RI volume is (Z, Y, X) or (T, Z, Y, X)")
    metadata = layer.metadata or {}
    return layer_to_tomogram(data, layer.scale, metadata, source=metadata.get(META_KEY, {}).get("source"))


def default_name(path: str | Path) -> str:
    from holo.sample import sample_name

    return sample_name(path)
