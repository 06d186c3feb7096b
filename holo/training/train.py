"""Train the shipped U-Net and cell classifier on the twin data set and measure the model card's numbers.

Usage (after ``python -m holo.training.make_data --out data/seg``)::

    python -m holo.training.train --data data/seg --out segmentation/weights

Model selection uses the ``val`` split only; the acceptance metrics of the model card are
measured on the ``test`` split, whose seeds are never used in training. The losses, loops,
metrics and model selection are those of :mod:`holo.segmentation.train`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

from holo.labels import CELL_CLASSES, SEMANTIC_NAMES
from holo.segmentation import train as st

#: Data sources (:mod:`holo.training.make_data`), in the order of the validation round robin.
SOURCES = ("gp", "pipeline", "otf", "otf_rotation")


def _load(folder: Path, source: str | None = None):
    """The volumes of a split folder (of one source), each with its phantom kind as ``kind``."""
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


def _stage_unet(a, train, val_epoch, device, provenance):
    from holo.segmentation.infer import load_unet

    t0 = time.perf_counter()
    init_state = None
    if a.init is not None:  # fine-tune: architecture, voxel and post-processing from the initial weights
        model0, cfg0 = load_unet(a.init)
        ucfg = st.inherited_config(cfg0)
        init_state = model0.state_dict()
        provenance = {**provenance, "initialised_from": cfg0.get("provenance", str(a.init))}
    else:
        ucfg = dict(st.DEFAULT_UNET_CONFIG)
        ucfg["channels"] = list(a.channels)
    ucfg["voxel_size_um"] = list(train[0].voxel_size_um)
    provenance = {**provenance, "unet_training": {"epochs": a.epochs, "steps": a.steps, "batch": a.batch, "lr": a.lr,
                                                  "crop": list(a.crop), "class_weights": a.class_weights,
                                                  "organelle_crops": a.organelle_crops, "seed": a.seed}}
    if a.tile is not None:
        ucfg["tile_zyx"] = list(a.tile)
    umodel, uhist = st.train_unet(train, val_epoch, ucfg, epochs=a.epochs, steps_per_epoch=a.steps,
                                  batch_size=a.batch, crop_zyx=tuple(a.crop), device=device, seed=a.seed,
                                  patience=a.patience, lr=a.lr, init_state=init_state,
                                  class_weights=a.class_weights, organelle_fraction=a.organelle_crops)
    t_train = time.perf_counter() - t0
    st.save_weights(umodel, {**ucfg, "provenance": provenance, "history": uhist}, a.out, "unet")
    return {"seconds_unet_training": round(t_train, 1)}


def _segmentation_test_metrics(a, tests, device):
    """U-Net (with the post-processing in ``unet.json``) and classic baseline on the test split;
    the U-Net's numbers are also stored in ``unet.json``."""
    from holo.segmentation.infer import load_unet

    umodel, ucfg = load_unet(a.out)
    seg_test, by_kind = {}, {}
    for src, vs in tests.items():
        seg_test[src], records = st.evaluate_segmentation(umodel, ucfg, vs, device=device, per_volume=True)
        for kind in sorted({_kind(v) for v in vs}):
            by_kind[f"{src}:{kind}"] = st.aggregate_scores([r for r, v in zip(records, vs) if _kind(v) == kind])
    seg_classic = {src: st.classic_scores(vs) for src, vs in tests.items()}
    print("test unet", json.dumps(seg_test), "classic", json.dumps(seg_classic), flush=True)
    ucfg["test_metrics"] = seg_test
    _write_json(a.out / "unet.json", ucfg)
    return {"segmentation_unet": seg_test, "segmentation_unet_by_kind": by_kind, "segmentation_classic": seg_classic}


def _stage_classifier(a, train, val, test, device, provenance):
    t0 = time.perf_counter()
    present = {c for v in train for c in v.classes.values()}
    names = [c for c in CELL_CLASSES if c in present]
    ccfg = dict(st.DEFAULT_CLASSIFIER_CONFIG)
    ccfg["classes"] = names
    xt, yt = st.classifier_dataset(train, ccfg, names)
    xv, yv = st.classifier_dataset(val, ccfg, names)
    xs, ys = st.classifier_dataset(test, ccfg, names)
    print(f"cells: {len(xt)} train, {len(xv)} val, {len(xs)} test; per class {np.bincount(yt, minlength=len(names)).tolist()}",
          flush=True)
    cmodel, temperature, chist = st.train_classifier(xt, yt, xv, yv, ccfg, epochs=a.cls_epochs, device=device,
                                                     seed=a.seed, lr=1e-3, patience=a.cls_patience)
    ccfg["temperature"] = temperature
    cls_test = {**st.classifier_scores(st.classifier_logits(cmodel, xs, len(names)), ys, ccfg),
                "n_train_cells": int(len(xt)), "n_val_cells": int(len(xv)), "temperature": temperature,
                "seconds_training": round(time.perf_counter() - t0, 1)}
    print("test classifier", cls_test, flush=True)
    st.save_weights(cmodel, {**ccfg, "provenance": provenance, "test_metrics": cls_test, "history": chist}, a.out,
                    "classifier")
    return {"classification": cls_test}


def _stage_tune(a, val, device):
    """Post-processing chosen on the validation split, written into ``unet.json``."""
    from holo.segmentation.infer import load_unet

    umodel, ucfg = load_unet(a.out)
    res = st.tune_postprocessing(umodel, ucfg, val, device=device, tta_values=tuple(a.tta_values))
    for k in ("tta", "fg_threshold", "instance_h_um"):
        ucfg[k] = res[k]
    ucfg["postprocessing_sweep"] = res
    _write_json(a.out / "unet.json", ucfg)
    print("chosen", {k: res[k] for k in ("tta", "fg_threshold", "instance_h_um")}, flush=True)
    return {"postprocessing": {k: res[k] for k in ("tta", "fg_threshold", "instance_h_um", "n_volumes")}}


def _classifier_test_metrics(cmodel, ccfg, test):
    """:func:`holo.segmentation.train.classifier_scores` on the ground-truth cell crops of volumes."""
    xs, ys = st.classifier_dataset(test, ccfg, list(ccfg["classes"]))
    return st.classifier_scores(st.classifier_logits(cmodel, xs, len(ccfg["classes"]), batch_size=32), ys, ccfg)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m holo.training.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
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
    ap.add_argument("--class-weights", type=float, nargs=len(SEMANTIC_NAMES), default=None,
                    help="cross-entropy weight of each semantic class (" + ", ".join(SEMANTIC_NAMES) + "); default all 1")
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
    return ap


def _run_stages(a, train, val, test, tests, val_epoch, device, provenance) -> dict:
    """The stages ``a.stage`` asks for, in order; returns their metrics."""
    from holo.segmentation.infer import load_classifier, load_unet

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
        metrics["end_to_end"] = {src: st.end_to_end_accuracy(umodel, ucfg, cmodel, ccfg, vs, device)
                                 for src, vs in tests.items()}
    return metrics


def main(argv=None) -> int:
    import torch

    from holo.segmentation.infer import pick_device

    a = _parser().parse_args(argv)
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
    metrics = _run_stages(a, train, val, test, tests, val_epoch, device, provenance)
    metrics["provenance"] = provenance
    (a.out / f"metrics_{a.stage}.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: v for k, v in metrics.items() if k != "provenance"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
