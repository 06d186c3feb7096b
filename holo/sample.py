"""One sample through the whole pipeline, written atomically into its own folder.

acquisition (.h5) → reconstruction → segmentation → classification → morphometrics → report;
a tomogram file (TCF, OME-TIFF, OME-Zarr) enters at segmentation.

Outputs in ``OUT/<sample>/``: ``ri.ome.tif``, ``labels.ome.tif`` (semantic) and
``instances.ome.tif`` (or one ``ri.ome.zarr`` holding the RI and both label images), ``cells.csv``, ``report.html`` + ``report.json`` and
``provenance.json``. The folder is built under a temporary name and renamed when complete,
so a failure or an interrupt leaves nothing partial.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from holo.errors import HoloError
from holo.io._atomic import atomic_path
from holo.segmentation import METHODS


@dataclass
class SampleOptions:
    """What to run on each sample (shared by ``holo run``, ``holo demo`` and the batch).

    The default reconstruction is ``"gp"`` (Rytov + Gerchberg–Papoulis non-negativity): the
    shipped U-Net was fine-tuned on it (see ``segmentation/weights/MODEL_CARD.md``)."""

    method: str = "gp"
    iterations: int | None = None
    weight: float | None = None
    seg_method: str = "unet"
    image_format: str = "ome-tiff"
    frame: int = 0
    unet_model: str = "unet"
    #: U-Net without test-time flips (≈ 4× faster; :func:`holo.segmentation.diagnose` ``fast``)
    fast: bool = False

    def __post_init__(self) -> None:
        if self.image_format not in ("ome-tiff", "ome-zarr"):
            raise ValueError(f"image_format must be 'ome-tiff' or 'ome-zarr', got {self.image_format!r}")
        if self.seg_method not in METHODS:
            raise ValueError(f"seg_method must be {' or '.join(repr(m) for m in METHODS)}, got {self.seg_method!r}")
        if self.fast and self.seg_method != "unet":
            raise ValueError(f"fast applies to the U-Net (seg_method 'unet'), not {self.seg_method!r}")
        if self.seg_method == "unet":
            from holo.segmentation.infer import check_unet_name

            try:
                check_unet_name(self.unet_model)
            except ValueError as exc:
                raise ValueError(f"unet_model: {exc}") from None


#: Names of the run's own files and folders in OUT (lower case); no sample is named so.
RUN_FILES = frozenset({"manifest.json", "summary.json", "summary.html", "all_cells.csv", "locks"})


def sample_name(path: str | Path) -> str:
    """Sample name from the file name: the stem without the format's suffixes, made file-safe.

    Characters other than ``A-Za-z0-9._-`` become ``_``; leading and trailing dots go, so a
    name is never ``.``, ``..`` or hidden; an empty name becomes ``sample``; a name of one of
    the run's files (:data:`RUN_FILES`, any case) gets the suffix ``_sample``.
    """
    from holo.io import strip_format_suffix

    name = strip_format_suffix(Path(str(path).rstrip("/")).name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "sample"
    if name.lower() in RUN_FILES:
        name += "_sample"
    return name


def _load_tomogram(path: Path, options: SampleOptions, progress):
    import holo
    from holo.model import Acquisition, Tomogram

    obj = holo.open(path)
    if isinstance(obj, Acquisition):
        from holo.pipeline import reconstruct

        return reconstruct(obj, method=options.method, iterations=options.iterations, weight=options.weight, progress=progress)
    if isinstance(obj, Tomogram):
        if obj.has_time:
            if not 0 <= options.frame < obj.n_times:
                raise HoloError(f"frame {options.frame} out of range (0..{obj.n_times - 1})", path=path, item="frame")
            obj = obj.replace(ri=obj.frame(options.frame), time_step_s=None)
        return obj
    raise HoloError("holds neither an acquisition nor a tomogram", path=path)


def process_sample(
    input_path: str | Path,
    out_dir: str | Path,
    options: SampleOptions | None = None,
    progress: Callable | None = None,
    *,
    name: str | None = None,
) -> dict:
    """Run the whole pipeline on one input and write its outputs atomically.

    The outputs go to ``out_dir/<name>`` (``name`` default :func:`sample_name` of the input;
    the batch passes its disambiguated name). An existing folder there is replaced only if
    holo wrote it (:func:`holo.io._atomic.atomic_path`).

    Returns a JSON-able summary: ``name, input, status ("done"), outputs, n_cells,
    class_counts, seconds``. Raises :class:`HoloError` for bad input (nothing is written).
    """
    from holo.io import save_labels, save_tomogram
    from holo.segmentation import diagnose, write_report

    options = options or SampleOptions()
    input_path = Path(input_path)
    name = name or sample_name(input_path)
    if name != sample_name(name + ".h5") or name.lower() in RUN_FILES:
        raise ValueError(f"name: {name!r} is not a safe sample folder name")
    final = Path(out_dir) / name
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def _step(label, t_start):
        timings[label] = round(time.perf_counter() - t_start, 3)
        return time.perf_counter()

    with atomic_path(final) as tmp:
        tmp.mkdir(parents=True)
        t = time.perf_counter()
        tomo = _load_tomogram(input_path, options, progress)
        t = _step("reconstruction", t)
        seg, cells, chain_timings = diagnose(tomo, method=options.seg_method, name=options.unet_model, progress=progress,
                                             fast=options.fast)
        timings.update(chain_timings)
        cells.insert(0, "sample", name)
        t = time.perf_counter()

        if options.image_format == "ome-tiff":
            save_tomogram(tomo, tmp / "ri.ome.tif")
            save_labels(seg.semantic, tmp / "labels.ome.tif", tomo.voxel_size_um)
            save_labels(seg.instance, tmp / "instances.ome.tif", tomo.voxel_size_um)
        else:  # one store: the RI image with its labels inside
            save_tomogram(tomo, tmp / "ri.ome.zarr", labels={"semantic": seg.semantic, "instances": seg.instance})
        cells.to_csv(tmp / "cells.csv", index=False)
        write_report(tmp, tomo, seg, cells)
        t = _step("writing", t)

        class_counts = {}
        if "class" in cells.columns:
            class_counts = {str(k): int(v) for k, v in cells["class"].value_counts().items()}
        summary = {
            "name": name,
            "input": str(input_path.resolve()),
            "status": "done",
            "n_cells": int(len(cells)),
            "class_counts": class_counts,
            "mean_ri": float(np.nanmean(tomo.frame(0))),
            "outputs": sorted(p.name for p in tmp.iterdir()) + ["provenance.json"],
            "seconds": round(time.perf_counter() - t0, 3),
            "timings_s": timings,
        }
        provenance = {
            "sample": summary,
            "options": asdict(options),
            "tomogram": {k: v for k, v in tomo.provenance.items()},
            "voxel_size_um": list(tomo.voxel_size_um),
        }
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))
    summary["dir"] = str(final)
    return summary
