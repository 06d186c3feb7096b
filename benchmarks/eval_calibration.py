"""Calibration of the cell classifier: temperature fitted on validation crops, ECE on held-out ones.

Crops come from the cached volumes of :mod:`benchmarks.eval_instances` (dense twin fields at
the default and Tomocube samplings): for every true cell, the crop of its **true** mask, and
the crop of the **predicted** instance that matches it (IoU > 0.5, the shipped post-processing)
— the cells a user gets, segmentation errors included. The temperature T of
:func:`holo.segmentation.classifier.fit_temperature` is fitted (NLL) on the validation
split only; the expected calibration error (15 equal-width confidence bins,
:func:`holo.segmentation.classifier.expected_calibration_error`) and the reliability diagram
are measured on the held-out split.

Usage::

    python benchmarks/eval_calibration.py --cache /tmp/holo_eval --png segmentation/weights/reliability.png
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from eval_instances import load_cached  # noqa: E402


def volume_logits(d: dict, ucfg: dict, cmodel, ccfg: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, true class indices, from_prediction flags) of a cached volume's cells."""
    from holo.segmentation.infer import cell_crops, labels_from_prediction, resize_labels
    from holo.segmentation.train import classifier_logits

    names = list(ccfg["classes"])
    truth = d["instance"]
    _, inst = labels_from_prediction(d["probs"].astype(np.float32), d["dist"].astype(np.float32),
                                     d["x"] / np.float32(ucfg["ri_scale"]), ucfg)
    inst = resize_labels(inst, truth.shape)
    crops, ys, pred_flag = [], [], []
    for tid, cname in d["classes"].items():
        m = truth == tid
        if not m.any() or cname not in names:
            continue
        ids, cnt = np.unique(inst[m], return_counts=True)
        match = None
        for pid, c in zip(ids, cnt):
            if pid and c / (m.sum() + np.count_nonzero(inst == pid) - c) > 0.5:
                match = int(pid)
        for lab, which, flag in ((truth, tid, False), (inst, match, True)):
            if which is None:
                continue
            x, _ = cell_crops(d["ri"], lab, d["voxel_size_um"], float(d["medium_index"]), crop_zyx=ccfg["crop_zyx"],
                              crop_voxel_size_um=ccfg["voxel_size_um"], ri_scale=ccfg["ri_scale"], ids=[which])
            crops.append(x[0])
            ys.append(names.index(cname))
            pred_flag.append(flag)
    if not crops:
        return np.zeros((0, len(names)), np.float32), np.zeros(0, int), np.zeros(0, bool)
    logits = classifier_logits(cmodel, np.stack(crops), len(names))
    return logits, np.asarray(ys), np.asarray(pred_flag)


def split_logits(cache: Path, split: str, ucfg, cmodel, ccfg, patterns=("default_*", "tomocube_*")) -> dict:
    """Logits, true classes and flags of every cached volume of a split (otf volumes by default)."""
    out = {"logits": [], "y": [], "pred": [], "sampling": []}
    for p in sorted(q for pat in patterns for q in glob.glob(str(cache / f"{split}_{pat}.npz"))):
        lg, y, fl = volume_logits(load_cached(Path(p)), ucfg, cmodel, ccfg)
        out["logits"].append(lg)
        out["y"].append(y)
        out["pred"].append(fl)
        out["sampling"] += [Path(p).name.split("_")[1]] * len(y)
    return {k: (np.concatenate(v) if k != "sampling" else np.asarray(v)) for k, v in out.items()}


def reliability_png(path: Path, curves: dict, n_bins: int) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, one curve per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from holo.segmentation.classifier import reliability_bins

    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=120)
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
    for label, (probs, y) in curves.items():
        conf, acc, count = reliability_bins(probs, y, n_bins)
        m = count > 0
        line, = ax.plot(conf[m], acc[m], "-", lw=1, label=label)
        ax.scatter(conf[m], acc[m], s=8 + 60 * count[m] / count.max(), color=line.get_color())
    ax.set_xlabel("confidence (top calibrated probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("held-out twin cells (marker area ∝ cells per bin)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--bins", type=int, default=15)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from holo.segmentation.classifier import calibrated_probabilities, expected_calibration_error, fit_temperature
    from holo.segmentation.infer import load_classifier, load_unet

    _, ucfg = load_unet()
    cmodel, ccfg = load_classifier()
    val = split_logits(a.cache, "val", ucfg, cmodel, ccfg)
    test = split_logits(a.cache, "test", ucfg, cmodel, ccfg)
    t_fit = fit_temperature(val["logits"], val["y"])
    res = {"temperature_fitted": t_fit, "temperature_shipped": float(ccfg.get("temperature", 1.0)),
           "n_val": int(len(val["y"])), "n_test": int(len(test["y"])), "bins": a.bins, "rows": {}}
    curves = {}
    for name, t in (("T=1", 1.0), (f"T={t_fit:.2f} (fitted)", t_fit)):
        for sub, m in (("all", np.ones(len(test["y"]), bool)), ("true masks", ~test["pred"]),
                       ("predicted cells", test["pred"])):
            p = calibrated_probabilities(test["logits"][m], t)
            row = {"n": int(m.sum()), "accuracy": float((p.argmax(1) == test["y"][m]).mean()),
                   "ece": expected_calibration_error(p, test["y"][m], a.bins),
                   "mean_confidence": float(p.max(1).mean())}
            res["rows"][f"{name} / {sub}"] = row
            print(f"{name:18s} {sub:16s} n {row['n']:4d} acc {row['accuracy']:.3f} conf {row['mean_confidence']:.3f} "
                  f"ECE {row['ece']:.3f}")
            if sub == "all":
                curves[f"{name}: ECE {row['ece']:.3f}"] = (p, test["y"][m])
    if a.png:
        reliability_png(a.png, curves, a.bins)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
