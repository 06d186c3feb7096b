"""A tracks table written by ``holo track`` (``tracks.csv``) as a napari Tracks layer (no Qt here).

The table has one row per cell and frame (:data:`holo.timelapse.TRACK_COLUMNS`): ``track_id``
(one id per branch between divisions), ``parent_id`` (the mother branch, 0 for none),
``frame``, ``time_s`` and the centroid in µm measured as voxel index × voxel size, i.e. in the
world coordinates of the RI layer. The layer's vertices are ``[track_id, frame, z, y, x]``
with scale ``(Δt, 1, 1, 1)``: napari rounds a track's time to an integer index, so time stays
the frame number in data space and becomes t = frame · Δt (s) in the world, on the same time
slider as the RI layer whose scale is ``(Δt, v_z, v_y, v_x)``. Divisions are the ``graph``
{daughter: [mother]}; the numeric columns (dry mass, volume, mean RI, ...) are the layer's
features, one row per vertex.

Colours: track id k gets the colour ``turbo(frac(k·φ⁻¹))`` (golden-ratio spacing, so
neighbouring ids look different) in both the Tracks layer (colour by the ``track_hue``
feature through an explicit colormap, no min-max normalisation) and the Labels layer of
``labels.ome.zarr`` (a direct label colormap): one cell, one colour, in both layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from holo.timelapse import TRACK_COLUMNS

__all__ = ["REQUIRED_COLUMNS", "is_tracks_table", "read_tracks_table", "frame_interval_s", "division_graph",
           "tracks_layer_data", "tracks_layer", "track_series", "track_hue", "track_rgba", "track_label_colormap",
           "track_labels_layer", "read_growth_beside", "track_growth"]

#: Leading header of a ``tracks.csv`` written by ``holo track`` (ids, frame, time, label, centroid µm).
REQUIRED_COLUMNS = TRACK_COLUMNS[:8]
_CENTROID = ("centroid_z_um", "centroid_y_um", "centroid_x_um")
_INV_GOLDEN = 0.6180339887498949
_TRACK_CMAP = "turbo"


def track_hue(track_ids) -> np.ndarray:
    """Colormap position of each track id: frac(id · φ⁻¹) in [0, 1), φ the golden ratio."""
    return np.mod(np.asarray(track_ids, np.float64) * _INV_GOLDEN, 1.0)


def _track_colormap():
    from napari.utils.colormaps import ensure_colormap

    return ensure_colormap(_TRACK_CMAP)


def track_rgba(track_ids) -> np.ndarray:
    """(N, 4) RGBA in [0, 1] of each track id, as both the Tracks and the Labels layer show it."""
    return np.asarray(_track_colormap().map(track_hue(track_ids)), np.float32)


def track_label_colormap(track_ids):
    """A napari ``DirectLabelColormap``: each track id in its :func:`track_rgba` colour,
    background 0 and any other value transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    ids = [int(i) for i in np.unique(np.asarray(track_ids)) if int(i) > 0]
    colors = {None: np.zeros(4, np.float32), 0: np.zeros(4, np.float32)}
    colors.update(dict(zip(ids, track_rgba(ids))))
    return DirectLabelColormap(color_dict=colors)


def is_tracks_table(path) -> bool:
    """True when ``path`` is a ``.csv`` file whose header starts with :data:`REQUIRED_COLUMNS`
    (only the first line is read)."""
    path = Path(str(path))
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(h.strip().strip('"') for h in header[: len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS


def read_tracks_table(path) -> pd.DataFrame:
    """The tracks table of ``path``, ids and frames as integers, sorted by track then frame."""
    tracks = pd.read_csv(path)
    for col in ("track_id", "parent_id", "frame", "label"):
        tracks[col] = tracks[col].astype(np.int64)
    return tracks.sort_values(["track_id", "frame"]).reset_index(drop=True)


def frame_interval_s(tracks: pd.DataFrame) -> float:
    """Δt (s) between frames: the median of ``time_s / frame`` over frames > 0 (``holo track``
    writes time_s = frame · Δt); 1 when the table has no later frame or no positive time."""
    later = tracks[tracks["frame"] > 0]
    if later.empty:
        return 1.0
    dt = float(np.median(later["time_s"].to_numpy(float) / later["frame"].to_numpy(float)))
    return dt if np.isfinite(dt) and dt > 0 else 1.0


def division_graph(tracks: pd.DataFrame) -> dict[int, list[int]]:
    """{daughter track id: [mother track id]} for every track whose parent is in the table."""
    parents = tracks.groupby("track_id")["parent_id"].first()
    present = set(parents.index.tolist())
    return {int(t): [int(p)] for t, p in parents.items() if int(p) and int(p) in present}


def tracks_layer_data(tracks: pd.DataFrame) -> tuple[np.ndarray, dict[int, list[int]], pd.DataFrame]:
    """(vertices, graph, features) of a Tracks layer.

    vertices : (N, 5) float, ``[track_id, frame, z_um, y_um, x_um]`` sorted by track then frame;
    graph : :func:`division_graph`;
    features : the numeric columns of the table (booleans as 0/1), one row per vertex.
    """
    tracks = tracks.sort_values(["track_id", "frame"]).reset_index(drop=True)
    cols = ["track_id", "frame", *_CENTROID]
    vertices = tracks[cols].to_numpy(np.float64)
    features = tracks.select_dtypes(include=["number", "bool"]).astype(np.float64)
    features["track_hue"] = track_hue(features["track_id"])
    return vertices, division_graph(tracks), features


def tracks_layer(tracks: pd.DataFrame, name: str = "tracks", source: str | None = None) -> tuple:
    """A napari Tracks layer-data tuple: vertices and graph of :func:`tracks_layer_data`, scale
    (Δt, 1, 1, 1) in (s, µm, µm, µm), coloured by track id (:func:`track_rgba`, through the
    ``track_hue`` feature); the holo metadata keep Δt and the file it came from."""
    from holo.napari._layers import META_KEY, ZYX

    vertices, graph, features = tracks_layer_data(tracks)
    dt = frame_interval_s(tracks)
    kw = {"name": name, "graph": graph, "features": features, "scale": (dt, 1.0, 1.0, 1.0),
          "units": ("s", "µm", "µm", "µm"), "axis_labels": ("t", *ZYX), "color_by": "track_hue",
          "colormaps_dict": {"track_hue": _track_colormap()},
          "tail_length": max(1, int(tracks["frame"].max() - tracks["frame"].min()) + 1) if len(tracks) else 30,
          "metadata": {META_KEY: {"kind": "tracks", "time_step_s": dt, "source": source}}}
    return (vertices, kw, "tracks")


def track_series(tracks: pd.DataFrame, track_id: int, column: str = "dry_mass_pg",
                 ancestors: bool = True) -> pd.DataFrame:
    """``time_h``, ``column`` and ``track_id`` of one track over time, by frame; with
    ``ancestors`` preceded by its mother's, grandmother's ... rows (a cell's whole history
    back to the first frame: the curve drops by about half at each division)."""
    parents = tracks.groupby("track_id")["parent_id"].first()
    chain, tid = [], int(track_id)
    while tid and tid in parents.index and tid not in chain:
        chain.append(tid)
        tid = int(parents[tid]) if ancestors else 0
    rows = tracks[tracks["track_id"].isin(chain)].sort_values("frame")
    out = pd.DataFrame({"time_h": rows["time_s"].to_numpy(float) / 3600.0, column: rows[column].to_numpy(float),
                        "track_id": rows["track_id"].to_numpy(np.int64)})
    return out.reset_index(drop=True)


def read_growth_beside(tracks_path) -> pd.DataFrame | None:
    """The ``growth.csv`` that ``holo track`` writes beside ``tracks_path`` (per track: rate k
    with its 95 % interval, doubling time, identifiability and note), None when there is none
    or it has no ``growth_rate_per_h`` column."""
    if not tracks_path:
        return None
    path = Path(str(tracks_path)).parent / "growth.csv"
    if not path.is_file():
        return None
    try:
        growth = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return growth if {"track_id", "growth_rate_per_h"} <= set(growth.columns) else None


def track_growth(growth: pd.DataFrame | None, track_id: int) -> pd.Series | None:
    """The row of ``track_id`` in a growth table, None when absent."""
    if growth is None:
        return None
    rows = growth[growth["track_id"].astype(np.int64) == int(track_id)]
    return rows.iloc[0] if len(rows) else None


def track_labels_layer(path, name: str | None = None) -> tuple | None:
    """A Labels layer-data tuple of a (T, Z, Y, X) label-only OME-Zarr store written by
    ``holo track`` (``labels.ome.zarr``): lazy (one frame read at a time), scale
    (Δt, v_z, v_y, v_x) in (s, µm, µm, µm) on the RI layer's time slider, coloured by
    :func:`track_label_colormap` over the track ids of the ``tracks.csv`` beside it (over the
    ids present when there is none). None for any other file."""
    from holo.io.omezarr import _open_root, _read_multiscale, ome_zarr_kind
    from holo.napari._layers import META_KEY, ZYX

    path = Path(str(path))
    if ome_zarr_kind(path) != "labels":
        return None
    data, axes, sc = _read_multiscale(_open_root(path), path, "labels")
    if axes != ["t", "z", "y", "x"]:
        return None
    beside = path.parent / "tracks.csv"
    ids = read_tracks_table(beside)["track_id"].unique() if is_tracks_table(beside) else np.unique(data)
    kw = {"name": name or path.name.split(".")[0], "scale": tuple(sc[a] for a in "tzyx"),
          "units": ("s", "µm", "µm", "µm"), "axis_labels": ("t", *ZYX), "colormap": track_label_colormap(ids),
          "metadata": {META_KEY: {"kind": "labels", "time_step_s": sc["t"], "source": str(path)}}}
    return (data, kw, "labels")
