"""Diagnostic report: one self-contained HTML page (figures as embedded PNG) and a JSON beside it.

Contents: maximum-intensity projections of the RI along Z, Y and X (drawn with the physical
aspect ratio of the voxels), the same with the instance outlines and the semantic labels
overlaid, the counts per cell class, histograms of volume, dry mass, concentration,
sphericity and lipid droplets per cell per class, and the table of cells. The JSON holds the summary (counts, means per
class, tomogram metadata) and the per-cell rows.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from holo.io._atomic import atomic_path
from holo.labels import SEMANTIC_NAMES

__all__ = ["write_report", "report_summary"]

_HIST_FEATURES = (
    ("volume_um3", "volume (µm³)"),
    ("dry_mass_pg", "dry mass (pg)"),
    ("concentration_g_per_dl", "concentration (g/dL)"),
    ("sphericity", "sphericity"),
    ("lipid_droplet_count", "lipid droplets per cell"),
)
#: RGBA overlay colour of each semantic label (described in the page's overlay caption).
_SEM_COLOR_OF = {"background": (0, 0, 0, 0), "cytoplasm": (0.2, 0.8, 0.2, 0.35), "nucleus": (0.2, 0.4, 1.0, 0.5),
                 "nucleolus": (1.0, 0.9, 0.1, 0.7), "lipid_droplet": (1.0, 0.2, 0.2, 0.7)}
#: The same indexed by label value (:data:`holo.labels.SEMANTIC_NAMES` order).
_SEM_COLORS = np.array([_SEM_COLOR_OF[n] for n in SEMANTIC_NAMES], float)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _json_safe(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    return v


def report_summary(tomo, seg, cells) -> dict:
    """JSON-able summary: shape, voxel size, n_cells, class counts, per-class feature means."""
    summary = {
        "shape_zyx": list(tomo.shape_zyx),
        "voxel_size_um": list(tomo.voxel_size_um),
        "medium_index": float(tomo.medium_index),
        "wavelength_um": tomo.wavelength_um,
        "segmentation_method": seg.method,
        "n_cells": int(len(cells)),
        "class_counts": {},
        "class_means": {},
        "provenance": {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v))
                       for k, v in dict(tomo.provenance).items()},
    }
    if len(cells) and "class" in cells.columns:
        summary["class_counts"] = {str(k): int(v) for k, v in cells["class"].fillna("").value_counts().items()}
        feats = [f for f, _ in _HIST_FEATURES if f in cells.columns]
        for k, g in cells.groupby(cells["class"].fillna("")):
            summary["class_means"][str(k)] = {f: _json_safe(float(np.nanmean(g[f]))) if g[f].notna().any() else None
                                              for f in feats}
    return summary


def _mip_figures(ri, seg, voxel_size_um, medium_index):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    dz, dy, dx = voxel_size_um
    figs = {}
    views = ((0, "Z (XY view)", dy, dx), (1, "Y (XZ view)", dz, dx), (2, "X (YZ view)", dz, dy))
    lo = float(medium_index)
    hi = float(np.percentile(ri, 99.9)) if ri.size else lo + 0.01
    hi = max(hi, lo + 1e-3)
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for col, (ax_i, name, d_row, d_col) in enumerate(views):
        mip = ri.max(axis=ax_i)
        inst = seg.instance.max(axis=ax_i)
        sem = seg.semantic.max(axis=ax_i)
        for row in range(2):
            a = axes[row, col]
            a.imshow(mip, cmap="gray", vmin=lo, vmax=hi, aspect=d_row / d_col, interpolation="nearest")
            if row == 1:
                a.imshow(_SEM_COLORS[np.clip(sem, 0, len(_SEM_COLORS) - 1)], aspect=d_row / d_col, interpolation="nearest")
                b = find_boundaries(inst, mode="outer")
                over = np.zeros(b.shape + (4,))
                over[b] = (1, 0.5, 0, 1)
                a.imshow(over, aspect=d_row / d_col, interpolation="nearest")
            a.set_title(f"MIP along {name}" + (" + labels" if row else ""))
            a.axis("off")
    figs["mips"] = _png(fig)
    plt.close(fig)
    return figs


def _cell_figures(cells):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figs = {}
    if not len(cells):
        return figs
    classes = cells["class"].fillna("").astype(str) if "class" in cells.columns else None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    counts = classes.replace("", "unclassified").value_counts() if classes is not None else None
    if counts is not None and len(counts):
        ax.bar(range(len(counts)), counts.values, color="tab:blue")
        ax.set_xticks(range(len(counts)), counts.index, rotation=40, ha="right")
        ax.set_ylabel("cells")
        ax.set_title("cells per class")
        figs["class_counts"] = _png(fig)
    plt.close(fig)
    feats = [(f, lab) for f, lab in _HIST_FEATURES if f in cells.columns]
    fig, axes = plt.subplots(1, len(feats), figsize=(4 * len(feats), 3.2))
    axes = np.atleast_1d(axes)
    groups = list(cells.groupby(classes.replace("", "unclassified"))) if classes is not None else [("all", cells)]
    for a, (f, lab) in zip(axes, feats):
        vals_all = cells[f].to_numpy(float)
        vals_all = vals_all[np.isfinite(vals_all)]
        if vals_all.size == 0:
            a.set_title(lab)
            continue
        bins = np.histogram_bin_edges(vals_all, bins=min(20, max(5, vals_all.size)))
        for name, g in groups:
            v = g[f].to_numpy(float)
            v = v[np.isfinite(v)]
            if v.size:
                a.hist(v, bins=bins, alpha=0.6, label=str(name))
        a.set_title(lab)
    axes[0].legend(fontsize=7)
    figs["histograms"] = _png(fig)
    plt.close(fig)
    return figs


def write_report(out_dir, tomo, seg, cells, *, title: str | None = None) -> Path:
    """Write ``report.html`` and ``report.json`` into ``out_dir`` (atomically); returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ri = tomo.frame(0)
    if seg.instance.shape != ri.shape or seg.semantic.shape != ri.shape:
        raise ValueError(f"segmentation shape {seg.instance.shape} differs from the tomogram {ri.shape}")
    summary = report_summary(tomo, seg, cells)
    figs = _mip_figures(ri, seg, tomo.voxel_size_um, tomo.medium_index)
    figs.update(_cell_figures(cells))
    title = title or (Path(str(tomo.source)).name if tomo.source else "holo diagnostic report")
    rows = cells.to_dict(orient="records")
    rows = [{k: _json_safe(v) for k, v in r.items()} for r in rows]
    doc = {"title": title, "summary": summary, "cells": rows}
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>" + html.escape(
            f"shape (Z,Y,X) {tuple(summary['shape_zyx'])}, voxel (dz,dy,dx) {tuple(round(v, 4) for v in tomo.voxel_size_um)} µm, "
            f"medium n_m = {tomo.medium_index:.4f}, segmentation: {seg.method}, cells: {summary['n_cells']}") + "</p>",
        "<h2>Maximum-intensity projections</h2>",
        f"<img alt='MIPs' src='data:image/png;base64,{figs['mips']}'>",
        "<p>Overlay: cytoplasm green, nucleus blue, nucleolus yellow, lipid droplets red, cell outlines orange.</p>",
    ]
    if "class_counts" in figs:
        parts += ["<h2>Cell classes</h2>", f"<img alt='class counts' src='data:image/png;base64,{figs['class_counts']}'>"]
        parts.append("<ul>" + "".join(f"<li>{html.escape(k or 'unclassified')}: {v}</li>"
                                      for k, v in summary["class_counts"].items()) + "</ul>")
    if "histograms" in figs:
        parts += ["<h2>Features</h2>", f"<img alt='histograms' src='data:image/png;base64,{figs['histograms']}'>"]
    if len(cells):
        parts += ["<h2>Cells</h2>", cells.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")]
    parts.append("</body></html>")
    html_path = out_dir / "report.html"
    with atomic_path(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=str))
    with atomic_path(html_path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return html_path
