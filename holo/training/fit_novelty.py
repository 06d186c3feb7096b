"""Fit the out-of-distribution model (``novelty.json``) on twin cells as the default chain sees them.

Cells of the training distribution (phantoms of the ``otf`` training seeds, 1000 + i, kinds
cycling as in :mod:`holo.training.make_data`) are seen through the instrument's transfer
function with band-limited noise, segmented, classified and measured by the shipped chain
(:func:`holo.segmentation.diagnose` without abstention); every predicted cell that matches a
true cell (IoU > 0.5) contributes its features (:func:`holo.segmentation.novelty.cell_features`)
under its *true* class. The per-class Gaussians are written to ``OUT/novelty.json`` with the
provenance; the cells table to ``OUT/novelty_cells.csv`` when ``--keep-table``.

Usage::

    python -m holo.training.fit_novelty --out segmentation/weights --volumes 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

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


def training_cells(seeds, kinds, *, shape_zyx=(96, 256, 256), voxel_size_um=(0.2, 0.1, 0.1), medium_index=1.337,
                   log=print):
    """Cells table (measured by the chain) of the twin volumes of the given seeds, with ``true_class``."""
    import pandas as pd

    from holo.model import Tomogram
    from holo.segmentation import classify, measure, segment
    from holo.segmentation.data import apply_otf
    from holo.twin.phantoms import make_phantom

    tables = []
    for seed, kind in zip(seeds, kinds):
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed + 7919)
        ph = make_phantom(kind, shape_zyx=shape_zyx, voxel_size_um=voxel_size_um, medium_index=medium_index, seed=seed)
        ri = apply_otf(ph.ri, ph.voxel_size_um, medium_index, rng=rng, noise_ri=float(rng.uniform(0.001, 0.004)))
        tomo = Tomogram(ri=ri, voxel_size_um=voxel_size_um, medium_index=medium_index, wavelength_um=0.532)
        seg = segment(tomo)
        cells = measure(tomo, seg.semantic, seg.instance, classes=classify(tomo, seg.instance))
        truth = _matched_true_class(seg.instance, np.asarray(ph.instance), dict(ph.classes))
        cells["true_class"] = [truth.get(int(i), "") for i in cells["cell_id"]]
        cells["seed"] = seed
        tables.append(cells)
        log(f"seed {seed} {kind}: {len(cells)} cells, {len(truth)} matched, {time.perf_counter() - t0:.1f} s")
    return pd.concat(tables, ignore_index=True)


def main(argv=None) -> int:
    from holo.segmentation.novelty import DEFAULT_QUANTILE, cell_features, fit_class_gaussians
    from holo.training.make_data import KINDS, SPLIT_SEED0

    ap = argparse.ArgumentParser(prog="python -m holo.training.fit_novelty", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--volumes", type=int, default=40)
    ap.add_argument("--keep-table", action="store_true")
    a = ap.parse_args(argv)
    seed0 = SPLIT_SEED0[("train", "otf")]
    seeds = [seed0 + i for i in range(a.volumes)]
    cells = training_cells(seeds, [KINDS[i % len(KINDS)] for i in range(a.volumes)])
    cells = cells[cells["true_class"] != ""]
    model = fit_class_gaussians(cell_features(cells), cells["true_class"].to_numpy())
    model.update(default_quantile=DEFAULT_QUANTILE, provenance={
        "source": "otf twin volumes segmented, classified and measured by the shipped chain",
        "seeds": [seeds[0], seeds[-1] + 1], "n_cells": int(len(cells)),
        "command": "python -m holo.training.fit_novelty " + " ".join(sys.argv[1:] if argv is None else argv)})
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "novelty.json").write_text(json.dumps(model, indent=1))
    if a.keep_table:
        cells.to_csv(a.out / "novelty_cells.csv", index=False)
    print(f"{len(cells)} cells, {len(model['classes'])} classes -> {a.out / 'novelty.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
