"""``holo import FRAMES -o ACQ.h5``: camera frames (folder, TIFF stack or raw off-axis HDF5) → acquisition ``.h5``.

Optics come from a sidecar (``optics.json``/``.yaml`` in the folder, ``<stem>.json`` beside a
stack, or ``--sidecar``) and/or options, options winning (:mod:`holo.io.camera`). Illumination
NAs are measured from the holograms and background when not given
(:func:`holo.importing.estimate_illumination`). Output is atomic; a bad input gives one line
naming the file and the item and exit 1; a bad command line exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

__all__ = ["register", "import_cmd"]


def _optics(**kw) -> dict:
    """Options given on the command line, as sidecar keys (None for those not given)."""
    if kw["pixel_size_um"] is not None and (kw["camera_pixel_um"] is not None or kw["magnification"] is not None):
        raise typer.BadParameter("give --pixel-size-um or --camera-pixel-um with --magnification, not both", param_hint="--pixel-size-um")
    if (kw["camera_pixel_um"] is None) != (kw["magnification"] is None):
        raise typer.BadParameter("--camera-pixel-um and --magnification go together", param_hint="--magnification")
    if kw["illumination_na"] is not None and kw["angles"] is not None:
        raise typer.BadParameter("--illumination-na is for illumination scans, --angles for sample rotation", param_hint="--angles")
    for key in ("illumination_na", "angles"):
        if kw[key] is not None:
            kw[key] = str(kw[key])
    return kw


def import_cmd(
    frames: Path = typer.Argument(..., help="Folder of hologram frames (TIFF/PNG), a multi-page TIFF stack or a raw off-axis hologram HDF5 (qpformat layout)."),
    out: Path = typer.Option(..., "--out", "-o", help="Acquisition file to write (.h5)."),
    background: Path | None = typer.Option(None, "--background", help="Background frames: folder, stack or one frame."),
    sidecar: Path | None = typer.Option(None, "--sidecar", help="Optics file (JSON or YAML); default optics.json/yaml in the folder."),
    wavelength_um: float | None = typer.Option(None, "--wavelength-um", help="Vacuum wavelength, µm."),
    pixel_size_um: float | None = typer.Option(None, "--pixel-size-um", help="Camera pixel at the sample plane, µm."),
    camera_pixel_um: float | None = typer.Option(None, "--camera-pixel-um", help="Camera pixel pitch, µm (with --magnification)."),
    magnification: float | None = typer.Option(None, "--magnification", help="Total magnification camera/sample."),
    medium_index: float | None = typer.Option(None, "--medium-index", help="RI of the medium."),
    objective_na: float | None = typer.Option(None, "--na", help="Detection NA."),
    geometry: str | None = typer.Option(None, "--geometry", help="illumination-scan (default) or sample-rotation."),
    illumination_na: Path | None = typer.Option(None, "--illumination-na", help="Text/CSV/.npy file of (A, 2) NA_x, NA_y."),
    angles: Path | None = typer.Option(None, "--angles", help="Text/CSV/.npy file of A rotation angles (radians)."),
    angles_unit: str | None = typer.Option(None, "--angles-unit", help="rad (default) or deg."),
    no_estimate: bool = typer.Option(False, "--no-estimate", help="Do not measure missing illumination NAs."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Import raw camera holograms as an acquisition .h5 (atomic)."""
    from rich.console import Console

    from holo.cli._progress import progress_bar
    from holo.importing import import_camera
    from holo.io.camera import read_camera

    if not out.name.lower().endswith((".h5", ".hdf5")):
        raise typer.BadParameter(f"an acquisition is written as .h5, got {out.name!r}", param_hint="--out")
    if out.exists() and frames.exists() and out.resolve() == frames.resolve():
        raise typer.BadParameter("output is the input", param_hint="--out")
    if geometry is not None and geometry not in ("illumination-scan", "sample-rotation"):
        raise typer.BadParameter(f"must be illumination-scan or sample-rotation, got {geometry!r}", param_hint="--geometry")
    optics = _optics(
        wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, camera_pixel_um=camera_pixel_um, magnification=magnification,
        medium_index=medium_index, objective_na=objective_na, geometry=geometry, illumination_na=illumination_na,
        angles=angles, angles_unit=angles_unit,
    )
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    acq = read_camera(frames, sidecar=sidecar, background=background, **optics)
    with progress_bar(f"writing {out.name}") as update:
        acq = import_camera(acq, out, estimate_na=not no_estimate, progress=update)
    info = {
        "out": str(out), "n_frames": acq.n_frames, "frame_shape": list(acq.frame_shape), "dtype": str(acq.holograms.dtype),
        "geometry": acq.geometry, "wavelength_um": acq.wavelength_um, "pixel_size_um": acq.pixel_size_um,
        "medium_index": acq.medium_index, "objective_na": acq.objective_na,
        "illumination_na_estimated": bool(acq.metadata.get("illumination_na_estimated", False)),
    }
    if json_out:
        print(json.dumps(info))
    err.print(f"wrote {out}: {acq.n_frames} frames {acq.frame_shape[0]}x{acq.frame_shape[1]} ({info['dtype']})"
              + (", illumination NA measured" if info["illumination_na_estimated"] else ""))
    sys.stderr.flush()


def register(app: typer.Typer) -> None:
    """Add ``import`` to ``app``."""
    app.command("import")(import_cmd)
