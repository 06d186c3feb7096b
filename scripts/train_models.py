"""Train the shipped U-Net and cell classifier on the twin data set and write the model card.

Usage (after ``scripts/make_training_data.py --out data/seg``)::

    python scripts/train_models.py --data data/seg --out segmentation/weights

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load(folder: Path, limit=None):
    from segmentation.data import load_volume

    files = sorted(folder.glob("*.npz"))[:limit]
    return [load_volume(f) for f in files]


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
    from segmentation.classifier import calibrated_probabilities
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


def main(argv=None) -> int:
    import torch

    from segmentation.classifier import calibrated_probabilities
    from segmentation.infer import pick_device
    from segmentation.train import (DEFAULT_CLASSIFIER_CONFIG, DEFAULT_UNET_CONFIG, classifier_dataset,
                                    evaluate_segmentation, save_weights, train_classifier, train_unet)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cls-epochs", type=int, default=40)
    ap.add_argument("--n-val-epoch", type=int, default=8, help="Validation volumes evaluated each epoch.")
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    train, val, test = (_load(a.data / s) for s in ("train", "val", "test"))
    meta = json.loads((a.data / "dataset.json").read_text())
    print(f"{len(train)} train, {len(val)} val, {len(test)} test volumes; device {device}", flush=True)

    ucfg = dict(DEFAULT_UNET_CONFIG)
    ucfg["voxel_size_um"] = list(train[0].voxel_size_um)
    umodel, uhist = train_unet(train, val[: a.n_val_epoch], ucfg, epochs=a.epochs, steps_per_epoch=a.steps,
                               batch_size=a.batch, crop_zyx=(32, 64, 64), device=device, seed=a.seed)
    t_unet = time.perf_counter() - t0
    seg_test = evaluate_segmentation(umodel, ucfg, test, device=device)
    seg_classic = _eval_classic(test)
    print("test unet", seg_test, "classic", seg_classic, flush=True)

    from holo.twin.phantoms import CELL_CLASSES

    present = {c for v in train for c in v.classes.values()}
    names = [c for c in CELL_CLASSES if c in present]
    ccfg = dict(DEFAULT_CLASSIFIER_CONFIG)
    ccfg["classes"] = names
    xt, yt = classifier_dataset(train, ccfg, names)
    xv, yv = classifier_dataset(val, ccfg, names)
    xs, ys = classifier_dataset(test, ccfg, names)
    print(f"cells: {len(xt)} train, {len(xv)} val, {len(xs)} test; per class {np.bincount(yt, minlength=len(names)).tolist()}",
          flush=True)
    cmodel, temperature, chist = train_classifier(xt, yt, xv, yv, ccfg, epochs=a.cls_epochs, device=device, seed=a.seed)
    ccfg["temperature"] = temperature
    cmodel.eval()
    with torch.inference_mode():
        logits = np.concatenate([cmodel(torch.from_numpy(xs[i:i + 64])).numpy() for i in range(0, len(xs), 64)])
    probs = calibrated_probabilities(logits, temperature)
    acc = float((probs.argmax(1) == ys).mean())
    conf_mask = probs.max(1) >= ccfg["uncertain_below"]
    cls_test = {"accuracy_gt_crops": acc, "n_cells": int(len(ys)), "ece_calibrated": _ece(probs, ys),
                "ece_uncalibrated": _ece(calibrated_probabilities(logits, 1.0), ys),
                "uncertain_fraction": float(1 - conf_mask.mean()),
                "accuracy_confident": float((probs.argmax(1) == ys)[conf_mask].mean()) if conf_mask.any() else None,
                "per_class_accuracy": {n: float((probs.argmax(1)[ys == k] == k).mean()) for k, n in enumerate(names)
                                       if (ys == k).any()}}
    cls_test.update(_end_to_end_accuracy(umodel, ucfg, cmodel, ccfg, test, device))
    print("test classifier", cls_test, flush=True)

    provenance = {"data": meta, "trained": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "device": str(device), "torch": torch.__version__}
    ucfg_out = {**ucfg, "provenance": provenance, "test_metrics": seg_test, "history": uhist}
    ccfg_out = {**ccfg, "provenance": provenance, "test_metrics": cls_test, "history": chist}
    a.out.mkdir(parents=True, exist_ok=True)
    save_weights(umodel, ucfg_out, a.out, "unet")
    save_weights(cmodel, ccfg_out, a.out, "classifier")
    metrics = {"segmentation_unet": seg_test, "segmentation_classic": seg_classic, "classification": cls_test,
               "n_volumes": {"train": len(train), "val": len(val), "test": len(test)},
               "seconds": round(time.perf_counter() - t0, 1), "seconds_unet": round(t_unet, 1)}
    (a.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
