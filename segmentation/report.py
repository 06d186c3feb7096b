"""Diagnostic report: one self-contained HTML page (figures as embedded PNG) and a JSON beside it.

Contents, in the order a biologist reads them:

1. what was measured (shape, voxel size, medium) and how the RI was reconstructed (method,
   iterations, convergence, data-consistency residual when the tomogram's provenance has one);
2. maximum-intensity projections of the RI along Z, Y and X, drawn in µm with the physical
   aspect ratio of the voxels, a grey RI colour bar and a scale bar; the second row with the
   semantic labels and the cell outlines overlaid. The grey scale runs from the medium index
   to the 99.9th percentile of the projections themselves (not of the volume, which is mostly
   medium), so dense cells are not clipped to white discs;
3. counts per cell class, and step histograms per class (outlines, no translucent fills, so
   no blended colours) of volume, dry mass, concentration, sphericity and lipid droplets with
   "cells" on the y axis and integer count ticks;
4. the table of cells: identity, class and confidence first, then the measurements grouped
   (position, size and shape, RI and mass, nucleus, organelles, class probabilities), units
   in the headers.

``report.json`` holds real JSON (``allow_nan=False``; NaN becomes ``null``): the summary
(counts, per-class means, reconstruction facts, the tomogram's provenance as nested JSON) and
the per-cell rows.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from holo.io._atomic import atomic_path
from holo.labels import SEMANTIC_NAMES

__all__ = ["write_report", "write_timelapse_report", "timelapse_summary", "lineage_layout", "growth_identifiable",
           "doubling_time_interval_h", "rate_interval_text", "doubling_interval_text", "growth_rate_text",
           "growth_counts", "growth_count_text", "growth_table_html", "growth_fit_curves", "NOT_IDENTIFIABLE_MARK",
           "report_summary", "reconstruction_facts", "to_json", "column_groups", "column_header", "class_names",
           "UNCLASSIFIED"]

UNCLASSIFIED = "unclassified"
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
#: Column groups of the cells table, in display order: (group title, column-name predicate).
_GROUPS = (
    ("cell", lambda c: c in ("sample", "cell_id", "class", "confidence")),
    ("position", lambda c: c.startswith("centroid_")),
    ("size and shape", lambda c: c in ("volume_um3", "surface_area_um2", "sphericity")),
    ("refractive index and mass", lambda c: c in ("mean_ri", "max_ri", "dry_mass_pg") or c.startswith("concentration_")),
    ("nucleus", lambda c: c.startswith("nucleus_")),
    ("organelles", lambda c: c.startswith(("nucleolus_", "lipid_droplet_"))),
    ("class probabilities", lambda c: c.startswith("p_")),
)
_IDENTITY_ORDER = ("sample", "cell_id", "class", "confidence")
#: Unit suffixes of column names (longest first) and how a header shows them.
_UNIT_SUFFIXES = (("_pg_per_um3", "pg/µm³"), ("_g_per_dl", "g/dL"), ("_um3", "µm³"), ("_um2", "µm²"), ("_um", "µm"),
                  ("_pg", "pg"))


# -- JSON --------------------------------------------------------------------------------
def to_json(v):
    """``v`` as plain JSON types, recursively: NumPy scalars and arrays become numbers and
    lists, tuples lists, non-finite floats ``None``; anything else unknown its ``str``."""
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [to_json(x) for x in v]
    if isinstance(v, np.ndarray):
        return to_json(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, Path):
        return str(v)
    return str(v)


def class_names(cells):
    """The ``class`` column as strings, :data:`UNCLASSIFIED` where it is empty or missing
    (works on an all-NaN float column without pandas' dtype warnings)."""
    import pandas as pd

    if "class" not in cells.columns:
        return pd.Series([UNCLASSIFIED] * len(cells), index=cells.index, dtype=object)
    return cells["class"].map(lambda v: v if isinstance(v, str) and v else UNCLASSIFIED).astype(object)


# -- facts -------------------------------------------------------------------------------
def reconstruction_facts(provenance: dict) -> list[tuple[str, str]]:
    """(label, text) pairs a person reads about how a tomogram was reconstructed: method,
    iterations (run / maximum), convergence (relative change against the tolerance), the
    solver's data residual, and the data-consistency check (RMS phase residual of the
    re-simulated holograms in rad, dry-mass ratio, flagged frames) when present."""
    p = dict(provenance or {})
    params = p.get("parameters") or {}
    facts = []
    method = p.get("method")
    if method:
        direct = p.get("direct_method")
        facts.append(("method", f"{method}" + (f" (started from {direct})" if direct and direct != method else "")))
    if p.get("iterations_run") is not None:
        facts.append(("iterations", f"{p['iterations_run']}" + (f" of at most {params['iterations']}" if params.get("iterations") else "")))
    if p.get("converged") is not None:
        change = p.get("relative_change")
        tol = params.get("tol")
        detail = f"relative change {change:.2g}" + (f", tolerance {tol:.2g}" if isinstance(tol, (int, float)) else "") \
            if isinstance(change, (int, float)) else ""
        word = "yes" if p["converged"] else "no: stopped at the iteration limit"
        facts.append(("converged", word + (f" ({detail})" if detail else "")))
    if isinstance(p.get("data_residual"), (int, float)):
        facts.append(("solver data residual", f"{p['data_residual']:.3g} (relative)"))
    dc = p.get("data_consistency")
    if isinstance(dc, dict):
        facts.extend(_data_consistency_facts(dc))
    excluded = p.get("excluded_frames")
    if excluded:
        facts.append(("excluded frames", ", ".join(str(i) for i in excluded)))
    return facts


def _data_consistency_facts(dc: dict) -> list[tuple[str, str]]:
    facts = []
    rms = dc.get("rms_phase_residual_rad")
    if isinstance(rms, (int, float)):
        facts.append(("data consistency", f"RMS phase residual {rms:.3g} rad"
                      + (f" (forward model: {dc['model']})" if dc.get("model") else "")))
    ratio = dc.get("dry_mass_ratio")
    if isinstance(ratio, (int, float)):
        facts.append(("dry-mass ratio (reconstructed / measured)", f"{ratio:.3f}"))
    flagged = dc.get("flagged_frames")
    if flagged is not None:
        frames = list(flagged)
        facts.append(("frames flagged as inconsistent", ", ".join(str(i) for i in frames) if frames else "none"))
    return facts


def reason_counts(cells) -> dict[str, int]:
    """{reason (the vocabulary's text): number of cells} over the ``reason`` column, for the
    reasons that occur."""
    from holo.segmentation.novelty import REASONS

    if "reason" not in cells.columns:
        return {}
    text = cells["reason"].fillna("").astype(str)
    counts = {r: int(text.str.startswith(r).sum()) for r in REASONS.values()}
    return {r: n for r, n in counts.items() if n}


def report_summary(tomo, seg, cells) -> dict:
    """JSON-able summary: shape, voxel size, n_cells, class counts, the count of each
    abstention reason (:data:`holo.segmentation.novelty.REASONS`), per-class feature means, the
    reconstruction facts and the tomogram's provenance (as nested JSON)."""
    summary = {
        "shape_zyx": list(tomo.shape_zyx),
        "voxel_size_um": list(tomo.voxel_size_um),
        "medium_index": float(tomo.medium_index),
        "wavelength_um": tomo.wavelength_um,
        "segmentation_method": seg.method,
        "n_cells": int(len(cells)),
        "class_counts": {},
        "reason_counts": {},
        "class_means": {},
        "reconstruction": dict(reconstruction_facts(tomo.provenance)),
        "provenance": to_json(dict(tomo.provenance)),
        # set by holo.segmentation.measure (medium index from the background, its warnings)
        "medium_estimate": to_json(dict(getattr(cells, "attrs", {}).get("medium", {}))),
        "warnings": list(getattr(cells, "attrs", {}).get("warnings", [])),
    }
    if len(cells):
        names = class_names(cells)
        summary["class_counts"] = {str(k): int(v) for k, v in names.value_counts().items()}
        summary["reason_counts"] = reason_counts(cells)
        feats = [f for f, _ in _HIST_FEATURES if f in cells.columns]
        for k, g in cells.groupby(names):
            summary["class_means"][str(k)] = {f: to_json(float(np.nanmean(g[f]))) if g[f].notna().any() else None
                                              for f in feats}
    return to_json(summary)


# -- figures -----------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def mip_contrast_limits(mips, medium_index: float) -> tuple[float, float]:
    """Grey-scale limits of the projections.

    The low end is the medium index (or the 0.5th percentile of the projected values when
    lower); the high end the brightest 3 × 3 median of the projections, i.e. the densest
    object's own peak with isolated hot pixels ignored. A percentile of all pixels would not
    do: a small dense cell (a spherocyte) covers well under 1 % of the field and would clip to a
    white disc. At least 0.005 above the medium, so a field of plain medium shows as such.
    """
    from scipy.ndimage import median_filter

    mips = [np.nan_to_num(np.asarray(m, float), nan=medium_index) for m in mips if np.size(m)]
    if not mips:
        return medium_index - 0.005, medium_index + 0.005
    vals = np.concatenate([m.ravel() for m in mips])
    lo = min(float(medium_index), float(np.percentile(vals, 0.5)))
    peak = max(float(median_filter(m, size=3, mode="nearest").max()) for m in mips)
    return lo, max(peak, float(medium_index) + 0.005)


def nice_length(span: float, fraction: float = 0.2) -> float:
    """The largest 1-2-5 × 10ᵏ length not above ``fraction`` of ``span`` (for a scale bar)."""
    target = max(span * fraction, 1e-12)
    k = math.floor(math.log10(target))
    return next(m * 10.0**k for m in (5, 2, 1) if m * 10.0**k <= target)


def _scale_bar(ax, width_um: float, height_um: float) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = nice_length(width_um)
    label = f"{length:g} µm"
    bar = AnchoredSizeBar(ax.transData, length, label, "lower right", pad=0.3, borderpad=0.4, color="white",
                          frameon=True, size_vertical=max(height_um * 0.012, 1e-6), label_top=True)
    bar.patch.set(facecolor="black", alpha=0.55, edgecolor="none")
    ax.add_artist(bar)


def _mip_figures(ri, seg, voxel_size_um, medium_index):
    plt = _pyplot()
    from skimage.segmentation import find_boundaries

    dz, dy, dx = voxel_size_um
    views = ((0, "Z (XY view)", dy, dx, "x", "y"), (1, "Y (XZ view)", dz, dx, "x", "z"),
             (2, "X (YZ view)", dz, dy, "y", "z"))
    mips = [ri.max(axis=v[0]) for v in views]
    lo, hi = mip_contrast_limits(mips, medium_index)
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.5), layout="constrained")
    im = None
    for col, ((ax_i, name, d_row, d_col, xl, yl), mip) in enumerate(zip(views, mips)):
        inst = seg.instance.max(axis=ax_i)
        sem = seg.semantic.max(axis=ax_i)
        extent = (0, mip.shape[1] * d_col, mip.shape[0] * d_row, 0)
        for row in range(2):
            a = axes[row, col]
            im = a.imshow(mip, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
            if row == 1:
                a.imshow(_SEM_COLORS[np.clip(sem, 0, len(_SEM_COLORS) - 1)], extent=extent, interpolation="nearest")
                b = find_boundaries(inst, mode="outer")
                over = np.zeros(b.shape + (4,))
                over[b] = (1, 0.5, 0, 1)
                a.imshow(over, extent=extent, interpolation="nearest")
            a.set_title(f"MIP along {name}" + (" + labels" if row else ""), fontsize=10)
            a.set_xticks([])
            a.set_yticks([])
            a.set_xlabel(xl, fontsize=9)
            a.set_ylabel(yl, fontsize=9)
            _scale_bar(a, extent[1], extent[2])
    cbar = fig.colorbar(im, ax=axes, shrink=0.6, pad=0.01)
    cbar.set_label("refractive index")
    png = _png(fig)
    plt.close(fig)
    return {"mips": png}, (lo, hi)


def class_colors(names) -> dict[str, tuple]:
    """One colour per class name (sorted, tab10 then tab20), unclassified in grey."""
    plt = _pyplot()
    names = sorted(set(names) - {UNCLASSIFIED})
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colors = {n: cmap(i % cmap.N) for i, n in enumerate(names)}
    colors[UNCLASSIFIED] = (0.5, 0.5, 0.5, 1.0)
    return colors


def histogram_bins(values: np.ndarray, integer: bool = False, max_bins: int = 40) -> np.ndarray:
    """Bin edges for 1 to 10⁴+ values: numpy's "auto" rule capped at ``max_bins``; unit bins
    centred on the integers for counts; a unit-wide bin around a single repeated value."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return np.array([0.0, 1.0])
    if integer:
        lo, hi = math.floor(v.min()), math.ceil(v.max())
        step = max(1, math.ceil((hi - lo + 1) / max_bins))
        return np.arange(lo - 0.5, hi + 0.5 + step, step, dtype=float)
    if v.min() == v.max():
        half = 0.5 * max(abs(float(v[0])) * 0.05, 1e-6)
        return np.array([v[0] - half, v[0] + half])
    edges = np.histogram_bin_edges(v, bins="auto")
    return edges if len(edges) - 1 <= max_bins else np.histogram_bin_edges(v, bins=max_bins)


def _count_axis(ax, label: str = "cells") -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_ylabel(label)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _cell_figures(cells):
    plt = _pyplot()
    figs = {}
    if not len(cells):
        return figs
    names = class_names(cells)
    colors = class_colors(names)
    counts = names.value_counts()
    fig, ax = plt.subplots(figsize=(min(3 + 0.6 * len(counts), 9), 3.5), layout="constrained")
    ax.bar(range(len(counts)), counts.values, width=0.6, color=[colors[n] for n in counts.index])
    ax.set_xlim(-0.7, len(counts) - 0.3)
    ax.set_xticks(range(len(counts)), counts.index, rotation=40, ha="right")
    _count_axis(ax)
    ax.set_title("cells per class")
    figs["class_counts"] = _png(fig)
    plt.close(fig)
    feats = [(f, lab) for f, lab in _HIST_FEATURES if f in cells.columns]
    if not feats:
        return figs
    fig, axes = plt.subplots(1, len(feats), figsize=(3.6 * len(feats), 3.2), layout="constrained", squeeze=False)
    groups = list(cells.groupby(names))
    for a, (f, lab) in zip(axes[0], feats):
        vals_all = cells[f].to_numpy(float)
        bins = histogram_bins(vals_all, integer=f.endswith("_count"))
        for name, g in groups:
            v = g[f].to_numpy(float)
            v = v[np.isfinite(v)]
            if v.size:
                a.hist(v, bins=bins, histtype="step", linewidth=1.6, color=colors[name], label=str(name))
        a.set_xlabel(lab)
        _count_axis(a)
        if f.endswith("_count"):
            from matplotlib.ticker import MultipleLocator

            a.xaxis.set_major_locator(MultipleLocator(max(1.0, float(np.ceil((bins[-1] - bins[0]) / 8)))))
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        from matplotlib.lines import Line2D

        fig.legend([Line2D([], [], color=colors[n], lw=2) for n in labels], labels, loc="outside upper center",
                   ncols=min(len(labels), 6), fontsize=10, frameon=False)
    figs["histograms"] = _png(fig)
    plt.close(fig)
    return figs


# -- cells table -------------------------------------------------------------------------
def column_header(col: str) -> str:
    """Header text of a cells column: its name without the unit suffix, then the unit in
    parentheses (``volume_um3`` → ``volume (µm³)``, ``p_monocyte`` → ``monocyte``)."""
    if col.startswith("p_"):
        return col[2:].replace("_", " ")
    if col.startswith("centroid_") and col.endswith("_um"):
        return f"{col[len('centroid_')]} (µm)"
    for suffix, unit in _UNIT_SUFFIXES:
        if col.endswith(suffix):
            return f"{col[: -len(suffix)].replace('_', ' ')} ({unit})"
    return col.replace("_", " ").replace(" ri", " RI")


def column_groups(columns) -> list[tuple[str, list[str]]]:
    """The cells columns in display order, grouped: identity (sample, cell id, class,
    confidence) first, then each group of :data:`_GROUPS`, then anything else."""
    cols = [c for c in columns if c != "index"]
    done: set[str] = set()
    out = []
    for title, pred in _GROUPS:
        members = [c for c in cols if c not in done and pred(c)]
        if title == "cell":
            members = [c for c in _IDENTITY_ORDER if c in members]
        if members:
            out.append((title, members))
            done.update(members)
    rest = [c for c in cols if c not in done]
    if rest:
        out.append(("other", rest))
    return out


def _cell_text(v) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return html.escape(str(v))


def cells_table_html(cells) -> str:
    """The cells table as HTML: a row of column groups, then headers with units; the first
    identity column stays in view when the table scrolls sideways."""
    groups = column_groups(cells.columns)
    ordered = [c for _, cols in groups for c in cols]
    n_sticky = 1  # the first identity column (sample or cell id) stays in view
    head1 = "".join(f"<th colspan='{len(cols)}' class='grp'>{html.escape(t)}</th>" for t, cols in groups)
    head2 = "".join(f"<th{' class=sticky' if i < n_sticky else ''}>{html.escape(column_header(c))}</th>"
                    for i, c in enumerate(ordered))
    body = []
    for rec in cells[ordered].itertuples(index=False):
        tds = "".join(f"<td{' class=sticky' if i < n_sticky else ''}>{_cell_text(v)}</td>" for i, v in enumerate(rec))
        body.append(f"<tr>{tds}</tr>")
    return (f"<div class='scroll'><table class='cells'><thead><tr>{head1}</tr><tr>{head2}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


# -- page --------------------------------------------------------------------------------
_CSS = ("body{font-family:sans-serif;margin:1.5em;color:#222}img{max-width:100%}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "td{text-align:right}th{background:#f3f3f3}th.grp{background:#e4e9f2;text-align:center}"
        "table.facts td{text-align:left}.scroll{overflow-x:auto;max-width:100%}"
        "table.cells .sticky{position:sticky;left:0;background:#fff}table.cells th.sticky{background:#f3f3f3}")


def _facts_html(rows) -> str:
    return "<table class='facts'>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"


def _page(title, tomo, seg, summary, figs, limits, cells) -> str:
    vs = tuple(round(v, 4) for v in tomo.voxel_size_um)
    acquired = [("shape (Z, Y, X)", f"{tuple(summary['shape_zyx'])} voxels"), ("voxel (dz, dy, dx)", f"{vs} µm"),
                ("medium index", f"{tomo.medium_index:.4f}"), ("segmentation", seg.method),
                ("cells", summary["n_cells"])]
    if tomo.wavelength_um:
        acquired.insert(3, ("wavelength", f"{tomo.wavelength_um * 1000:.0f} nm"))
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
        "<h2>Sample</h2>", _facts_html(acquired),
    ]
    facts = reconstruction_facts(tomo.provenance)
    if facts:
        parts += ["<h2>Reconstruction</h2>", _facts_html(facts)]
    parts += [
        "<h2>Maximum-intensity projections</h2>",
        f"<img alt='MIPs' src='data:image/png;base64,{figs['mips']}'>",
        f"<p>Grey scale: refractive index {limits[0]:.4f} to {limits[1]:.4f}. Overlay: cytoplasm green, "
        "nucleus blue, nucleolus yellow, lipid droplets red, cell outlines orange.</p>",
    ]
    if "class_counts" in figs:
        parts += ["<h2>Cell classes</h2>", f"<img alt='class counts' src='data:image/png;base64,{figs['class_counts']}'>"]
        parts.append("<ul>" + "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in summary["class_counts"].items()) + "</ul>")
        if summary.get("reason_counts"):
            parts.append("<p>Why cells are uncertain or unknown:</p><ul>" + "".join(
                f"<li>{html.escape(k)}: {v}</li>" for k, v in summary["reason_counts"].items()) + "</ul>")
    if "histograms" in figs:
        parts += ["<h2>Features</h2>", f"<img alt='histograms' src='data:image/png;base64,{figs['histograms']}'>"]
    if len(cells):
        parts += ["<h2>Cells</h2>", cells_table_html(cells)]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir, tomo, seg, cells, *, title: str | None = None) -> Path:
    """Write ``report.html`` and ``report.json`` into ``out_dir`` (atomically); returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ri = tomo.frame(0)
    if seg.instance.shape != ri.shape or seg.semantic.shape != ri.shape:
        raise ValueError(f"segmentation shape {seg.instance.shape} differs from the tomogram {ri.shape}")
    summary = report_summary(tomo, seg, cells)
    figs, limits = _mip_figures(ri, seg, tomo.voxel_size_um, tomo.medium_index)
    figs.update(_cell_figures(cells))
    title = title or (Path(str(tomo.source)).name if tomo.source else "holo diagnostic report")
    doc = to_json({"title": title, "summary": summary, "cells": cells.to_dict(orient="records")})
    html_path = out_dir / "report.html"
    with atomic_path(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    with atomic_path(html_path) as tmp:
        tmp.write_text(_page(title, tomo, seg, summary, figs, limits, cells), encoding="utf-8")
    return html_path


# -- time-lapse: growth curves and lineage ----------------------------------------------------
#: Mark of a growth rate not measured apart from the cells its track touches (footnoted).
NOT_IDENTIFIABLE_MARK = "†"
_NOT_IDENTIFIABLE_FOOTNOTE = (
    "rate not identifiable: the cell touches others in every fitted frame, so its own mass is always a share "
    "of its group's; the rate rests on the group's total (and, for a sister, on the sisters' prior) and its "
    "interval is wider. The note says which neighbours.")


def _value(row, key, default=np.nan):
    """``row[key]`` of a dict or pandas row, ``default`` when absent or None."""
    v = row.get(key, default) if hasattr(row, "get") else default
    return default if v is None else v


def _number_text(v, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, trailing zeros kept (1.00, 0.0350); "" when not finite."""
    v = float(v)
    return f"{v:#.{digits}g}".rstrip(".") if np.isfinite(v) else ""


def _truthy(v) -> bool:
    """A flag as a growth table holds it: a bool (NumPy's too) or its text in a CSV read back."""
    return str(v).strip().lower() in ("true", "1", "1.0")


def _note(row) -> str:
    v = _value(row, "growth_note", "")
    return "" if not isinstance(v, str) else v


def growth_identifiable(growth) -> np.ndarray:
    """Bool per row of a growth table (:data:`holo.segmentation.growth.GROWTH_COLUMNS`): the
    rate k is finite and measured apart from the cells the track touches (column
    ``growth_identifiable``; taken as true where an older table lacks it)."""
    k = growth["growth_rate_per_h"].to_numpy(float) if len(growth) else np.zeros(0)
    if "growth_identifiable" not in growth:
        return np.isfinite(k)
    return np.isfinite(k) & np.array([_truthy(v) for v in growth["growth_identifiable"]], bool)


def _not_identifiable(growth) -> np.ndarray:
    """Bool per row: a rate was fitted (finite k) but is not identifiable (:func:`growth_identifiable`)."""
    k = growth["growth_rate_per_h"].to_numpy(float) if len(growth) else np.zeros(0)
    return np.isfinite(k) & ~growth_identifiable(growth)


def doubling_time_interval_h(k_low_per_h: float, k_high_per_h: float) -> tuple[float, float]:
    """95 % interval of the doubling time T_d = ln 2 / k from the rate's interval
    [k_low, k_high] (1/h): T_d falls as k rises, so it is [ln 2 / k_high, ln 2 / k_low]; the
    upper end is ∞ when k_low ≤ 0 (no growth is within the interval), both NaN when k_high ≤ 0
    or the interval is unknown."""
    lo, hi = float(k_low_per_h), float(k_high_per_h)
    if not (np.isfinite(hi) and hi > 0) or np.isnan(lo):
        return (np.nan, np.nan)
    return (math.log(2.0) / hi, math.log(2.0) / lo if lo > 0 else math.inf)


def rate_interval_text(row) -> str:
    """``k ± h`` (1/h) of one growth-table row, h = half the 95 % interval (k ± 1.96 SE, from
    ``growth_rate_ci95_*``); ``k (interval unknown)`` without a finite one; "" without k."""
    k = float(_value(row, "growth_rate_per_h"))
    if not np.isfinite(k):
        return ""
    lo, hi = float(_value(row, "growth_rate_ci95_low_per_h")), float(_value(row, "growth_rate_ci95_high_per_h"))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{_number_text(k)} (interval unknown)"
    return f"{_number_text(k)} ± {_number_text(0.5 * (hi - lo), 2)}"


def doubling_interval_text(row) -> str:
    """``T_d (low–high)`` in h of one growth-table row (:func:`doubling_time_interval_h`); "" without T_d."""
    td = float(_value(row, "doubling_time_h"))
    if not np.isfinite(td):
        return ""
    lo, hi = doubling_time_interval_h(_value(row, "growth_rate_ci95_low_per_h"),
                                      _value(row, "growth_rate_ci95_high_per_h"))
    if np.isnan(lo):
        return _number_text(td)
    return f"{_number_text(td)} ({_number_text(lo)}–{'∞' if math.isinf(hi) else _number_text(hi)})"


def growth_rate_text(row) -> str:
    """One line on a track's growth (for the napari track plot and summaries): the specific rate
    with its 95 % interval, the doubling time with its interval, the mean pg/h over the fitted
    span, and the note when the rate is not identifiable (``growth_note``)."""
    note = _note(row)
    k = rate_interval_text(row)
    if not k:
        return f"no growth rate: {note}" if note else "no growth rate"
    parts = [f"k = {k} /h (95 %)"]
    if doubling_interval_text(row):
        parts.append(f"doubling time {doubling_interval_text(row)} h")
    pg = float(_value(row, "growth_rate_pg_per_h"))
    if np.isfinite(pg):
        parts.append(f"{_number_text(pg)} pg/h")
    text = ", ".join(parts)
    ident = _value(row, "growth_identifiable", True)
    if _truthy(ident):
        return text
    return f"{text}; {NOT_IDENTIFIABLE_MARK} not identifiable: {note or 'touches other cells'}"


def growth_table_html(growth) -> str:
    """Per-track growth table: ids, frames fitted (alone), time span, fitted mass, the rate
    k ± 95 % interval (:data:`NOT_IDENTIFIABLE_MARK` when not identifiable), doubling time with
    its interval, pg/h and the note; a footnote explains the mark."""
    ident = growth_identifiable(growth)
    heads = ("track", "mother", "frames fitted (alone)", "time (h)", "dry mass, fitted (pg)",
             "growth rate k (1/h) ± 95 %", "doubling time (h), 95 % interval", "growth (pg/h)", "note")
    body = []
    for ok, (_, r) in zip(ident, growth.iterrows()):
        k = rate_interval_text(r)
        span = f"{r['first_time_h']:.2f}–{r['last_time_h']:.2f}" if np.isfinite(float(r["first_time_h"])) else ""
        mass = f"{_number_text(r['mass_start_pg'])} → {_number_text(r['mass_end_pg'])}" if k else ""
        cells = (int(r["track_id"]), int(r["parent_id"]) or "",
                 f"{int(r['n_frames_fitted'])} ({int(_value(r, 'n_frames_alone', 0))})", span, mass,
                 k + (NOT_IDENTIFIABLE_MARK if k and not ok else ""), doubling_interval_text(r),
                 _number_text(_value(r, "growth_rate_pg_per_h")), _note(r))
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    foot = (f"<p>{NOT_IDENTIFIABLE_MARK} {html.escape(_NOT_IDENTIFIABLE_FOOTNOTE)}</p>"
            if _not_identifiable(growth).any() else "")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    return (f"<div class='scroll'><table class='cells'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>{foot}")


def lineage_layout(lineage) -> dict[int, float]:
    """Vertical position of every track in a lineage plot: leaves (tracks without daughters)
    0, 1, 2, … in depth-first order from each root, a mother midway between her daughters."""
    kids: dict[int, list[int]] = {}
    for tid, pid in zip(lineage["track_id"].astype(int), lineage["parent_id"].astype(int)):
        kids.setdefault(pid, []).append(tid)
    known = set(lineage["track_id"].astype(int))
    roots = [t for t, p in zip(lineage["track_id"].astype(int), lineage["parent_id"].astype(int)) if p == 0 or p not in known]
    y: dict[int, float] = {}
    n_leaves = [0]

    def place(tid: int) -> float:  # recursion depth = generations in the series: small
        ch = sorted(kids.get(tid, []))
        if ch:
            y[tid] = float(np.mean([place(c) for c in ch]))
        else:
            y[tid], n_leaves[0] = float(n_leaves[0]), n_leaves[0] + 1
        return y[tid]

    for r in sorted(roots):
        place(r)
    return y


def _lineage_figure(lineage, growth=None) -> str:
    """Lineage tree: one horizontal line per track over its lifetime (h), dashed where its
    growth rate is not identifiable, a vertical line from a mother's end to her daughters, ×
    where a track is lost before the end of the series."""
    plt = _pyplot()
    y = lineage_layout(lineage)
    rows = lineage.set_index(lineage["track_id"].astype(int))
    unsure = _not_identifiable_ids(growth)
    fig, ax = plt.subplots(figsize=(7.0, max(2.0, 0.22 * len(y) + 1.0)))
    for tid, yt in y.items():
        r = rows.loc[tid]
        ax.plot([r["start_time_h"], r["end_time_h"]], [yt, yt], "--" if tid in unsure else "-", color="0.2", lw=1.5)
        if r["fate"] == "lost":
            ax.plot(r["end_time_h"], yt, "x", color="tab:red", ms=5)
        pid = int(r["parent_id"])
        if pid in y:
            ax.plot([rows.loc[pid, "end_time_h"], r["start_time_h"]], [y[pid], yt], color="tab:blue", lw=1.0)
    ax.set_yticks(list(y.values()), [str(t) for t in y], fontsize=7)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("track id")
    ax.set_title("lineage (blue: division, ×: lost" + (", dashed: rate not identifiable)" if unsure else ")"))
    return _png(fig)


def _not_identifiable_ids(growth) -> set[int]:
    """Track ids whose fitted rate is not identifiable (finite k, ``growth_identifiable`` false)."""
    if growth is None or not len(growth):
        return set()
    return set(growth["track_id"].astype(int)[_not_identifiable(growth)].tolist())


def growth_fit_curves(f, t_h: np.ndarray):
    """(fit, low, high) dry mass (pg) at ``t_h`` of one growth row: m̂(t) = m_start·e^{k (t − t_start)}
    and the curves of the rate's 95 % interval ends pivoted at the middle of the fitted span,
    m̂(t_mid)·e^{k_lo,hi (t − t_mid)} (the rate's uncertainty only, not that of the level)."""
    k, t0 = float(f["growth_rate_per_h"]), float(f["first_time_h"])
    fit = f["mass_start_pg"] * np.exp(k * (t_h - t0))
    t_mid = 0.5 * (t0 + float(f["last_time_h"]))
    m_mid = f["mass_start_pg"] * math.exp(k * (t_mid - t0))
    ends = [m_mid * np.exp(float(_value(f, key)) * (t_h - t_mid))
            for key in ("growth_rate_ci95_low_per_h", "growth_rate_ci95_high_per_h")]
    return fit, np.minimum(*ends), np.maximum(*ends)


def _growth_figure(tracks, growth, max_tracks: int = 40) -> str:
    """Dry mass (pg, log scale) against time (h) of the longest ``max_tracks`` tracks with the
    fitted exponential m(t) = m_start·e^{k (t − t_start)} (dashed when the rate is not
    identifiable) and the band of k's 95 % interval (:func:`growth_fit_curves`); beside it the growth
    rates k (1/h), identifiable and not apart."""
    plt = _pyplot()
    fig, (ax, axk) = plt.subplots(1, 2, figsize=(10.0, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
    sizes = tracks.groupby("track_id").size().sort_values(ascending=False)
    fits = growth.set_index(growth["track_id"].astype(int))
    unsure = _not_identifiable_ids(growth)
    cmap = plt.get_cmap("tab20")
    for i, tid in enumerate(sizes.index[:max_tracks]):
        g = tracks[tracks["track_id"] == tid].sort_values("time_s")
        c = cmap(i % 20)
        ax.plot(g["time_s"] / 3600.0, g["dry_mass_pg"], "o", ms=2.5, color=c)
        f = fits.loc[int(tid)] if int(tid) in fits.index else None
        if f is not None and np.isfinite(f["growth_rate_per_h"]):
            t = np.linspace(f["first_time_h"], f["last_time_h"], 20)
            fit, lo, hi = growth_fit_curves(f, t)
            ax.plot(t, fit, "--" if int(tid) in unsure else "-", lw=1, color=c)
            if np.isfinite(lo).all() and np.isfinite(hi).all():
                ax.fill_between(t, lo, hi, color=c, alpha=0.15, lw=0)
    from matplotlib.ticker import LogLocator, ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("time (h)")
    ax.set_ylabel("dry mass (pg)")
    ax.set_title(f"growth curves ({min(len(sizes), max_tracks)} longest tracks)\nlines: fits, bands: 95 % "
                 "interval of k" + (", dashed: not identifiable" if unsure else ""), fontsize=10)
    _rate_histograms(axk, growth)
    return _png(fig)


def _rate_histograms(ax, growth) -> None:
    """Step histograms of the fitted rates k (1/h): identifiable (solid), not identifiable (dashed), shared bins."""
    k = growth["growth_rate_per_h"].to_numpy(float)
    ident, unsure = growth_identifiable(growth), _not_identifiable(growth)
    fitted = np.isfinite(k)
    if fitted.any():
        bins = histogram_bins(k[fitted])
        ax.hist(k[ident], bins=bins, histtype="step", color="0.2", label=f"identifiable ({int(ident.sum())})")
        if unsure.any():
            ax.hist(k[unsure], bins=bins, histtype="step", ls="--", color="tab:orange",
                    label=f"not identifiable ({int(unsure.sum())})")
        ax.legend(fontsize=7)
    _count_axis(ax, "tracks")
    ax.set_xlabel("growth rate k (1/h)")


def timelapse_summary(tomo, tracks, growth, lineage) -> dict:
    """Counts and medians of a tracked time series (the JSON summary of its report): the
    medians over every fitted track; ``n_growth_not_identifiable`` fitted tracks whose rate is
    not measured apart from the cells they touch, ``n_growth_not_fitted`` tracks too short to fit."""
    k = growth["growth_rate_per_h"].to_numpy(float) if len(growth) else np.array([])
    td = growth["doubling_time_h"].to_numpy(float) if len(growth) else np.array([])
    return {"n_frames": int(tomo.n_times), "time_step_s": tomo.time_step_s, "shape_zyx": list(tomo.shape_zyx),
            "voxel_size_um": list(tomo.voxel_size_um), "n_tracks": int(len(lineage)),
            "n_divisions": int((lineage["fate"] == "divided").sum()) if len(lineage) else 0, **growth_counts(growth),
            "median_growth_rate_per_h": float(np.nanmedian(k)) if np.isfinite(k).any() else None,
            "median_doubling_time_h": float(np.nanmedian(td)) if np.isfinite(td).any() else None}


def growth_counts(growth) -> dict:
    """``n_growth_fits`` (tracks with a fitted rate), ``n_growth_not_identifiable`` (of those,
    rates not measured apart from the cells they touch) and ``n_growth_not_fitted`` (tracks
    with too few usable frames) of a growth table."""
    k = growth["growth_rate_per_h"].to_numpy(float) if len(growth) else np.zeros(0)
    return {"n_growth_fits": int(np.isfinite(k).sum()),
            "n_growth_not_identifiable": int(_not_identifiable(growth).sum()),
            "n_growth_not_fitted": int((~np.isfinite(k)).sum())}


def growth_count_text(summary: dict) -> str:
    """"N growth rates fitted, M not identifiable (touching other cells in every fitted frame),
    L tracks too short": the line the report and ``holo track`` print."""
    text = f"{summary['n_growth_fits']} growth rates fitted, {summary['n_growth_not_identifiable']} not identifiable"
    if summary["n_growth_not_identifiable"]:
        text += " (touching other cells in every fitted frame)"
    if summary["n_growth_not_fitted"]:
        text += f", {summary['n_growth_not_fitted']} tracks too short to fit"
    return text


def write_timelapse_report(out_dir, tomo, tracks, growth, lineage, *, title: str | None = None) -> Path:
    """``report.html`` and ``report.json`` of a tracked time series (atomically): the series'
    facts, growth curves with their fits and intervals, the lineage plot and the per-track
    growth table (k ± 95 % interval, doubling time, the note of a rate not identifiable)."""
    out_dir = Path(out_dir)
    summary = timelapse_summary(tomo, tracks, growth, lineage)
    title = title or (Path(str(tomo.source)).name if tomo.source else "holo time-lapse report")
    facts = [("frames", summary["n_frames"]), ("interval", f"{tomo.time_step_s or 0:g} s"),
             ("shape (Z, Y, X)", f"{tuple(summary['shape_zyx'])} voxels"),
             ("voxel (dz, dy, dx)", f"{tuple(round(v, 4) for v in tomo.voxel_size_um)} µm"),
             ("tracks", summary["n_tracks"]), ("divisions", summary["n_divisions"]),
             ("growth rates", growth_count_text(summary)),
             ("median growth rate", "—" if summary["median_growth_rate_per_h"] is None
              else f"{summary['median_growth_rate_per_h']:.3f} /h"),
             ("median doubling time", "—" if summary["median_doubling_time_h"] is None
              else f"{summary['median_doubling_time_h']:.2f} h")]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             "<h2>Time series</h2>", _facts_html(facts)]
    if len(tracks):
        parts += ["<h2>Growth</h2>",
                  f"<img alt='growth curves' src='data:image/png;base64,{_growth_figure(tracks, growth)}'>",
                  "<p>Dry mass of each track (points, frames touching the field's edge included) and its exponential "
                  "fit (robust, on ln m: frames touching another cell weigh less, edge frames left out); the band is "
                  "the 95 % interval of the rate k (k ± 1.96 SE), dashed fits are rates not identifiable.</p>",
                  "<h2>Lineage</h2>",
                  f"<img alt='lineage' src='data:image/png;base64,{_lineage_figure(lineage, growth)}'>",
                  "<h2>Tracks</h2>", growth_table_html(growth)]
    parts.append("</body></html>")
    doc = to_json({"title": title, "summary": summary, "growth": growth.to_dict(orient="records"),
                   "lineage": lineage.to_dict(orient="records")})
    with atomic_path(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return out_dir / "report.html"

