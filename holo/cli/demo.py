"""``holo demo``: simulate a small mixed-cell acquisition and run the whole pipeline on it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from holo.reconstruction.methods import DEFAULT_METHOD, METHODS

__all__ = ["register", "demo_cmd"]


def demo_cmd(
    out: Path = typer.Option(Path("holo-demo"), "-o", "--out", help="Folder for the demo's files."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated sample."),
    size: int = typer.Option(384, "--size", help="Camera frame size in pixels."),
    angles: int = typer.Option(49, "--angles", help="Number of illuminations."),
    method: str = typer.Option(DEFAULT_METHOD, "--method", help=f"Reconstruction method: {'|'.join(METHODS)}."),
    napari: bool = typer.Option(False, "--napari", help="Open the result in napari."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> int:
    """Simulate → reconstruct → segment → classify → measure → report, and say where the report is."""
    if method not in METHODS:
        raise typer.BadParameter(f"unknown method {method!r} (choose {'|'.join(METHODS)})", param_hint="--method")
    from holo.cli._progress import progress_bar, stderr_console
    from holo.demo import run_demo

    with progress_bar("demo") as update:
        summary = run_demo(out, seed=seed, size=size, n_angles=angles, method=method, progress=update)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        stderr_console.print(f"simulated acquisition: {summary['acquisition']}")
        for line in summary.get("stages", []):
            stderr_console.print(f"  {line}")
        print(f"report: {summary['report']}")
    if napari:
        from holo.demo import open_in_napari

        open_in_napari(summary)
    return 0


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo_cmd)
