"""Abstention ("unknown") on the twin's unseen object types and on known classes.

Two steps, so that novelty models can be compared without rerunning the chain:

1. ``collect OUT.csv SPEC...``: each SPEC ``condition:first_seed:n`` (conditions: ``adherent``,
   ``hl60_like``, ``debris`` of :mod:`holo.twin._unseen`, ``known`` = default twin volumes,
   kinds cycling as in :mod:`holo.training.make_data`; a suffix ``@S`` declares the tomogram at
   S × its true voxel size, the wrong-pixel-size case, e.g. ``known@1.39``) is seen through the ``otf`` route,
   segmented, classified and measured by the shipped chain (``diagnose(fast=True)``, no
   abstention); each cell's row gets its matched true class (IoU > 0.5, '' when none).
2. ``evaluate OUT.csv MODEL.json...``: per condition, fraction of cells (unseen types: every
   predicted object, matched or a fragment) called ``unknown``; on known classes, the
   correctly classed cells that abstention turns ``unknown``.

Usage::

    python benchmarks/eval_novelty_unseen.py collect /tmp/heldout.csv adherent:9800:4 known:9000:5 known@1.39:9000:5
    python benchmarks/eval_novelty_unseen.py evaluate /tmp/heldout.csv segmentation/weights/novelty.json

``collect OUT.csv --weights DIR SPEC...`` runs the chain with another weights folder.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd

UNSEEN = {
    "hl60_like": dict(shape_zyx=(64, 128, 128), voxel_size_um=0.2),
    "adherent": dict(shape_zyx=(40, 240, 240), voxel_size_um=0.2, n_cells=1),
    "debris": dict(shape_zyx=(48, 128, 128), voxel_size_um=0.2, n_cells=6),
}


def _phantom(condition: str, seed: int):
    from holo.training.make_data import KINDS, SPLIT_SEED0
    from holo.twin.phantoms import make_phantom

    if condition == "known":
        kind = KINDS[(seed - SPLIT_SEED0[("test", "otf")]) % len(KINDS)]
        return make_phantom(kind, shape_zyx=(96, 256, 256), voxel_size_um=(0.2, 0.1, 0.1), medium_index=1.337, seed=seed)
    return make_phantom(condition, **UNSEEN[condition], seed=seed)


def collect(out_csv: str, specs, weights_dir=None) -> pd.DataFrame:
    from holo.model import Tomogram
    from holo.segmentation import diagnose
    from holo.segmentation.data import labels_to_grid
    from holo.training.fit_novelty import _matched_true_class
    from holo.training.make_data import _seen_by_instrument

    tables = []
    for spec in specs:
        condition, seed0, n = spec.split(":")
        kind, _, scale = condition.partition("@")
        for seed in range(int(seed0), int(seed0) + int(n)):
            t0 = time.perf_counter()
            ph = _phantom(kind, seed)
            ri, vs = _seen_by_instrument(ph, "otf", seed, ph.medium_index, np.random.default_rng(seed + 7919), None)
            declared = tuple(float(scale or 1) * v for v in vs)
            tomo = Tomogram(ri=ri, voxel_size_um=declared, medium_index=ph.medium_index, wavelength_um=0.532)
            d = diagnose(tomo, fast=True, novelty_quantile=None, max_edge_cut=None, weights_dir=weights_dir)
            truth = _matched_true_class(d.segmentation.instance,
                                        labels_to_grid(np.asarray(ph.instance), ph.voxel_size_um, ri.shape, vs),
                                        dict(ph.classes))
            cells = d.cells.copy()
            cells["true_class"] = [truth.get(int(i), "") for i in cells["cell_id"]]
            cells["cond"], cells["seed"] = condition, seed
            tables.append(cells)
            print(f"{condition} {seed}: {len(cells)} objects, {len(truth)} matched, {time.perf_counter() - t0:.0f} s",
                  flush=True)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out_csv, index=False)
    return table


def evaluate(table: pd.DataFrame, model: dict) -> dict:
    from holo.labels import UNKNOWN
    from holo.segmentation.novelty import abstain

    out = abstain(table, model)
    res = {}
    for condition, t in out.groupby("cond"):
        before = table.loc[t.index]
        if condition == "known":
            ok = before["class"] == before["true_class"]
            res[condition] = {"correct_before": int(ok.sum()),
                              "correct_made_unknown": int((ok & (t["class"] == UNKNOWN)).sum()),
                              "all_cells_unknown": f"{int((t['class'] == UNKNOWN).sum())}/{len(t)}"}
        else:
            res[condition] = {"objects": len(t), "unknown": int((t["class"] == UNKNOWN).sum()),
                              "matched_to_the_object": int((t["true_class"] != "").sum()),
                              "reasons": sorted(set(t.loc[t["class"] == UNKNOWN, "reason"].str.split(" unlike").str[0]))}
    return res


def main(argv) -> int:
    if argv[0] == "collect":
        weights = argv[3] if argv[2:3] == ["--weights"] else None
        collect(argv[1], argv[4:] if weights else argv[2:], weights)
    elif argv[0] == "evaluate":
        table = pd.read_csv(argv[1], keep_default_na=False)
        for path in argv[2:]:
            print(path, json.dumps(evaluate(table, json.loads(open(path).read())), indent=1))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
