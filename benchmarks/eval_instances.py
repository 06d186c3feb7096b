"""Held-out evaluation of instance separation and calibration on dense twin fields.

Volumes: digital-twin phantoms (:func:`holo.twin.phantoms.make_phantom`, 96 × 256 × 256 at
0.2 × 0.1 × 0.1 µm) seen through the instrument's optical transfer function (the ``otf``
route of :mod:`holo.training.make_data`: missing cone + band-limited noise; the BPM +
reconstruction chain costs ≈ 13 s per volume per core, too slow for this 2-core budget),
put on a tomogram grid at one of two samplings:

* ``default`` — the U-Net's training grid, 0.4 × 0.2 × 0.2 µm;
* ``tomocube`` — an HT-2 grid, 0.839 × 0.196 × 0.196 µm (the U-Net resamples it; its labels
  come back to this grid by nearest neighbour and are scored there).

Kinds cycle white cells / red cells / mixed / bacteria, each **dense**: about twice the
phantom's default number of cells (3 white cells, 6 red cells, 6 mixed, 16 bacteria; fewer
when they do not fit), so that touching cells and bacteria chains are common. Seeds:
validation 5100 + i (post-processing choices are made here only), held-out 9100 + i (never
used for a choice); both outside every training range of :mod:`holo.training.make_data`.

Every volume's network output (softmax probabilities and distance on the training grid, with
the shipped test-time augmentation) is cached in ``--cache``, so post-processing variants are
scored without re-running the network. Scores per volume: Dice cell, Dice nucleus
(nucleus ∪ nucleolus), AP@0.5 (:func:`holo.segmentation.train.instance_ap`), true cells
matched at IoU > 0.5 ("found") and the number of true cells.

Usage::

    python benchmarks/eval_instances.py --cache /tmp/holo_eval --split val --variants baseline new
    python benchmarks/eval_instances.py --cache /tmp/holo_eval --split test --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SAMPLINGS = {"default": (0.4, 0.2, 0.2), "tomocube": (0.839, 0.196, 0.196)}
DENSE_CELLS = {"cell": 3, "rbc": 6, "mixed": 6, "bacteria": 16}
KIND_CYCLE = ("cell", "rbc", "mixed", "bacteria")
SEED0 = {"val": 5100, "test": 9100}

#: Post-processing variants (overrides of the U-Net JSON; ``baseline`` = the shipped config
#: without the half-maximum boundary of small objects and without the cross-section split of
#: merged bacteria, ``half_max`` = without the split only).
VARIANTS = {
    "baseline": {"half_max_below_um3": 0.0, "split_cross_section_um2": 0.0},
    "half_max": {"split_cross_section_um2": 0.0},  # the shipped chain before the cross-section split
    "shipped": {},
}


def dense_volume(seed: int, kind: str, voxel_size_um, source: str = "otf"):
    """A dense twin volume seen through ``source`` (``otf``, or ``gp``: the whole twin chain,
    reconstructed with Rytov + Gerchberg–Papoulis) on the grid ``voxel_size_um`` (a TrainingVolume)."""
    from holo.training.make_data import phantom_volume

    n = DENSE_CELLS[kind]
    while True:
        try:
            return phantom_volume(seed, kind=kind, source=source, train_voxel_size_um=tuple(voxel_size_um), n_cells=n)
        except ValueError as exc:
            if "no room" not in str(exc) or n <= 1:
                raise
            n -= 1


def cache_volume(path: Path, seed: int, kind: str, sampling: str, model, cfg, source: str = "otf") -> None:
    """Make one volume, run the U-Net on it (training grid, shipped TTA) and save both."""
    from holo.segmentation.infer import predict_tiled, resample_volume

    v = dense_volume(seed, kind, SAMPLINGS[sampling], source)
    x = (resample_volume(v.ri, v.voxel_size_um, cfg["voxel_size_um"]) - np.float32(v.medium_index)) * np.float32(cfg["ri_scale"])
    probs, dist = predict_tiled(model, x.astype(np.float32), tile_zyx=tuple(cfg["tile_zyx"]), tta=int(cfg.get("tta", 0)))
    np.savez_compressed(path, ri=v.ri, semantic=v.semantic, instance=v.instance, voxel_size_um=v.voxel_size_um,
                        medium_index=v.medium_index, classes=json.dumps(v.classes), x=x.astype(np.float32),
                        probs=probs.astype(np.float16), dist=dist.astype(np.float16), kind=kind, seed=seed)


def cached_paths(cache: Path, split: str, n: int, samplings, model=None, cfg=None, log=print,
                 source: str = "otf") -> list[Path]:
    """Paths of the cached volumes of a split, made (with the network) when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for sampling in samplings:
        for i in range(n):
            seed, kind = SEED0[split] + i, KIND_CYCLE[i % len(KIND_CYCLE)]
            tag = sampling if source == "otf" else f"{sampling}-{source}"
            p = cache / f"{split}_{tag}_{seed}_{kind}.npz"
            if not p.exists():
                if model is None:
                    from holo.segmentation.infer import load_unet

                    model, cfg = load_unet()
                t0 = time.perf_counter()
                cache_volume(p, seed, kind, sampling, model, cfg, source)
                log(f"cached {p.name} ({time.perf_counter() - t0:.1f} s)")
            out.append(p)
    return out


def load_cached(path: Path) -> dict:
    d = dict(np.load(path, allow_pickle=False))
    d["classes"] = {int(k): v for k, v in json.loads(str(d["classes"])).items()}
    d["kind"], d["seed"] = str(d["kind"]), int(d["seed"])
    return d


def found_cells(pred: np.ndarray, true: np.ndarray) -> tuple[int, int]:
    """(true cells matched by a predicted instance at IoU > 0.5, true cells)."""
    p = pred.ravel().astype(np.int64)
    t = true.ravel().astype(np.int64)
    n_p, n_t = int(p.max(initial=0)), int(t.max(initial=0))
    both = (p > 0) & (t > 0)
    inter = np.bincount(p[both] * (n_t + 1) + t[both], minlength=(n_p + 1) * (n_t + 1)).reshape(n_p + 1, n_t + 1)
    sp, st = np.bincount(p, minlength=n_p + 1), np.bincount(t, minlength=n_t + 1)
    iou = inter / np.maximum(sp[:, None] + st[None, :] - inter, 1)
    n_true = int(np.count_nonzero(st[1:]))
    return int((iou[1:, 1:] > 0.5).any(axis=0).sum()), n_true


def score_volume(d: dict, cfg: dict) -> dict:
    """Post-process a cached prediction with ``cfg``, bring the labels to the volume's grid and score."""
    from holo.segmentation.infer import labels_from_prediction, resize_labels
    from holo.segmentation.train import NUCLEUS_LABELS, dice, instance_ap

    t0, c0 = time.perf_counter(), time.process_time()
    sem, inst = labels_from_prediction(d["probs"].astype(np.float32), d["dist"].astype(np.float32),
                                       d["x"] / np.float32(cfg["ri_scale"]), cfg)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    sem, inst = resize_labels(sem, d["semantic"].shape), resize_labels(inst, d["semantic"].shape)
    found, n_true = found_cells(inst, d["instance"])
    return {"kind": d["kind"], "seed": d["seed"], "ap50": instance_ap(inst, d["instance"]),
            "dice_cell": dice(sem > 0, d["semantic"] > 0),
            "dice_nucleus": dice(np.isin(sem, NUCLEUS_LABELS), np.isin(d["semantic"], NUCLEUS_LABELS)),
            "has_nucleus": bool(np.isin(d["semantic"], NUCLEUS_LABELS).any()),
            "found": found, "n_true": n_true, "n_pred": int(inst.max(initial=0)), "seconds_post": dt,
            "cpu_seconds_post": dc}


def summary(records: list[dict]) -> dict:
    """Means over volumes (Dice nucleus over volumes with a nucleus), found / true, by kind."""
    def agg(rs):
        nuc = [r["dice_nucleus"] for r in rs if r["has_nucleus"]]
        return {"n_volumes": len(rs), "ap50": float(np.mean([r["ap50"] for r in rs])),
                "dice_cell": float(np.mean([r["dice_cell"] for r in rs])),
                "dice_nucleus": float(np.mean(nuc)) if nuc else None,
                "found": int(sum(r["found"] for r in rs)), "n_true": int(sum(r["n_true"] for r in rs)),
                "n_pred": int(sum(r["n_pred"] for r in rs)),
                "seconds_post_max": float(max(r["seconds_post"] for r in rs)),
                "cpu_seconds_post_total": float(sum(r["cpu_seconds_post"] for r in rs))}
    out = {"all": agg(records)}
    for k in KIND_CYCLE:
        rs = [r for r in records if r["kind"] == k]
        if rs:
            out[k] = agg(rs)
    return out


def evaluate(paths, cfg: dict) -> dict:
    """{sampling: summary} of one post-processing config over cached volumes."""
    by = {}
    for p in paths:
        sampling = p.name.split("_")[1]
        by.setdefault(sampling, []).append(score_volume(load_cached(p), cfg))
    return {s: summary(rs) for s, rs in by.items()}


def _fmt(s: dict) -> str:
    a = s["all"]
    kinds = " ".join(f"{k}:{s[k]['ap50']:.2f} {s[k]['found']}/{s[k]['n_true']} D{s[k]['dice_cell']:.3f}"
                     for k in KIND_CYCLE if k in s)
    nuc = "—" if a["dice_nucleus"] is None else f"{a['dice_nucleus']:.3f}"
    return (f"AP {a['ap50']:.3f} ({kinds}) found {a['found']}/{a['n_true']} pred {a['n_pred']} "
            f"Dice cell {a['dice_cell']:.3f} nucleus {nuc} post ≤ {a['seconds_post_max']:.2f} s, "
            f"{a['cpu_seconds_post_total']:.1f} CPU-s in all [{a['n_volumes']} vol]")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--source", choices=("otf", "gp"), default="otf",
                    help="otf: phantom through the transfer function (cheap); gp: whole twin chain (≈ 30 s per volume)")
    ap.add_argument("--n", type=int, default=12, help="volumes per sampling")
    ap.add_argument("--samplings", nargs="+", default=list(SAMPLINGS), choices=list(SAMPLINGS))
    ap.add_argument("--variants", nargs="+", default=["baseline", "shipped"])
    ap.add_argument("--set", nargs="*", default=[], help="extra KEY=VALUE overrides of the U-Net JSON (a variant 'custom')")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from holo.segmentation.infer import load_unet

    model, cfg = load_unet()
    paths = cached_paths(a.cache, a.split, a.n, a.samplings, model, cfg, source=a.source)
    variants = {v: VARIANTS[v] for v in a.variants}
    if a.set:
        variants["custom"] = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    results = {}
    for name, over in variants.items():
        res = evaluate(paths, {**cfg, **over})
        results[name] = {"overrides": over, "scores": res}
        for s, summ in res.items():
            print(f"{a.split} {s:8s} {name:10s} {_fmt(summ)}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
