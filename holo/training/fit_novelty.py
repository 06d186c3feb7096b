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

Samplings. A cell's measured features (volume, sphericity, RI texture, the mass outside its
tight mask) depend on the grid the tomogram is sampled on: the same cells on a Tomocube HT-2H
grid (0.839 × 0.196 × 0.196 µm) have a smoother RI and a blunter mask than on the twin's
0.2 × 0.1 × 0.1 µm grid. ``--grids`` adds the ``otf`` cells of the same training seeds seen
on other grids (:func:`holo.training.make_data.phantom_volume` with ``train_voxel_size_um``),
so that the Gaussians cover every sampling the chain supports and a user need not choose a
model. Only training seeds are used (``SPLIT_SEED0[("train", …)]``), never held-out ones.

Usage::

    python -m holo.training.fit_novelty --out segmentation/weights --volumes 30 --gp-volumes 12 \
        --grids 0.4x0.2x0.2 0.839x0.196x0.196 0.6x0.15x0.15 --grid-volumes 10 --keep-table

A refit with other features needs no new chain run: ``--cache DIR`` keeps one cells table per
volume (every column of :func:`holo.segmentation.measure`) and a rerun with the same folder
reuses them; without it, every volume is made and measured anew.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from holo.training.make_data import _seen_by_instrument, phantom_volume

__all__ = ["training_cells", "main"]


def _matched_true_class(inst_pred, inst_true, classes_true) -> dict:
    """{predicted id: true class} for predicted cells overlapping one true cell with IoU > 0.5."""
    from holo.segmentation.train import matched_pairs

    return {p: classes_true[t] for t, p in matched_pairs(inst_pred, inst_true).items()}


def _seen_volume(seed: int, kind: str, source: str, grid_um, shape_zyx, voxel_size_um, medium_index):
    """(RI, its voxel size, true instances on that grid, {id: class}) of one training phantom
    seen through ``source``, on its own grid (``grid_um`` None) or brought to ``grid_um``."""
    from holo.segmentation.data import labels_to_grid
    from holo.twin.phantoms import make_phantom

    if grid_um is not None:
        v = phantom_volume(seed, kind=kind, source=source, train_voxel_size_um=tuple(grid_um),
                           phantom_shape_zyx=shape_zyx, phantom_voxel_size_um=voxel_size_um, medium_index=medium_index)
        return v.ri, tuple(v.voxel_size_um), v.instance, dict(v.classes)
    rng = np.random.default_rng(seed + 7919)
    ph = make_phantom(kind, shape_zyx=shape_zyx, voxel_size_um=voxel_size_um, medium_index=medium_index, seed=seed)
    ri, vs = _seen_by_instrument(ph, source, seed, ph.medium_index, rng, None)
    inst_true = labels_to_grid(np.asarray(ph.instance), ph.voxel_size_um, ri.shape, vs)
    return ri, vs, inst_true, dict(ph.classes)


def training_cells(seeds, kinds, *, source: str = "otf", grid_um=None, shape_zyx=(96, 256, 256),
                   voxel_size_um=(0.2, 0.1, 0.1), medium_index=1.337, weights_dir=None, log=print):
    """Cells table (measured by the chain) of the twin volumes of the given seeds, with ``true_class``
    and ``grid`` (the sampling the chain saw, "z x y x x" µm). ``weights_dir``: the networks'
    folder (default: the shipped one)."""
    import pandas as pd

    from holo.model import Tomogram
    from holo.segmentation import classify, measure, segment

    tables = []
    for seed, kind in zip(seeds, kinds):
        t0 = time.perf_counter()
        ri, vs, inst_true, classes = _seen_volume(seed, kind, source, grid_um, shape_zyx, voxel_size_um, medium_index)
        tomo = Tomogram(ri=ri, voxel_size_um=vs, medium_index=medium_index, wavelength_um=0.532)
        seg = segment(tomo, weights_dir=weights_dir)
        cells = measure(tomo, seg.semantic, seg.instance, classes=classify(tomo, seg.instance, weights_dir=weights_dir))
        truth = _matched_true_class(seg.instance, inst_true, classes)
        cells["true_class"] = [truth.get(int(i), "") for i in cells["cell_id"]]
        cells["seed"] = seed
        cells["source"] = source
        cells["grid"] = _grid_name(vs)
        tables.append(cells)
        log(f"{source} {_grid_name(vs)} seed {seed} {kind}: {len(cells)} cells, {len(truth)} matched, "
            f"{time.perf_counter() - t0:.1f} s")
    return pd.concat(tables, ignore_index=True)


def _grid_name(voxel_size_um) -> str:
    return "x".join(f"{float(v):.3g}" for v in voxel_size_um)


def _parse_grid(text: str) -> tuple[float, float, float]:
    parts = tuple(float(v) for v in text.lower().split("x"))
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"grid must be 'dz x dy x dx' in µm, e.g. 0.839x0.196x0.196; got {text!r}")
    return parts


def _cached_cells(cache: Path | None, source: str, grid_um, seed: int, kind: str, weights_dir=None):
    """Cells table of one training volume, from ``cache`` (one CSV per source, grid and seed,
    written by this function) or made by :func:`training_cells`."""
    import pandas as pd

    name = f"{source}_{'native' if grid_um is None else _grid_name(grid_um)}_{seed}.csv"
    if cache is not None and (cache / name).is_file():
        return pd.read_csv(cache / name, keep_default_na=False)
    cells = training_cells([seed], [kind], source=source, grid_um=grid_um, weights_dir=weights_dir)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        cells.to_csv(cache / name, index=False)
    return cells


def _plan(a) -> list[tuple[str, object, int]]:
    """(source, grid or None, seed) of every training volume of the fit (training seeds only)."""
    from holo.training.make_data import SPLIT_SEED0

    plan = [("otf", None, SPLIT_SEED0[("train", "otf")] + i) for i in range(a.volumes)]
    plan += [("gp", None, SPLIT_SEED0[("train", "gp")] + i) for i in range(a.gp_volumes)]
    plan += [("otf", g, SPLIT_SEED0[("train", "otf")] + i) for g in a.grids for i in range(a.grid_volumes)]
    plan += [("gp_rotation", None, SPLIT_SEED0[("train", "gp_rotation")] + i) for i in range(a.rotation_volumes)]
    return plan


def main(argv=None) -> int:
    from holo.segmentation.novelty import DEFAULT_QUANTILE, cell_features, fit_class_gaussians
    from holo.training.make_data import KINDS, SPLIT_SEED0

    ap = argparse.ArgumentParser(prog="python -m holo.training.fit_novelty", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--volumes", type=int, default=30, help="otf volumes on the phantom's own grid")
    ap.add_argument("--gp-volumes", type=int, default=12, help="gp (twin end to end) volumes")
    ap.add_argument("--rotation-volumes", type=int, default=0,
                    help="gp volumes of the same training phantoms acquired by sample rotation (missing cone about Y)")
    ap.add_argument("--grids", type=_parse_grid, nargs="*", default=[],
                    help="further samplings 'dz x dy x dx' (µm) the otf volumes are seen on")
    ap.add_argument("--grid-volumes", type=int, default=10, help="otf volumes per grid of --grids")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder of per-volume cells tables (made when missing; a rerun reuses them)")
    ap.add_argument("--keep-table", action="store_true")
    ap.add_argument("--weights", type=Path, default=None,
                    help="networks' folder the chain runs with (default: the shipped one); OUT gets novelty.json only")
    a = ap.parse_args(argv)
    import pandas as pd

    t0 = time.perf_counter()
    plan = _plan(a)
    tables = [_cached_cells(a.cache, src, g, seed, KINDS[(seed - SPLIT_SEED0[("train", src)]) % len(KINDS)],
                            a.weights)
              for src, g, seed in plan]
    cells = pd.concat(tables, ignore_index=True)
    cells = cells[cells["true_class"] != ""]
    model = fit_class_gaussians(cell_features(cells), cells["true_class"].to_numpy())
    seeds = {}
    for src, g, seed in plan:
        seeds.setdefault(f"{src} {'native' if g is None else _grid_name(g)}", []).append(seed)
    model.update(default_quantile=DEFAULT_QUANTILE, provenance={
        "source": "training-seed twin volumes (otf on the phantom's grid and on --grids, gp on the reconstruction's "
                  "grid) segmented, classified and measured by the shipped chain; matched cells under their true class",
        "seeds": {k: [min(v), max(v) + 1] for k, v in seeds.items()}, "n_cells": int(len(cells)),
        "n_cells_per_source_and_grid": {f"{s} {g}": int(n)
                                        for (s, g), n in cells.groupby(["source", "grid"]).size().items()},
        "command": "python -m holo.training.fit_novelty " + " ".join(sys.argv[1:] if argv is None else argv),
        "note": "every input is made by the command itself from the twin (a --cache folder only saves reruns)"})
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "novelty.json").write_text(json.dumps(model, indent=1))
    if a.keep_table:
        cells.to_csv(a.out / "novelty_cells.csv", index=False)
    print(f"{len(cells)} cells, {len(model['classes'])} classes -> {a.out / 'novelty.json'} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
