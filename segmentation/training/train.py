"""Train the shipped U-Net and cell classifier on the twin data set and write the model card.

Usage (after ``python -m segmentation.training.make_data --out data/seg``)::

    python -m segmentation.training.train --data data/seg --out segmentation/weights

Model selection uses the ``val`` split only; the acceptance metrics of the model card are
measured on the ``test`` split, whose seeds are never used in training.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np


def _load(folder: Path, source: str | None = None):
    from segmentation.data import load_volume

    files = sorted(folder.glob("*.npz"))
    vols = [load_volume(f) for f in files]
    return [v for v in vols if source is None or v.source == source]


def _interleave(a, b, n):
    out = []
    for x, y in zip(a, b):
        out += [x, y]
    out += a[len(b):] + b[len(a):]
    return out[:n]


def _eval_classic(vols):
    from segmentation.classic import classic_segment
    from segmentation.train import dice, instance_ap

    d, a = [], []
    for v in vols:
        sem, inst = classic_segment(v.ri, v.voxel_size_um, v.medium_index)
        d.append(dice(sem > 0, v.semantic > 0))
        a.append(instance_ap(inst, v.instance))
    return {"dice_cell": float(np.mean(d)), "ap50": float(np.mean(a))}


def _end_to_end_accuracy(umodel, ucfg, cmodel, ccfg, vols, device):
    """Accuracy over true cells matched (IoU > 0.5) by a predicted instance; unmatched count as errors."""
    from segmentation.infer import classify_cells, unet_segment

    names = ccfg["classes"]
    correct = total = uncertain = 0
    for v in vols:
        _, inst = unet_segment(v.ri, v.voxel_size_um, v.medium_index, model=umodel, cfg=ucfg, device=device)
        ids, probs, _ = classify_cells(v.ri, inst, v.voxel_size_um, v.medium_index, model=cmodel, cfg=ccfg, device=device)
        pred = dict(zip(ids.tolist(), probs))
        for tid, cname in v.classes.items():
            t = v.instance == tid
            if not t.any() or cname not in names:
                continue
            total += 1
            cand, cnt = np.unique(inst[t], return_counts=True)
            ok = False
            for pid, c in zip(cand, cnt):
                if pid == 0:
                    continue
                iou = c / (t.sum() + (inst == pid).sum() - c)
                if iou > 0.5 and pid in pred:
                    p = pred[pid]
                    ok = names[int(np.argmax(p))] == cname
                    uncertain += int(p.max() < ccfg["uncertain_below"])
            correct += int(ok)
    return {"accuracy_end_to_end": correct / max(total, 1), "n_cells": total, "uncertain_fraction": uncertain / max(total, 1)}


def _ece(probs, labels, n_bins=10):
    conf = probs.max(1)
    acc = probs.argmax(1) == labels
    bins = np.linspace(0, 1, n_bins + 1)
    e = 0.0
    for lo, hi in zip(bins[:-1], bins[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs(acc[m].mean() - conf[m].mean())
    return float(e)


def _stage_unet(a, train, val_epoch, tests, device, provenance):
    from segmentation.train import DEFAULT_UNET_CONFIG, evaluate_segmentation, save_weights, train_unet

    t0 = time.perf_counter()
    ucfg = dict(DEFAULT_UNET_CONFIG)
    ucfg["voxel_size_um"] = list(train[0].voxel_size_um)
    umodel, uhist = train_unet(train, val_epoch, ucfg, epochs=a.epochs, steps_per_epoch=a.steps,
                               batch_size=a.batch, crop_zyx=(32, 64, 64), device=device, seed=a.seed,
                               patience=a.patience)
    t_train = time.perf_counter() - t0
    save_weights(umodel, {**ucfg, "history": uhist}, a.out, "unet")  # kept if the evaluation fails
    seg_test = {src: evaluate_segmentation(umodel, ucfg, vs, device=device) for src, vs in tests.items()}
    seg_classic = {src: _eval_classic(vs) for src, vs in tests.items()}
    print("test unet", seg_test, "classic", seg_classic, flush=True)
    save_weights(umodel, {**ucfg, "provenance": provenance, "test_metrics": seg_test, "history": uhist}, a.out, "unet")
    return {"segmentation_unet": seg_test, "segmentation_classic": seg_classic, "seconds_unet_training": round(t_train, 1)}


def _stage_classifier(a, train, val, test, device, provenance):
    import torch

    from holo.twin.phantoms import CELL_CLASSES
    from segmentation.classifier import calibrated_probabilities
    from segmentation.train import DEFAULT_CLASSIFIER_CONFIG, classifier_dataset, save_weights, train_classifier

    t0 = time.perf_counter()
    present = {c for v in train for c in v.classes.values()}
    names = [c for c in CELL_CLASSES if c in present]
    ccfg = dict(DEFAULT_CLASSIFIER_CONFIG)
    ccfg["classes"] = names
    xt, yt = classifier_dataset(train, ccfg, names)
    xv, yv = classifier_dataset(val, ccfg, names)
    xs, ys = classifier_dataset(test, ccfg, names)
    print(f"cells: {len(xt)} train, {len(xv)} val, {len(xs)} test; per class {np.bincount(yt, minlength=len(names)).tolist()}",
          flush=True)
    cmodel, temperature, chist = train_classifier(xt, yt, xv, yv, ccfg, epochs=a.cls_epochs, device=device, seed=a.seed,
                                                  lr=1e-3, patience=a.cls_patience)
    ccfg["temperature"] = temperature
    cmodel.eval()
    with torch.inference_mode():
        logits = np.concatenate([cmodel(torch.from_numpy(xs[i:i + 64])).numpy() for i in range(0, len(xs), 64)])
    probs = calibrated_probabilities(logits, temperature)
    conf_mask = probs.max(1) >= ccfg["uncertain_below"]
    cls_test = {"accuracy_gt_crops": float((probs.argmax(1) == ys).mean()), "n_cells": int(len(ys)),
                "ece_calibrated": _ece(probs, ys), "ece_uncalibrated": _ece(calibrated_probabilities(logits, 1.0), ys),
                "uncertain_fraction": float(1 - conf_mask.mean()),
                "accuracy_confident": float((probs.argmax(1) == ys)[conf_mask].mean()) if conf_mask.any() else None,
                "per_class_accuracy": {n: float((probs.argmax(1)[ys == k] == k).mean()) for k, n in enumerate(names)
                                       if (ys == k).any()},
                "n_train_cells": int(len(xt)), "n_val_cells": int(len(xv)), "temperature": temperature,
                "seconds_training": round(time.perf_counter() - t0, 1)}
    print("test classifier", cls_test, flush=True)
    save_weights(cmodel, {**ccfg, "provenance": provenance, "test_metrics": cls_test, "history": chist}, a.out, "classifier")
    return {"classification": cls_test}


def _classifier_test_metrics(cmodel, ccfg, test):
    """Accuracy, calibration (ECE) and per-class accuracy on ground-truth cell crops."""
    import torch

    from segmentation.classifier import calibrated_probabilities
    from segmentation.train import classifier_dataset

    names = list(ccfg["classes"])
    xs, ys = classifier_dataset(test, ccfg, names)
    cmodel.eval()
    with torch.inference_mode():
        logits = np.concatenate([cmodel(torch.from_numpy(xs[i:i + 32])).numpy() for i in range(0, len(xs), 32)])
    probs = calibrated_probabilities(logits, ccfg["temperature"])
    conf_mask = probs.max(1) >= ccfg["uncertain_below"]
    return {"accuracy_gt_crops": float((probs.argmax(1) == ys).mean()), "n_cells": int(len(ys)),
            "ece_calibrated": _ece(probs, ys), "ece_uncalibrated": _ece(calibrated_probabilities(logits, 1.0), ys),
            "uncertain_fraction": float(1 - conf_mask.mean()),
            "accuracy_confident": float((probs.argmax(1) == ys)[conf_mask].mean()) if conf_mask.any() else None,
            "per_class_accuracy": {n: float((probs.argmax(1)[ys == k] == k).mean()) for k, n in enumerate(names)
                                   if (ys == k).any()}}


def main(argv=None) -> int:
    import torch

    from segmentation.infer import load_classifier, load_unet, pick_device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--stage", default="all", choices=("all", "unet", "classifier", "eval", "test"),
                    help="unet and classifier may run in parallel; eval (end to end) needs both weights in --out; "
                         "test re-measures every test metric of the weights in --out (no training)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cls-epochs", type=int, default=30)
    ap.add_argument("--n-val-epoch", type=int, default=8, help="Validation volumes evaluated each epoch.")
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--cls-patience", type=int, default=10)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    torch.backends.cudnn.benchmark = True
    a.out.mkdir(parents=True, exist_ok=True)
    train, val, test = (_load(a.data / s) for s in ("train", "val", "test"))
    tests = {src: [v for v in test if v.source == src] for src in ("pipeline", "otf")}
    tests = {k: v for k, v in tests.items() if v}
    meta = json.loads((a.data / "dataset.json").read_text())
    print(f"{len(train)} train, {len(val)} val, {len(test)} test volumes; device {device}", flush=True)
    val_epoch = _interleave([v for v in val if v.source == "pipeline"], [v for v in val if v.source == "otf"], a.n_val_epoch)
    provenance = {"data": meta, "trained": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "device": str(device), "torch": torch.__version__,
                  "n_volumes": {"train": len(train), "val": len(val), "test": {k: len(v) for k, v in tests.items()}}}
    metrics = {}
    if a.stage in ("all", "unet"):
        metrics.update(_stage_unet(a, train, val_epoch, tests, device, provenance))
    if a.stage in ("all", "classifier"):
        metrics.update(_stage_classifier(a, train, val, test, device, provenance))
    if a.stage == "test":
        from segmentation.train import evaluate_segmentation

        umodel, ucfg = load_unet(a.out)
        cmodel, ccfg = load_classifier(a.out)
        metrics["segmentation_unet"] = {src: evaluate_segmentation(umodel, ucfg, vs, device=device) for src, vs in tests.items()}
        metrics["segmentation_classic"] = {src: _eval_classic(vs) for src, vs in tests.items()}
        metrics["classification"] = {src: _classifier_test_metrics(cmodel, ccfg, vs) for src, vs in tests.items()}
        print(json.dumps(metrics, indent=1), flush=True)
    if a.stage in ("all", "eval", "test"):
        umodel, ucfg = load_unet(a.out)
        cmodel, ccfg = load_classifier(a.out)
        metrics["end_to_end"] = {src: _end_to_end_accuracy(umodel, ucfg, cmodel, ccfg, vs, device) for src, vs in tests.items()}
    metrics["provenance"] = provenance
    (a.out / f"metrics_{a.stage}.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: v for k, v in metrics.items() if k != "provenance"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
