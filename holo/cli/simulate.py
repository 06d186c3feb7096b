"""``holo simulate`` and ``holo simulate-dataset``: digital-twin acquisitions with ground truth.

``holo simulate -o FILE.h5`` writes one instrument-like acquisition (a mixed phantom with a
few cells, 49 illuminations on a spiral up to NA 1.1, 384 × 384 camera frames, 12-bit camera
with shot and read noise, weak parasitic fringes). ``--size`` takes ``N``, ``Y X``,
``YxX`` or ``Y,X`` (camera pixels). ``holo simulate-dataset -o DIR -n N`` writes N such
acquisitions (``sample_0000.h5`` …) and ``index.json`` for training; sample i uses the seed
``seed·100003 + i``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer


def _phantom_kinds() -> tuple:
    """Phantom kinds the twin builds (loaded on use: the CLI starts without the twin)."""
    from holo.twin.phantoms import KINDS, UNSEEN_KINDS

    return KINDS + UNSEEN_KINDS


_GEOMETRIES = ("illumination-scan", "sample-rotation")
_PATTERNS = ("spiral", "rings")
_FORWARDS = ("bpm", "born", "rytov")
_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": False}


def _parse_size(size: str, extra: list[str]) -> tuple[int, int]:
    """Frame size from ``--size N`` / ``--size Y X`` (X arrives as an extra argument) /
    ``--size YxX`` / ``--size Y,X``."""
    parts = [p for p in re.split(r"[x,×\s]+", size.strip().lower()) if p]
    if len(parts) == 1 and len(extra) == 1 and extra[0].isdigit():
        parts.append(extra.pop())
    if extra:
        raise typer.BadParameter(f"unexpected extra argument(s): {' '.join(extra)}")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise typer.BadParameter(f"expected N, 'Y X', YxX or Y,X pixels, got {size!r}", param_hint="--size") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 16 or max(vals) > 8192:
        raise typer.BadParameter(f"frame size must be 1 or 2 integers in 16..8192, got {size!r}", param_hint="--size")
    return vals[0], vals[1]


def _choice(value: str, allowed, hint: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"must be one of {', '.join(allowed)}, got {value!r}", param_hint=hint)
    return value


def _camera(noise: bool, photons: float, bit_depth: int, read_noise: float):
    from holo.twin.camera import CameraModel

    try:
        return CameraModel(photons_per_pixel=photons, bit_depth=bit_depth, read_noise_e=read_noise, noise=noise)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def simulate_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "-o", "--out", help="Acquisition file to write (.h5)."),
    phantom: str = typer.Option("mixed", "--phantom", help="Phantom: cell|rbc|bacteria|mixed, or an object type the AI never saw: hl60_like|adherent|debris."),
    geometry: str = typer.Option("illumination-scan", "--geometry", help="illumination-scan|sample-rotation."),
    angles: Optional[int] = typer.Option(None, "--angles", min=1, help="Frames (default 49, or 60 for sample rotation)."),
    size: str = typer.Option("384", "--size", help="Camera frame in pixels: N, 'Y X', YxX or Y,X."),
    depth: int = typer.Option(64, "--depth", min=4, help="Phantom slices along Z."),
    voxel: float = typer.Option(0.2, "--voxel", min=0.01, help="Largest phantom voxel, µm (isotropic)."),
    cells: Optional[int] = typer.Option(None, "--cells", min=0, help="Number of cells (default: the phantom's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of phantom and acquisition."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Camera shot and read noise."),
    photons: float = typer.Option(10000.0, "--photons", min=1.0, help="Mean photons per pixel of a sample-free hologram."),
    bit_depth: int = typer.Option(12, "--bit-depth", help="Camera ADC: 8, 10, 12, 14 or 16 bits."),
    read_noise: float = typer.Option(3.0, "--read-noise", min=0.0, help="Read noise, electrons RMS."),
    fringes: float = typer.Option(0.02, "--fringes", min=0.0, help="Parasitic coherent-noise amplitude (0 = off)."),
    reference_ratio: float = typer.Option(1.0, "--reference-ratio", min=0.01, help="Reference / illumination amplitude."),
    drift: float = typer.Option(0.0, "--drift", min=0.0, help="RMS sample drift between frames, µm."),
    defocus: float = typer.Option(0.0, "--defocus", help="Focal-plane offset, µm."),
    condenser_na: float = typer.Option(1.1, "--condenser-na", help="Largest illumination NA."),
    objective_na: float = typer.Option(1.2, "--objective-na", help="Detection NA."),
    wavelength: float = typer.Option(0.532, "--wavelength", help="Vacuum wavelength, µm."),
    medium: float = typer.Option(1.337, "--medium", help="Medium refractive index."),
    pattern: str = typer.Option("spiral", "--pattern", help="Illumination pattern: spiral|rings."),
    forward: str = typer.Option("bpm", "--forward", help="Forward model: bpm|born|rytov."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
) -> int:
    """Simulate one off-axis holotomography acquisition (holograms, backgrounds, ground truth)."""
    import time

    _choice(phantom, _phantom_kinds(), "--phantom")
    _choice(geometry, _GEOMETRIES, "--geometry")
    _choice(pattern, _PATTERNS, "--pattern")
    _choice(forward, _FORWARDS, "--forward")
    frame = _parse_size(size, list(ctx.args))
    cam = _camera(noise, photons, bit_depth, read_noise)

    from holo.cli._progress import progress_bar
    from holo.io.acquisition import write_acquisition
    from holo.twin.acquire import simulate_acquisition

    t0 = time.perf_counter()
    ph, vox, pix = _phantom_for_frame(frame, phantom, depth=depth, voxel_size_um=voxel, n_cells=cells, medium_index=medium, seed=seed,
                                 objective_na=objective_na, wavelength_um=wavelength)
    with progress_bar("simulate") as update:
        acq = simulate_acquisition(
            ph, geometry=geometry, n_angles=angles, condenser_na=condenser_na, objective_na=objective_na,
            wavelength_um=wavelength, pixel_size_um=pix, camera=cam, drift_um=drift, defocus_um=defocus,
            fringes=fringes, reference_ratio=reference_ratio, pattern=pattern, forward=forward, seed=seed,
            progress=update,
        )
        update(2 * acq.n_frames, 2 * acq.n_frames, note="writing")
        path = write_acquisition(out, acq)
    _report_simulation(path, acq, ph, phantom=phantom, voxel_size_um=vox, seed=seed,
                       seconds=time.perf_counter() - t0, as_json=as_json)
    return 0


def _phantom_for_frame(frame_shape_yx, kind: str, *, depth: int, voxel_size_um: float, n_cells, medium_index: float, seed: int,
                       objective_na: float, wavelength_um: float):
    """(phantom, voxel_size_um, pixel_size_um): a phantom of ``depth`` slices whose lateral grid
    images onto the camera frame, its isotropic voxel d and the camera pixel p (a usage error
    if the frame does not fit the optics)."""
    from holo.twin.acquire import phantom_grid_for_frame
    from holo.twin.phantoms import make_phantom

    try:
        (ny, nx), vox, pix = phantom_grid_for_frame(frame_shape_yx, voxel_size_um=voxel_size_um, objective_na=objective_na,
                                                    wavelength_um=wavelength_um)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ph = make_phantom(kind, shape_zyx=(depth, ny, nx), voxel_size_um=(vox, vox, vox), medium_index=medium_index, n_cells=n_cells, seed=seed)
    return ph, vox, pix


def _report_simulation(path, acq, ph, *, phantom: str, voxel_size_um: float, seed: int, seconds: float, as_json: bool) -> None:
    """Print the summary of ``holo simulate``: JSON on stdout or one line on stderr."""
    from holo.cli._progress import stderr_console

    summary = {
        "file": str(path),
        "geometry": acq.geometry,
        "n_frames": acq.n_frames,
        "frame_shape": list(acq.frame_shape),
        "pixel_size_um": acq.pixel_size_um,
        "phantom": phantom,
        "phantom_shape_zyx": [int(s) for s in ph.ri.shape],
        "voxel_size_um": voxel_size_um,
        "n_cells": len(ph.classes),
        "classes": {str(k): v for k, v in sorted(ph.classes.items())},
        "seed": seed,
        "seconds": round(seconds, 2),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        stderr_console.print(
            f"{path}: {acq.n_frames} holograms {acq.frame_shape[0]}×{acq.frame_shape[1]} px "
            f"({acq.pixel_size_um:.4f} µm), {len(ph.classes)} cells, {seconds:.1f} s",
            highlight=False,
        )


def simulate_dataset_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "-o", "--out", help="Dataset folder."),
    n: int = typer.Option(..., "-n", "--n", min=1, help="Number of acquisitions."),
    kinds: str = typer.Option("mixed", "--kinds", help="Comma-separated phantom kinds, cycled over the samples."),
    geometry: str = typer.Option("illumination-scan", "--geometry", help="illumination-scan|sample-rotation."),
    angles: Optional[int] = typer.Option(None, "--angles", min=1, help="Frames per acquisition."),
    size: str = typer.Option("256", "--size", help="Camera frame in pixels: N, 'Y X', YxX or Y,X."),
    depth: int = typer.Option(64, "--depth", min=4, help="Phantom slices along Z."),
    voxel: float = typer.Option(0.2, "--voxel", min=0.01, help="Largest phantom voxel, µm."),
    cells: Optional[int] = typer.Option(None, "--cells", min=0, help="Cells per sample (default: the phantom's)."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed (sample i: seed·100003 + i)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Camera shot and read noise."),
    fringes: float = typer.Option(0.02, "--fringes", min=0.0, help="Parasitic coherent-noise amplitude."),
    drift: float = typer.Option(0.0, "--drift", min=0.0, help="RMS sample drift between frames, µm."),
    force: bool = typer.Option(False, "--force", help="Regenerate samples already present."),
    as_json: bool = typer.Option(False, "--json", help="Print the index path and counts as JSON."),
) -> int:
    """Simulate N acquisitions with ground truth into a folder, with an index.json (resumable)."""
    from holo.cli._progress import progress_bar, stderr_console
    from holo.twin.dataset import generate_dataset

    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    if not kind_list:
        raise typer.BadParameter("needs at least one kind", param_hint="--kinds")
    for k in kind_list:
        _choice(k, _phantom_kinds(), "--kinds")
    _choice(geometry, _GEOMETRIES, "--geometry")
    frame = _parse_size(size, list(ctx.args))
    kw = {"geometry": geometry, "fringes": fringes, "drift_um": drift}
    if angles is not None:
        kw["n_angles"] = angles
    cam = _camera(noise, 10000.0, 12, 3.0)
    with progress_bar("simulate-dataset", total=n) as update:
        index = generate_dataset(
            out, n, kinds=kind_list, seed=seed, workers=workers, frame_shape_yx=frame, n_z=depth, voxel_size_um=voxel,
            n_cells=cells, camera=cam, overwrite=force, progress=update, **kw,
        )
    doc = json.loads(Path(index).read_text())
    counts: dict[str, int] = {}
    for rec in doc["samples"]:
        for cls, c in rec["class_counts"].items():
            counts[cls] = counts.get(cls, 0) + c
    if as_json:
        print(json.dumps({"index": str(index), "n": doc["n"], "class_counts": counts}, indent=2))
    else:
        stderr_console.print(f"{doc['n']} acquisitions in {Path(out)}; index: {index}", highlight=False)
    return 0


def register(app: typer.Typer) -> None:
    app.command("simulate", context_settings=_CONTEXT)(simulate_cmd)
    app.command("simulate-dataset", context_settings=_CONTEXT)(simulate_dataset_cmd)
