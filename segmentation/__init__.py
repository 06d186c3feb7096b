"""AI diagnosis of RI tomograms: 3D segmentation, per-cell classification, morphometrics, report.

Public API (contracts in ``docs/design.md``)::

    seg = segment(tomo, method="unet")          # Segmentation(semantic uint8, instance int32)
    classes = classify(tomo, seg.instance)      # DataFrame cell_id, class, confidence, p_<class>...
    cells = measure(tomo, seg.semantic, seg.instance, classes=classes)
    seg, cells, timings_s = diagnose(tomo)      # the three steps above, in this order
    write_report(out_dir, tomo, seg, cells)     # report.html + report.json

Semantic labels: 0 background, 1 cytoplasm, 2 nucleus, 3 nucleolus, 4 lipid droplet (the
order of :data:`holo.labels.SEMANTIC_NAMES`). Shipped weights live in
``segmentation/weights`` (see its ``MODEL_CARD.md``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np

from holo.labels import SEMANTIC_NAMES, UNCERTAIN, UNKNOWN
from holo.segmentation.novelty import DEFAULT_MAX_EDGE_CUT, DEFAULT_QUANTILE

__all__ = ["METHODS", "Segmentation", "Diagnosis", "segment", "classify", "measure", "abstain", "diagnose",
           "write_report", "SEMANTIC_NAMES", "UNCERTAIN", "UNKNOWN"]

#: χ² quantile of the out-of-distribution threshold of :func:`abstain` (None in
#: :func:`diagnose` turns abstention off): the novelty model's own default.
NOVELTY_QUANTILE = DEFAULT_QUANTILE

#: Segmentation methods of :func:`segment`: the 3D U-Net and the classical RI-threshold baseline.
METHODS = ("unet", "classic")


@dataclass
class Segmentation:
    """Labels on the tomogram's grid: ``semantic`` (uint8, 0..4) and ``instance`` (int32, 0 = none)."""

    semantic: np.ndarray
    instance: np.ndarray
    method: str = "unet"
    metadata: dict = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return int(len(np.unique(self.instance[self.instance > 0])))


def _frame(tomo) -> np.ndarray:
    ri = tomo.frame(0) if hasattr(tomo, "frame") else np.asarray(tomo, np.float32)
    if ri.ndim != 3:
        raise ValueError(f"tomogram RI must be 3D (Z, Y, X), got shape {ri.shape}")
    from holo.io.ometiff import check_finite

    return check_finite(ri, getattr(tomo, "source", None), "ri")  # NaN would hang the watershed seeds (h-maxima)


def segment(tomo, method: str = "unet", *, name: str = "unet", weights_dir=None, device=None, **kwargs) -> Segmentation:
    """Segment a tomogram (first time point of a time series).

    Parameters
    ----------
    tomo : holo.Tomogram
    method : {"unet", "classic"} (:data:`METHODS`)
        ``"unet"``: the shipped (or ``weights_dir``) 3D U-Net with tiled inference, nucleoli
        and lipid droplets from the network its JSON pairs it with (``organelle_model``)
        (other ``kwargs`` go to :func:`holo.segmentation.infer.unet_segment`);
        ``"classic"``: RI threshold + distance-transform watershed
        (:func:`holo.segmentation.classic.classic_segment`, ``kwargs`` passed on).
    name : str
        U-Net weights set of the folder (:func:`holo.segmentation.infer.unet_names`): ``"unet"``,
        or ``"unet_fine"`` (0.1 µm lateral, for small objects on finely sampled tomograms);
        ignored by ``"classic"``.

    Returns
    -------
    Segmentation
    """
    ri = _frame(tomo)
    if method == "unet":
        from holo.segmentation.infer import unet_segment

        sem, inst = unet_segment(ri, tomo.voxel_size_um, tomo.medium_index, weights_dir=weights_dir, name=name,
                                 device=device, **kwargs)
    elif method == "classic":
        from holo.segmentation.classic import classic_segment

        sem, inst = classic_segment(ri, tomo.voxel_size_um, tomo.medium_index, **kwargs)
    else:
        raise ValueError(f"method must be {' or '.join(repr(m) for m in METHODS)}, got {method!r}")
    return Segmentation(sem.astype(np.uint8), inst.astype(np.int32), method=method)


def classify(tomo, instance, *, weights_dir=None, device=None, threshold: float | None = None,
             threads: int | None = None):
    """Classify every cell of an instance volume with the calibrated 3D CNN (``threads``: torch
    CPU threads for it, default all allowed CPUs).

    Returns
    -------
    pandas.DataFrame
        ``cell_id, class, confidence, p_<class>...``; ``class`` is :data:`UNCERTAIN` when the
        calibrated top probability is below ``threshold`` (default: the weights' JSON value,
        0.6).
    """
    import pandas as pd

    from holo.segmentation.infer import classify_cells, load_classifier

    ri = _frame(tomo)
    instance = np.asarray(instance)
    if instance.shape != ri.shape:
        raise ValueError(f"instance shape {instance.shape} differs from the tomogram {ri.shape}")
    model, cfg = load_classifier(weights_dir)
    thr = float(cfg.get("uncertain_below", 0.6) if threshold is None else threshold)
    ids, probs, names = classify_cells(ri, instance, tomo.voxel_size_um, tomo.medium_index, model=model, cfg=cfg,
                                       device=device, threads=threads)
    top = probs.argmax(axis=1) if len(ids) else np.zeros(0, int)
    conf = probs.max(axis=1) if len(ids) else np.zeros(0)
    df = pd.DataFrame({
        "cell_id": ids.astype(int),
        "class": [names[k] if c >= thr else UNCERTAIN for k, c in zip(top, conf)],
        "confidence": conf.astype(float),
    })
    for j, n in enumerate(names):
        df[f"p_{n}"] = probs[:, j] if len(ids) else np.zeros(0)
    return df


def measure(tomo, semantic, instance, classes=None, **options):
    """Per-cell morphometrics (see :mod:`holo.segmentation.morphometrics`), joined with ``classes``.

    Parameters
    ----------
    tomo : holo.Tomogram
    semantic, instance : (Z, Y, X) label volumes on the tomogram's grid
    classes : DataFrame with ``cell_id, class, confidence`` (e.g. from :func:`classify`), optional
    **options
        Passed to :func:`holo.segmentation.morphometrics.measure_cells`: ``mass_region``
        ("share" default: the dry mass of each cell's share of the volume, blur included;
        "mask": its tight mask), ``medium`` ("metadata" default, or "estimate": n_m from the
        background), the optics of the blur margins (``wavelength_um`` defaults to the
        tomogram's).

    Returns
    -------
    pandas.DataFrame
        One row per cell; ``class`` and ``confidence`` columns always present (empty / NaN
        when no classes are given); ``attrs["medium"]`` and ``attrs["warnings"]`` as
        ``measure_cells`` sets them.
    """
    return _with_classes(_measured(tomo, semantic, instance, **options), classes)


def _measured(tomo, semantic, instance, **options):
    """The morphometrics table of :func:`measure` before the classes are joined."""
    from holo.segmentation.morphometrics import measure_cells

    if tomo.wavelength_um:
        options.setdefault("wavelength_um", tomo.wavelength_um)
    return measure_cells(_frame(tomo), semantic, instance, tomo.voxel_size_um, tomo.medium_index, **options)


def _with_classes(df, classes):
    """The cells table joined with ``classes`` on ``cell_id`` (:func:`measure`)."""
    attrs = dict(df.attrs)
    if classes is not None and len(classes.columns):
        if "cell_id" not in classes.columns:
            raise ValueError("classes needs a 'cell_id' column")
        extra = classes.drop(columns=[c for c in df.columns if c in classes.columns and c != "cell_id"])
        df = df.merge(extra, on="cell_id", how="left")
    if "class" not in df.columns:
        df["class"] = ""
    if "confidence" not in df.columns:
        df["confidence"] = np.nan
    df.attrs.update(attrs)
    return df


def abstain(cells, *, weights_dir=None, quantile: float | None = NOVELTY_QUANTILE, instance=None,
            max_edge_cut: float | None = DEFAULT_MAX_EDGE_CUT):
    """Cells unlike the training distribution of their predicted class, or cut by the field's
    edge, become :data:`UNKNOWN`.

    The measured features (the model's list, :data:`holo.segmentation.novelty.FEATURES`:
    volume, concentration over the share and inside the mask, sphericity, nucleus fraction, RI
    texture, fraction of the share's mass outside the mask) are compared with per-class
    Gaussians fitted on twin cells as the chain sees them (``novelty.json`` of the weights
    folder; :mod:`holo.segmentation.novelty`); a squared Mahalanobis distance above the χ²
    ``quantile`` (one degree of freedom per feature: 7 → 24.3 at 0.999) makes the cell
    ``unknown`` (``quantile`` None: no novelty check). With the ``instance`` volume, a cell
    cut by a lateral face of the field whose cut face exceeds ``max_edge_cut`` of its widest
    section (:func:`holo.segmentation.novelty.edge_cut_ratio`) is ``unknown`` too: the
    classifier's accuracy falls on such cells (model card). Adds ``novelty_d2`` and
    ``reason`` (why a cell is unknown or uncertain). Without ``novelty.json`` only the
    columns and the edge check are added.
    """
    from holo.segmentation.novelty import abstain as _abstain, edge_cut_ratio, load_novelty

    model = None if quantile is None else load_novelty(weights_dir)
    cut = None if instance is None or max_edge_cut is None else edge_cut_ratio(instance)
    out = _abstain(cells, model, quantile=NOVELTY_QUANTILE if quantile is None else quantile, edge_cut=cut,
                   max_edge_cut=max_edge_cut)
    out.attrs.update(cells.attrs)
    return out


def write_report(out_dir, tomo, seg: Segmentation, cells, *, title: str | None = None):
    """Write ``report.html`` (MIPs, overlays, class counts, histograms) and ``report.json``; returns the HTML path."""
    from holo.segmentation.report import write_report as _write

    return _write(out_dir, tomo, seg, cells, title=title)


class Diagnosis(NamedTuple):
    """What :func:`diagnose` returns: the labels, the cells table and the seconds per step."""

    segmentation: Segmentation
    cells: Any  # pandas.DataFrame (pandas is imported by the functions that need it)
    timings_s: dict


def diagnose(tomo, method: str = "unet", *, name: str = "unet", weights_dir=None, device=None,
             progress: Callable | None = None, fast: bool = False,
             novelty_quantile: float | None = NOVELTY_QUANTILE, max_edge_cut: float | None = DEFAULT_MAX_EDGE_CUT,
             **measure_options) -> Diagnosis:
    """segment → classify → measure for one tomogram (the chain of ``holo run`` and the napari widget).

    Parameters
    ----------
    tomo : holo.Tomogram
    method, name, weights_dir, device
        As in :func:`segment` (``weights_dir`` and ``device`` also go to :func:`classify`).
    progress : callable(done, total, note=""), optional
        Called before each of the three steps and once at the end.
    fast : bool
        U-Net without test-time augmentation (:func:`holo.segmentation.infer.unet_segment`).
    novelty_quantile : float or None
        Threshold of :func:`abstain` (cells unlike the training distribution become
        ``unknown``); None keeps the classifier's answer.
    max_edge_cut : float or None
        Cells cut by the field's edge beyond this cut-face ratio become ``unknown`` ("cut by
        the field's edge"; :func:`abstain`); None keeps them.
    **measure_options
        Passed to :func:`measure` (``mass_region``, ``medium``, optics).

    Returns
    -------
    Diagnosis
        ``(segmentation, cells, timings_s)``: ``cells`` from :func:`measure` joined with the
        classes of :func:`classify`, which always runs, so that a tomogram without any cell
        gives a 0-row table with the same columns; ``timings_s`` holds the seconds of
        ``"segmentation"``, ``"classification"`` and ``"measurement"``. Classification and
        measurement run at the same time (the measurement on a second thread; one after the
        other for a lazy volume, which each step computes): the classification's seconds are
        those until it ends, the measurement's those it runs on after that (with the novelty
        check).
    """
    report = progress or (lambda done, total, note="": None)
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[step] = round(now - t, 3)
        t = now

    report(0, 3, note="segmenting")
    seg_kw = {"fast": True} if fast and method == "unet" else {}
    seg = segment(tomo, method=method, name=name, weights_dir=weights_dir, device=device, **seg_kw)
    lap("segmentation")
    report(1, 3, note="classifying")
    from concurrent.futures import ThreadPoolExecutor

    from holo.threads import cpu_threads

    # NumPy/SciPy measure while torch classifies; a lazy volume (computed by each step) one step at a time
    lazy = hasattr(getattr(tomo, "ri", None), "compute")
    with ThreadPoolExecutor(1, thread_name_prefix="holo-measure") as pool:
        measuring = None if lazy else pool.submit(_measured, tomo, seg.semantic, seg.instance, **measure_options)
        classes = classify(tomo, seg.instance, weights_dir=weights_dir, device=device,
                           threads=None if lazy else max(1, cpu_threads() - 1))  # a core left to the measurement
        lap("classification")
        report(2, 3, note="measuring")
        cells = _with_classes(measuring.result() if measuring else _measured(tomo, seg.semantic, seg.instance,
                                                                             **measure_options), classes)
    if novelty_quantile is not None or max_edge_cut is not None:
        cells = abstain(cells, weights_dir=weights_dir, quantile=novelty_quantile, instance=seg.instance,
                        max_edge_cut=max_edge_cut)
    lap("measurement")
    report(3, 3, note=f"{len(cells)} cells")
    return Diagnosis(seg, cells, timings)
