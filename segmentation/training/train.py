"""Train the shipped U-Net and cell classifier on the twin data set and write the model card.

Usage (after ``python -m holo.segmentation.training.make_data --out data/seg``)::

    python -m holo.segmentation.training.train --data data/seg --out segmentation/weights

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


#: Data sources (``holo.segmentation.data.phantom_volume``), in the order of the validation round robin.
SOURCES = ("gp", "pipeline", "otf")


def _load(folder: Path, source: str | None = None):
    from holo.segmentation.data import load_volume

    vols = []
    for f in sorted(folder.glob("*.npz")):
        v = load_volume(f)
        v.kind = f.stem.rsplit("_", 1)[-1]  # SPLIT_SOURCE_SEED_KIND.npz (make_data)
        if source is None or v.source == source:
            vols.append(v)
    return vols


def _kind(v) -> str:
    return getattr(v, "kind", "all")


def _write_json(path: Path, obj) -> None:
    """Replace a JSON file atomically (temporary name, then rename)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def _interleave(groups, n):
    """The first ``n`` items taking one from each group in turn (round robin)."""
    out, k = [], 0
    while len(out) < n and any(k < len(g) for g in groups):
        out += [g[k] for g in groups if k < len(g)]
        k += 1
    return out[:n]


def _eval_classic(vols):
    from holo.segmentation.classic import classic_segment
    from holo.segmentation.train import dice, instance_ap

    d, a = [], []
    for v in vols:
        sem, inst = classic_segment(v.ri, v.voxel_size_um, v.medium_index)
        d.append(dice(sem > 0, v.semantic > 0))
        a.append(instance_ap(inst, v.instance))
    return {"dice_cell": float(np.mean(d)), "ap50": float(np.mean(a))}


def _end_to_end_accuracy(umodel, ucfg, cmodel, ccfg, vols, device):
    """Accuracy over true cells matched (IoU > 0.5) by a predicted instance; unmatched count as errors."""
    from holo.segmentation.infer import classify_cells, unet_segment

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


def _stage_unet(a, train, val_epoch, device, provenance):
    from holo.segmentation.train import DEFAULT_UNET_CONFIG, inherited_config, save_weights, train_unet

    t0 = time.perf_counter()
    init_state = None
    if a.init is not None:  # fine-tune: architecture, voxel and post-processing from the initial weights
        from holo.segmentation.infer import load_unet

        model0, cfg0 = load_unet(a.init)
        ucfg = inherited_config(cfg0)
        init_state = model0.state_dict()
        provenance = {**provenance, "initialised_from": cfg0.get("provenance", str(a.init))}
    else:
        ucfg = dict(DEFAULT_UNET_CONFIG)
        ucfg["channels"] = list(a.channels)
    ucfg["voxel_size_um"] = list(train[0].voxel_size_um)
    provenance = {**provenance, "unet_training": {"epochs": a.epochs, "steps": a.steps, "batch": a.batch, "lr": a.lr,
                                                  "crop": list(a.crop), "class_weights": a.class_weights,
                                                  "organelle_crops": a.organelle_crops, "seed": a.seed}}
    if a.tile is not None:
        ucfg["tile_zyx"] = list(a.tile)
    umodel, uhist = train_unet(train, val_epoch, ucfg, epochs=a.epochs, steps_per_epoch=a.steps,
                               batch_size=a.batch, crop_zyx=tuple(a.crop), device=device, seed=a.seed,
                               patience=a.patience, lr=a.lr, init_state=init_state,
                               class_weights=a.class_weights, organelle_fraction=a.organelle_crops)
    t_train = time.perf_counter() - t0
    save_weights(umodel, {**ucfg, "provenance": provenance, "history": uhist}, a.out, "unet")
    return {"seconds_unet_training": round(t_train, 1)}


def _segmentation_test_metrics(a, tests, device):
    """U-Net (with the post-processing in ``unet.json``) and classic baseline on the test split;
    the U-Net's numbers are also stored in ``unet.json``."""
    from holo.segmentation.infer import load_unet
    from holo.segmentation.train import aggregate_scores, evaluate_segmentation

    umodel, ucfg = load_unet(a.out)
    seg_test, by_kind = {}, {}
    for src, vs in tests.items():
        seg_test[src], records = evaluate_segmentation(umodel, ucfg, vs, device=device, per_volume=True)
        for kind in sorted({_kind(v) for v in vs}):
            by_kind[f"{src}:{kind}"] = aggregate_scores([r for r, v in zip(records, vs) if _kind(v) == kind])
    seg_classic = {src: _eval_classic(vs) for src, vs in tests.items()}
    print("test unet", json.dumps(seg_test), "classic", json.dumps(seg_classic), flush=True)
    ucfg["test_metrics"] = seg_test
    _write_json(a.out / "unet.json", ucfg)
    return {"segmentation_unet": seg_test, "segmentation_unet_by_kind": by_kind, "segmentation_classic": seg_classic}


def _stage_classifier(a, train, val, test, device, provenance):
    import torch

    from holo.labels import CELL_CLASSES
    from holo.segmentation.classifier import calibrated_probabilities
    from holo.segmentation.train import DEFAULT_CLASSIFIER_CONFIG, classifier_dataset, save_weights, train_classifier

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


def tune_postprocessing(umodel, ucfg, vols, device=None, *, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7),
                        h_values_um=(0.1, 0.15, 0.2, 0.3), tta_values=(0, 4), log=print) -> dict:
    """Choose ``tta``, ``fg_threshold`` and ``instance_h_um`` on validation volumes.

    Stage 1 picks (tta, fg_threshold) maximising the mean of Dice cell and Dice nucleus of the
    semantic map; stage 2 picks h maximising AP@0.5 (ties: the smaller h) with the rest of the
    post-processing as configured. Returns the chosen values and the sweep tables.
    """
    from holo.segmentation.infer import labels_from_prediction, predict_tiled, semantic_from_probabilities
    from holo.segmentation.train import dice, instance_ap

    preds = {}
    for tta in tta_values:
        preds[tta] = []
        for v in vols:
            x = ((v.ri - np.float32(v.medium_index)) * np.float32(ucfg["ri_scale"])).astype(np.float32)
            probs, dist = predict_tiled(umodel, x, tile_zyx=tuple(ucfg.get("tile_zyx", (48, 128, 128))), device=device,
                                        tta=tta)
            preds[tta].append((probs, dist, x / np.float32(ucfg["ri_scale"])))
    sweep1 = []
    for tta in tta_values:
        for thr in thresholds:
            dc, dn = [], []
            for v, (probs, _, _) in zip(vols, preds[tta]):
                sem = semantic_from_probabilities(probs, thr)
                dc.append(dice(sem > 0, v.semantic > 0))
                dn.append(dice(np.isin(sem, (2, 3)), np.isin(v.semantic, (2, 3))))
            sweep1.append({"tta": tta, "fg_threshold": thr, "dice_cell": float(np.mean(dc)), "dice_nucleus": float(np.mean(dn))})
            log(json.dumps(sweep1[-1]))
    best1 = max(sweep1, key=lambda r: (r["dice_cell"] + r["dice_nucleus"], -r["tta"]))
    sweep2 = []
    for h in h_values_um:
        cfg = {**ucfg, "fg_threshold": best1["fg_threshold"], "instance_h_um": h}
        ap = [instance_ap(labels_from_prediction(p, d, dri, cfg)[1], v.instance)
              for v, (p, d, dri) in zip(vols, preds[best1["tta"]])]
        sweep2.append({"instance_h_um": h, "ap50": float(np.mean(ap))})
        log(json.dumps(sweep2[-1]))
    best2 = max(sweep2, key=lambda r: (round(r["ap50"], 4), -r["instance_h_um"]))
    return {"tta": best1["tta"], "fg_threshold": best1["fg_threshold"], "instance_h_um": best2["instance_h_um"],
            "sweep_semantic": sweep1, "sweep_instances": sweep2, "n_volumes": len(vols)}


def _stage_tune(a, val, device):
    """Post-processing chosen on the validation split, written into ``unet.json``."""
    from holo.segmentation.infer import load_unet

    umodel, ucfg = load_unet(a.out)
    res = tune_postprocessing(umodel, ucfg, val, device=device, tta_values=tuple(a.tta_values))
    for k in ("tta", "fg_threshold", "instance_h_um"):
        ucfg[k] = res[k]
    ucfg["postprocessing_sweep"] = res
    _write_json(a.out / "unet.json", ucfg)
    print("chosen", {k: res[k] for k in ("tta", "fg_threshold", "instance_h_um")}, flush=True)
    return {"postprocessing": {k: res[k] for k in ("tta", "fg_threshold", "instance_h_um", "n_volumes")}}


def _classifier_test_metrics(cmodel, ccfg, test):
    """Accuracy, calibration (ECE) and per-class accuracy on ground-truth cell crops."""
    import torch

    from holo.segmentation.classifier import calibrated_probabilities
    from holo.segmentation.train import classifier_dataset

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

    from holo.segmentation.infer import load_classifier, load_unet, pick_device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--stage", default="all", choices=("all", "unet", "classifier", "tune", "eval", "test"),
                    help="unet and classifier may run in parallel; eval (end to end) needs both weights in --out; "
                         "tune sets tta/fg_threshold/instance_h_um in --out/unet.json from the val split; "
                         "test re-measures every test metric of the weights in --out (no training)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, nargs=3, default=(32, 64, 64), help="U-Net training crop (Z, Y, X) in voxels")
    ap.add_argument("--tile", type=int, nargs=3, default=None,
                    help="U-Net inference tile (Z, Y, X) in voxels written to unet.json (default: kept from --init, "
                         "else the built-in default)")
    ap.add_argument("--channels", type=int, nargs=4, default=(8, 16, 32, 64), help="U-Net channels per level")
    ap.add_argument("--lr", type=float, default=3e-3, help="U-Net peak learning rate (one-cycle)")
    ap.add_argument("--class-weights", type=float, nargs=5, default=None,
                    help="cross-entropy weight of each semantic class (background, cytoplasm, nucleus, nucleolus, "
                         "lipid droplet); default all 1")
    ap.add_argument("--organelle-crops", type=float, default=0.0,
                    help="fraction of U-Net training crops centred on a nucleolus or lipid-droplet voxel")
    ap.add_argument("--init", type=Path, default=None,
                    help="fine-tune the U-Net in this weights folder instead of training from scratch")
    ap.add_argument("--tta-values", type=int, nargs="+", default=(0, 4), choices=(0, 2, 4),
                    help="test-time augmentation settings the tune stage chooses from (lateral mirror images)")
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
    tests = {src: [v for v in test if v.source == src] for src in SOURCES}
    tests = {k: v for k, v in tests.items() if v}
    meta = json.loads((a.data / "dataset.json").read_text())
    print(f"{len(train)} train, {len(val)} val, {len(test)} test volumes; device {device}", flush=True)
    val_epoch = _interleave([[v for v in val if v.source == src] for src in SOURCES], a.n_val_epoch)
    provenance = {"data": meta, "trained": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "device": str(device), "torch": torch.__version__,
                  "n_volumes": {"train": len(train), "val": len(val), "test": {k: len(v) for k, v in tests.items()}}}
    metrics = {}
    if a.stage in ("all", "unet"):
        metrics.update(_stage_unet(a, train, val_epoch, device, provenance))
    if a.stage in ("all", "unet", "tune"):
        metrics.update(_stage_tune(a, val, device))
    if a.stage in ("all", "unet", "tune", "test") and tests:
        metrics.update(_segmentation_test_metrics(a, tests, device))
    if a.stage in ("all", "classifier"):
        metrics.update(_stage_classifier(a, train, val, test, device, provenance))
    if a.stage == "test":
        cmodel, ccfg = load_classifier(a.out)
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
