"""End-to-end accuracy of the shipped chain as a user sees it, on held-out twin volumes.

Every volume goes through :func:`holo.segmentation.diagnose` exactly as ``holo run`` runs it
(U-Net with test-time augmentation + ``organelles``, calibrated classifier, measurement,
``unknown`` abstention) and is scored on its own grid against the phantom's ground truth
(labels brought to that grid by nearest neighbour). Conditions:

* ``default``   — the twin's default fields (:mod:`holo.training.make_data` test ``otf`` seeds
  9000 + i, kinds mixed / white cells / red cells / bacteria / mixed), seen through the
  instrument's transfer function (missing cone + 0.001–0.004 RI noise), on the U-Net's
  grid 0.4 × 0.2 × 0.2 µm;
* ``ht2``       — the same volumes on a Tomocube HT-2H grid, 0.839 × 0.196 × 0.196 µm;
* ``dense``     — dense fields of touching cells (:mod:`eval_instances`, held-out seeds
  9100 + i, white cells / red cells / mixed / bacteria), default grid;
* ``dense_ht2`` — the same dense fields on the HT-2H grid;
* ``gp``        — the whole twin chain from holograms: BPM forward model of 49 off-axis
  holograms with camera noise (:func:`holo.twin.acquire.simulate_acquisition`), field
  retrieval and the default ``gp`` reconstruction (:func:`holo.pipeline.reconstruct`), on the
  reconstruction's grid (make_data test ``gp`` seeds 9500 + i, kinds as ``default``).

All seeds lie in the ranges the model card documents as held out (never used for training or
for a choice). Scores per volume: Dice cell, Dice nucleus (nucleus ∪ nucleolus; mean over
volumes that have a nucleus), AP@0.5; per condition: true cells found (matched by a
predicted cell at IoU > 0.5), found *and* reported with the right class — a cell reported
``uncertain`` or ``unknown`` counts as not classified — and what the classifier's top class
alone would have scored (the cost of abstaining).

Volumes are cached in ``--cache`` (``gp``: ≈ 1–2 min per volume to simulate and reconstruct).

Usage::

    python benchmarks/eval_end_to_end.py --cache /tmp/holo_e2e --json e2e.json
    python benchmarks/eval_end_to_end.py --cache /tmp/holo_e2e --conditions gp --n 4
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_GRID = (0.4, 0.2, 0.2)
HT2_GRID = (0.839, 0.196, 0.196)
CONDITIONS = {
    "default": {"source": "otf", "grid": DEFAULT_GRID, "dense": False, "seed0": 9000},
    "ht2": {"source": "otf", "grid": HT2_GRID, "dense": False, "seed0": 9000},
    "dense": {"source": "otf", "grid": DEFAULT_GRID, "dense": True, "seed0": 9100},
    "dense_ht2": {"source": "otf", "grid": HT2_GRID, "dense": True, "seed0": 9100},
    "gp": {"source": "gp", "grid": None, "dense": False, "seed0": 9500},
    # the same phantoms acquired by sample rotation (60 views over π about Y, missing cone about
    # the rotation axis: a geometry the networks never saw) and reconstructed with gp
    "rotation": {"source": "gp_rotation", "grid": None, "dense": False, "seed0": 9500},
}
WAVELENGTH_UM = 0.532
MEDIUM_INDEX = 1.337


def make_volume(condition: str, i: int, gp_shrink_sigmas: float | None = None) -> dict:
    """Volume i of a condition: RI on its grid and the ground truth on the same grid
    (``gp_shrink_sigmas``: κ of gp's ℓ1 mode for the ``gp`` condition, None: gp's default)."""
    spec = CONDITIONS[condition]
    seed = spec["seed0"] + i
    if spec["dense"]:
        from eval_instances import KIND_CYCLE, dense_volume

        kind = KIND_CYCLE[i % len(KIND_CYCLE)]
        v = dense_volume(seed, kind, spec["grid"], spec["source"])
    elif spec["source"] == "otf":
        from holo.training.make_data import KINDS, phantom_volume

        kind = KINDS[i % len(KINDS)]
        v = phantom_volume(seed, kind=kind, source="otf", train_voxel_size_um=spec["grid"], medium_index=MEDIUM_INDEX)
    else:
        return _chain_volume(seed, i, gp_shrink_sigmas, source=spec["source"])
    return {"ri": v.ri, "voxel_size_um": np.asarray(v.voxel_size_um), "semantic": v.semantic, "instance": v.instance,
            "classes": json.dumps(v.classes), "kind": kind, "seed": seed}


def _chain_volume(seed: int, i: int, shrink_sigmas: float | None = None, source: str = "gp") -> dict:
    """A make_data-sized phantom through holograms (``source`` "gp": illumination scan,
    "gp_rotation": sample rotation) and the default ``gp`` reconstruction."""
    from holo.segmentation.data import labels_to_grid
    from holo.training.make_data import KINDS, _seen_by_instrument
    from holo.twin.phantoms import make_phantom

    kind = KINDS[i % len(KINDS)]
    ph = make_phantom(kind, shape_zyx=(96, 256, 256), voxel_size_um=(0.2, 0.1, 0.1), medium_index=MEDIUM_INDEX,
                      seed=seed)
    kw = {} if shrink_sigmas is None else {"shrink_sigmas": shrink_sigmas}
    ri, vs = _seen_by_instrument(ph, source, seed, MEDIUM_INDEX, None, None, reconstruct_kw=kw)
    vs = tuple(float(v) for v in vs)
    pv = tuple(float(v) for v in ph.voxel_size_um)
    return {"ri": ri.astype(np.float32), "voxel_size_um": np.asarray(vs),
            "semantic": labels_to_grid(np.asarray(ph.semantic), pv, ri.shape, vs).astype(np.uint8),
            "instance": labels_to_grid(np.asarray(ph.instance), pv, ri.shape, vs).astype(np.int32),
            "classes": json.dumps({int(k): str(v) for k, v in dict(ph.classes).items()}), "kind": kind, "seed": seed}


def cached_volume(cache: Path, condition: str, i: int, log=print, gp_shrink_sigmas: float | None = None) -> dict:
    """Volume i of a condition from the cache, made when missing."""
    spec = CONDITIONS[condition]
    grid = "recon" if spec["grid"] is None else "x".join(f"{g:g}" for g in spec["grid"])
    dense = "dense" if CONDITIONS[condition]["dense"] else "default"
    kappa = "" if gp_shrink_sigmas is None or condition != "gp" else f"_k{gp_shrink_sigmas:g}"
    p = cache / f"{CONDITIONS[condition]['source']}_{dense}_{grid}{kappa}_{CONDITIONS[condition]['seed0'] + i}.npz"
    if not p.exists():
        t0 = time.perf_counter()
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(p, **make_volume(condition, i, gp_shrink_sigmas if condition == "gp" else None))
        log(f"made {p.name} ({time.perf_counter() - t0:.0f} s)")
    d = dict(np.load(p, allow_pickle=False))
    d["classes"] = {int(k): v for k, v in json.loads(str(d["classes"])).items()}
    d["kind"], d["seed"] = str(d["kind"]), int(d["seed"])
    return d


def score_volume(d: dict, weights_dir=None) -> dict:
    """diagnose() on one volume, scored against its truth (``weights_dir``: another weights
    folder, e.g. the shipped one with a post-processing key changed; default the shipped)."""
    from holo.model import Tomogram
    from holo.segmentation import UNCERTAIN, UNKNOWN, diagnose
    from holo.segmentation.train import NUCLEUS_LABELS, dice, instance_ap, matched_pairs

    tomo = Tomogram(ri=d["ri"], voxel_size_um=tuple(d["voxel_size_um"]), medium_index=MEDIUM_INDEX,
                    wavelength_um=WAVELENGTH_UM)
    t0 = time.perf_counter()
    seg, cells, _ = diagnose(tomo, weights_dir=weights_dir)
    seconds = time.perf_counter() - t0
    true_inst, true_sem = d["instance"], d["semantic"]
    pairs = matched_pairs(seg.instance, true_inst)
    by_id = cells.set_index("cell_id")
    n_true = len(np.unique(true_inst[true_inst > 0]))
    reported = {t: str(by_id.loc[p, "class"]) for t, p in pairs.items()}
    top = {t: max((c for c in by_id.columns if c.startswith("p_")), key=lambda c: by_id.loc[p, c])[2:]
           for t, p in pairs.items()}
    reasons = [str(r) for r in cells.get("reason", [])]
    return {"kind": d["kind"], "seed": d["seed"], "n_true": n_true, "n_pred": int(len(cells)),
            "dice_cell": dice(seg.semantic > 0, true_sem > 0),
            "dice_nucleus": dice(np.isin(seg.semantic, NUCLEUS_LABELS), np.isin(true_sem, NUCLEUS_LABELS)),
            "has_nucleus": bool(np.isin(true_sem, NUCLEUS_LABELS).any()),
            "ap50": instance_ap(seg.instance, true_inst), "found": len(pairs),
            "found_correct": sum(reported[t] == d["classes"][t] for t in pairs),
            "found_top_class_right": sum(top[t] == d["classes"][t] for t in pairs),
            "found_uncertain": sum(reported[t] == UNCERTAIN for t in pairs),
            "found_unknown": sum(reported[t] == UNKNOWN for t in pairs),
            "objects_cut_by_edge": sum(r.startswith("cut by the field's edge") for r in reasons),
            "seconds_diagnose": seconds}


def summarise(records: list[dict]) -> dict:
    """Means over volumes (Dice nucleus over volumes with a nucleus) and summed cell counts."""
    nuc = [r["dice_nucleus"] for r in records if r["has_nucleus"]]
    counts = ("n_true", "n_pred", "found", "found_correct", "found_top_class_right", "found_uncertain",
              "found_unknown", "objects_cut_by_edge")
    out = {"n_volumes": len(records), "seeds": sorted(r["seed"] for r in records),
           "dice_cell": float(np.mean([r["dice_cell"] for r in records])),
           "dice_nucleus": float(np.mean(nuc)) if nuc else None, "n_volumes_with_nucleus": len(nuc),
           "ap50": float(np.mean([r["ap50"] for r in records]))}
    out.update({c: int(sum(r[c] for r in records)) for c in counts})
    out["found_correct_fraction"] = out["found_correct"] / max(out["n_true"], 1)
    out["seconds_diagnose_mean"] = float(np.mean([r["seconds_diagnose"] for r in records]))
    return out


def table_row(name: str, s: dict) -> str:
    """One Markdown row of the model card's table."""
    nuc = "—" if s["dice_nucleus"] is None else f"{s['dice_nucleus']:.3f} ({s['n_volumes_with_nucleus']})"
    return (f"| {name} | {s['n_volumes']} ({s['seeds'][0]}–{s['seeds'][-1]}) | {s['dice_cell']:.3f} | {nuc} | "
            f"{s['ap50']:.3f} | {s['found']} / {s['n_true']} | **{s['found_correct']} / {s['n_true']} "
            f"({100 * s['found_correct_fraction']:.0f} %)** | {s['found_uncertain']} / {s['found_unknown']} | "
            f"{s['found_top_class_right']} / {s['n_true']} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    ap.add_argument("--n", type=int, default=None,
                    help="volumes per condition (default: one cycle of kinds, 5 or 4; ≈ 20 CPU-s each)")
    ap.add_argument("--n-gp", type=int, default=4, help="volumes of the gp condition (≈ 2–3 CPU-min each to make)")
    ap.add_argument("--gp-shrink-sigmas", type=float, default=None,
                    help="κ of gp's ℓ1 mode for the gp condition (default: gp's own default; named in the cache file)")
    ap.add_argument("--weights", type=Path, default=None,
                    help="weights folder for diagnose (default: the shipped one), e.g. a copy with a unet.json key changed")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    results = json.loads(a.json.read_text()) if a.json and a.json.exists() else {}
    for c in a.conditions:
        t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        recs = []
        n = a.n_gp if c in ("gp", "rotation") else a.n or (4 if CONDITIONS[c]["dense"] else 5)
        for i in range(n):
            recs.append(score_volume(cached_volume(a.cache, c, i, gp_shrink_sigmas=a.gp_shrink_sigmas), a.weights))
            print(f"{c} {recs[-1]['seed']} {recs[-1]['kind']}: found {recs[-1]['found']}/{recs[-1]['n_true']}, "
                  f"correct {recs[-1]['found_correct']}, AP {recs[-1]['ap50']:.2f}", flush=True)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        s = summarise(recs)
        s["wall_s"] = round(time.perf_counter() - t0, 1)
        s["cpu_s"] = round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1)
        s["volumes"] = recs
        results[c] = s
        print(table_row(c, s), f"[{s['wall_s']} s wall, {s['cpu_s']} s CPU]", flush=True)
        if a.json:
            a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
