"""``holo reconstruct INPUT -o OUT [--method ...]``: one acquisition → one RI volume file.

Progress goes to stderr; ``--json`` prints a summary (output path, shape, voxel size, mean
RI, time, excluded frames) on stdout. The output is written atomically in the format given
by its extension (``.ome.tif``, ``.ome.zarr``, ``.tcf``) through :func:`holo.io.save_tomogram`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Tuple

import typer

from holo.reconstruction.methods import DEFAULT_METHOD, METHODS

__all__ = ["register", "reconstruct_cmd", "summary"]


def summary(tomo, out_path, elapsed_s: float) -> dict:
    """JSON-able summary of a written reconstruction."""
    import numpy as np

    ri = tomo.frame(0)
    return {
        "output": str(out_path),
        "method": tomo.provenance.get("method"),
        "shape_zyx": [int(s) for s in ri.shape],
        "voxel_size_um": [float(v) for v in tomo.voxel_size_um],
        "medium_index": float(tomo.medium_index),
        "mean_ri": float(np.mean(ri, dtype=np.float64)),
        "max_ri": float(np.max(ri)),
        "time_s": round(float(elapsed_s), 4),
        "excluded_frames": [int(i) for i in tomo.provenance.get("excluded_frames", [])],
    }


def _parse_voxel(text: str | None):
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        vals = []
    if len(vals) not in (1, 3) or any(not (v > 0) for v in vals):
        raise typer.BadParameter(f"needs one positive value or three (DZ,DY,DX) in µm, got {text!r}", param_hint="--voxel")
    return vals[0] if len(vals) == 1 else tuple(vals)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise typer.BadParameter(f"unknown method {method!r} (choose {'|'.join(METHODS)})", param_hint="--method")


def _sparse_sigmas() -> float:
    """κ of gp's ℓ1 mode (:data:`holo.reconstruction.regularization.SPARSE_GP_SHRINK_SIGMAS`)."""
    from holo.reconstruction.regularization import SPARSE_GP_SHRINK_SIGMAS

    return float(SPARSE_GP_SHRINK_SIGMAS)


def _check_out(out: Path) -> str:
    """The output format of ``out`` (:func:`holo.io.output_format`), or a usage error."""
    from holo.io import output_format

    try:
        return output_format(out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).split(": ", 1)[-1], param_hint="--out") from None


def _print_summary(info: dict) -> None:
    from holo.cli._progress import stderr_console

    stderr_console.print(
        f"{info['output']}: {tuple(info['shape_zyx'])} voxels of {tuple(round(v, 4) for v in info['voxel_size_um'])} µm, "
        f"mean RI {info['mean_ri']:.4f}, {info['time_s']:.2f} s"
        + (f", excluded frames {info['excluded_frames']}" if info["excluded_frames"] else ""),
        highlight=False,
    )


def reconstruct_cmd(
    input_path: Path = typer.Argument(..., help="Acquisition file (.h5, or any format holding holograms / fields)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output volume: .ome.tif, .ome.zarr or .tcf."),
    method: str = typer.Option(DEFAULT_METHOD, "--method", help="|".join(METHODS) + f" (default {DEFAULT_METHOD}: what the U-Net is trained on)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", min=1, help="Iterations of gp/tv/bpm."),
    weight: Optional[float] = typer.Option(None, "--weight", min=0.0, help="Regularisation weight of tv/bpm."),
    shape: Optional[Tuple[int, int, int]] = typer.Option(None, "--shape", min=2, help="Grid shape: --shape Z Y X."),
    voxel: Optional[str] = typer.Option(None, "--voxel", help="Voxel size in µm: one value (isotropic) or DZ,DY,DX."),
    sparse_background: bool = typer.Option(False, "--sparse-background", help="gp/tv: their l1 mode (3-sigma detection of the objects, the result kept on their support), which keeps the background at the medium's index; today the default."),
    classic_background: bool = typer.Option(False, "--classic-background", help="gp/tv: classic GP or plain TV (n >= n_m specks left in the background), whatever the default."),
    compress: bool = typer.Option(False, "--compress", help="zlib-compress an OME-TIFF (about a third smaller, ~10x slower to write)."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
) -> int:
    """Reconstruct the 3D refractive index of INPUT and write it to OUT."""
    _check_method(method)
    for flag, given in (("--sparse-background", sparse_background), ("--classic-background", classic_background)):
        if given and method not in ("gp", "tv"):
            raise typer.BadParameter(f"applies to --method gp or tv only, not {method!r}", param_hint=flag)
    if sparse_background and classic_background:
        raise typer.BadParameter("choose one of --sparse-background and --classic-background", param_hint="--classic-background")
    voxel_size = _parse_voxel(voxel)
    from holo.cli._progress import progress_bar
    from holo.io import save_tomogram
    from holo.pipeline import reconstruct

    out_fmt = _check_out(out)
    from holo.io._atomic import check_replaceable

    check_replaceable(out)  # before the work: never replace a folder holo did not write
    t0 = time.perf_counter()
    with progress_bar(f"reconstruct ({method})") as update:
        tomo = reconstruct(
            str(input_path), method=method, iterations=iterations, weight=weight,
            shape_zyx=tuple(shape) if shape else None,
            voxel_size_um=voxel_size,
            shrink_sigmas=_sparse_sigmas() if sparse_background else 0.0 if classic_background else None,
            progress=update,
        )
    writer_kw = {"compression": "zlib" if compress else None} if out_fmt == "ome-tiff" else {}
    path = save_tomogram(tomo, out, **writer_kw)
    info = summary(tomo, path, time.perf_counter() - t0)
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        _print_summary(info)
    return 0


def register(app: typer.Typer) -> None:
    """Add ``reconstruct`` to ``app``."""
    app.command("reconstruct")(reconstruct_cmd)
