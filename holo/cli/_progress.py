"""Progress bars on stderr (rich), silent when stderr is not a terminal unless forced."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

stderr_console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None):
    """Yield ``update(done, total=None, note="")`` that advances a bar on stderr."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=stderr_console,
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=total, note="")

        def update(done, total=None, note=""):
            kw = {"completed": done, "note": str(note)}
            if total is not None:
                kw["total"] = total
            prog.update(task, **kw)

        yield update
