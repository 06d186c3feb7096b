"""``holo convert IN OUT [--frame T]``: convert between file formats, metadata carried over.

Tomograms (TCF, OME-TIFF, OME-Zarr) go to ``.ome.tif``, ``.ome.zarr`` or ``.tcf`` (chosen by
the extension of OUT); acquisitions are rewritten as acquisition ``.h5``. A time series is
converted whole or, with ``--frame T``, only its frame T. Output is atomic: nothing is left
at OUT when the conversion fails. Progress goes to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

__all__ = ["register", "convert_cmd", "select_frame"]


def select_frame(tomo, t: int):
    """The tomogram reduced to its time frame ``t`` (fluorescence: the nearest frame in time).

    Raises
    ------
    ValueError
        ``t`` outside ``0 .. n_times - 1``.
    """
    from holo.model import FluorescenceChannel

    n = tomo.n_times
    if not 0 <= t < n:
        raise ValueError(f"frame {t} is outside 0..{n - 1}")
    if not tomo.has_time:
        return tomo
    fl = {}
    for name, ch in tomo.fluorescence.items():
        data = ch.data
        if len(data.shape) == 4:
            n_fl = int(data.shape[0])
            if tomo.time_step_s and ch.time_step_s:
                i = int(round(t * tomo.time_step_s / ch.time_step_s))
            else:
                i = t
            data = data[min(max(i, 0), n_fl - 1)]
        fl[name] = FluorescenceChannel(data, ch.voxel_size_um, ch.offset_z_um, None, ch.name)
    mip = tomo.mip
    if mip is not None and len(mip.shape) == 3:
        mip = mip[min(t, mip.shape[0] - 1)]
    prov = dict(tomo.provenance)
    prov["frame"] = int(t)
    return tomo.replace(ri=tomo.ri[t], time_step_s=None, fluorescence=fl, mip=mip, provenance=prov)


def _check_formats(src: Path, dst: Path) -> tuple[str, str]:
    """(input format, output format) of a conversion, or a usage error naming DST."""
    from holo.io import detect_format, output_format

    try:
        out_fmt = output_format(dst)
    except ValueError:
        raise typer.BadParameter(
            f"cannot tell the output format from {dst.name!r}; use .ome.tif, .ome.zarr, .tcf or .h5", param_hint="DST"
        ) from None
    if src.resolve() == dst.resolve():
        raise typer.BadParameter("output is the input file", param_hint="DST")
    in_fmt = detect_format(src)
    if in_fmt == "acquisition" and out_fmt != "acquisition":
        raise typer.BadParameter(f"an acquisition converts to .h5 only (reconstruct it first), got {dst.name!r}", param_hint="DST")
    if in_fmt != "acquisition" and out_fmt == "acquisition":
        raise typer.BadParameter(f"a tomogram cannot be written as an acquisition .h5: {dst.name!r}", param_hint="DST")
    return in_fmt, out_fmt


def _write_tomogram(tomo, src: Path, dst: Path, out_fmt: str, frame: int | None) -> None:
    """Write ``tomo`` (or its time frame ``frame``) to ``dst``, its source file recorded."""
    from holo.cli._progress import progress_bar
    from holo.io import save_tomogram

    if frame is not None:
        try:
            tomo = select_frame(tomo, frame)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--frame") from None
    prov = dict(tomo.provenance)
    prov.setdefault("source_file", str(src))
    tomo = tomo.replace(provenance=prov, source=str(src))  # errors of reading name the input
    with progress_bar(f"writing {dst.name} ({out_fmt})", total=tomo.n_times) as update:
        kw = {"progress": update} if out_fmt in ("ome-tiff", "tcf") else {}
        save_tomogram(tomo, dst, **kw)
        update(tomo.n_times)


def convert_cmd(
    src: Path = typer.Argument(..., help="Input: acquisition .h5, TCF, OME-TIFF or OME-Zarr."),
    dst: Path = typer.Argument(..., help="Output: .ome.tif, .ome.zarr, .tcf (tomograms) or .h5 (acquisitions)."),
    frame: int | None = typer.Option(None, "--frame", help="Convert only this time frame of a time series."),
) -> None:
    """Convert a file to another format (metadata carried over; atomic output)."""
    from rich.console import Console

    from holo.io import open_path, write_acquisition

    err = Console(stderr=True, soft_wrap=True, highlight=False)
    from holo.io._atomic import check_replaceable

    in_fmt, out_fmt = _check_formats(src, dst)
    check_replaceable(dst)  # before the work: never replace a folder holo did not write
    err.print(f"reading {src} ({in_fmt})")
    obj = open_path(src)
    if in_fmt == "acquisition":
        if frame is not None:
            raise typer.BadParameter("--frame applies to tomogram time series only", param_hint="--frame")
        with err.status(f"writing {dst}"):
            write_acquisition(dst, obj)
    else:
        _write_tomogram(obj, src, dst, out_fmt, frame)
    err.print(f"wrote {dst}")
    sys.stderr.flush()


def register(app: typer.Typer) -> None:
    """Add ``convert`` to ``app``."""
    app.command("convert")(convert_cmd)
