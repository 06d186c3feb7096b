"""``holo track`` (cells of a time-lapse tomogram → tracks, growth, lineage) and
``holo simulate-timelapse`` (a twin time-lapse with its truth).

``holo track TOMO -o OUT/`` writes into the folder OUT (atomically, nothing partial on
failure): ``tracks.csv`` (one row per cell and frame: track id, parent id, frame, time,
centroid µm, volume, dry mass, mean RI, class), ``growth.csv`` (per track: specific growth
rate 1/h with its standard error and 95 % interval, whether it is measured apart from the
cells it touches, pg/h, doubling time), ``lineage.csv`` and ``labels.ome.zarr`` (T, Z, Y, X cell
labels = track ids, streamed to disk frame by frame so memory holds one frame); the summary
line counts the growth rates fitted and those not identifiable. ``holo simulate-timelapse -o OUT/``
writes ``timelapse.tcf`` (or ``.ome.zarr``/``.ome.tif`` by ``--format``), ``truth_instance.npz``
(T, Z, Y, X labels = track ids) and ``truth_tracks.csv``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

__all__ = ["register", "track_cmd", "simulate_timelapse_cmd"]

_SUFFIX = {"tcf": ".tcf", "ome-zarr": ".ome.zarr", "ome-tiff": ".ome.tif"}


def track_cmd(
    tomogram: Path = typer.Argument(..., help="Time-lapse tomogram (T, Z, Y, X): .tcf, .ome.zarr, .ome.tif."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (tracks.csv, growth.csv, lineage.csv, labels.ome.zarr)."),
    seg_method: str = typer.Option("classic", "--seg-method", help="Per-frame segmentation: classic|unet."),
    classify: bool = typer.Option(False, "--classify", help="Classify every cell (fills the class column)."),
    max_distance: float = typer.Option(10.0, "--max-distance-um", min=0.1, help="Largest move of a cell between frames (µm)."),
    gap: int = typer.Option(2, "--gap-frames", min=0, help="Frames a cell may be missed and keep its track."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary on stdout."),
) -> int:
    """Segment every frame, link the cells over time, fit their dry-mass growth."""
    from holo.cli._progress import progress_bar
    from holo.io._atomic import atomic_path
    from holo.segmentation.report import growth_count_text, growth_counts
    from holo.timelapse import open_time_series, raw_labels_store, track_timelapse, write_timelapse

    if seg_method not in ("classic", "unet"):
        raise typer.BadParameter(f"must be classic or unet, got {seg_method!r}", param_hint="--seg-method")
    tomo = open_time_series(tomogram)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        raw = raw_labels_store(tmp / "raw-labels.zarr", tomo)
        with progress_bar("frames", tomo.n_times) as update:
            res = track_timelapse(tomo, method=seg_method, classify=classify, max_distance_um=max_distance,
                                  gap_frames=gap, progress=update, on_labels=raw.__setitem__)
        write_timelapse(tmp, tomo, res, raw)
        shutil.rmtree(tmp / "raw-labels.zarr")
    summary = {"frames": tomo.n_times, "tracks": int(res.lineage.shape[0]),
               "divisions": int((res.lineage["fate"] == "divided").sum()) if len(res.lineage) else 0,
               **growth_counts(res.growth), "seconds_per_frame": round(res.seconds_per_frame, 3), "out": str(out)}
    print(json.dumps(summary) if as_json else f"{summary['tracks']} tracks, {summary['divisions']} divisions "
          f"over {summary['frames']} frames ({summary['seconds_per_frame']} s/frame); "
          f"{growth_count_text(summary)} → {out}")
    return 0


def simulate_timelapse_cmd(
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    frames: int = typer.Option(12, "--frames", min=1, max=10000, help="Number of frames."),
    interval_s: float = typer.Option(600.0, "--interval-s", min=1.0, help="Seconds between frames."),
    n_cells: int = typer.Option(6, "--cells", min=0, help="Cells in the first frame."),
    size: int = typer.Option(160, "--size", min=32, max=2048, help="Lateral size (voxels) of every frame."),
    depth: int = typer.Option(24, "--depth", min=8, max=512, help="Axial size (voxels)."),
    voxel_um: float = typer.Option(0.5, "--voxel-um", min=0.05, max=5.0, help="Voxel size (µm, isotropic)."),
    image_format: str = typer.Option("tcf", "--format", help="tcf|ome-zarr|ome-tiff."),
    seed: int = typer.Option(0, "--seed", min=0),
) -> int:
    """Simulate a time-lapse of moving, growing, dividing cells as the tomograph sees it."""
    import numpy as np

    from holo.cli._progress import progress_bar
    from holo.io import save_tomogram
    from holo.io._atomic import atomic_path
    from holo.timelapse import simulate_timelapse

    if image_format not in _SUFFIX:
        raise typer.BadParameter(f"must be one of {', '.join(_SUFFIX)}, got {image_format!r}", param_hint="--format")
    with progress_bar("frames", frames) as update:
        tomo, tl, inst = simulate_timelapse(frames, interval_s, n_cells=n_cells, shape_zyx=(depth, size, size),
                                            voxel_size_um=(voxel_um,) * 3, seed=seed, progress=update)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        save_tomogram(tomo, tmp / f"timelapse{_SUFFIX[image_format]}")
        np.savez_compressed(tmp / "truth_instance.npz", instance=inst)
        truth = tl.truth_table()
        truth["growth_rate_per_h"] = truth["track_id"].map({k: v["growth_per_h"] for k, v in tl.tracks.items()})
        truth.to_csv(tmp / "truth_tracks.csv", index=False)
    print(f"{frames} frames, {len(tl.tracks)} true tracks → {out}")
    return 0


def register(app: typer.Typer) -> None:
    """Add ``track`` and ``simulate-timelapse`` to ``app``."""
    app.command("track")(track_cmd)
    app.command("simulate-timelapse")(simulate_timelapse_cmd)
