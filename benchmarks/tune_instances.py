"""Choose the bacteria split of the U-Net's post-processing (step 7 of
:func:`holo.segmentation.infer.labels_from_prediction`, the ``split_*`` keys) on validation volumes.

The network's output (softmax probabilities and distance with the weights' test-time
augmentation, and the contrast n − n_m on the training grid) is computed once per volume and
weights file and cached under ``--cache`` (``<cache>/<sha1 of unet.pt>/<name>.npz``), so every
variant of the post-processing costs seconds. Validation volumes:

* ``--gp DIR`` (repeatable): folders written by :mod:`holo.training.make_data`; the ``gp``
  volumes there (whole twin chain, labels on the training grid);
* ``--dense CACHE``: the ``val_*`` volumes of :mod:`benchmarks.eval_instances`' cache (dense
  ``otf`` fields, seeds 5100+, default and HT-2 grids; scored on their own grid).

Never pass a held-out folder for choosing (``--dense-split test`` measures a choice once). Printed:
AP@0.5 per source and kind, cells found, bacteria found, predicted objects matching no true
cell, post-processing CPU seconds, then the chosen values: the best mean AP over the sources
among the variants that lose nothing against the shipped configuration on any source (cells
found, bacteria found, white / red / mixed AP; :func:`loses_nothing`) and, with ``--demo``, do
not cut the demo's bacteria chain — the JSON keys to write into the weights' ``unet.json``.

Usage::

    python benchmarks/tune_instances.py --weights segmentation/weights \\
        --gp /tmp/lead7/data/val --dense /tmp/holo_eval --cache /tmp/h8a/cache --demo DEMO_OUT
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_instances import found_cells, load_cached  # noqa: E402

BACTERIA = ("bacteria_rod", "bacteria_coccus", "bacteria_chain")
KINDS = ("cell", "rbc", "mixed", "bacteria")


def weights_tag(weights_dir: Path, name: str = "unet") -> str:
    """First 12 hex digits of the SHA-1 of the weights file (the cache's sub-folder)."""
    return hashlib.sha1((Path(weights_dir) / f"{name}.pt").read_bytes()).hexdigest()[:12]


def _gp_items(folder: Path):
    """(name, loader) of the ``gp`` volumes of a make_data folder (labels on the training grid)."""
    from holo.training.train import _load

    for f in sorted(Path(folder).glob("*.npz")):
        if "_gp_" in f.name:
            yield f"{Path(folder).name}_{f.stem}", (lambda f=f: ("gp", _load_gp(f)))


def _load_gp(f: Path) -> dict:
    from holo.segmentation.data import load_volume

    v = load_volume(f)
    return {"ri": v.ri, "medium_index": v.medium_index, "semantic": v.semantic, "instance": v.instance,
            "classes": v.classes, "kind": f.stem.rsplit("_", 1)[-1], "voxel_size_um": v.voxel_size_um}


def _dense_items(cache: Path, split: str = "val"):
    """(name, loader) of the volumes of one split of an eval_instances cache."""
    for f in sorted(Path(cache).glob(f"{split}_*.npz")):
        yield f.stem, (lambda f=f: (f.stem.split("_")[1], load_cached(f)))


def network_output(model, cfg: dict, ri, voxel_size_um, medium_index: float):
    """(probabilities, distance, n − n_m) of the U-Net on a tomogram brought to its training grid,
    with the weights' test-time augmentation."""
    from holo.segmentation.infer import predict_tiled, resample_volume

    x = (resample_volume(ri, voxel_size_um, cfg["voxel_size_um"]) - np.float32(medium_index)).astype(np.float32)
    probs, dist = predict_tiled(model, x * np.float32(cfg["ri_scale"]), tile_zyx=tuple(cfg["tile_zyx"]),
                                tta=int(cfg.get("tta", 0)))
    return probs, dist, x


def cached_predictions(weights_dir: Path, gp_dirs, dense_cache, cache: Path, log=print,
                       dense_split: str = "val") -> list[Path]:
    """Paths of the cached network outputs of every volume (computed when missing)."""
    from holo.segmentation.infer import load_unet

    out_dir = Path(cache) / weights_tag(weights_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = [it for d in gp_dirs for it in _gp_items(d)]
    if dense_cache is not None:
        items += list(_dense_items(dense_cache, dense_split))
    model, cfg, paths = None, None, []
    for name, loader in items:
        p = out_dir / f"{name}.npz"
        paths.append(p)
        if p.exists():
            continue
        if model is None:
            model, cfg = load_unet(weights_dir)
        t0 = time.perf_counter()
        source, d = loader()
        probs, dist, x = network_output(model, cfg, d["ri"], d["voxel_size_um"], d["medium_index"])
        np.savez_compressed(p, probs=probs.astype(np.float16), dist=dist.astype(np.float16), delta_ri=x,
                            semantic=d["semantic"], instance=d["instance"], kind=d["kind"], source=source,
                            classes=json.dumps({str(k): v for k, v in d["classes"].items()}))
        log(f"cached {p.name} ({time.perf_counter() - t0:.1f} s)")
    return paths


def load_prediction(p: Path) -> dict:
    with np.load(p) as z:
        d = {k: z[k] for k in z.files}
    d["classes"] = {int(k): v for k, v in json.loads(str(d["classes"])).items()}
    d["kind"], d["source"], d["name"] = str(d["kind"]), str(d["source"]), p.stem
    d["probs"], d["dist"] = d["probs"].astype(np.float32), d["dist"].astype(np.float32)
    return d


def iou_table(pred: np.ndarray, true: np.ndarray):
    """(intersections, predicted sizes, true sizes, IoU) of every pair of ids (row/column 0: background)."""
    from holo.segmentation.train import overlap_counts

    inter, sp, st = overlap_counts(pred, true)
    return inter, sp, st, inter / np.maximum(sp[:, None] + st[None, :] - inter, 1)


def score(d: dict, cfg: dict) -> dict:
    """Post-process one cached prediction with ``cfg`` and score it on the volume's own grid."""
    from holo.segmentation.infer import labels_from_prediction, resize_labels

    c0 = time.process_time()
    _, inst = labels_from_prediction(d["probs"], d["dist"], d["delta_ri"], cfg)
    cpu = time.process_time() - c0
    inst = resize_labels(inst, d["instance"].shape)
    _, _, st, iou = iou_table(inst, d["instance"])
    hit = iou[1:, 1:] > 0.5
    n_pred, n_true = int(inst.max(initial=0)), int(np.count_nonzero(st[1:]))
    tp = int(hit.sum())
    bac = np.array([d["classes"].get(j, "") in BACTERIA for j in range(1, iou.shape[1])], bool) & (st[1:] > 0)
    return {"name": d["name"], "source": d["source"], "kind": d["kind"], "ap50": tp / max(n_pred + n_true - tp, 1),
            "found": int(hit.any(axis=0).sum()), "n_true": n_true, "bac_found": int(hit.any(axis=0)[bac].sum()),
            "n_bac": int(bac.sum()), "unmatched": int(n_pred - hit.any(axis=1).sum()), "n_pred": n_pred,
            "cpu_s": cpu}


def _true_error(j: int, inter, st, iou, classes) -> str:
    """Why true bacterium j is not found (IoU ≤ 0.5 with every object): ``missed_fg`` (under
    half its voxels in the foreground), ``absorbed`` (its main object is mostly another kind of
    cell), ``merge2`` / ``merge3+`` (its main object holds over 40 % of 2 / ≥ 3 true cells),
    ``split`` (its main object holds under 60 % of it), else ``boundary``."""
    i = int(np.argmax(inter[1:, j])) + 1
    inside = int(np.count_nonzero(inter[i, 1:] > 0.4 * np.maximum(st[1:], 1)))
    if inter[1:, j].sum() < 0.5 * st[j]:
        return "missed_fg"
    if classes.get(int(np.argmax(inter[i, 1:])) + 1, "") not in BACTERIA:
        return "absorbed"
    if inside >= 2:
        return "merge2" if inside == 2 else "merge3+"
    return "split" if inter[i, j] < 0.6 * st[j] else "boundary"


def error_census(d: dict, cfg: dict) -> dict[str, int]:
    """Counts of the true bacteria of one volume by outcome (``found`` or :func:`_true_error`),
    and of the objects matching no true cell: ``unmatched_piece`` (over 30 % of a single true
    cell in it), ``unmatched_merged`` (of two or more), ``unmatched_background`` (mostly
    background)."""
    from collections import Counter

    from holo.segmentation.infer import labels_from_prediction, resize_labels

    _, inst = labels_from_prediction(d["probs"], d["dist"], d["delta_ri"], cfg)
    inter, sp, st, iou = iou_table(resize_labels(inst, d["instance"].shape), d["instance"])
    out = Counter()
    for j in range(1, iou.shape[1]):
        if st[j] and d["classes"].get(j, "") in BACTERIA:
            out["found" if (iou[1:, j] > 0.5).any() else _true_error(j, inter, st, iou, d["classes"])] += 1
    for i in range(1, iou.shape[0]):
        if sp[i] and not (iou[i, 1:] > 0.5).any():
            n_major = int(np.count_nonzero(inter[i, 1:] > 0.3 * np.maximum(st[1:], 1)))
            out["unmatched_background" if inter[i, 1:].sum() < 0.5 * sp[i] else
                "unmatched_merged" if n_major >= 2 else "unmatched_piece"] += 1
    return dict(out)


def table(records: list[dict]) -> dict:
    """{source: {kind or 'all': mean AP, found, bacteria found, unmatched, objects}}."""
    out: dict = {}
    for src in sorted({r["source"] for r in records}):
        rs = [r for r in records if r["source"] == src]
        out[src] = {}
        for k in ("all",) + KINDS:
            ks = [r for r in rs if k in ("all", r["kind"])]
            if ks:
                out[src][k] = {"n": len(ks), "ap50": float(np.mean([r["ap50"] for r in ks])),
                               **{f: int(sum(r[f] for r in ks)) for f in
                                  ("found", "n_true", "bac_found", "n_bac", "unmatched", "n_pred")},
                               "cpu_s": float(sum(r["cpu_s"] for r in ks))}
    return out


def objective(tab: dict) -> float:
    """Mean over sources of the mean AP@0.5 (each source weighs the same)."""
    return float(np.mean([t["all"]["ap50"] for t in tab.values()]))


def loses_nothing(tab: dict, ref: dict) -> bool:
    """The goal's guard: on every source, cells found, bacteria found and the AP of the white
    cell, red cell and mixed volumes at least those of ``ref`` (the shipped configuration)."""
    return all(tab[s]["all"][f] >= ref[s]["all"][f] for s in ref for f in ("found", "bac_found")) and \
        all(tab[s][k]["ap50"] >= ref[s][k]["ap50"] - 1e-9 for s in ref for k in ("cell", "rbc", "mixed") if k in ref[s])


def fmt(tab: dict) -> str:
    lines = []
    for src, t in tab.items():
        a = t["all"]
        kinds = " ".join(f"{k[:3]} {t[k]['ap50']:.3f}" for k in KINDS if k in t)
        lines.append(f"  {src:9s} AP {a['ap50']:.3f} ({kinds}) found {a['found']}/{a['n_true']} "
                     f"bacteria {a['bac_found']}/{a['n_bac']} unmatched {a['unmatched']} objects {a['n_pred']} "
                     f"post {a['cpu_s']:.1f} CPU-s")
    return "\n".join(lines)


def variants(grid: dict[str, list]) -> dict[str, dict]:
    """The shipped configuration, then every combination of the ``grid`` (overrides of the JSON)."""
    import itertools

    out = {"shipped": {}}
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        over = dict(zip(keys, combo))
        out[" ".join(f"{k.removeprefix('split_')}={v}" for k, v in over.items())] = over
    return out


#: The grid scored by default.
GRID = {"split_max_turn_rad": [0.0, 0.8, 1.2, 1.6], "split_cross_section_um2": [0.07, 0.075, 0.08],
        "split_min_piece_um3": [0.3, 0.6]}


def demo_prediction(demo_dir: Path, weights_dir: Path) -> dict:
    """Network output on the RI of a ``holo demo`` folder (``demo_acquisition/ri.ome.tif`` and
    the twin's truth in ``demo_acquisition.h5``), with the truth brought to the training grid."""
    import holo
    from holo.segmentation.infer import load_unet, resize_labels

    model, cfg = load_unet(weights_dir)
    tomo = holo.open(Path(demo_dir) / "demo_acquisition" / "ri.ome.tif")
    truth = holo.open(Path(demo_dir) / "demo_acquisition.h5").ground_truth
    probs, dist, x = network_output(model, cfg, tomo.frame(0), tomo.voxel_size_um, truth["medium_index"])
    chains = [int(k) for k, c in truth["classes"].items() if c == "bacteria_chain"]
    return {"probs": probs, "dist": dist, "delta_ri": x, "chains": chains,
            "instance": resize_labels(np.asarray(truth["instance"]), x.shape)}


def cuts_a_chain(demo: dict, cfg: dict) -> bool:
    """Whether the bacteria split cuts the predicted object holding a true chain of the demo
    (the object the chain overlaps most with the split disabled gets several labels)."""
    from holo.segmentation.infer import labels_from_prediction

    _, whole = labels_from_prediction(demo["probs"], demo["dist"], demo["delta_ri"],
                                      {**cfg, "split_cross_section_um2": 0.0})
    _, split = labels_from_prediction(demo["probs"], demo["dist"], demo["delta_ri"], cfg)
    for j in demo["chains"]:
        own = np.bincount(whole[demo["instance"] == j]).argmax() if (demo["instance"] == j).any() else 0
        if own and len(np.unique(split[whole == own])) > 1:
            return True
    return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped one)")
    ap.add_argument("--gp", type=Path, action="append", default=[], help="make_data folder with val gp volumes")
    ap.add_argument("--dense", type=Path, default=None, help="eval_instances cache (its val_* volumes)")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--grid", type=json.loads, default=GRID, help="JSON {key: [values]} to sweep")
    ap.add_argument("--dense-split", choices=("val", "test"), default="val",
                    help="test: the held-out volumes, to MEASURE a choice once (never to choose)")
    ap.add_argument("--demo", type=Path,
                    help="a `holo demo` output folder: a variant that cuts its chain is not chosen")
    ap.add_argument("--census", action="store_true", help="classify the errors on bacteria (shipped and chosen)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from holo.segmentation.infer import WEIGHTS_DIR, load_unet

    weights = a.weights or WEIGHTS_DIR
    _, cfg = load_unet(weights)
    paths = cached_predictions(weights, a.gp, a.dense, a.cache, dense_split=a.dense_split)
    data = [load_prediction(p) for p in paths]
    results = {}
    for name, over in variants(a.grid).items():
        tab = table([score(d, {**cfg, **over}) for d in data])
        results[name] = {"overrides": over, "table": tab, "objective": objective(tab)}
        print(f"{name}: mean AP {objective(tab):.4f}\n{fmt(tab)}", flush=True)
    demo = demo_prediction(a.demo, weights) if a.demo else None
    best = "shipped"
    for name in sorted(results, key=lambda k: (-results[k]["objective"], k != "shipped")):
        if not loses_nothing(results[name]["table"], results["shipped"]["table"]):
            print(f"{name}: finds fewer cells or bacteria, or lowers a white/red/mixed AP, on a source: not chosen")
            continue
        if demo is not None and cuts_a_chain(demo, {**cfg, **results[name]["overrides"]}):
            print(f"{name}: cuts the demo's chain, not chosen")
            continue
        best = name
        if demo is not None:
            print(f"{name}: keeps the demo's chain whole")
        break
    print(f"chosen ({'held-out: not a choice' if a.dense_split == 'test' else 'validation'}): {best} "
          f"{json.dumps(results[best]['overrides'])}")
    if a.census:
        for name in dict.fromkeys(("shipped", best)):
            by: dict = {}
            for d in data:
                for k, v in error_census(d, {**cfg, **results[name]["overrides"]}).items():
                    by.setdefault(d["source"], {}).setdefault(k, 0)
                    by[d["source"]][k] += v
            results[name]["census"] = by
            print(f"census of the true bacteria and the unmatched objects, {name}:")
            for src, c in by.items():
                print(f"  {src:9s} " + " ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
