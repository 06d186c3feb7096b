"""Time-lapse chain: per frame segment → measure (→ classify), then link → tracks, growth, lineage.

Frames are read one at a time from a (T, Z, Y, X) tomogram (lazy for TCF and OME-Zarr), so
memory holds one frame and its labels plus the per-cell tables. Tables:

* ``tracks``: one row per cell and frame — ``track_id`` (the cell id), ``parent_id``,
  ``frame``, ``time_s``, ``label`` (its instance label in that frame), centroid (µm),
  ``volume_um3``, ``dry_mass_pg``, ``mean_ri``, ``class``, ``touches_border``, ``contact_group``
  (the group of cells touching it in that frame, 0 when alone: weighed less by the growth fit);
* ``growth``: per track, exponential fit of the dry mass (:mod:`holo.segmentation.growth`);
* ``lineage``: per track, parent, root, generation, fate and daughters.

The twin side (:func:`simulate_timelapse`) renders :mod:`holo.twin.timelapse` series as the
tomograph sees them (missing-cone low-pass and noise of :func:`holo.segmentation.data.apply_otf`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pandas as pd

__all__ = ["TRACK_COLUMNS", "MIN_MASS_FRACTION", "TimelapseResult", "light_labels", "labels_beside_heavier", "light_detections",
           "without_labels", "drop_light_detections", "frame_cells", "track_timelapse", "track_lut", "relabel_by_track",
           "simulate_timelapse", "open_time_series", "is_time_series", "segment_frame", "frames_on_dask",
           "write_timelapse", "raw_labels_store", "process_timelapse", "SeriesAwareProcess"]

TRACK_COLUMNS = ("track_id", "parent_id", "frame", "time_s", "label", "centroid_z_um", "centroid_y_um",
                 "centroid_x_um", "volume_um3", "dry_mass_pg", "mean_ri", "class", "touches_border",
                 "contact_group")


@dataclass
class TimelapseResult:
    """What :func:`track_timelapse` returns; ``labels`` (T, Z, Y, X) only with ``keep_labels``."""

    tracks: pd.DataFrame
    growth: pd.DataFrame
    lineage: pd.DataFrame
    labels: np.ndarray | None = None
    seconds_per_frame: float = 0.0
    timings_s: dict = field(default_factory=dict)


#: A detection whose dry mass (over its territory) is below this fraction of its frame's
#: median detection, and which lies in the halo of a heavier cell or at the field's edge, is
#: not a cell but a fragment of the segmentation (a ringing lobe or sliver beside a cell): a
#: culture's cells span about a factor 4 in dry mass (birth to division, cell to cell), so one
#: ten times lighter than the median is none of them. Left in, its territory takes the blurred
#: halo of the cell beside it, by a share that changes from frame to frame (growth fits off by
#: 10–30 % on the twin series). A light object on its own (a bacterium among large cells) is
#: kept: it takes no other cell's halo.
MIN_MASS_FRACTION = 0.1


def light_labels(masses_pg: dict, border: set, fraction: float = MIN_MASS_FRACTION) -> list:
    """Labels whose dry mass is below ``fraction`` × the median of the whole cells of
    ``masses_pg`` ({label: m}; whole: not in ``border``, the labels cut by the field's edge, or
    all labels when every one is). A light label at the edge goes too: a fragment there, or a
    cell with under a tenth of a cell's mass in the field, whose mass cannot be measured."""
    whole = [m for k, m in masses_pg.items() if k not in border] or list(masses_pg.values())
    if not whole or fraction <= 0:
        return []
    limit = float(fraction) * float(np.median(whole))
    return sorted(k for k, m in masses_pg.items() if m < limit)


def labels_beside_heavier(instance: np.ndarray, light: list, voxel_size_um, medium_index: float,
                          wavelength_um: float, *, near: dict | None = None) -> set:
    """The labels of ``light`` with a voxel of another, not light, label within their own
    territory margin (:func:`holo.segmentation.tracking.territory_neighbours`, the time-lapse's
    c and κ; ``near``: that neighbour map of the frame when known): the detections sitting in a
    heavier cell's blurred halo."""
    from holo.segmentation.tracking import territory_neighbours

    if not light:
        return set()
    light_set = {int(k) for k in light}
    if near is None:
        near = territory_neighbours(instance, voxel_size_um, medium_index, wavelength_um, labels=light_set)
    return {k for k in light_set if near.get(k, set()) - light_set}


def light_detections(vol, instance: np.ndarray, fraction: float = MIN_MASS_FRACTION, *, near: dict | None = None) -> list:
    """The :func:`light_labels` of the frame ``vol`` that touch the field's edge or sit beside a
    heavier cell (:func:`labels_beside_heavier`, ``near`` passed on)."""
    from holo.segmentation.tracking import border_labels, territory_dry_mass_pg

    if fraction <= 0 or not instance.any():
        return []
    masses = territory_dry_mass_pg(instance, vol.ri, vol.medium_index, vol.voxel_size_um,
                                   wavelength_um=vol.wavelength_um or 0.532)
    border = border_labels(instance)
    light = light_labels(masses, border, fraction)
    beside = labels_beside_heavier(instance, light, vol.voxel_size_um, vol.medium_index, vol.wavelength_um or 0.532,
                                   near=near)
    return [k for k in light if k in border or k in beside]


def without_labels(semantic: np.ndarray, instance: np.ndarray, gone: list):
    """``(semantic, instance)`` with the voxels of the labels ``gone`` made background and the
    instance labels renumbered 1..K in their order; the same arrays when ``gone`` is empty."""
    from skimage.segmentation import relabel_sequential

    if not len(gone):
        return semantic, instance
    out = np.isin(instance, gone)
    semantic, instance = semantic.copy(), instance.copy()
    semantic[out], instance[out] = 0, 0
    return semantic, relabel_sequential(instance)[0].astype(np.int32)


def drop_light_detections(vol, semantic: np.ndarray, instance: np.ndarray, fraction: float = MIN_MASS_FRACTION):
    """``(semantic, instance)`` without the :func:`light_detections` of the frame ``vol`` (their
    voxels become background, so the territories of the cells around them take their mass
    back); the instance labels renumbered 1..K in their order. Unchanged arrays when nothing is
    dropped."""
    return without_labels(semantic, instance, light_detections(vol, instance, fraction))


def _renumbered(near: dict, gone: list) -> dict:
    """The neighbour map ``near`` ({label: labels}) after :func:`without_labels` dropped ``gone``:
    a cell's margin depends on its own footprint only, so its neighbours are the same cells."""
    new = {k: i for i, k in enumerate(sorted(set(near) - set(gone)), start=1)}
    return {new[k]: {new[j] for j in js if j in new} for k, js in near.items() if k in new}


def frame_cells(tomo, t: int = 0, *, method: str = "classic", classify: bool = False,
                min_mass_fraction: float = MIN_MASS_FRACTION, **segment_kwargs):
    """Segment and measure frame ``t``: (instance labels, cells table of one row per label).

    The table has ``frame``, ``label``, the morphometrics of :func:`holo.segmentation.measure`
    (``class`` filled by the classifier when ``classify``) and ``contact_group``
    (:func:`holo.segmentation.tracking.contact_groups`).
    Detections lighter than ``min_mass_fraction`` of the frame's median are dropped first
    (:func:`drop_light_detections`; 0 keeps every one).
    """
    from holo.model import Tomogram
    from holo.segmentation import classify as classify_cells
    from holo.segmentation import measure, segment
    from holo.segmentation.tracking import (TRACK_CONE_FRACTION, TRACK_MARGIN_RESOLUTIONS, contact_groups,
                                            territory_neighbours)

    vol = Tomogram(tomo.frame(t), voxel_size_um=tomo.voxel_size_um, medium_index=tomo.medium_index,
                   wavelength_um=tomo.wavelength_um)
    seg = segment(vol, method=method, **segment_kwargs)
    # one neighbour map for the fragments' drop and the contact groups
    near = territory_neighbours(seg.instance, vol.voxel_size_um, vol.medium_index, vol.wavelength_um or 0.532)
    gone = light_detections(vol, seg.instance, min_mass_fraction, near=near)
    semantic, instance = without_labels(seg.semantic, seg.instance, gone)
    classes = classify_cells(vol, instance) if classify and instance.any() else None
    # dry mass over each cell's territory (holo.segmentation.tracking.territory_dry_mass_pg):
    # growth is the slope of ln m, the fraction held must not change as the cell grows
    cells = measure(vol, semantic, instance, classes=classes, margin_resolutions=TRACK_MARGIN_RESOLUTIONS,
                    cone_fraction=TRACK_CONE_FRACTION)
    cells = cells.rename(columns={"cell_id": "label"})
    cells.insert(0, "frame", int(t))  # touches_border comes with the measurements
    group = contact_groups(instance, vol.voxel_size_um, vol.medium_index, vol.wavelength_um or 0.532,
                           near=_renumbered(near, gone))
    cells["contact_group"] = np.array([group.get(int(k), 0) for k in cells["label"]], np.int64)
    return instance, cells


def track_timelapse(tomo, *, method: str = "classic", classify: bool = False, keep_labels: bool = False,
                    max_distance_um: float = 10.0, gap_frames: int = 2, min_branch_frames: int = 2,
                    progress: Callable | None = None, on_labels: Callable | None = None,
                    frames: Iterable | None = None, **segment_kwargs) -> TimelapseResult:
    """Track every cell of a time-lapse tomogram and fit its growth.

    Parameters
    ----------
    tomo : holo.Tomogram
        (T, Z, Y, X) RI with ``time_step_s`` (a 3D tomogram is one frame).
    method, classify, segment_kwargs
        Per-frame segmentation (:func:`holo.segmentation.segment`) and classification
        (``min_mass_fraction`` among ``segment_kwargs`` goes to :func:`frame_cells`).
    keep_labels
        Return the per-frame instance labels relabelled by track id (T·Z·Y·X int32 in memory).
    max_distance_um, gap_frames, min_branch_frames
        Linking (:func:`holo.segmentation.tracking.link_cells`).
    progress : callable(done, total, note=""), optional
        Called after each frame.
    on_labels : callable(t, instance), optional
        Receives each frame's instance labels (e.g. to stream them to disk and map them to track
        ids afterwards with :func:`relabel_by_track`, memory bounded by one frame).
    frames : iterable of (t, instance, cells), optional
        The segmented frames in any order (e.g. :func:`frames_on_dask`); default: frame after
        frame here (:func:`frame_cells`).
    """
    from holo.segmentation.growth import growth_table, lineage_table
    from holo.segmentation.tracking import link_cells

    n = tomo.n_times
    dt_s = float(tomo.time_step_s or 1.0)
    field_um = tuple(s * v for s, v in zip(tomo.shape_zyx[1:], tomo.voxel_size_um[1:]))
    if frames is None:
        frames = ((t, *frame_cells(tomo, t, method=method, classify=classify, **segment_kwargs)) for t in range(n))
    tables, labels = [], {}
    t0 = time.perf_counter()
    for done, (t, inst, cells) in enumerate(frames, start=1):
        tables.append(cells)
        if keep_labels:
            labels[t] = inst
        if on_labels is not None:
            on_labels(t, inst)
        if progress is not None:
            progress(done, n, note=f"frame {t + 1}/{n}: {len(cells)} cells")
    t_seg = time.perf_counter() - t0
    det = pd.concat(tables, ignore_index=True).sort_values(["frame", "label"], ignore_index=True)
    det["time_s"] = det["frame"] * dt_s
    tracks = link_cells(det, max_distance_um=max_distance_um, gap_frames=gap_frames,
                        min_branch_frames=min_branch_frames, field_um=field_um)
    tracks = tracks[[c for c in TRACK_COLUMNS if c in tracks] + [c for c in tracks if c not in TRACK_COLUMNS]]
    growth, lineage = growth_table(tracks), lineage_table(tracks)
    t_all = time.perf_counter() - t0
    lab = _relabel([labels[t] for t in range(n)], tracks) if keep_labels else None
    return TimelapseResult(tracks, growth, lineage, lab, t_all / max(n, 1),
                           {"segmentation": round(t_seg, 3), "linking": round(t_all - t_seg, 3)})


def track_lut(tracks: pd.DataFrame, t: int, max_label: int) -> np.ndarray:
    """Look-up table of frame ``t``: ``lut[label] = track_id`` (0 for background and for labels
    that no track holds), length ``max_label + 1``; ``label_joined`` (the other half of a cell
    the segmenter cut, :func:`holo.segmentation.tracking.join_fragments`) maps to the same track."""
    lut = np.zeros(int(max_label) + 1, np.int32)
    rows = tracks[tracks["frame"] == t]
    for col in ("label", "label_joined"):
        if col in rows:
            sel = rows[(rows[col] > 0) & (rows[col] <= max_label)]
            lut[sel[col].to_numpy(int)] = sel["track_id"].to_numpy(int)
    return lut


def _relabel(labels: list, tracks: pd.DataFrame) -> np.ndarray:
    """Per-frame labels → track ids."""
    out = np.zeros((len(labels), *labels[0].shape), np.int32)
    for t, lab in enumerate(labels):
        out[t] = track_lut(tracks, t, int(lab.max()))[lab]
    return out


def relabel_by_track(raw, tracks: pd.DataFrame):
    """Lazy (T, Z, Y, X) int32 dask array: frame t of ``raw`` (per-frame instance labels, any
    array with ``shape``/``__getitem__``, e.g. a zarr array) mapped by :func:`track_lut`; it is
    computed one frame at a time."""
    import dask.array as da

    src = da.from_array(raw, chunks=(1, *raw.shape[1:]))

    def _map(block, block_info=None):
        t = block_info[0]["chunk-location"][0]
        return track_lut(tracks, t, int(block.max(initial=0)))[block]

    return src.map_blocks(_map, dtype=np.int32)


def simulate_timelapse(n_frames: int = 12, interval_s: float = 600.0, *, instrument: bool = True,
                       noise_ri: float = 0.0015, seed: int = 0, progress: Callable | None = None, **plan_kwargs):
    """A twin time-lapse as a tomogram: ``(Tomogram (T, Z, Y, X), Timelapse, truth instance
    (T, Z, Y, X) int32 labelled by track id)``.

    With ``instrument`` every frame's RI is low-passed by the tomograph's transfer function
    and gets band-limited noise of SD ``noise_ri`` (:func:`holo.segmentation.data.apply_otf`).
    """
    from holo.model import Tomogram
    from holo.segmentation.data import apply_otf
    from holo.twin.timelapse import plan_timelapse, render_frame

    tl = plan_timelapse(n_frames, interval_s, seed=seed, **plan_kwargs)
    ri = np.empty((tl.n_frames, *tl.shape_zyx), np.float32)
    inst = np.empty((tl.n_frames, *tl.shape_zyx), np.int32)
    rng = np.random.default_rng(seed)
    for t in range(tl.n_frames):
        p = render_frame(tl, t)
        ri[t] = apply_otf(p.ri, tl.voxel_size_um, tl.medium_index, rng=rng, noise_ri=noise_ri) if instrument else p.ri
        inst[t] = p.instance
        if progress is not None:
            progress(t + 1, tl.n_frames, note=f"frame {t + 1}/{tl.n_frames}")
    tomo = Tomogram(ri, voxel_size_um=tl.voxel_size_um, medium_index=tl.medium_index, wavelength_um=0.532,
                    time_step_s=float(interval_s), provenance={"twin": "holo.twin.timelapse", "seed": int(seed)})
    return tomo, tl, inst


# -- a time series as one sample of ``holo run`` ---------------------------------------------
def open_time_series(path):
    """The (T, Z, Y, X) tomogram of ``path`` (lazy for TCF and OME-Zarr); FormatError if the
    file holds no tomogram."""
    import holo
    from holo.errors import FormatError
    from holo.model import Tomogram

    obj = holo.open(path)
    if not isinstance(obj, Tomogram):
        raise FormatError("is not a tomogram (reconstruct the acquisition first: holo reconstruct)", path=path)
    return obj


def is_time_series(path) -> bool:
    """Whether ``path`` holds a tomogram of more than one time point (False when it holds
    anything else or cannot be read: the one-volume path then reports it)."""
    try:
        tomo = open_time_series(path)
    except Exception:
        return False
    return tomo.has_time and tomo.n_times > 1


def segment_frame(path, t: int, *, tomo=None, method: str = "classic", classify: bool = False, **segment_kwargs):
    """``(t, instance, cells)`` of frame ``t`` of the time series in ``path`` (read from the file
    unless its opened ``tomo`` is given: a dask worker reads its own frame). Any failure is one
    line naming the file and the frame."""
    from holo.errors import HoloError

    try:
        tomo = open_time_series(path) if tomo is None else tomo
        return (int(t), *frame_cells(tomo, int(t), method=method, classify=classify, **segment_kwargs))
    except HoloError as exc:
        raise HoloError(exc.message, path=path, item=f"frame {t}" + (f": {exc.item}" if exc.item else "")) from None
    except Exception as exc:  # numerical or I/O failure in one frame: named, not a traceback
        raise HoloError(f"{type(exc).__name__}: {exc}", path=path, item=f"frame {t}") from None


def frames_on_dask(client, path, n_frames: int, *, window: int | None = None, **frame_kwargs):
    """Segment the frames of ``path`` as tasks of ``client``'s cluster; yields
    :func:`segment_frame` results as they complete (any order). At most ``window`` frames
    (default twice the workers) are submitted or waiting to be collected, so memory holds
    a few frames whatever the length of the series; the first failure cancels the rest."""
    from dask.distributed import as_completed

    window = max(2, window or 2 * max(1, len(client.scheduler_info().get("workers", {}))))
    todo = iter(range(int(n_frames)))
    pending = as_completed([client.submit(segment_frame, str(path), t, pure=False, **frame_kwargs)
                            for t in [next(todo) for _ in range(min(window, n_frames))]])
    try:
        for fut in pending:
            result = fut.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.add(client.submit(segment_frame, str(path), nxt, pure=False, **frame_kwargs))
            yield result
    finally:
        pending.clear()


def write_timelapse(folder, tomo, res: TimelapseResult, raw) -> None:
    """``tracks.csv``, ``growth.csv``, ``lineage.csv`` and ``labels.ome.zarr`` (the per-frame
    labels ``raw`` mapped to track ids one frame at a time) into ``folder``."""
    from holo.io.omezarr import write_labels_zarr

    res.tracks.to_csv(folder / "tracks.csv", index=False)
    res.growth.to_csv(folder / "growth.csv", index=False)
    res.lineage.to_csv(folder / "lineage.csv", index=False)
    write_labels_zarr(folder / "labels.ome.zarr", relabel_by_track(raw, res.tracks), tomo.voxel_size_um,
                      name="tracks", time_step_s=float(tomo.time_step_s or 1.0))


def raw_labels_store(path, tomo):
    """An on-disk (T, Z, Y, X) int32 zarr array, one chunk per frame, for the per-frame labels."""
    import zarr

    return zarr.open_array(str(path), mode="w", shape=(tomo.n_times, *tomo.shape_zyx), dtype="int32",
                           chunks=(1, *tomo.shape_zyx))


def _frame_source(path, tomo, options, spread: bool):
    """Frames on the dask cluster of the running worker (``spread`` inside a ``holo run``
    task), else None (one after another here)."""
    if not spread:
        return None
    try:
        from dask.distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return None

    def frames():
        with worker_client() as client:
            yield from frames_on_dask(client, path, tomo.n_times, **_frame_kwargs(options))

    return frames()


def _frame_kwargs(options) -> dict:
    kw = {"method": options.seg_method}
    if options.seg_method == "unet":
        kw["name"] = options.unet_model
        if getattr(options, "fast", False):
            kw["fast"] = True
    return kw


def process_timelapse(input_path, out_dir, options=None, progress: Callable | None = None, *, name: str | None = None,
                      spread: bool = False) -> dict:
    """One time series through ``holo run``: every frame segmented (lazily, one frame in memory,
    or over the dask cluster with ``spread`` inside a worker), cells linked, growth fitted;
    ``OUT/<name>/`` gets the outputs of ``holo track`` (:func:`write_timelapse`), ``cells.csv``
    (the tracks with a ``sample`` column), ``report.html``/``report.json`` and
    ``provenance.json``, atomically. Returns the summary record of :func:`holo.sample.process_sample`."""
    import json
    import shutil
    from dataclasses import asdict
    from pathlib import Path

    from holo.io._atomic import atomic_path
    from holo.sample import SampleOptions, sample_name
    from holo.segmentation.report import growth_counts

    options = options or SampleOptions()
    input_path = Path(input_path)
    name = name or sample_name(input_path)
    tomo = open_time_series(input_path)
    t0 = time.perf_counter()
    with atomic_path(Path(out_dir) / name) as tmp:
        tmp.mkdir(parents=True)
        raw = raw_labels_store(tmp / "raw-labels.zarr", tomo)
        on_dask = _frame_source(input_path, tomo, options, spread)
        here = (segment_frame(input_path, t, tomo=tomo, **_frame_kwargs(options)) for t in range(tomo.n_times))
        res = track_timelapse(tomo, progress=progress, on_labels=raw.__setitem__, frames=on_dask or here)
        write_timelapse(tmp, tomo, res, raw)
        shutil.rmtree(tmp / "raw-labels.zarr")
        res.tracks.assign(sample=name)[["sample", *res.tracks.columns]].to_csv(tmp / "cells.csv", index=False)
        _write_report(tmp, tomo, res)
        summary = {"name": name, "input": str(input_path.resolve()), "status": "done", "time_series": True,
                   "n_frames": tomo.n_times, "frames_on_dask": on_dask is not None, "n_cells": int(len(res.lineage)),
                   "n_divisions": int((res.lineage["fate"] == "divided").sum()) if len(res.lineage) else 0,
                   **growth_counts(res.growth), "class_counts": {}, "seconds_per_frame": round(res.seconds_per_frame, 3),
                   "outputs": sorted(p.name for p in tmp.iterdir()) + ["provenance.json"],
                   "seconds": round(time.perf_counter() - t0, 3), "timings_s": res.timings_s}
        (tmp / "provenance.json").write_text(json.dumps({"sample": summary, "options": asdict(options),
                                                         "tomogram": dict(tomo.provenance),
                                                         "voxel_size_um": list(tomo.voxel_size_um)}, indent=2, default=str))
    summary["dir"] = str(Path(out_dir) / name)
    return summary


def _write_report(folder, tomo, res: TimelapseResult) -> None:
    """The time-lapse report (growth curves, lineage) when the report module offers it."""
    from holo.segmentation import report

    if hasattr(report, "write_timelapse_report"):
        report.write_timelapse_report(folder, tomo, res.tracks, res.growth, res.lineage)


class SeriesAwareProcess:
    """``process_fn`` of :func:`holo.batch.run_batch` for ``holo run``: a time series goes to
    :func:`process_timelapse`, anything else to :func:`holo.sample.process_sample`.

    ``spread``: spread a series' frames over the dask cluster when running on a worker (not
    under a per-sample timeout, whose child process has no cluster). ``frame_progress``:
    ``callable(name, done, total)`` per frame, in-process runs only (not pickled)."""

    def __init__(self, spread: bool = False, frame_progress: Callable | None = None):
        self.spread = spread
        self.frame_progress = frame_progress

    def __getstate__(self):
        return {"spread": self.spread, "frame_progress": None}

    def __call__(self, input_path, out_dir, options=None, progress=None, *, name=None) -> dict:
        from holo.sample import process_sample, sample_name

        if not is_time_series(input_path):
            return process_sample(input_path, out_dir, options, progress, name=name)
        label = name or sample_name(input_path)
        fp = self.frame_progress
        on_frame = (lambda done, total, note="": fp(label, done, total)) if fp else None
        return process_timelapse(input_path, out_dir, options, on_frame, name=name, spread=self.spread)
