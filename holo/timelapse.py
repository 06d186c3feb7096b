"""Time-lapse chain: per frame segment → measure (→ classify), then link → tracks, growth, lineage.

Frames are read one at a time from a (T, Z, Y, X) tomogram (lazy for TCF and OME-Zarr), so
memory holds one frame and its labels plus the per-cell tables. Tables:

* ``tracks``: one row per cell and frame — ``track_id`` (the cell id), ``parent_id``,
  ``frame``, ``time_s``, ``label`` (its instance label in that frame), centroid (µm),
  ``volume_um3``, ``dry_mass_pg``, ``mean_ri``, ``class``, ``touches_border``;
* ``growth``: per track, exponential fit of the dry mass (:mod:`holo.segmentation.growth`);
* ``lineage``: per track, parent, root, generation, fate and daughters.

The twin side (:func:`simulate_timelapse`) renders :mod:`holo.twin.timelapse` series as the
tomograph sees them (missing-cone low-pass and noise of :func:`holo.segmentation.data.apply_otf`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["TRACK_COLUMNS", "TimelapseResult", "frame_cells", "track_timelapse", "track_lut", "relabel_by_track",
           "simulate_timelapse"]

TRACK_COLUMNS = ("track_id", "parent_id", "frame", "time_s", "label", "centroid_z_um", "centroid_y_um",
                 "centroid_x_um", "volume_um3", "dry_mass_pg", "mean_ri", "class", "touches_border")


@dataclass
class TimelapseResult:
    """What :func:`track_timelapse` returns; ``labels`` (T, Z, Y, X) only with ``keep_labels``."""

    tracks: pd.DataFrame
    growth: pd.DataFrame
    lineage: pd.DataFrame
    labels: np.ndarray | None = None
    seconds_per_frame: float = 0.0
    timings_s: dict = field(default_factory=dict)


def _border_labels(instance: np.ndarray) -> set:
    """Labels that touch a lateral face (y or x) of the volume."""
    faces = (instance[:, 0, :], instance[:, -1, :], instance[:, :, 0], instance[:, :, -1])
    return set(np.unique(np.concatenate([f.ravel() for f in faces])).tolist()) - {0}


def frame_cells(tomo, t: int = 0, *, method: str = "classic", classify: bool = False, **segment_kwargs):
    """Segment and measure frame ``t``: (instance labels, cells table of one row per label).

    The table has ``frame``, ``label`` and the morphometrics of
    :func:`holo.segmentation.measure` (``class`` filled by the classifier when ``classify``).
    """
    from holo.model import Tomogram
    from holo.segmentation import classify as classify_cells
    from holo.segmentation import measure, segment

    vol = Tomogram(tomo.frame(t), voxel_size_um=tomo.voxel_size_um, medium_index=tomo.medium_index,
                   wavelength_um=tomo.wavelength_um)
    seg = segment(vol, method=method, **segment_kwargs)
    classes = classify_cells(vol, seg.instance) if classify and seg.n_cells else None
    cells = measure(vol, seg.semantic, seg.instance, classes=classes)
    cells = cells.rename(columns={"cell_id": "label"})
    cells.insert(0, "frame", int(t))
    cells["touches_border"] = cells["label"].isin(_border_labels(seg.instance))
    return seg.instance, cells


def track_timelapse(tomo, *, method: str = "classic", classify: bool = False, keep_labels: bool = False,
                    max_distance_um: float = 10.0, gap_frames: int = 2, min_branch_frames: int = 2,
                    progress: Callable | None = None, on_labels: Callable | None = None,
                    **segment_kwargs) -> TimelapseResult:
    """Track every cell of a time-lapse tomogram and fit its growth.

    Parameters
    ----------
    tomo : holo.Tomogram
        (T, Z, Y, X) RI with ``time_step_s`` (a 3D tomogram is one frame).
    method, classify, segment_kwargs
        Per-frame segmentation (:func:`holo.segmentation.segment`) and classification.
    keep_labels
        Return the per-frame instance labels relabelled by track id (T·Z·Y·X int32 in memory).
    max_distance_um, gap_frames, min_branch_frames
        Linking (:func:`holo.segmentation.tracking.link_cells`).
    progress : callable(done, total, note=""), optional
        Called after each frame.
    on_labels : callable(t, instance), optional
        Receives each frame's instance labels (e.g. to stream them to disk and map them to track
        ids afterwards with :func:`relabel_by_track`, memory bounded by one frame).
    """
    from holo.segmentation.growth import growth_table, lineage_table
    from holo.segmentation.tracking import link_cells

    n = tomo.n_times
    dt_s = float(tomo.time_step_s or 1.0)
    field_um = tuple(s * v for s, v in zip(tomo.shape_zyx[1:], tomo.voxel_size_um[1:]))
    tables, labels = [], []
    t0 = time.perf_counter()
    for t in range(n):
        inst, cells = frame_cells(tomo, t, method=method, classify=classify, **segment_kwargs)
        tables.append(cells)
        if keep_labels:
            labels.append(inst)
        if on_labels is not None:
            on_labels(t, inst)
        if progress is not None:
            progress(t + 1, n, note=f"frame {t + 1}/{n}: {len(cells)} cells")
    t_seg = time.perf_counter() - t0
    det = pd.concat(tables, ignore_index=True)
    det["time_s"] = det["frame"] * dt_s
    tracks = link_cells(det, max_distance_um=max_distance_um, gap_frames=gap_frames,
                        min_branch_frames=min_branch_frames, field_um=field_um)
    tracks = tracks[[c for c in TRACK_COLUMNS if c in tracks] + [c for c in tracks if c not in TRACK_COLUMNS]]
    growth, lineage = growth_table(tracks), lineage_table(tracks)
    t_all = time.perf_counter() - t0
    lab = _relabel(labels, tracks) if keep_labels else None
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
