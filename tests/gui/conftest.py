"""GUI tests need an X server (Xvfb via pytest-xvfb, or a real display) and napari.

Without one they are skipped with the reason, unless HOLO_REQUIRE_GUI=1 (set by CI), where a
missing display is a failure.
"""

import os

import pytest


@pytest.fixture(autouse=True)
def _needs_display():
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        msg = "no X server: install xvfb (see .ci/run) to run the GUI tests"
        if os.environ.get("HOLO_REQUIRE_GUI") == "1":
            pytest.fail(msg + " (HOLO_REQUIRE_GUI=1)")
        pytest.skip(msg)
