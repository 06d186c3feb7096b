"""Classification of cells cut by the field's edge, against how much of each cell is cut.

Volumes: the dense twin fields of :mod:`eval_instances` (its cache: RI on the tomogram grid,
ground truth, the U-Net's output), validation seeds 5100–5111 (the abstention threshold is
chosen on these only) and held-out seeds 9100–9115, at the default and HT-2 samplings.

For every true cell, the field is cropped laterally (one face per cell, cycling y-low,
y-high, x-low, x-high) so that a fraction ``f_in`` of the cell's true voxels stays inside
(1 = the whole field, nothing cut). The cut cell is classified (true mask, and the predicted
instance matched to it at IoU > 0.5, both cut by the same crop), measured on a box around it
(:func:`holo.segmentation.morphometrics.measure_cells`) and checked by the novelty model; the
observable cut size is the cut-face ratio ρ of :func:`holo.segmentation.novelty.edge_cut_ratio`.

Usage::

    python benchmarks/eval_edge_cut.py --cache /tmp/holo_eval --split val --csv /tmp/cut_val.csv
    python benchmarks/eval_edge_cut.py --cache /tmp/holo_eval --split test --csv /tmp/cut_test.csv
    python benchmarks/eval_edge_cut.py --summarise /tmp/cut_val.csv /tmp/cut_test.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

FRACTIONS_IN = (1.0, 0.9, 0.75, 0.6, 0.45, 0.3)
FACES = ((1, "low"), (1, "high"), (2, "low"), (2, "high"))
BOX_MARGIN_UM = 3.0


def crop_for_fraction(mask: np.ndarray, axis: int, side: str, f_in: float) -> slice:
    """Slice along ``axis`` that keeps the fraction ``f_in`` of the mask's voxels, cutting from ``side``."""
    counts = mask.sum(axis=tuple(a for a in range(3) if a != axis))
    n = counts.sum()
    if f_in >= 1.0:
        return slice(None)
    if side == "low":  # keep [c:], the last c with Σ_{≥c} ≥ f n
        tail = np.cumsum(counts[::-1])[::-1]
        c = int(np.nonzero(tail >= f_in * n)[0].max())
        return slice(c, None)
    head = np.cumsum(counts)
    c = int(np.nonzero(head >= f_in * n)[0].min())
    return slice(0, c + 1)


def _box(mask: np.ndarray, vs, margin_um: float) -> tuple:
    idx = np.nonzero(mask)
    pad = [int(np.ceil(margin_um / v)) for v in vs]
    return tuple(slice(max(int(i.min()) - p, 0), min(int(i.max()) + p + 1, s)) for i, p, s in zip(idx, pad, mask.shape))


def cut_records(d: dict, cfg_unet: dict, clf, cfg_clf: dict, novelty: dict) -> list[dict]:
    """One record per (true cell, fraction, mask source) of a cached volume."""
    from holo.segmentation.infer import cell_crops, labels_from_prediction, resize_labels
    from holo.segmentation.morphometrics import measure_cells
    from holo.segmentation.novelty import abstain, edge_cut_ratio

    sem, inst = labels_from_prediction(d["probs"].astype(np.float32), d["dist"].astype(np.float32),
                                       d["x"] / np.float32(cfg_unet["ri_scale"]), cfg_unet)
    sem, inst = resize_labels(sem, d["semantic"].shape), resize_labels(inst, d["semantic"].shape)
    from holo.segmentation.train import matched_pairs

    match = matched_pairs(inst, d["instance"])
    vs, n_m, ri, truth = tuple(d["voxel_size_um"]), float(d["medium_index"]), d["ri"], d["instance"]
    recs, crops = [], []
    for t in np.unique(truth[truth > 0]):
        axis, side = FACES[int(t) % len(FACES)]
        tmask = truth == t
        for f in FRACTIONS_IN:
            sl = [slice(None)] * 3
            sl[axis] = crop_for_fraction(tmask, axis, side, f)
            sl = tuple(sl)
            f_true = float(tmask[sl].sum() / tmask.sum())
            for source, lab, cid in (("true", truth, int(t)), ("predicted", inst, match.get(int(t)))):
                if cid is None or not (lab[sl] == cid).any():
                    continue
                m = lab[sl] == cid
                c, _ = cell_crops(ri[sl], m.astype(np.int32), vs, n_m, crop_zyx=cfg_clf["crop_zyx"],
                                  crop_voxel_size_um=cfg_clf["voxel_size_um"], ri_scale=cfg_clf["ri_scale"])
                crops.append(c[0])
                rho = edge_cut_ratio(m.astype(np.int32)).get(1, 0.0)
                rec = {"seed": d["seed"], "kind": d["kind"], "cell": int(t), "true_class": d["classes"][int(t)],
                       "source": source, "f_target": f, "f_in": f_true, "rho": rho, "axis": axis, "side": side}
                if source == "predicted":
                    b = _box(m, vs, BOX_MARGIN_UM)
                    lb = lab[sl][b]
                    cells = measure_cells(ri[sl][b], sem[sl][b], lb, vs, n_m)
                    rec["row"] = cells[cells["cell_id"] == cid].copy()
                recs.append(rec)
    if not recs:
        return []
    import torch

    from holo.segmentation.classifier import calibrated_probabilities
    from holo.segmentation.unet import fused_for_inference

    model = fused_for_inference(clf.eval())
    with torch.inference_mode():
        logits = np.concatenate([model(torch.from_numpy(np.stack(crops[i:i + 32]))).numpy()
                                 for i in range(0, len(crops), 32)])
    probs = calibrated_probabilities(logits, float(cfg_clf.get("temperature", 1.0)))
    names = list(cfg_clf["classes"])
    thr = float(cfg_clf.get("uncertain_below", 0.6))
    for rec, p in zip(recs, probs):
        rec["pred_class"], rec["confidence"] = names[int(p.argmax())], float(p.max())
        rec["correct"] = rec["pred_class"] == rec["true_class"]
        rec["reported"] = rec["pred_class"] if rec["confidence"] >= thr else "uncertain"
        row = rec.pop("row", None)
        rec["unknown_novelty"] = None
        if row is not None and len(row):
            row["class"] = rec["reported"]
            for j, n in enumerate(names):
                row[f"p_{n}"] = p[j]
            rec["unknown_novelty"] = bool((abstain(row, novelty)["class"] == "unknown").iloc[0])
    return recs


def collect(cache: Path, split: str, n: int, csv: Path) -> pd.DataFrame:
    from eval_instances import SAMPLINGS, cached_paths, load_cached

    from holo.segmentation.infer import load_classifier, load_unet
    from holo.segmentation.novelty import load_novelty

    _, cfg_unet = load_unet()
    clf, cfg_clf = load_classifier()
    novelty = load_novelty()
    rows = []
    for p in cached_paths(cache, split, n, list(SAMPLINGS)):
        t0 = time.perf_counter()
        recs = cut_records(load_cached(p), cfg_unet, clf, cfg_clf, novelty)
        for r in recs:
            r["sampling"] = p.name.split("_")[1]
        rows += recs
        print(f"{p.name}: {len(recs)} cut cells, {time.perf_counter() - t0:.1f} s", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(csv, index=False)
    return table


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (arg-max right), right and reported (≥ threshold) and novelty-unknown by f_in bin and mask source."""
    bins = pd.cut(table["f_in"], [0, 0.35, 0.5, 0.65, 0.8, 0.95, 0.999, 1.0])
    g = table.groupby(["source", bins], observed=True)
    return pd.DataFrame({"n": g.size(), "accuracy": g["correct"].mean(),
                         "right_and_reported": g.apply(lambda x: (x["reported"] == x["true_class"]).mean()),
                         "novelty_unknown": g["unknown_novelty"].apply(lambda x: x.dropna().astype(bool).mean()),
                         "rho_median": g["rho"].median()})


def abstention_sweep(table: pd.DataFrame, limits=np.round(np.arange(0.0, 1.01, 0.1), 2)) -> pd.DataFrame:
    """Per limit on ρ, over the predicted cut cells (f_in < 1; the novelty check applied
    first): wrong answers kept (a class reported, not the true one) and right answers lost
    to the edge abstention. The default limit minimises their sum on validation."""
    t = table[(table["source"] == "predicted") & (table["f_in"] < 1)]
    t = t[~t["unknown_novelty"].astype(bool)]
    right = (t["reported"] == t["true_class"]).to_numpy()
    answered = (t["reported"] != "uncertain").to_numpy()
    rows = []
    for lim in limits:
        cut = (t["rho"] > lim).to_numpy()
        rows.append({"max_edge_cut": lim, "abstained": int(cut.sum()),
                     "wrong_kept": int((answered & ~right & ~cut).sum()),
                     "right_lost": int((right & cut).sum()), "right_kept": int((right & ~cut).sum()), "n": len(t)})
    out = pd.DataFrame(rows)
    out["cost"] = out["wrong_kept"] + out["right_lost"]
    out["precision_kept"] = out["right_kept"] / np.maximum(out["right_kept"] + out["wrong_kept"], 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--csv", type=Path)
    ap.add_argument("--summarise", nargs="*", type=Path)
    a = ap.parse_args(argv)
    if a.summarise:
        for p in a.summarise:
            t = pd.read_csv(p)
            print(p, "\n", summarise(t).round(3).to_string(), "\n", abstention_sweep(t).round(3).to_string())
        return 0
    table = collect(a.cache, a.split, a.n, a.csv)
    print(summarise(table).round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
