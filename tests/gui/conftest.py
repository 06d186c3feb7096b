"""GUI tests need an X server (Xvfb via pytest-xvfb, or a real display), Qt's platform
libraries (xcb) and napari.

Whether Qt can start is found out ONCE per session, before any GUI test sets up a fixture, by
creating a ``QApplication`` in a subprocess: Qt aborts the whole process (``Fatal Python error:
Aborted``) when it has no display or cannot load its xcb platform plugin, so it must never be
tried in the test process itself. When it cannot start, every test under ``tests/gui`` is
skipped with the reason (Qt's own last words), unless ``HOLO_REQUIRE_GUI=1`` (set by CI),
where each fails with that reason instead. The check runs in ``pytest_runtest_setup``
(tryfirst), i.e. before the session-scoped ``qapp`` fixture of pytest-qt / napari would create
the application.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

GUI_DIR = Path(__file__).resolve().parent
#: What the probe runs: the same Qt binding and platform plugin as the tests.
_PROBE = "from qtpy.QtWidgets import QApplication; app = QApplication([]); print(app.platformName())"
_HINT = "install the Debian packages of .ci/run (xvfb, Mesa, xcb libraries) to run the GUI tests"


def _last_words(text: str, n: int = 2) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("Fatal Python", "Current thread", "  File", "Extension modules"))]
    return " / ".join(lines[-n:]) if lines else "no message"


@functools.lru_cache(maxsize=1)
def gui_unavailable_reason() -> str | None:
    """None when Qt can open an application here; else why not, in one line."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
            and os.environ.get("QT_QPA_PLATFORM", "xcb").startswith(("xcb", "wayland")):
        return f"no X server (DISPLAY unset and Xvfb not found): {_HINT}"
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return f"Qt did not start within 60 s: {_HINT}"
    if proc.returncode != 0:
        platform = os.environ.get("QT_QPA_PLATFORM", "xcb")
        return f"Qt cannot start (platform {platform!r}, exit {proc.returncode}: {_last_words(proc.stderr)}): {_HINT}"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if GUI_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.gui)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("gui") is None:
        return
    reason = gui_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("HOLO_REQUIRE_GUI") == "1":
        pytest.fail(f"{reason} (HOLO_REQUIRE_GUI=1: GUI tests must run)", pytrace=False)
    pytest.skip(reason)
