"""Single-hologram quantitative phase imaging, end to end: ``holo phase`` and the napari widget.

hologram (+ background) → phase and OPD maps (:func:`holo.reconstruction.fields.qpi.hologram_phase`)
→ 2D cells (:func:`holo.segmentation.cells2d.segment_cells_2d`) → per-cell projected area, dry
mass and phase volume (:func:`holo.segmentation.cells2d.measure_cells_2d`) → ``OUT/``:

* ``phase.ome.tif``: float32 (C=2, Y, X), channels ``phase_rad`` and ``opd_um``, physical
  pixel size in µm;
* ``labels.ome.tif``: int32 cell labels (Y, X) on the same grid;
* ``cells.csv``: one row per cell;
* ``phase.json``: optics, carrier, sideband and the run's numbers.

Each file is written atomically; nothing else in ``OUT/`` is touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from holo.errors import ValidationError

__all__ = ["QPIResult", "analyse_hologram", "write_qpi", "read_frame"]


@dataclass
class QPIResult:
    """Phase map, cell labels and the per-cell table of one hologram."""

    phase_map: object  # holo.reconstruction.fields.qpi.PhaseMap
    labels: np.ndarray
    cells: object  # pandas.DataFrame


def read_frame(path: str | Path) -> np.ndarray:
    """One camera frame (Y, X) from a TIFF/PNG file (the first page of a stack is refused:
    a stack holds several holograms)."""
    from holo.io.camera import read_frames

    arr = read_frames(Path(path))
    if arr.shape[0] != 1:
        raise ValidationError(f"holds {arr.shape[0]} frames; give one hologram", path=path, item="frames")
    return arr[0]


def analyse_hologram(
    hologram,
    background=None,
    *,
    pixel_size_um: float,
    wavelength_um: float,
    objective_na: float | None = None,
    radius_fraction: float = 0.5,
    min_area_um2: float = 10.0,
) -> QPIResult:
    """Phase, cells and per-cell numbers of one hologram (module docstring).

    The dry-mass integrals take each cell's share within one resolution length of its mask:
    λ/NA, or 1/R (the sideband radius R) when the NA is not known.
    """
    from holo.reconstruction.fields.qpi import hologram_phase
    from holo.segmentation.cells2d import measure_cells_2d, segment_cells_2d

    pm = hologram_phase(
        hologram, background, pixel_size_um=pixel_size_um, wavelength_um=wavelength_um,
        objective_na=objective_na, radius_fraction=radius_fraction,
    )
    labels = segment_cells_2d(pm.phase, pm.pixel_size_um, background=~pm.object_mask, min_area_um2=min_area_um2)
    margin_px = int(np.ceil(1.0 / (pm.radius_cycles_per_um * pm.pixel_size_um)))
    cells = measure_cells_2d(pm.phase, labels, pm.pixel_size_um, pm.wavelength_um, margin_px=margin_px)
    return QPIResult(pm, labels, cells)


def _write_ome(path: Path, data: np.ndarray, pixel_size_um: float, axes: str, channels: list[str] | None = None) -> None:
    import tifffile

    from holo.io._atomic import atomic_path

    meta = {"axes": axes, "PhysicalSizeX": pixel_size_um, "PhysicalSizeY": pixel_size_um,
            "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
    if channels:
        meta["Channel"] = {"Name": channels}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, ome=True, metadata=meta)


def write_qpi(result: QPIResult, out_dir: str | Path, *, source: str | None = None) -> dict:
    """Write ``phase.ome.tif``, ``labels.ome.tif``, ``cells.csv`` and ``phase.json`` into
    ``out_dir`` (each atomically); returns the summary written to ``phase.json``."""
    from holo.io._atomic import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pm = result.phase_map
    stack = np.stack([pm.phase, pm.opd_um]).astype(np.float32)
    _write_ome(out / "phase.ome.tif", stack, pm.pixel_size_um, "CYX", ["phase_rad", "opd_um"])
    _write_ome(out / "labels.ome.tif", result.labels.astype(np.int32), pm.pixel_size_um, "YX")
    with atomic_path(out / "cells.csv") as tmp:
        result.cells.to_csv(tmp, index=False)
    summary = {
        "source": source, "pixel_size_um": pm.pixel_size_um, "wavelength_um": pm.wavelength_um,
        "carrier_cycles_per_um": list(pm.carrier_cycles_per_um), "radius_cycles_per_um": pm.radius_cycles_per_um,
        "n_cells": int(len(result.cells)), "total_dry_mass_pg": float(result.cells["dry_mass_pg"].sum()) if len(result.cells) else 0.0,
        **pm.metadata,
    }
    with atomic_path(out / "phase.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
