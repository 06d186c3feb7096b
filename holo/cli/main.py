"""Entry point of the ``holo`` command.

Exit codes: 0 success; 1 bad data (one line on stderr naming the file and the item, no
traceback unless ``--debug``); 2 usage error. Progress goes to stderr, ``--json`` output to
stdout. Heavy libraries (torch, numba kernels) are imported inside the commands so that
``holo --help`` and ``holo info`` start fast.
"""

from __future__ import annotations

import gc
import importlib
import sys
import traceback

import click
import typer

from holo.errors import HoloError

# typer ≥ 0.29 vendors its own click: catch typer's and click's exception families alike.
_USAGE = tuple({click.exceptions.UsageError} | {c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"})
_EXIT = tuple({click.exceptions.Exit, typer.Exit})
_ABORT = tuple({click.exceptions.Abort, typer.Abort})

#: Sub-command modules of :mod:`holo.cli`; each defines ``register(app)``.
COMMAND_MODULES = (
    "info",
    "convert",
    "simulate",
    "reconstruct",
    "segment",
    "run",
    "demo",
    "importing",
    "phase",
    "track",
)

app = typer.Typer(
    name="holo",
    help="holo: holotomography from off-axis holograms to 3D refractive index, AI diagnosis and reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_STATE = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    _STATE["debug"] = debug


for _name in COMMAND_MODULES:
    importlib.import_module(f"holo.cli.{_name}").register(app)


def _fail(msg: str, code: int) -> int:
    print(f"holo: error: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a script, exits with) the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _STATE["debug"] = "--debug" in argv
    try:
        rv = app(args=argv, prog_name="holo", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except _USAGE as exc:
        exc.show()
        code = 2
    except _EXIT as exc:
        code = exc.exit_code
    except (*_ABORT, KeyboardInterrupt):
        code = _fail("interrupted", 130)
    except HoloError as exc:
        if _STATE["debug"]:
            traceback.print_exc()
        code = _fail(str(exc), 1)
    except FileNotFoundError as exc:
        if _STATE["debug"]:
            traceback.print_exc()
        code = _fail(f"{exc.filename}: no such file or folder", 1)
    except (OSError, ValueError) as exc:
        if _STATE["debug"]:
            traceback.print_exc()
        code = _fail(" ".join(str(exc).split()) or type(exc).__name__, 1)
    except Exception as exc:  # a bug, not bad data: still one line, the traceback on --debug
        if _STATE["debug"]:
            traceback.print_exc()
        msg = " ".join(str(exc).split())[:300]
        code = _fail(f"internal error: {type(exc).__name__}: {msg} (rerun with --debug for the traceback)", 1)
    return code


def _exit(code: int) -> None:
    """Exit with ``code`` without a garbage-collection pass over what is still alive.

    The objects left at the end (Numba's typing and code-generation graph above all) move to
    the permanent generation, so the interpreter's finalisation does not traverse them: that
    pass cost 0.3–0.6 s per command after a Numba kernel had run. Files are closed by then
    and ``atexit`` handlers still run; the operating system frees the memory.
    """
    sys.stdout.flush()
    gc.freeze()
    sys.exit(code)


def entry() -> None:  # pragma: no cover - console script wrapper
    _exit(main())


if __name__ == "__main__":  # pragma: no cover
    _exit(main())
