"""The built-in default job: a simulated mixed-cell acquisition through the whole pipeline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from holo.reconstruction.methods import DEFAULT_METHOD
from holo.sample import SampleOptions, process_sample

#: Phantom voxel (µm) used by the demo; the twin's BPM runs on this grid.
DEMO_VOXEL_SIZE_UM = 0.2


#: Notes of :func:`holo.segmentation.diagnose`'s progress (the stage after reconstruction).
_DIAGNOSIS_NOTES = ("segmenting", "classifying", "measuring")
_DEMO_STAGES = ("phantom", "simulation", "reconstruction", "segmentation and measurement", "report")


def _stage_reporter(progress: Callable | None) -> Callable:
    """``show(i, note)``: the bar at stage ``i`` of :data:`_DEMO_STAGES` with the stage's
    name and what runs inside it (so the bar never sits still on a finished stage)."""

    def show(i: int, note: str) -> None:
        if progress:
            label = _DEMO_STAGES[min(i, len(_DEMO_STAGES) - 1)]
            progress(i, len(_DEMO_STAGES) - 1, note=f"{label}: {note}" if note != "done" else "done")

    return show


def run_demo(
    out_dir: str | Path = "holo-demo",
    *,
    seed: int = 0,
    size: int = 384,
    n_angles: int = 49,
    method: str = DEFAULT_METHOD,
    progress: Callable | None = None,
) -> dict:
    """Simulate, write and process a small mixed-cell acquisition.

    Returns a summary with the paths of the acquisition, the sample folder and the report,
    and one line per stage with its time.
    """
    from holo.io.acquisition import write_acquisition
    from holo.twin.acquire import phantom_grid_for_frame, simulate_acquisition
    from holo.twin.phantoms import make_phantom

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages: list[str] = []
    show = _stage_reporter(progress)

    t0 = time.perf_counter()
    show(0, "phantom")
    (ny, nx), voxel_size_um, _ = phantom_grid_for_frame((size, size), voxel_size_um=DEMO_VOXEL_SIZE_UM)
    phantom = make_phantom("mixed", shape_zyx=(64, ny, nx), voxel_size_um=(voxel_size_um,) * 3, seed=seed)
    show(1, f"simulating {n_angles} holograms")
    acq = simulate_acquisition(phantom, n_angles=n_angles, seed=seed)
    acq_path = out / "demo_acquisition.h5"
    write_acquisition(acq_path, acq)
    t1 = time.perf_counter()
    stages.append(
        f"simulated {acq.n_frames} holograms of {acq.frame_shape[0]}×{acq.frame_shape[1]} px "
        f"({len(phantom.classes)} cells: {', '.join(sorted(set(phantom.classes.values())))}) in {t1 - t0:.1f} s"
    )
    show(2, f"reconstructing ({method})")

    def inner(done, total, note=""):
        diagnosis = str(note).split(" ")[0] in _DIAGNOSIS_NOTES or str(note).endswith(" cells")
        show(3 if diagnosis else 2, f"{note} ({done}/{total})" if total else str(note))

    summary = process_sample(acq_path, out, SampleOptions(method=method), progress=inner)
    show(4, "done")
    for stage, secs in summary.get("timings_s", {}).items():
        stages.append(f"{stage}: {secs:.1f} s")
    stages.append(f"{summary['n_cells']} cells found: {summary['class_counts']}")
    return {
        "acquisition": str(acq_path),
        "sample_dir": summary["dir"],
        "report": str(Path(summary["dir"]) / "report.html"),
        "n_cells": summary["n_cells"],
        "class_counts": summary["class_counts"],
        "truth_classes": {int(k): v for k, v in phantom.classes.items()},
        "stages": stages,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def open_in_napari(summary: dict) -> None:  # pragma: no cover - interactive
    """Open the demo's RI and labels in a napari viewer (blocks until closed)."""
    import napari

    sample = Path(summary["sample_dir"])
    viewer = napari.Viewer()
    viewer.open(str(sample / "ri.ome.tif"), plugin="holo")
    viewer.open(str(sample / "labels.ome.tif"), plugin="holo")
    napari.run()
