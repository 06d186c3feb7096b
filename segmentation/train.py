"""Training of the segmentation stage: loops (U-Net and cell classifier), metrics, model
selection, weight export and fine-tuning on a user's folder (:func:`finetune`, ``holo train``).

U-Net loss on random crops: L = CE_w(semantic) + (1 − mean soft-Dice over the foreground
classes present) + 5·MSE(sigmoid(d̂), d) with d the normalised distance map
(:func:`holo.segmentation.data.normalised_distance`); CE_w weighs each voxel by the weight of its
true class (default all 1). Crops are centred on a random cell voxel (80 %) and, with
probability ``organelle_fraction``, on a random nucleolus or lipid-droplet voxel instead:
these organelles are ≈ 1 voxel in 20 000 of the twin volumes, and without such crops the
network never predicts them. Augmentation: flips along Z, Y, X, 90°
rotations in the (Y, X) plane (only when dy = dx), RI contrast scaled by 0.7–1.15 (a first-order
reconstruction underestimates Δn of large cells by up to ≈ 25 %), additive noise.

Classifier loss: cross entropy on cell crops with the same geometric augmentation; the
probabilities are calibrated afterwards by temperature scaling on the validation split.

Both loops keep the weights of the best validation epoch and stop early after ``patience``
epochs without improvement.

Metrics: Dice = 2|A∩B| / (|A| + |B|); instance AP@0.5 = TP / (TP + FP + FN) with a predicted
and a true instance matched when their IoU > 0.5 (each matched at most once, which IoU > 0.5
guarantees); classifier accuracy and expected calibration error on ground-truth cell crops;
end-to-end accuracy (segmentation, then classification) over the true cells.

Post-processing (``tta``, ``fg_threshold``, ``instance_h_um`` of the weights' JSON) is chosen on
validation volumes by :func:`tune_postprocessing`.

The command line that trains the shipped weights on digital-twin data sets is the training
harness, ``python -m holo.training.train`` (:mod:`holo.training.train`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from holo.labels import LIPID_DROPLET, NUCLEOLUS, NUCLEUS, ORGANELLE_LABELS, SEMANTIC_NAMES
from holo.segmentation.data import TrainingVolume, normalised_distance, random_crop

__all__ = ["dice", "overlap_counts", "iou_matrix", "instance_ap", "train_unet", "train_classifier", "evaluate_segmentation", "segmentation_scores",
           "aggregate_scores", "selection_score", "save_weights", "classifier_dataset", "classifier_logits",
           "classifier_scores", "end_to_end_accuracy", "classic_scores",
           "tune_postprocessing", "finetune", "finetune_volumes", "consistent_labels"]

#: Semantic labels that make up the nucleus mask of the scores (nucleus ∪ nucleolus).
NUCLEUS_LABELS = (NUCLEUS, NUCLEOLUS)


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """2|P∩T| / (|P| + |T|); 1 when both are empty."""
    p = np.asarray(pred, bool)
    t = np.asarray(true, bool)
    s = p.sum() + t.sum()
    return 1.0 if s == 0 else float(2.0 * np.logical_and(p, t).sum() / s)


def overlap_counts(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|P_i ∩ T_j|, |P_i|, |T_j|) of every predicted id i and true id j, from one joint histogram
    of the two label volumes (the intersections of id 0, the background, are left 0)."""
    p = np.asarray(pred).ravel().astype(np.int64)
    t = np.asarray(true).ravel().astype(np.int64)
    n_p, n_t = int(p.max(initial=0)), int(t.max(initial=0))
    both = (p > 0) & (t > 0)
    inter = np.bincount(p[both] * (n_t + 1) + t[both], minlength=(n_p + 1) * (n_t + 1)).reshape(n_p + 1, n_t + 1)
    return inter, np.bincount(p, minlength=n_p + 1), np.bincount(t, minlength=n_t + 1)


def iou_matrix(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """IoU of every predicted id (rows) with every true id (columns), background row/column 0
    included: |P_i ∩ T_j| / |P_i ∪ T_j| (:func:`overlap_counts`)."""
    inter, n_pred, n_true = overlap_counts(pred, true)
    union = n_pred[:, None] + n_true[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def matched_pairs(pred: np.ndarray, true: np.ndarray) -> dict[int, int]:
    """{true id: predicted id} for the pairs with IoU > 0.5 (unique: at most one partner each)."""
    iou = iou_matrix(pred, true)
    return {j: int(np.argmax(iou[1:, j])) + 1 for j in range(1, iou.shape[1]) if iou[1:, j].max(initial=0.0) > 0.5}


def instance_ap(pred: np.ndarray, true: np.ndarray, iou_threshold: float = 0.5) -> float:
    """TP / (TP + FP + FN) at an IoU threshold ≥ 0.5 (unique matching)."""
    if iou_threshold < 0.5:
        raise ValueError(f"iou_threshold must be ≥ 0.5 for unique matching, got {iou_threshold}")
    p, t = np.asarray(pred), np.asarray(true)
    n_pred, n_true = len(np.unique(p[p > 0])), len(np.unique(t[t > 0]))
    if n_pred == 0 and n_true == 0:
        return 1.0
    tp = int((iou_matrix(p, t)[1:, 1:] > iou_threshold).sum())
    return tp / max(tp + (n_pred - tp) + (n_true - tp), 1)


def _augment(arrays, rng, allow_rot: bool):
    out = list(arrays)
    for ax in (-3, -2, -1):
        if rng.random() < 0.5:
            out = [np.flip(a, axis=ax) for a in out]
    if allow_rot:
        k = int(rng.integers(4))
        if k:
            out = [np.rot90(a, k, axes=(-2, -1)) for a in out]
    return [np.ascontiguousarray(a) for a in out]


def _unet_batch(vols, dists, crop, batch, rng, scale, allow_rot, organelle_fraction: float = 0.0,
                organelles=None):
    """A training batch: random crops (:func:`holo.segmentation.data.random_crop`), a fraction
    ``organelle_fraction`` of them centred on an organelle voxel of the volumes that have one
    (``organelles[i]``: flat indices of volume i's organelle voxels, or None)."""
    xs, ys, ds = [], [], []
    with_org = [i for i, o in enumerate(organelles or []) if o is not None and len(o)]
    for _ in range(batch):
        on_org = bool(with_org) and rng.random() < organelle_fraction
        i = int(with_org[int(rng.integers(len(with_org)))]) if on_org else int(rng.integers(len(vols)))
        v = vols[i]
        x = (v.ri - np.float32(v.medium_index)) * np.float32(scale)
        if on_org:
            centre = np.asarray(np.unravel_index(organelles[i][int(rng.integers(len(organelles[i])))], v.semantic.shape))
            x, s, d = random_crop([x, v.semantic, dists[i]], crop, rng, centre=centre)
        else:
            x, s, d = random_crop([x, v.semantic, dists[i]], crop, rng, fg=v.semantic > 0)
        x, s, d = _augment([x, s, d], rng, allow_rot)
        x = x * np.float32(rng.uniform(0.7, 1.15)) + rng.normal(0, 0.0005 * scale, x.shape).astype(np.float32)
        xs.append(x)
        ys.append(s)
        ds.append(d)
    return np.stack(xs)[:, None].astype(np.float32), np.stack(ys).astype(np.int64), np.stack(ds)[:, None].astype(np.float32)


def _object_hits(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int, int]:
    """(true objects, of them touched by a predicted voxel, predicted objects, of them
    touching a true voxel); objects are 26-connected components of the boolean masks."""
    from scipy import ndimage as ndi

    full = np.ones((3, 3, 3), bool)
    counts = []
    for a, b in ((true, pred), (pred, true)):
        lab, n = ndi.label(a, structure=full)
        hit = int(np.count_nonzero(ndi.maximum(b, lab, np.arange(1, n + 1)))) if n else 0
        counts += [n, hit]
    return tuple(counts)


def segmentation_scores(sem: np.ndarray, inst: np.ndarray, vol: TrainingVolume) -> dict:
    """Per-volume scores of predicted labels against a volume's ground truth: Dice cell (any
    foreground), Dice nucleus (nucleus ∪ nucleolus), AP@0.5, and the voxel counts
    (``*_2i`` = 2|P∩T|, ``*_sum`` = |P| + |T|) that pooled Dice coefficients are made of, also
    for the nucleolus and lipid-droplet classes alone, with their object counts
    (``*_objects_true``, ``*_found``: true objects touched by the prediction,
    ``*_objects_pred``, ``*_pred_on_true``: predicted objects touching a true one)."""
    out = {"ap50": instance_ap(inst, vol.instance)}
    for name, (p, t) in (("cell", (sem > 0, vol.semantic > 0)),
                         ("nucleus", (np.isin(sem, NUCLEUS_LABELS), np.isin(vol.semantic, NUCLEUS_LABELS))),
                         ("nucleolus", (sem == NUCLEOLUS, vol.semantic == NUCLEOLUS)),
                         ("lipid", (sem == LIPID_DROPLET, vol.semantic == LIPID_DROPLET))):
        out[f"dice_{name}"] = dice(p, t)
        out[f"{name}_2i"] = 2 * int(np.count_nonzero(p & t))
        out[f"{name}_sum"] = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
        out[f"{name}_true"] = int(np.count_nonzero(t))
        if name in ("nucleolus", "lipid"):
            keys = ("objects_true", "found", "objects_pred", "pred_on_true")
            out.update({f"{name}_{k}": c for k, c in zip(keys, _object_hits(p, t))})
    return out


def aggregate_scores(records: list[dict]) -> dict:
    """Means over volumes of :func:`segmentation_scores` records.

    ``dice_cell``, ``dice_nucleus`` and ``ap50`` are means over volumes; a volume without any
    true or predicted nucleus counts 1 in ``dice_nucleus``, so ``dice_nucleus_present`` (the
    mean over volumes whose ground truth has a nucleus) is the stricter number. ``*_pooled``
    are voxel-pooled Dice coefficients 2 Σ|P∩T| / Σ(|P| + |T|) over all volumes; for the
    nucleolus and lipid droplets (a few voxels each, absent from most volumes) only the pooled
    Dice and the pooled object recall (true objects touched by the prediction / true objects)
    and precision (predicted objects touching a true one / predicted objects) are given
    (None where there is nothing to count).
    """
    if not records:
        return {"n_volumes": 0}
    present = [r["dice_nucleus"] for r in records if r["nucleus_true"] > 0]

    def pooled(name):
        den = sum(r.get(f"{name}_sum", 0) for r in records)
        return float(sum(r.get(f"{name}_2i", 0) for r in records) / den) if den else 1.0

    def ratio(name, num, den):
        d = sum(r.get(f"{name}_{den}", 0) for r in records)
        return float(sum(r.get(f"{name}_{num}", 0) for r in records) / d) if d else None

    out = {"dice_cell": float(np.mean([r["dice_cell"] for r in records])),
           "dice_nucleus": float(np.mean([r["dice_nucleus"] for r in records])),
           "ap50": float(np.mean([r["ap50"] for r in records])),
           "dice_nucleus_present": float(np.mean(present)) if present else None,
           "dice_cell_pooled": pooled("cell"), "dice_nucleus_pooled": pooled("nucleus"),
           "n_volumes": len(records), "n_volumes_with_nucleus": len(present)}
    for name in ("nucleolus", "lipid"):
        if any(f"{name}_sum" in r for r in records):
            n_true = sum(r.get(f"{name}_objects_true", 0) for r in records)
            out.update({f"dice_{name}_pooled": pooled(name) if n_true else None,
                        f"{name}_recall": ratio(name, "found", "objects_true"),
                        f"{name}_precision": ratio(name, "pred_on_true", "objects_pred"),
                        f"n_{name}_true": n_true})
    return out


def evaluate_segmentation(model, cfg, vols, device=None, *, per_volume: bool = False, weights_dir=None):
    """U-Net scores on volumes (:func:`aggregate_scores`); with ``per_volume`` also the list of
    per-volume records (:func:`segmentation_scores`). ``weights_dir``: where the network named
    by ``cfg["organelle_model"]`` is (default: the shipped folder)."""
    from holo.segmentation.infer import unet_segment

    records = []
    for v in vols:
        sem, inst = unet_segment(v.ri, v.voxel_size_um, v.medium_index, model=model, cfg=cfg, device=device,
                                 weights_dir=weights_dir)
        records.append(segmentation_scores(sem, inst, v))
    agg = aggregate_scores(records)
    return (agg, records) if per_volume else agg


def selection_score(metrics: dict) -> float:
    """Model-selection score of :func:`aggregate_scores` output: the mean of Dice cell, Dice
    nucleus, AP@0.5 and, when any is defined, the mean pooled Dice of nucleoli and lipid
    droplets."""
    terms = [metrics["dice_cell"], metrics["dice_nucleus"], metrics["ap50"]]
    org = [metrics[k] for k in ("dice_nucleolus_pooled", "dice_lipid_pooled") if metrics.get(k) is not None]
    if org:
        terms.append(float(np.mean(org)))
    return float(np.mean(terms))


def classic_scores(vols: list[TrainingVolume]) -> dict:
    """Mean Dice of the cell mask and AP@0.5 of the classical baseline
    (:func:`holo.segmentation.classic.classic_segment`) on volumes."""
    from holo.segmentation.classic import classic_segment

    d, a = [], []
    for v in vols:
        sem, inst = classic_segment(v.ri, v.voxel_size_um, v.medium_index)
        d.append(dice(sem > 0, v.semantic > 0))
        a.append(instance_ap(inst, v.instance))
    return {"dice_cell": float(np.mean(d)), "ap50": float(np.mean(a))}


def _matched_probabilities(true_mask: np.ndarray, inst: np.ndarray, pred: dict):
    """Class probabilities of the predicted instance matching a true cell (IoU > 0.5, so at
    most one), or None."""
    cand, cnt = np.unique(inst[true_mask], return_counts=True)
    found = None
    for pid, c in zip(cand, cnt):
        if pid == 0:
            continue
        iou = c / (true_mask.sum() + (inst == pid).sum() - c)
        if iou > 0.5 and pid in pred:
            found = pred[pid]
    return found


def end_to_end_accuracy(umodel, ucfg, cmodel, ccfg, vols: list[TrainingVolume], device=None) -> dict:
    """Accuracy of segmentation then classification over the true cells of labelled volumes.

    A true cell counts as correct when a predicted instance matches it (IoU > 0.5) and that
    instance's most probable class is the true one; unmatched cells count as errors.
    ``uncertain_fraction``: matched cells whose calibrated top probability is below
    ``ccfg["uncertain_below"]``, over all true cells.
    """
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
            p = _matched_probabilities(t, inst, pred)
            if p is not None:
                correct += int(names[int(np.argmax(p))] == cname)
                uncertain += int(p.max() < ccfg["uncertain_below"])
    return {"accuracy_end_to_end": correct / max(total, 1), "n_cells": total, "uncertain_fraction": uncertain / max(total, 1)}


def classifier_scores(logits: np.ndarray, ys: np.ndarray, cfg: dict) -> dict:
    """Accuracy, calibration (ECE with and without the temperature ``cfg["temperature"]``),
    fraction below the ``uncertain_below`` threshold, accuracy of the confident cells and
    per-class accuracy of classifier logits on ground-truth cell crops of labels ``ys``."""
    from holo.segmentation.classifier import calibrated_probabilities, expected_calibration_error

    names = list(cfg["classes"])
    probs = calibrated_probabilities(logits, cfg["temperature"])
    conf_mask = probs.max(1) >= cfg["uncertain_below"]
    return {"accuracy_gt_crops": float((probs.argmax(1) == ys).mean()), "n_cells": int(len(ys)),
            "ece_calibrated": expected_calibration_error(probs, ys),
            "ece_uncalibrated": expected_calibration_error(calibrated_probabilities(logits, 1.0), ys),
            "uncertain_fraction": float(1 - conf_mask.mean()),
            "accuracy_confident": float((probs.argmax(1) == ys)[conf_mask].mean()) if conf_mask.any() else None,
            "per_class_accuracy": {n: float((probs.argmax(1)[ys == k] == k).mean()) for k, n in enumerate(names)
                                   if (ys == k).any()}}


def _tiled_predictions(umodel, ucfg, vols, tta_values, device):
    """{tta: [(probs, dist, Δn) per volume]} of the U-Net on volumes (no post-processing)."""
    from holo.segmentation.infer import predict_tiled

    preds = {}
    for tta in tta_values:
        preds[tta] = []
        for v in vols:
            x = ((v.ri - np.float32(v.medium_index)) * np.float32(ucfg["ri_scale"])).astype(np.float32)
            probs, dist = predict_tiled(umodel, x, tile_zyx=tuple(ucfg.get("tile_zyx", (48, 128, 128))), device=device,
                                        tta=tta)
            preds[tta].append((probs, dist, x / np.float32(ucfg["ri_scale"])))
    return preds


def tune_postprocessing(umodel, ucfg, vols, device=None, *, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7),
                        h_values_um=(0.1, 0.15, 0.2, 0.3), tta_values=(0, 4), log=print) -> dict:
    """Choose ``tta``, ``fg_threshold`` and ``instance_h_um`` on validation volumes.

    Stage 1 picks (tta, fg_threshold) maximising the mean of Dice cell and Dice nucleus of the
    semantic map; stage 2 picks h maximising AP@0.5 (ties: the smaller h) with the rest of the
    post-processing as configured. Returns the chosen values and the sweep tables.
    """
    from holo.segmentation.infer import labels_from_prediction, semantic_from_probabilities

    preds = _tiled_predictions(umodel, ucfg, vols, tta_values, device)
    sweep1 = []
    for tta in tta_values:
        for thr in thresholds:
            dc, dn = [], []
            for v, (probs, _, _) in zip(vols, preds[tta]):
                sem = semantic_from_probabilities(probs, thr)
                dc.append(dice(sem > 0, v.semantic > 0))
                dn.append(dice(np.isin(sem, NUCLEUS_LABELS), np.isin(v.semantic, NUCLEUS_LABELS)))
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


#: Keys of a weights JSON that describe one training run (or pair the weights with another
#: network of their folder), not the model: not inherited when the weights are fine-tuned.
RUN_RECORD_KEYS = ("history", "provenance", "test_metrics", "postprocessing_sweep", "trained_on", "init",
                   "postprocessing_tuned_on", "postprocessing_selection", "test_metrics_device_default_thresholds",
                   "organelle_model", "role", "test_metrics_note", "finetune_metrics")


def inherited_config(cfg: dict) -> dict:
    """Architecture, voxel size, normalisation and post-processing of a weights JSON, without
    the record of the run that produced it (:data:`RUN_RECORD_KEYS`)."""
    return {k: v for k, v in cfg.items() if k not in RUN_RECORD_KEYS}


def _prepared_model(build, init_state: dict | None, device, seed: int):
    """Seed torch and NumPy, build the model with ``build()`` (so its initial weights follow
    the seed), load ``init_state`` (fine-tuning) and move it to the device; returns
    ``(model, device, rng)``."""
    import torch

    from holo.segmentation.infer import pick_device

    device = pick_device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build()
    if init_state is not None:
        model.load_state_dict(init_state)
    return model.to(device), device, rng


class _BestEpoch:
    """Keeps the weights of the best epoch (largest ``key``) and says when ``patience``
    epochs in a row brought no improvement."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = None
        self.state = None
        self.bad = 0

    def update(self, key, model) -> bool:
        """Record an epoch's ``key``; True when training should stop."""
        if self.best is None or key > self.best:
            self.best, self.bad = key, 0
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience

    def end_epoch(self, rec: dict, key, model, history: list, log) -> bool:
        """Append and log an epoch's record, then :meth:`update`; True when training should stop."""
        history.append(rec)
        log(json.dumps(rec))
        if self.update(key, model):
            log(f"early stop after epoch {rec['epoch']}")
            return True
        return False


def _unet_loss(out, yb, db, n_classes: int, ce):
    """L = CE_w(semantic) + (1 − mean soft-Dice over the foreground classes present in the
    batch) + 5·MSE(sigmoid(d̂), d) of a batch's network output ``out`` (N, C + 1, Z, Y, X)."""
    import torch
    from torch import nn

    logits, dpred = out[:, :n_classes], torch.sigmoid(out[:, n_classes:])
    prob = torch.softmax(logits, 1)
    onehot = nn.functional.one_hot(yb, n_classes).permute(0, 4, 1, 2, 3).float()
    inter = (prob * onehot).sum((0, 2, 3, 4))
    den = prob.sum((0, 2, 3, 4)) + onehot.sum((0, 2, 3, 4))
    present = onehot.sum((0, 2, 3, 4))[1:] > 0
    sdice = (2 * inter[1:] + 1) / (den[1:] + 1)
    dl = 1 - sdice[present].mean() if bool(present.any()) else torch.zeros((), device=out.device)
    return ce(logits, yb) + dl + 5.0 * nn.functional.mse_loss(dpred, db)


def train_unet(train_vols: list[TrainingVolume], val_vols: list[TrainingVolume], cfg: dict, *, epochs: int = 20,
               steps_per_epoch: int = 50, batch_size: int = 4, crop_zyx=(32, 64, 64), lr: float = 3e-3,
               patience: int = 5, init_state: dict | None = None, device=None, seed: int = 0,
               class_weights=None, organelle_fraction: float = 0.0,
               log: Callable[[str], None] = print, progress: Callable | None = None):
    """Train a U-Net; returns (model with the best weights, history list of per-epoch dicts).

    ``cfg`` holds ``n_classes``, ``channels``, ``voxel_size_um``, ``ri_scale``; the volumes must
    already be on ``cfg["voxel_size_um"]`` (see :mod:`holo.segmentation.data`). ``class_weights``
    (one per semantic class) weigh the cross entropy; ``organelle_fraction`` of the crops are
    centred on nucleolus / lipid-droplet voxels (module docstring).

    Model selection: the epoch of highest mean of validation Dice cell, Dice nucleus, AP@0.5
    and, when the validation volumes hold nucleoli or lipid droplets, the mean of their pooled
    Dice coefficients. With ``init_state`` the starting weights compete as epoch 0: when no
    epoch beats them they are returned unchanged. ``progress(done, total, note)`` is called after every optimiser step
    (an exception it raises, e.g. a Cancel, stops the training).
    """
    import torch
    from torch import nn

    from holo.segmentation.unet import unet_from_config

    if not train_vols:
        raise ValueError("train_vols is empty")
    model, device, rng = _prepared_model(lambda: unet_from_config(cfg), init_state, device, seed)
    vs = cfg["voxel_size_um"]
    allow_rot = abs(vs[1] - vs[2]) < 1e-6 and crop_zyx[1] == crop_zyx[2]
    dists = [normalised_distance(v.instance, v.voxel_size_um) for v in train_vols]
    organelles = [np.flatnonzero(np.isin(v.semantic, ORGANELLE_LABELS)) for v in train_vols] if organelle_fraction > 0 else None
    C = int(cfg["n_classes"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    if class_weights is not None and len(class_weights) != C:
        raise ValueError(f"class_weights: need {C} values (one per semantic class), got {len(class_weights)}")
    ce = nn.CrossEntropyLoss(weight=None if class_weights is None else
                             torch.as_tensor(class_weights, dtype=torch.float32, device=device))
    tracker, history = _BestEpoch(patience), []
    if init_state is not None and val_vols:
        # epoch 0 = the starting weights: fine-tuning never returns a model that scores worse
        # than the one it started from on the held-out volumes
        model.eval()
        metrics = evaluate_segmentation(model, {**cfg, "tta": 0}, val_vols, device=device)
        tracker.end_epoch({"epoch": 0, **metrics}, selection_score(metrics), model, history, log)
    for ep in range(epochs):
        model.train()
        t0 = time.perf_counter()
        losses = []
        for _ in range(steps_per_epoch):
            xb, yb, db = _unet_batch(train_vols, dists, crop_zyx, batch_size, rng, cfg["ri_scale"], allow_rot,
                                     organelle_fraction, organelles)
            xb, yb, db = (torch.from_numpy(a).to(device) for a in (xb, yb, db))
            loss = _unet_loss(model(xb), yb, db, C, ce)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(ep * steps_per_epoch + len(losses), epochs * steps_per_epoch, f"epoch {ep + 1}/{epochs}")
        model.eval()
        # per-epoch model selection without test-time augmentation (4× cheaper, same ranking)
        metrics = evaluate_segmentation(model, {**cfg, "tta": 0}, val_vols, device=device) if val_vols else {}
        score = selection_score(metrics) if metrics else -float(np.mean(losses))
        rec = {"epoch": ep + 1, "loss": float(np.mean(losses)), "seconds": round(time.perf_counter() - t0, 1), **metrics}
        if tracker.end_epoch(rec, score, model, history, log):
            break
    model.load_state_dict(tracker.state)
    return model.cpu().eval(), history


def classifier_dataset(vols: list[TrainingVolume], cfg: dict, class_names: list[str]):
    """Cell crops (N, 2, Z, Y, X) and integer labels of every labelled cell of the volumes."""
    from holo.segmentation.infer import cell_crops

    xs, ys = [], []
    index = {c: i for i, c in enumerate(class_names)}
    for v in vols:
        ids = [k for k, c in v.classes.items() if c in index and np.any(v.instance == k)]
        if not ids:
            continue
        crops, ids = cell_crops(v.ri, v.instance, v.voxel_size_um, v.medium_index, crop_zyx=cfg["crop_zyx"],
                                crop_voxel_size_um=cfg["voxel_size_um"], ri_scale=cfg["ri_scale"], ids=ids)
        xs.append(crops)
        ys.extend(index[v.classes[int(k)]] for k in ids)
    if not xs:
        return np.zeros((0, 2) + tuple(cfg["crop_zyx"]), np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs), np.asarray(ys, np.int64)


def classifier_logits(model, x: np.ndarray, n_classes: int, *, device=None, batch_size: int = 64) -> np.ndarray:
    """Logits (N, ``n_classes``) float32 of the classifier (set to eval mode) on cell crops
    ``x`` (N, 2, Z, Y, X), in batches on ``device`` (default: where the model is)."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[i:i + batch_size])
            out.append(model(xb if device is None else xb.to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)


def train_classifier(x_train, y_train, x_val, y_val, cfg: dict, *, epochs: int = 30, batch_size: int = 32,
                     lr: float = 2e-3, patience: int = 6, init_state: dict | None = None, device=None, seed: int = 0,
                     log: Callable[[str], None] = print):
    """Train the cell classifier; returns (model, temperature, history).

    The best epoch is the one of highest validation accuracy (ties: lower NLL); the
    temperature is then fitted on the validation logits.
    """
    import torch
    from torch import nn

    from holo.segmentation.classifier import classifier_from_config, fit_temperature

    if len(x_train) == 0:
        raise ValueError("no training cells")
    model, device, rng = _prepared_model(lambda: classifier_from_config(cfg), init_state, device, seed)
    vs = cfg["voxel_size_um"]
    allow_rot = abs(vs[1] - vs[2]) < 1e-6
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    steps = max(1, int(np.ceil(len(x_train) / batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    ce = nn.CrossEntropyLoss(label_smoothing=0.05)
    tracker, history = _BestEpoch(patience), []

    def _logits(x):
        return classifier_logits(model, x, len(cfg["classes"]), device=device)

    for ep in range(epochs):
        model.train()
        perm = rng.permutation(len(x_train))
        losses = []
        for i in range(steps):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb = np.stack([_augment([x_train[j]], rng, allow_rot)[0] for j in idx])
            xb[:, 0] = xb[:, 0] * rng.uniform(0.75, 1.1, (len(idx), 1, 1, 1)).astype(np.float32)
            xb = torch.from_numpy(xb.astype(np.float32)).to(device)
            yb = torch.from_numpy(y_train[idx]).to(device)
            loss = ce(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        rec = {"epoch": ep + 1, "loss": float(np.mean(losses))}
        if len(x_val):
            lv = _logits(x_val)
            acc = float((lv.argmax(1) == y_val).mean())
            nll = float(nn.functional.cross_entropy(torch.from_numpy(lv), torch.from_numpy(y_val)))
            rec.update(val_accuracy=acc, val_nll=nll)
            key = (acc, -nll)
        else:
            key = (-rec["loss"], 0.0)
        if tracker.end_epoch(rec, key, model, history, log):
            break
    model.load_state_dict(tracker.state)
    temperature = fit_temperature(_logits(x_val), y_val) if len(x_val) else 1.0
    return model.cpu().eval(), temperature, history


def save_weights(model, cfg: dict, out_dir, name: str) -> Path:
    """Write ``<name>.pt`` (state_dict, loadable with ``weights_only=True``) and ``<name>.json``."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out_dir / f"{name}.pt")
    (out_dir / f"{name}.json").write_text(json.dumps(cfg, indent=2))
    return out_dir / f"{name}.pt"


#: Hyper-parameters of the shipped networks (also used by ``--init scratch``).
DEFAULT_UNET_CONFIG = {
    "n_classes": len(SEMANTIC_NAMES),
    "channels": [8, 16, 32, 64],
    "voxel_size_um": [0.4, 0.2, 0.2],
    "ri_scale": 25.0,
    "tile_zyx": [96, 192, 192],
    "fg_threshold": 0.7,
    "instance_h_um": 0.15,
    "min_volume_um3": 0.3,
    "merge_contact_ratio": 0.8,
    "min_peak_delta_ri": 0.016,
    "semantic_names": list(SEMANTIC_NAMES),
}
DEFAULT_CLASSIFIER_CONFIG = {
    "channels": [16, 32, 64, 96],
    "voxel_size_um": [0.4, 0.2, 0.2],
    "crop_zyx": [40, 80, 80],
    "ri_scale": 25.0,
    "temperature": 1.0,
    "uncertain_below": 0.6,
    "classes": [],
}


def to_training_grid(vol: TrainingVolume, voxel_size_um) -> TrainingVolume:
    """Resample a volume to the training voxel size (RI linear, labels nearest neighbour)."""
    from holo.segmentation.infer import resample_volume, resize_labels

    ri = resample_volume(vol.ri, vol.voxel_size_um, voxel_size_um, order=1)
    return TrainingVolume(ri.astype(np.float32), resize_labels(vol.semantic, ri.shape), resize_labels(vol.instance, ri.shape),
                          tuple(voxel_size_um), vol.medium_index, dict(vol.classes), vol.source)


def _split(vols, val_fraction, rng):
    """Volume-level split; a single volume is cut along Y into train and validation parts."""
    if len(vols) >= 2:
        perm = rng.permutation(len(vols))
        n_val = min(len(vols) - 1, max(1, int(round(val_fraction * len(vols)))))
        return [vols[i] for i in perm[n_val:]], [vols[i] for i in perm[:n_val]]
    v = vols[0]
    cut = int(round(v.ri.shape[1] * (1 - val_fraction)))
    part = lambda a, sl: a[:, sl]  # noqa: E731
    mk = lambda sl: TrainingVolume(part(v.ri, sl), part(v.semantic, sl), part(v.instance, sl), v.voxel_size_um,  # noqa: E731
                                   v.medium_index, v.classes, v.source)
    return [mk(slice(0, cut))], [mk(slice(cut, None))]


def _start_weights(init: str, wdir: Path):
    """(U-Net config, state or None, classifier config, state or None) to start fine-tuning
    from: the weights of ``wdir`` without their run record (``"shipped"``) or the default
    hyper-parameters (``"scratch"``)."""
    import torch

    if init not in ("shipped", "scratch"):
        raise ValueError(f"init must be 'shipped' or 'scratch', got {init!r}")
    if init == "scratch":
        return dict(DEFAULT_UNET_CONFIG), None, dict(DEFAULT_CLASSIFIER_CONFIG), None
    ucfg = inherited_config(json.loads((wdir / "unet.json").read_text()))
    ustate = torch.load(wdir / "unet.pt", map_location="cpu", weights_only=True)
    ccfg = inherited_config(json.loads((wdir / "classifier.json").read_text()))
    cstate = torch.load(wdir / "classifier.pt", map_location="cpu", weights_only=True)
    return ucfg, ustate, ccfg, cstate


def _organelle_options(train: list[TrainingVolume], ucfg: dict, log) -> dict:
    """``train_unet`` options when the labels hold nucleoli or lipid droplets (trained on as the
    shipped ``organelles`` network was): 30 % organelle-centred crops and a cross entropy
    weighted 3 on them; {} otherwise."""
    has_organelles = any(np.isin(v.semantic, ORGANELLE_LABELS).any() for v in train)
    if not has_organelles or int(ucfg["n_classes"]) != len(SEMANTIC_NAMES):
        return {}
    log("nucleoli / lipid droplets labelled: 30 % organelle-centred crops, cross entropy weighted 3 on them")
    weights = [3.0 if k in ORGANELLE_LABELS else 1.0 for k in range(len(SEMANTIC_NAMES))]
    return {"organelle_fraction": 0.3, "class_weights": weights}


def _classifier_start_state(cstate: dict | None, ccfg: dict) -> dict | None:
    """Initial classifier state for the class list of ``ccfg``: the shipped state, or (when the
    number of classes changed) its feature layers with a freshly initialised last layer."""
    from holo.segmentation.classifier import classifier_from_config

    if cstate is None:
        return None
    if len(ccfg["classes"]) == len(cstate["fc.bias"]):
        return cstate
    state = classifier_from_config(ccfg).state_dict()
    state.update({k: v for k, v in cstate.items() if not k.startswith("fc.")})
    return state


def _classifier_split(vols, train, val, ccfg, names, rng):
    """(x_train, y_train, x_val, y_val) cell crops: by volume split, or — when the validation
    volumes hold no labelled cell — a quarter of all cells held out."""
    # cell_crops interpolates each crop onto the classifier's grid from any voxel size
    xt, yt = classifier_dataset(train, ccfg, names)
    xv, yv = classifier_dataset(val, ccfg, names)
    if len(xv) == 0:
        xa, ya = classifier_dataset(vols, ccfg, names)
        perm = rng.permutation(len(xa))
        k = max(1, len(xa) // 4)
        xt, yt, xv, yv = xa[perm[k:]], ya[perm[k:]], xa[perm[:k]], ya[perm[:k]]
    return xt, yt, xv, yv


def _finetune_classifier(vols, train, val, ccfg, cstate, user_classes, out_dir, *, epochs, seed, rng, record,
                         log) -> dict:
    """Train the classifier on the user's classes (shipped classes ∪ the user's), write
    ``classifier.pt/.json`` and return its metrics."""
    names = list(ccfg.get("classes", [])) + [c for c in user_classes if c not in ccfg.get("classes", [])]
    ccfg = {**ccfg, "classes": names}
    xt, yt, xv, yv = _classifier_split(vols, train, val, ccfg, names, rng)
    init_c = _classifier_start_state(cstate, ccfg)
    cmodel, temp, chist = train_classifier(xt, yt, xv, yv, ccfg, epochs=max(epochs, 5), init_state=init_c,
                                           lr=1e-3 if init_c is not None else 2e-3, seed=seed, log=log)
    save_weights(cmodel, {**ccfg, "temperature": temp, **record, "history": chist}, out_dir, "classifier")
    accs = [h["val_accuracy"] for h in chist if "val_accuracy" in h]
    return {"val_accuracy": max(accs) if accs else None, "temperature": temp,
            "n_train_cells": int(len(xt)), "n_val_cells": int(len(xv))}


def consistent_labels(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """The semantic labels made to agree with corrected instances: background wherever no cell
    is, cytoplasm where a cell was painted over background (uint8)."""
    from holo.labels import CYTOPLASM

    sem = np.asarray(semantic, np.uint8).copy()
    inst = np.asarray(instance)
    sem[inst == 0] = 0
    sem[(inst > 0) & (sem == 0)] = CYTOPLASM
    return sem


#: Scores of :func:`aggregate_scores` reported as the gain of a fine-tuning.
GAIN_KEYS = ("dice_cell", "dice_nucleus", "ap50")


def _check_out_dir(out_dir: Path, wdir: Path) -> None:
    """Refuse an output folder that is, or lies inside, the shipped or the initial weights."""
    from holo.errors import HoloError
    from holo.segmentation.infer import WEIGHTS_DIR

    out = out_dir.resolve()
    for d in {WEIGHTS_DIR.resolve(), wdir.resolve()}:
        if out == d or d in out.parents:
            raise HoloError("would overwrite the weights fine-tuning starts from; choose another folder",
                            path=out_dir, item="out")


def _evaluate_start(init: str, wdir: Path, val: list) -> dict:
    """Scores of the weights fine-tuning starts from (as ``holo segment`` runs them, organelle
    network included) on the held-out volumes; {} when training from scratch."""
    from holo.segmentation.infer import load_unet

    if init != "shipped" or not val:
        return {}
    model, cfg = load_unet(wdir)
    return evaluate_segmentation(model, cfg, val, weights_dir=wdir)


def finetune(data_dir, out_dir, **options) -> dict:
    """Fine-tune on a user's folder (layout of :func:`holo.segmentation.data.load_user_folder`):
    :func:`finetune_volumes` of its volumes (``options`` passed on)."""
    from holo.segmentation.data import load_user_folder

    return finetune_volumes(load_user_folder(data_dir), out_dir, source=str(data_dir), **options)


def finetune_volumes(vols: list[TrainingVolume], out_dir, *, init: str = "shipped", epochs: int = 10,
                     val_fraction: float = 0.25, steps_per_epoch: int = 30, batch_size: int = 4, seed: int = 0,
                     weights_dir=None, source: str = "", log: Callable[[str], None] = print,
                     progress: Callable | None = None) -> dict:
    """Fine-tune (``init="shipped"``) or train (``"scratch"``) both networks on labelled volumes.

    Volumes are resampled to the training voxel size and split into training and held-out
    volumes (one volume: cut along Y, :func:`_split`); the U-Net is trained with early
    stopping on the held-out Dice/AP, and — when cells carry classes — the classifier too
    (classes = shipped classes ∪ the user's; a new class list re-initialises the last layer).
    When the labels hold nucleoli or lipid droplets, the U-Net is trained on them with
    organelle-centred crops and a weighted cross entropy (as the shipped ``organelles``
    network); the new ``unet`` is not paired with ``organelles`` and labels them itself.

    ``out_dir`` (never the shipped or starting weights folder, written atomically: nothing is
    left on failure or cancel) receives ``unet.pt/.json``, ``classifier.pt/.json`` (the
    starting classifier and ``novelty.json`` are copied when no class is given) and
    ``finetune.json`` (the scores). ``progress(done, total, note)`` is called after every
    optimiser step; an exception it raises stops the run.

    Returns ``{"metrics": {"unet": after, "unet_before": before, "gain": after − before, ...},
    "out_dir": str}``: the scores (:func:`aggregate_scores`) of the held-out volumes with the
    starting weights (as ``holo segment`` runs them) and with the new ones.
    """
    import shutil

    from holo.io._atomic import atomic_path
    from holo.segmentation.infer import WEIGHTS_DIR

    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, wdir)
    ucfg, ustate, ccfg, cstate = _start_weights(init, wdir)
    rng = np.random.default_rng(seed)
    vols = [to_training_grid(v, ucfg["voxel_size_um"]) for v in vols]
    train, val = _split(vols, val_fraction, rng)
    log(f"{len(train)} training and {len(val)} held-out volumes on voxel {tuple(ucfg['voxel_size_um'])} µm")
    before = _evaluate_start(init, wdir, val)
    crop = [min(c, max(d, min(v.ri.shape[a] for v in train)) // d * d)
            for a, (c, d) in enumerate(zip((32, 64, 64), (4, 8, 8)))]
    model, hist = train_unet(train, val, ucfg, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                             crop_zyx=tuple(crop), lr=1e-3 if ustate is not None else 3e-3, patience=4,
                             init_state=ustate, seed=seed, log=log, progress=progress,
                             **_organelle_options(train, ucfg, log))
    after = evaluate_segmentation(model, ucfg, val) if val else {}
    scored = [h for h in hist if "dice_cell" in h]
    kept = max(scored, key=selection_score)["epoch"] if scored else None
    if kept == 0:
        log("no epoch beat the starting weights on the held-out volumes: they are kept")
    metrics = {"unet": after, "unet_before": before,
               "gain": {k: after[k] - before[k] for k in GAIN_KEYS if k in after and k in before},
               "kept_epoch": kept, "n_train_volumes": len(train), "n_heldout_volumes": len(val)}
    record = {"trained_on": source, "init": init}
    user_classes = sorted({c for v in vols for c in v.classes.values()})
    with atomic_path(out_dir) as tmp:
        save_weights(model, {**ucfg, **record, "history": hist, "finetune_metrics": metrics}, tmp, "unet")
        if user_classes:
            metrics["classifier"] = _finetune_classifier(vols, train, val, ccfg, cstate, user_classes, tmp,
                                                         epochs=epochs, seed=seed, rng=rng, record=record, log=log)
        elif init == "shipped":
            for name in ("classifier.pt", "classifier.json", "novelty.json"):
                if (wdir / name).is_file():
                    shutil.copyfile(wdir / name, tmp / name)
        (tmp / "finetune.json").write_text(json.dumps({**record, "metrics": metrics}, indent=2))
    return {"metrics": metrics, "out_dir": str(out_dir)}
