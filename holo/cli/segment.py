"""``holo segment``, ``holo classify``, ``holo measure``, ``holo report``, ``holo train``.

Label files: ``-o LABELS.ome.tif`` writes the semantic labels (0 background, 1 cytoplasm,
2 nucleus, 3 nucleolus, 4 lipid droplet) to ``LABELS.ome.tif`` and the cell instances to
``LABELS_instances.ome.tif``; ``-o LABELS.ome.zarr`` stores both (``semantic``,
``instances``) as OME-Zarr labels beside the RI image (added to the store when it exists,
else a new store with the RI is written). ``--labels`` reads either form, and also the
``labels.ome.tif`` + ``instances.ome.tif`` pair of a ``holo run`` output folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from holo.errors import FormatError
from holo.labels import SEMANTIC_NAMES

__all__ = ["register", "read_label_pair", "write_label_pair", "segment_cmd", "classify_cmd", "measure_cmd",
           "report_cmd", "train_cmd"]

#: Largest semantic label value: a label TIFF holding more is taken for cell instances.
_MAX_SEMANTIC = len(SEMANTIC_NAMES) - 1


def _tomogram(path: Path):
    import holo
    from holo.model import Tomogram

    obj = holo.open(path)
    if not isinstance(obj, Tomogram):
        raise FormatError("is not a tomogram (reconstruct the acquisition first: holo reconstruct)", path=path)
    if obj.has_time:
        obj = obj.replace(ri=obj.frame(0), time_step_s=None)
    return obj


def _instances_path(path: Path) -> Path:
    from holo.io import FORMAT_SUFFIXES

    name = path.name
    for suf in FORMAT_SUFFIXES["ome-tiff"]:
        if name.lower().endswith(suf):
            return path.with_name(name[: -len(suf)] + "_instances" + suf)
    return path.with_name(name + "_instances.ome.tif")


def write_label_pair(path: Path, tomo, semantic, instance) -> list[Path]:
    """Write semantic + instance labels (see the module docstring); returns the written paths."""
    from holo.io import output_format, save_labels, save_tomogram

    fmt = output_format(path)
    if fmt == "ome-zarr":
        labels = {"semantic": semantic, "instances": instance}
        if path.exists():
            save_labels(labels, path, tomo.voxel_size_um)
        else:
            save_tomogram(tomo.replace(source=None), path, labels=labels)
        return [path]
    if fmt == "ome-tiff":
        inst_path = _instances_path(path)
        save_labels(semantic, path, tomo.voxel_size_um)
        save_labels(instance, inst_path, tomo.voxel_size_um)
        return [path, inst_path]
    raise typer.BadParameter(f"labels go to .ome.tif or .ome.zarr, not {path.name!r}", param_hint="-o")


def read_label_pair(path: Path, shape_zyx):
    """(semantic uint8, instance int32) from a label path written by :func:`write_label_pair`."""
    import numpy as np
    from scipy import ndimage as ndi

    from holo.io import output_format
    from holo.io.omezarr import read_ome_zarr_labels
    from holo.io.ometiff import read_labels_tiff

    if not path.exists():
        raise FileNotFoundError(2, "no such file", str(path))
    fmt = output_format(path)
    sem = inst = None
    if fmt == "ome-zarr":
        labs = read_ome_zarr_labels(path)
        sem = labs.get("semantic", labs.get("labels"))
        inst = labs.get("instances")
        if sem is None and inst is None:
            raise FormatError("holds no 'semantic' or 'instances' labels", path=path, item="labels")
    elif fmt == "ome-tiff":
        first, _ = read_labels_tiff(path)
        cand = [_instances_path(path)]
        if path.name.lower().startswith("labels."):
            cand.append(path.with_name("instances" + path.name[len("labels"):]))
        other = next((c for c in cand if c.exists()), None)
        if other is not None:
            sem, inst = first, read_labels_tiff(other)[0]
        elif path.name.lower().split(".")[0].endswith("instances") or int(first.max(initial=0)) > _MAX_SEMANTIC:
            inst = first
        else:
            sem = first
    else:
        raise FormatError("labels are read from .ome.tif or .ome.zarr", path=path, item="labels")
    if inst is None:
        inst = ndi.label(np.asarray(sem) > 0, structure=np.ones((3, 3, 3), bool))[0]
    if sem is None:
        sem = (np.asarray(inst) > 0).astype(np.uint8)
    sem, inst = np.asarray(sem).astype(np.uint8), np.asarray(inst).astype(np.int32)
    for arr, item in ((sem, "semantic"), (inst, "instances")):
        if arr.shape != tuple(shape_zyx):
            raise FormatError(f"shape {arr.shape} differs from the tomogram {tuple(shape_zyx)}", path=path, item=item)
    return sem, inst


def _read_cells(path: Path):
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise FormatError(f"not a readable CSV ({exc})", path=path) from None
    if "cell_id" not in df.columns:
        raise FormatError("needs a 'cell_id' column", path=path, item="columns")
    return df


def _write_csv(df, out: Path) -> None:
    from holo.io._atomic import atomic_path

    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)




def _check_segment_options(method: str, model: str, weights: Optional[Path]) -> None:
    from holo.segmentation import METHODS
    from holo.segmentation.infer import check_unet_name

    if method not in METHODS:
        raise typer.BadParameter(f"must be {' or '.join(METHODS)}, got {method!r}", param_hint="--method")
    if method == "unet":
        try:
            check_unet_name(model, weights)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--model") from None


def segment_cmd(
    tomo_path: Path = typer.Argument(..., help="Tomogram (TCF, OME-TIFF, OME-Zarr)."),
    out: Path = typer.Option(..., "-o", "--out", help="LABELS.ome.tif or LABELS.ome.zarr."),
    method: str = typer.Option("unet", "--method", help="unet (shipped 3D U-Net) or classic (threshold + watershed)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Folder with unet.pt/unet.json (default: shipped)."),
    model: str = typer.Option("unet", "--model", help="U-Net weights set of the folder: unet (default, 0.2 µm lateral "
                              "training voxel) or unet_fine (shipped, 0.1 µm: finer small objects such as bacteria, "
                              "about 4x slower)."),
    fast: bool = typer.Option(False, "--fast", help="U-Net without test-time flips: about 4x faster, slightly fewer "
                              "small cells found (model card, fast mode)."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
) -> int:
    """3D semantic + instance segmentation of a tomogram."""
    from holo.segmentation import segment

    _check_segment_options(method, model, weights)
    if fast and method != "unet":
        raise typer.BadParameter(f"applies to the U-Net (--method unet), not {method!r}", param_hint="--fast")
    tomo = _tomogram(tomo_path)
    seg = segment(tomo, method=method, name=model, weights_dir=weights, **({"fast": True} if fast else {}))
    paths = write_label_pair(out, tomo, seg.semantic, seg.instance)
    summary = {"cells": seg.n_cells, "method": method, **({"model": model, "fast": fast} if method == "unet" else {}),
               "outputs": [str(p) for p in paths]}
    if as_json:
        print(json.dumps(summary))
    else:
        typer.echo(f"{seg.n_cells} cells ({method}) -> {', '.join(str(p) for p in paths)}", err=True)
    return 0


def classify_cmd(
    tomo_path: Path = typer.Argument(..., help="Tomogram."),
    labels: Path = typer.Option(..., "--labels", help="Labels written by holo segment."),
    out: Path = typer.Option(..., "-o", "--out", help="cells.csv"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Folder with classifier.pt/.json (default: shipped)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Confidence below which a cell is 'uncertain' (default 0.6)."),
) -> int:
    """Classify every cell (calibrated probabilities; low confidence -> 'uncertain')."""
    from holo.segmentation import classify

    if threshold is not None and not 0 <= threshold <= 1:
        raise typer.BadParameter(f"must be in [0, 1], got {threshold}", param_hint="--threshold")
    tomo = _tomogram(tomo_path)
    _, inst = read_label_pair(labels, tomo.shape_zyx)
    df = classify(tomo, inst, weights_dir=weights, threshold=threshold)
    _write_csv(df, out)
    counts = df["class"].value_counts().to_dict() if len(df) else {}
    typer.echo(f"{len(df)} cells classified: {counts} -> {out}", err=True)
    return 0


def measure_cmd(
    tomo_path: Path = typer.Argument(..., help="Tomogram."),
    labels: Path = typer.Option(..., "--labels", help="Labels written by holo segment."),
    out: Path = typer.Option(..., "-o", "--out", help="cells.csv"),
    classes: Optional[Path] = typer.Option(None, "--classes", help="cells.csv of holo classify, joined on cell_id."),
) -> int:
    """Per-cell morphometrics (volume, area, sphericity, RI, dry mass, organelles) as CSV."""
    from holo.segmentation import measure

    tomo = _tomogram(tomo_path)
    sem, inst = read_label_pair(labels, tomo.shape_zyx)
    cls = _read_cells(classes) if classes is not None else None
    df = measure(tomo, sem, inst, classes=cls)
    _write_csv(df, out)
    typer.echo(f"{len(df)} cells measured -> {out}", err=True)
    return 0


def report_cmd(
    tomo_path: Path = typer.Argument(..., help="Tomogram."),
    labels: Path = typer.Option(..., "--labels", help="Labels written by holo segment."),
    cells: Path = typer.Option(..., "--cells", help="cells.csv of holo measure (or classify)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (report.html + report.json)."),
) -> int:
    """HTML diagnostic report (MIPs, label overlays, class counts, histograms) + JSON."""
    from holo.segmentation import Segmentation, write_report

    tomo = _tomogram(tomo_path)
    sem, inst = read_label_pair(labels, tomo.shape_zyx)
    df = _read_cells(cells)
    html = write_report(out, tomo, Segmentation(sem, inst, method="file"), df)
    typer.echo(f"report -> {html}", err=True)
    return 0


def train_cmd(
    data: Path = typer.Option(..., "--data", help="Folder of annotated volumes (layout: holo.segmentation.data.load_user_folder)."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for the new weights (use with --weights)."),
    init: str = typer.Option("shipped", "--init", help="shipped (fine-tune) or scratch."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Maximum epochs (early stopping on validation)."),
    val_fraction: float = typer.Option(0.25, "--val-fraction", help="Fraction of volumes kept for validation."),
    steps: int = typer.Option(30, "--steps", min=1, help="Optimiser steps per U-Net epoch."),
    seed: int = typer.Option(0, "--seed"),
) -> int:
    """Fine-tune (or train) the U-Net and classifier on your annotated volumes.

    DATA holds NAME.tcf|.ome.tif|.ome.zarr with NAME_semantic.ome.tif and/or
    NAME_instance.ome.tif (same shape), and optionally NAME_cells.csv (cell_id,class).
    """
    from holo.segmentation.train import finetune

    if init not in ("shipped", "scratch"):
        raise typer.BadParameter(f"must be shipped or scratch, got {init!r}", param_hint="--init")
    if not 0 < val_fraction < 1:
        raise typer.BadParameter(f"must be in (0, 1), got {val_fraction}", param_hint="--val-fraction")
    result = finetune(data, out, init=init, epochs=epochs, val_fraction=val_fraction, steps_per_epoch=steps,
                      seed=seed, log=lambda s: typer.echo(s, err=True))
    typer.echo(json.dumps(result["metrics"]))
    return 0


def register(app: typer.Typer) -> None:
    """Add ``segment``, ``classify``, ``measure``, ``report`` and ``train`` to ``app``."""
    app.command("segment")(segment_cmd)
    app.command("classify")(classify_cmd)
    app.command("measure")(measure_cmd)
    app.command("report")(report_cmd)
    app.command("train")(train_cmd)
