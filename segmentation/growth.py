"""Growth of tracked cells: exponential dry-mass growth rates, doubling times, lineage.

Each track (a branch between divisions) is fitted with exponential growth,
ln m(t) = ln m₀ + k t, by the Theil–Sen estimator (the median of the pairwise slopes),
which ignores up to ~29 % of outlying frames (a merged or cut segmentation, a cell
partly out of the field). Reported per track: the specific growth rate k (1/h), the
doubling time T_d = ln 2 / k (h), and the mean absolute growth rate over the fitted span,
(m̂(t_end) − m̂(t_start)) / (t_end − t_start) in pg/h, with m̂ the fitted exponential.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["GROWTH_COLUMNS", "LINEAGE_COLUMNS", "fit_exponential_growth", "growth_table", "lineage_table"]

GROWTH_COLUMNS = ("track_id", "parent_id", "n_frames_fitted", "first_time_h", "last_time_h", "mass_start_pg",
                  "mass_end_pg", "growth_rate_per_h", "growth_rate_pg_per_h", "doubling_time_h")
LINEAGE_COLUMNS = ("track_id", "parent_id", "root_id", "generation", "start_frame", "end_frame", "start_time_h",
                   "end_time_h", "fate", "daughters")


def fit_exponential_growth(time_h, mass_pg) -> tuple[float, float]:
    """(k in 1/h, ln m₀) of ln m = ln m₀ + k t by Theil–Sen; NaN with fewer than 3 points."""
    t = np.asarray(time_h, float)
    m = np.asarray(mass_pg, float)
    ok = np.isfinite(t) & np.isfinite(m) & (m > 0)
    if ok.sum() < 3 or np.ptp(t[ok]) <= 0:
        return float("nan"), float("nan")
    slope, intercept, _, _ = stats.theilslopes(np.log(m[ok]), t[ok])
    return float(slope), float(intercept)


def growth_table(tracks: pd.DataFrame, *, min_frames: int = 4, exclude_border: bool = True) -> pd.DataFrame:
    """Per-track growth: :data:`GROWTH_COLUMNS`.

    Parameters
    ----------
    tracks : DataFrame
        ``track_id``, ``parent_id``, ``time_s``, ``dry_mass_pg`` and optionally
        ``touches_border`` (frames where the cell is cut by the field's edge).
    min_frames
        Tracks with fewer usable frames get NaN rates.
    exclude_border
        Leave out frames where the cell touches the border (its mass is truncated).
    """
    rows = []
    for tid, g in tracks.groupby("track_id", sort=True):
        use = g
        if exclude_border and "touches_border" in g:
            use = g[~g["touches_border"].astype(bool)]
        t_h = use["time_s"].to_numpy(float) / 3600.0
        k, c = fit_exponential_growth(t_h, use["dry_mass_pg"]) if len(use) >= min_frames else (np.nan, np.nan)
        t0, t1 = (float(t_h.min()), float(t_h.max())) if len(use) else (np.nan, np.nan)
        m0, m1 = math.exp(c + k * t0) if np.isfinite(k) else np.nan, math.exp(c + k * t1) if np.isfinite(k) else np.nan
        rows.append({"track_id": int(tid), "parent_id": int(g["parent_id"].iloc[0]), "n_frames_fitted": len(use),
                     "first_time_h": t0, "last_time_h": t1, "mass_start_pg": m0, "mass_end_pg": m1,
                     "growth_rate_per_h": k,
                     "growth_rate_pg_per_h": (m1 - m0) / (t1 - t0) if np.isfinite(k) and t1 > t0 else np.nan,
                     "doubling_time_h": math.log(2.0) / k if np.isfinite(k) and k > 0 else np.nan})
    return pd.DataFrame(rows, columns=list(GROWTH_COLUMNS))


def lineage_table(tracks: pd.DataFrame) -> pd.DataFrame:
    """One row per track: :data:`LINEAGE_COLUMNS`; ``fate`` is ``"divided"`` (has
    daughters), ``"lost"`` (ends before the last frame) or ``"end"`` (reaches it);
    ``daughters`` is a space-separated list of track ids; ``generation`` 0 for a track
    without a parent in the series."""
    if tracks.empty:
        return pd.DataFrame(columns=list(LINEAGE_COLUMNS))
    last = int(tracks["frame"].max())
    g = tracks.groupby("track_id")
    info = pd.DataFrame({"parent_id": g["parent_id"].first(), "start_frame": g["frame"].min(),
                         "end_frame": g["frame"].max(), "start_time_h": g["time_s"].min() / 3600.0,
                         "end_time_h": g["time_s"].max() / 3600.0})
    kids: dict[int, list] = {}
    for tid, pid in info["parent_id"].items():
        if pid:
            kids.setdefault(int(pid), []).append(int(tid))
    rows = []
    for tid, r in info.iterrows():
        root, gen, p = int(tid), 0, int(r["parent_id"])
        while p and p in info.index and gen < len(info):
            root, gen, p = p, gen + 1, int(info.loc[p, "parent_id"])
        fate = "divided" if tid in kids else ("end" if r["end_frame"] == last else "lost")
        rows.append({"track_id": int(tid), "parent_id": int(r["parent_id"]), "root_id": root, "generation": gen,
                     "start_frame": int(r["start_frame"]), "end_frame": int(r["end_frame"]),
                     "start_time_h": float(r["start_time_h"]), "end_time_h": float(r["end_time_h"]), "fate": fate,
                     "daughters": " ".join(str(k) for k in sorted(kids.get(int(tid), [])))})
    return pd.DataFrame(rows, columns=list(LINEAGE_COLUMNS))
