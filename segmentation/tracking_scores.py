"""Cell Tracking Challenge scores of a tracking result against ground truth (traccuracy).

TRA = 1 − min(AOGM, AOGM₀)/AOGM₀ and DET likewise on the vertices only, where AOGM is the
weighted count of graph operations that turn the predicted lineage graph into the true
one (vertex split 5, false negative 10, false positive 1, edge deletion 1, addition 1.5,
semantic change 1) and AOGM₀ the cost of building the truth from nothing; a predicted
cell matches a true cell when it covers more than half of its voxels (Matula et al. 2015).
Division recall and precision count true divisions whose mother and daughters are all
matched and linked the same way at the true division frame (strict: ``division_recall``,
``division_precision``) or within one frame of it (traccuracy's frame buffer 1:
``division_recall_buffer1``), under
the same matching as TRA/DET: a true cell is matched by the predicted cell that covers more
than half of it; a predicted cell that covers more than half of two true cells (a merge) is
matched to neither, since a division needs each cell matched once. A mask larger than the
truth thus does not hide a division found right. ``division_recall_iou`` is the recall under
the stricter one-to-one matching with IoU > 0.5. ``division_recall_skips`` also counts a
division whose predicted lineage reaches a daughter across a gap (traccuracy's
``relax_skips_pred``): a daughter the segmentation missed in her first frame, linked to her
mother by gap closing, is then found; the strict recall cannot count it since her first
node does not exist.

traccuracy is a test/benchmark dependency (``pip install holo[dev]``); it is imported here only.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pandas as pd

from holo.segmentation.tracking import track_graph

__all__ = ["ctc_scores", "truth_tracks_table"]


def truth_tracks_table(instance: np.ndarray, parents: dict, voxel_size_um) -> pd.DataFrame:
    """Tracks table of a series whose labels are track ids (``parents``: {track: parent})."""
    from holo.segmentation.tracking import frame_detections

    rows = [frame_detections(lab, voxel_size_um, frame=t) for t, lab in enumerate(np.asarray(instance))]
    df = pd.concat(rows, ignore_index=True)
    df["track_id"] = df["label"]
    df["parent_id"] = [int(parents.get(int(t), 0)) for t in df["track_id"]]
    return df


def ctc_scores(truth_instance: np.ndarray, truth_tracks: pd.DataFrame, pred_instance: np.ndarray,
               pred_tracks: pd.DataFrame) -> dict:
    """TRA, DET, division recall/precision/F1 of ``pred`` against ``truth``.

    Parameters
    ----------
    truth_instance, pred_instance : (T, Z, Y, X) int
        Label series (labels unique within a frame).
    truth_tracks, pred_tracks : DataFrame
        ``frame``, ``label`` (the label in that frame), ``track_id``, ``parent_id`` and the
        centroid columns.

    Returns
    -------
    dict
        ``TRA``, ``DET``, ``division_recall``, ``division_precision``, ``division_f1``,
        ``true_divisions`` (strict: the division frame exact), ``division_recall_buffer1``,
        ``division_precision_buffer1`` (one frame of slack), ``division_recall_skips``,
        ``division_recall_iou`` (strict).
    """
    import networkx as nx
    from traccuracy import TrackingGraph, run_metrics
    from traccuracy.matchers import CTCMatcher, IOUMatcher
    from traccuracy.metrics import CTCMetrics, DivisionMetrics

    keys = ("z", "y", "x")

    def graphs():  # traccuracy annotates the graphs in place: fresh ones for every run
        return (TrackingGraph(track_graph(truth_tracks), np.asarray(truth_instance), location_keys=keys),
                TrackingGraph(track_graph(pred_tracks), np.asarray(pred_instance), location_keys=keys))

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ctc, _ = run_metrics(*graphs(), matcher=CTCMatcher(), metrics=[CTCMetrics()])
        out["TRA"], out["DET"] = float(ctc[0]["results"]["TRA"]), float(ctc[0]["results"]["DET"])
        runs = (("", _majority_matcher(CTCMatcher)(), False), ("_skips", _majority_matcher(CTCMatcher)(), True),
                ("_iou", IOUMatcher(iou_threshold=0.5, one_to_one=True), False))
        for suffix, matcher, relax in runs:
            try:
                div, _ = run_metrics(*graphs(), matcher=matcher, metrics=[DivisionMetrics(max_frame_buffer=1)],
                                     relax_skips_pred=relax)
            except nx.NodeNotFound:  # traccuracy's skip-edge search can miss a node: no gap-aware score then
                out[f"division_recall{suffix}"] = float("nan")
                continue
            d = _buffer_entry(div[0]["results"], 0)
            out[f"division_recall{suffix}"] = float(d.get("Division Recall", np.nan))
            if not suffix:
                out["division_precision"] = float(d.get("Division Precision", np.nan))
                out["division_f1"] = float(d.get("Division F1", np.nan))
                out["true_divisions"] = int(d.get("Total GT Divisions", 0))
                d1 = _buffer_entry(div[0]["results"], 1)
                out["division_recall_buffer1"] = float(d1.get("Division Recall", np.nan))
                out["division_precision_buffer1"] = float(d1.get("Division Precision", np.nan))
    return out


def _majority_matcher(ctc_matcher):
    """The CTC matcher (a true cell ↔ the predicted cell covering > ½ of it) made one-to-one by
    dropping the pairs of a predicted cell that covers more than half of several true cells."""

    class MajorityOneToOne(ctc_matcher):
        _matching_type = "one-to-one"

        def _compute_mapping(self, gt_graph, pred_graph):
            pairs = super()._compute_mapping(gt_graph, pred_graph)
            n_per_pred = Counter(p for _, p in pairs)
            return [(g, p) for g, p in pairs if n_per_pred[p] == 1]

    return MajorityOneToOne


def _buffer_entry(vals: dict, frame_buffer: int) -> dict:
    """The division results of ``frame_buffer`` (or the only ones)."""
    key = f"Frame Buffer {frame_buffer}"
    if key not in vals:
        key = next(iter(vals))
    return vals[key] if isinstance(vals.get(key), dict) else vals
