"""``holo run``: the whole pipeline over files, folders and globs, resumable, on dask."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from holo.reconstruction.methods import METHODS

__all__ = ["register", "run_cmd"]


def _sample_options(method: str, iterations: Optional[int], seg_method: str, image_format: str, model: str,
                    fast: bool = False):
    """The :class:`holo.sample.SampleOptions` of the command line, or a usage error."""
    from holo.sample import SampleOptions

    if method not in METHODS:
        raise typer.BadParameter(f"unknown method {method!r}", param_hint="--method")
    try:
        return SampleOptions(method=method, iterations=iterations, seg_method=seg_method, image_format=image_format,
                             unet_model=model, fast=fast)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _print_outcome(result, out: Path) -> None:
    from holo.cli._progress import stderr_console

    stderr_console.print(
        f"{len(result.done)} done, {len(result.failed)} failed, {len(result.skipped)} skipped"
        + (f", {len(result.busy)} busy in another run" if result.busy else "")
        + f" — summary: {Path(out) / 'summary.html'}"
    )


def run_cmd(
    inputs: List[str] = typer.Argument(..., help="Acquisition .h5 / TCF / OME files, folders or glob patterns."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    method: str = typer.Option("gp", "--method", help=f"Reconstruction: {'|'.join(METHODS)} (gp: Rytov + non-negativity, what the shipped U-Net is trained on)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Iterations of gp/tv/bpm."),
    seg_method: str = typer.Option("unet", "--seg-method", help="Segmentation: unet|classic."),
    model: str = typer.Option("unet", "--model", help="U-Net weights set: unet (default) or unet_fine (0.1 µm lateral, "
                              "finer small objects such as bacteria on finely sampled tomograms, about 4x slower)."),
    fast: bool = typer.Option(False, "--fast", help="U-Net without test-time flips: about 4x faster (96 x 1024^2 in "
                              "about 32 s on 2 cores), slightly fewer small cells found (model card, fast mode)."),
    image_format: str = typer.Option("ome-tiff", "--format", help="RI/label files: ome-tiff|ome-zarr."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Start a local dask cluster with N worker processes."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Use an existing dask scheduler, tcp://HOST:PORT."),
    force: bool = typer.Option(False, "--force", help="Redo samples already done."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=1.0, help="Per-sample time limit in seconds: a sample "
                                            "running longer is killed and recorded as failed (each sample then runs in "
                                            "its own process)."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
) -> int:
    """Reconstruct, segment, classify, measure and report every input into OUT/<sample>/.

    A time series (TCF or OME tomogram with several time points) is segmented frame by frame
    (spread over the dask workers with --workers/--scheduler), its cells are tracked and
    their growth fitted: OUT/<sample>/ then holds the outputs of ``holo track``.

    Finished samples are skipped on a rerun (--force redoes them); a bad input fails only
    itself; the exit code is 1 when any sample failed.
    """
    from holo.batch import run_batch
    from holo.cli._progress import progress_bar, stderr_console
    from holo.timelapse import SeriesAwareProcess

    options = _sample_options(method, iterations, seg_method, image_format, model, fast)
    with progress_bar("samples") as update:
        finished = [0]

        def on_result(rec, n, total):
            finished[0] = n
            update(n, total, note=f"{rec['name']}: {rec['status']}")
            if rec["status"] != "done":
                stderr_console.print(f"[red]failed[/red] {rec['error']}", markup=True, highlight=False, soft_wrap=True)

        # a time series (T > 1) is tracked: frames one by one, or spread over the dask workers
        process_fn = SeriesAwareProcess(spread=bool(workers or scheduler) and not timeout,
                                        frame_progress=None if timeout else
                                        lambda name, i, n: update(finished[0], note=f"{name}: frame {i}/{n}"))
        result = run_batch(inputs, out, options, workers=workers, scheduler=scheduler, force=force,
                           timeout_s=timeout, on_result=on_result, process_fn=process_fn)
    if as_json:
        print(json.dumps(result.summary(), indent=2))
    else:
        _print_outcome(result, out)
    return 0 if result.ok else 1


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run")(run_cmd)
