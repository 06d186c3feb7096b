"""Saying "I don't know": abstention on cells unlike any the classifier was trained on.

A softmax classifier spreads its probability over the classes it knows, so a cell of an
unseen type, debris, or a tomogram with a wrong voxel size still gets a confident class (a
homogeneous 8 µm sphere was called "lymphocyte, p 0.97"). Its confidence cannot say "none
of these". This module checks the cell's *measured* morphology against the training
distribution of the class the classifier chose.

Features (from :func:`holo.segmentation.morphometrics.measure_cells`), chosen because they
are physical, sampling-independent and change with every failure above:

    f = (log10 V, c, Ψ, V_nucleus / V, σ_n, c_mask, 1 − m_mask / m)

V the tight-mask volume (µm³), c = m / V the dry-mass concentration (pg/µm³; m the dry mass
over the cell's share of the volume), Ψ the sphericity, the nucleus volume fraction, σ_n the
standard deviation of the RI over the tight mask (texture: granules, nucleus–cytoplasm
contrast; 0 for a homogeneous body), c_mask = m_mask / V = (n̄ − n_m) / α the concentration
over the tight mask alone, and 1 − m_mask / m the fraction of the cell's dry mass that lies
in its share but outside its tight mask. The last two tell a *piece* of a larger body from a
whole cell: the thick part of a spread, adherent cell (its 0.6–1.2 µm sheet is too faint to
be segmented) has the size and shape of a red cell, but the RI of cytoplasm (c_mask ≈ 0.13
against ≥ 0.18 for red cells) and half of its share's mass outside the mask (the sheet's edge
in its margin; a whole red cell ≈ 1/3). Both assume the default ``mass_region="share"`` of
:func:`holo.segmentation.morphometrics.measure_cells` (with ``"mask"`` every cell's outside
fraction is 0 and the check does not apply).

Density. Per class k, a Gaussian N(μ_k, Σ_k) fitted on the cells of the twin's training
distribution as the default chain segments them (:mod:`holo.training.fit_novelty`); Σ_k is
shrunk towards the pooled covariance, Σ_k ← (1 − λ) Σ_k + λ Σ_pooled with λ = d / (d + n_k)
(n_k cells, d features), so that classes with few cells stay well conditioned. A cell the
classifier calls k is reported as :data:`holo.labels.UNKNOWN` when its squared Mahalanobis
distance

    D² = (f − μ_k)ᵀ Σ_k⁻¹ (f − μ_k) > D²_max,

D²_max the ``quantile`` of the χ² distribution with d degrees of freedom (default 0.999:
one in a thousand cells of the training distribution abstains if the Gaussian model holds;
the measured rate on held-out cells is in the model card). The ``reason`` column names the
feature with the largest standardised deviation |f_j − μ_kj| / √Σ_kjj and its value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from holo.labels import UNCERTAIN, UNKNOWN

__all__ = ["FEATURES", "DEFAULT_QUANTILE", "DEFAULT_MAX_EDGE_CUT", "REASONS", "cell_features", "fit_class_gaussians",
           "novelty_scores", "edge_cut_ratio", "abstain", "load_novelty"]

#: Feature names, in the order of the fitted means and covariances.
FEATURES = ("log10_volume_um3", "concentration_pg_per_um3", "sphericity", "nucleus_fraction", "ri_std",
            "mask_concentration_pg_per_um3", "mass_outside_mask_fraction")
_LABELS = {"log10_volume_um3": "volume", "concentration_pg_per_um3": "concentration", "sphericity": "sphericity",
           "nucleus_fraction": "nucleus fraction", "ri_std": "RI texture σ",
           "mask_concentration_pg_per_um3": "concentration inside the mask",
           "mass_outside_mask_fraction": "fraction of the dry mass outside the mask"}
#: χ² quantile of the abstention threshold.
DEFAULT_QUANTILE = 0.999
#: Cut-face ratio ρ (:func:`edge_cut_ratio`) above which a cell cut by the field's edge is
#: ``unknown``: chosen on validation fields (model card, "Cells cut by the field's edge").
DEFAULT_MAX_EDGE_CUT = 0.99
#: The ``reason`` vocabulary: every reason text starts with one of these.
REASONS = {"uncertain": "top class probability below the threshold",
           "novel": "unlike the training cells",
           "edge": "cut by the field's edge"}
_NOVELTY_FILE = "novelty.json"


def cell_features(cells, features=FEATURES) -> np.ndarray:
    """(N, d) feature matrix of a cells table (columns of ``measure_cells``), columns in the
    order of ``features`` (names of :data:`FEATURES`; a model fitted on fewer features gives
    its own list); NaN → 0 for the nucleus fraction and Ψ (a cell without a nucleus, a mesh
    that failed)."""
    def col(name):
        return np.asarray(cells[name], float)

    vol = np.maximum(col("volume_um3"), 1e-9)
    columns = {
        "log10_volume_um3": lambda: np.log10(np.maximum(vol, 1e-6)),
        "concentration_pg_per_um3": lambda: col("concentration_pg_per_um3"),
        "sphericity": lambda: np.nan_to_num(col("sphericity")),
        "nucleus_fraction": lambda: np.nan_to_num(col("nucleus_volume_um3")) / vol,
        "ri_std": lambda: col("ri_std"),
        "mask_concentration_pg_per_um3": lambda: col("dry_mass_mask_pg") / vol,
        "mass_outside_mask_fraction": lambda: 1.0 - col("dry_mass_mask_pg") / _nonzero(col("dry_mass_pg")),
    }
    unknown = [f for f in features if f not in columns]
    if unknown:
        raise ValueError(f"unknown novelty features {unknown}; known: {list(FEATURES)}")
    return np.column_stack([columns[f]() for f in features]) if len(features) else np.zeros((len(vol), 0))


def _nonzero(x: np.ndarray) -> np.ndarray:
    """x with zeros replaced by a tiny value of the same sign (a cell of zero dry mass)."""
    return np.where(np.abs(x) < 1e-12, 1e-12, x)


def fit_class_gaussians(features: np.ndarray, labels, *, min_cells: int = 3, features_names=FEATURES) -> dict:
    """Per-class mean and shrunk covariance (module docstring) of a feature matrix whose columns
    are ``features_names``; classes with fewer than ``min_cells`` cells are left out (their
    cells are then never checked)."""
    x = np.asarray(features, float)
    labels = np.asarray(labels)
    d = x.shape[1]
    classes = [k for k in sorted(set(labels.tolist())) if (labels == k).sum() >= min_cells]
    centred = np.concatenate([x[labels == k] - x[labels == k].mean(0) for k in classes])
    pooled = np.cov(centred, rowvar=False) + 1e-9 * np.eye(d)
    out = {}
    for k in classes:
        xk = x[labels == k]
        lam = d / (d + len(xk))
        cov = (1 - lam) * np.cov(xk, rowvar=False) + lam * pooled
        out[str(k)] = {"mean": xk.mean(0).tolist(), "cov": cov.tolist(), "n_cells": int(len(xk))}
    return {"features": list(features_names), "classes": out}


def novelty_scores(features: np.ndarray, predicted, model: dict) -> tuple[np.ndarray, list[str]]:
    """(D² of every cell to its predicted class's Gaussian (NaN when the class has none), the
    most deviating feature of each as text)."""
    x = np.asarray(features, float)
    names = model.get("features", FEATURES)
    d2 = np.full(len(x), np.nan)
    worst = [""] * len(x)
    for i, (f, k) in enumerate(zip(x, predicted)):
        g = model["classes"].get(str(k))
        if g is None:
            continue
        mu, cov = np.asarray(g["mean"]), np.asarray(g["cov"])
        diff = f - mu
        d2[i] = float(diff @ np.linalg.solve(cov, diff))
        z = diff / np.sqrt(np.diag(cov))
        j = int(np.argmax(np.abs(z)))
        name = names[j]
        val = 10 ** f[j] if name == "log10_volume_um3" else f[j]
        ref = 10 ** mu[j] if name == "log10_volume_um3" else mu[j]
        worst[i] = f"{_LABELS[name]} {val:.3g} unlike {k} ({ref:.3g}, z = {z[j]:+.1f})"
    return d2, worst


def load_novelty(weights_dir=None) -> dict | None:
    """The fitted class Gaussians of a weights folder (``novelty.json``), or None."""
    from holo.segmentation.infer import WEIGHTS_DIR

    p = Path(weights_dir or WEIGHTS_DIR) / _NOVELTY_FILE
    return json.loads(p.read_text()) if p.is_file() else None


def abstain(cells, model: dict | None, *, quantile: float = DEFAULT_QUANTILE, edge_cut: dict | None = None,
            max_edge_cut: float | None = DEFAULT_MAX_EDGE_CUT):
    """The cells table with ``class`` set to :data:`holo.labels.UNKNOWN` where D² exceeds the
    χ² ``quantile`` threshold or the cell is cut by the field's edge, and the columns
    ``novelty_d2`` and ``reason`` (why a cell is unknown or uncertain, starting with one of
    :data:`REASONS`; empty otherwise). ``model`` None: no novelty check.

    ``edge_cut``: {cell id: cut-face ratio ρ} (:func:`edge_cut_ratio` of the instance volume);
    a cell with ρ > ``max_edge_cut`` is ``unknown`` with the reason "cut by the field's edge"
    (it overrides a novelty reason: a cut cell's volume and shape are truncated, so its
    features are expected to deviate). ``max_edge_cut`` None turns this check off.
    """
    from scipy.stats import chi2

    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if max_edge_cut is not None and not 0 <= max_edge_cut <= 1:
        raise ValueError(f"max_edge_cut must be in [0, 1] or None, got {max_edge_cut}")
    out = cells.copy()
    out["novelty_d2"] = np.nan
    out["reason"] = ""
    if "class" not in out.columns or not len(out):
        return out
    low = out["class"] == UNCERTAIN
    out.loc[low, "reason"] = REASONS["uncertain"]
    if model is not None:
        predicted = [c if c != UNCERTAIN else _top_class(out.loc[i]) for i, c in out["class"].items()]
        d2, worst = novelty_scores(cell_features(out, model["features"]), predicted, model)
        out["novelty_d2"] = d2
        far = np.nan_to_num(d2, nan=0.0) > chi2.ppf(quantile, len(model["features"]))
        out.loc[far, "class"] = UNKNOWN
        out.loc[far, "reason"] = [f"{REASONS['novel']}: {w}" for w in np.asarray(worst, object)[far]]
    if edge_cut and max_edge_cut is not None:
        rho = out["cell_id"].map(lambda i: edge_cut.get(int(i), 0.0)).to_numpy(float)
        cut = rho > max_edge_cut
        out.loc[cut, "class"] = UNKNOWN
        out.loc[cut, "reason"] = [f"{REASONS['edge']}: cut face {r:.2f} of its widest section (limit {max_edge_cut:g})"
                                  for r in rho[cut]]
    return out


def edge_cut_ratio(instance: np.ndarray) -> dict[int, float]:
    """Cut-face ratio ρ of every cell cut by a lateral face (y or x) of the field.

    For a cell touching the face x = 0 (likewise the other three),

        ρ = A_face / max_i A(x = x_i),

    A(x = x_i) the area of the cell's section in the plane x = x_i (voxels of the mask in
    that slice) and A_face the section in the edge plane itself. ρ ≈ 0 when the edge only
    grazes the cell, ρ = 1 when the edge passes through the cell's widest section or beyond
    (half of a convex cell or more is outside the field); for a sphere cut at distance h from
    its centre, ρ = 1 − h²/R² while the centre is inside. The largest ρ over the faces a cell
    touches is returned; cells touching no lateral face are absent.
    """
    from scipy import ndimage as ndi

    inst = np.asarray(instance)
    out: dict[int, float] = {}
    for idx, sl in enumerate(ndi.find_objects(inst)):
        if sl is None:
            continue
        rho = 0.0
        for axis in (inst.ndim - 2, inst.ndim - 1):
            for edge in (0, inst.shape[axis] - 1):
                if not sl[axis].start <= edge < sl[axis].stop:
                    continue
                m = inst[sl] == idx + 1
                sections = m.sum(axis=tuple(a for a in range(m.ndim) if a != axis))
                rho = max(rho, float(sections[edge - sl[axis].start] / max(sections.max(), 1)))
        if rho > 0:
            out[idx + 1] = rho
    return out


def _top_class(row) -> str:
    probs = {k[2:]: v for k, v in row.items() if isinstance(k, str) and k.startswith("p_")}
    return max(probs, key=probs.get) if probs else ""
