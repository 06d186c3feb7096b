"""Fit the out-of-distribution model (``novelty.json``) on twin cells as the default chain sees them.

Cells of the training distribution (phantoms of the training seeds of each source, kinds
cycling as in :mod:`holo.training.make_data`) are seen through the instrument — ``otf``: the
transfer function with band-limited noise (seeds 1000 + i); ``gp``: the twin end to end,
simulated holograms reconstructed by Rytov + Gerchberg–Papoulis, the default chain (seeds
3300 + i) — then segmented, classified and measured by the shipped chain
(:func:`holo.segmentation.diagnose` without abstention); every predicted cell that matches a
true cell (IoU > 0.5) contributes its features (:func:`holo.segmentation.novelty.cell_features`)
under its *true* class. The per-class Gaussians are written to ``OUT/novelty.json`` with the
provenance; the cells table to ``OUT/novelty_cells.csv`` when ``--keep-table``.

Usage::

    python -m holo.training.fit_novelty --out segmentation/weights --volumes 30 --gp-volumes 12 --keep-table

A refit with other features needs no new chain run: ``--reuse-table OUT/novelty_cells.csv``
with the same ``--volumes``/``--gp-volumes`` recomputes the features from the kept table (the
table holds every column of :func:`holo.segmentation.measure`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from holo.training.make_data import _seen_by_instrument

__all__ = ["training_cells", "main"]


def _matched_true_class(inst_pred, inst_true, classes_true) -> dict:
    """{predicted id: true class} for predicted cells overlapping one true cell with IoU > 0.5."""
    out = {}
    for p in np.unique(inst_pred[inst_pred > 0]):
        m = inst_pred == p
        t, n = np.unique(inst_true[m], return_counts=True)
        keep = t > 0
        if not keep.any():
            continue
        t, n = t[keep], n[keep]
        k = int(t[np.argmax(n)])
        inter = int(n.max())
        union = int(m.sum() + (inst_true == k).sum() - inter)
        if inter / union > 0.5:
            out[int(p)] = classes_true[k]
    return out


def training_cells(seeds, kinds, *, source: str = "otf", shape_zyx=(96, 256, 256), voxel_size_um=(0.2, 0.1, 0.1),
                   medium_index=1.337, log=print):
    """Cells table (measured by the chain) of the twin volumes of the given seeds, with ``true_class``."""
    import pandas as pd

    from holo.model import Tomogram
    from holo.segmentation import classify, measure, segment
    from holo.segmentation.data import labels_to_grid
    from holo.twin.phantoms import make_phantom

    tables = []
    for seed, kind in zip(seeds, kinds):
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed + 7919)
        ph = make_phantom(kind, shape_zyx=shape_zyx, voxel_size_um=voxel_size_um, medium_index=medium_index, seed=seed)
        ri, vs = _seen_by_instrument(ph, source, seed, ph.medium_index, rng, None)
        tomo = Tomogram(ri=ri, voxel_size_um=vs, medium_index=medium_index, wavelength_um=0.532)
        seg = segment(tomo)
        cells = measure(tomo, seg.semantic, seg.instance, classes=classify(tomo, seg.instance))
        inst_true = labels_to_grid(np.asarray(ph.instance), ph.voxel_size_um, ri.shape, vs)
        truth = _matched_true_class(seg.instance, inst_true, dict(ph.classes))
        cells["true_class"] = [truth.get(int(i), "") for i in cells["cell_id"]]
        cells["seed"] = seed
        cells["source"] = source
        tables.append(cells)
        log(f"{source} seed {seed} {kind}: {len(cells)} cells, {len(truth)} matched, {time.perf_counter() - t0:.1f} s")
    return pd.concat(tables, ignore_index=True)


def main(argv=None) -> int:
    from holo.segmentation.novelty import DEFAULT_QUANTILE, cell_features, fit_class_gaussians
    from holo.training.make_data import KINDS, SPLIT_SEED0

    ap = argparse.ArgumentParser(prog="python -m holo.training.fit_novelty", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--volumes", type=int, default=30, help="otf volumes")
    ap.add_argument("--gp-volumes", type=int, default=12, help="gp (twin end to end) volumes")
    ap.add_argument("--reuse-table", type=Path, default=None, help="cells CSV of an earlier run to add to")
    ap.add_argument("--keep-table", action="store_true")
    a = ap.parse_args(argv)
    import pandas as pd

    tables, seeds = [], {}
    if a.reuse_table is not None:
        tables.append(pd.read_csv(a.reuse_table, keep_default_na=False))
    for source, n in (("otf", a.volumes), ("gp", a.gp_volumes)):
        done = set(tables[0].loc[tables[0]["source"] == source, "seed"]) if tables and "source" in tables[0] else set()
        seed0 = SPLIT_SEED0[("train", source)]
        todo = [seed0 + i for i in range(n) if seed0 + i not in done]
        seeds[source] = [seed0, seed0 + n]
        if todo:
            tables.append(training_cells(todo, [KINDS[(s - seed0) % len(KINDS)] for s in todo], source=source))
    cells = pd.concat(tables, ignore_index=True)
    cells = cells[cells["true_class"] != ""]
    model = fit_class_gaussians(cell_features(cells), cells["true_class"].to_numpy())
    model.update(default_quantile=DEFAULT_QUANTILE, provenance={
        "source": "twin volumes (otf and gp) segmented, classified and measured by the shipped chain",
        "seeds": seeds, "n_cells": int(len(cells)),
        "reused_table": None if a.reuse_table is None else {
            "file": a.reuse_table.name, "rows": int(len(tables[0])),
            "note": "cells table (--keep-table) of an earlier run of this script; features recomputed from its columns"},
        "n_cells_per_source": {k: int(v) for k, v in cells["source"].value_counts().items()},
        "command": "python -m holo.training.fit_novelty " + " ".join(sys.argv[1:] if argv is None else argv)})
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "novelty.json").write_text(json.dumps(model, indent=1))
    if a.keep_table:
        cells.to_csv(a.out / "novelty_cells.csv", index=False)
    print(f"{len(cells)} cells, {len(model['classes'])} classes -> {a.out / 'novelty.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
