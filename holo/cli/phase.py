"""``holo phase IMG [--background BG] -o OUT/``: single-hologram QPI (:mod:`holo.phase`).

Optics from options or a sidecar (``<IMG stem>.json|yaml`` beside the image, or
``--sidecar``; keys ``wavelength_um``, ``pixel_size_um`` or ``camera_pixel_um`` +
``magnification``, optional ``objective_na``). Writes phase/OPD OME-TIFF, cell labels, the
per-cell CSV (area, dry mass, phase volume) and ``phase.json`` into OUT/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

__all__ = ["register", "phase_cmd"]


def _optics(img: Path, sidecar: Path | None, wavelength_um, pixel_size_um, camera_pixel_um, magnification, objective_na) -> dict:
    """Wavelength, pixel size at the sample and (optional) NA: options win over the sidecar
    (:func:`holo.io.camera.resolve_optics`, only the wavelength and pixel size required)."""
    from holo.io.camera import find_sidecar, read_sidecar, resolve_optics

    sc_path = sidecar if sidecar is not None else find_sidecar(img)
    sc = read_sidecar(sc_path) if sc_path is not None else {}
    given = {"wavelength_um": wavelength_um, "pixel_size_um": pixel_size_um, "camera_pixel_um": camera_pixel_um,
             "magnification": magnification, "objective_na": objective_na}
    o = resolve_optics(sc, given, sidecar_path=sc_path, required=("wavelength_um",), input_path=img)
    return {"wavelength_um": o["wavelength_um"], "pixel_size_um": o["pixel_size_um"], "objective_na": o["objective_na"]}


def phase_cmd(
    img: Path = typer.Argument(..., help="Hologram: one TIFF/PNG frame."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    background: Path | None = typer.Option(None, "--background", help="Sample-free frame (optional)."),
    sidecar: Path | None = typer.Option(None, "--sidecar", help="Optics file (JSON or YAML)."),
    wavelength_um: float | None = typer.Option(None, "--wavelength-um", help="Vacuum wavelength, µm."),
    pixel_size_um: float | None = typer.Option(None, "--pixel-size-um", help="Camera pixel at the sample, µm."),
    camera_pixel_um: float | None = typer.Option(None, "--camera-pixel-um", help="Camera pixel pitch, µm (with --magnification)."),
    magnification: float | None = typer.Option(None, "--magnification", help="Total magnification."),
    objective_na: float | None = typer.Option(None, "--na", help="Detection NA (sets the sideband radius NA/λ)."),
    radius_fraction: float = typer.Option(0.5, "--radius-fraction", help="Sideband radius / carrier distance when the NA is not given."),
    min_area_um2: float = typer.Option(10.0, "--min-area-um2", help="Smallest cell, µm²."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Phase / OPD map, 2D cells, per-cell area, dry mass and phase volume of one hologram."""
    from holo.phase import analyse_hologram, read_frame, write_qpi

    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
    if not 0 < radius_fraction < 1:
        raise typer.BadParameter(f"must be in (0, 1), got {radius_fraction}", param_hint="--radius-fraction")
    optics = _optics(img, sidecar, wavelength_um, pixel_size_um, camera_pixel_um, magnification, objective_na)
    holo_frame = read_frame(img)
    bg = read_frame(background) if background is not None else None
    if bg is not None and bg.shape != holo_frame.shape:
        from holo.errors import ValidationError

        raise ValidationError(f"size {bg.shape} differs from the hologram's {holo_frame.shape}", path=background, item="frame size")
    res = analyse_hologram(holo_frame, bg, radius_fraction=radius_fraction, min_area_um2=min_area_um2, **optics)
    summary = write_qpi(res, out, source=str(img))
    if json_out:
        print(json.dumps(summary))
    print(f"wrote {out}: {summary['n_cells']} cell(s), total dry mass {summary['total_dry_mass_pg']:.1f} pg", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add ``phase`` to ``app``."""
    app.command("phase")(phase_cmd)
