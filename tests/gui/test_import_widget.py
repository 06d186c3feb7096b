"""The napari import widget: a camera folder (the measured HL60 hologram and its background
frame, tests/data/README.md) → acquisition .h5 written and opened.

The widget only orchestrates holo.importing.import_camera: the file must hold the camera's
frames unchanged with the optics typed in winning over the sidecar's, and a bad input must give
one status line naming the item, with nothing written and no layer added.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "hl60_hologram_cell.npz"


def _camera_folder(root: Path, optics: dict | None) -> Path:
    import tifffile

    d = np.load(DATA)
    folder = root / "cam"
    (folder / "background").mkdir(parents=True)
    tifffile.imwrite(folder / "holo_1.tif", d["data"])
    tifffile.imwrite(folder / "background" / "bg_1.tif", d["bg_data"])
    if optics is not None:
        (folder / "optics.json").write_text(json.dumps(optics))
    return folder


def _run(widget, qtbot):
    widget.runner.run_button.click()
    qtbot.waitUntil(lambda: widget.runner.run_button.isEnabled() and widget.runner.worker is not None, timeout=120_000)


def test_import_widget_writes_and_opens_the_acquisition(make_napari_viewer, qtbot, tmp_path):
    from holo.io import read_acquisition
    from holo.napari._widgets.importing import ImportWidget

    # the sidecar lacks the wavelength: refused first, then typed in
    folder = _camera_folder(tmp_path, {"pixel_size_um": 0.14, "medium_index": 1.335, "objective_na": 0.6})
    out = tmp_path / "out" / "hl60.h5"
    viewer = make_napari_viewer()
    widget = ImportWidget(viewer)
    assert widget.optics() == {}  # every field starts at "from sidecar"
    widget.frames.setText(str(folder))
    widget.out.setText(str(out))
    widget.estimate_na.setChecked(False)  # the NA estimate itself: tests/test_camera_import.py
    _run(widget, qtbot)
    status = widget.runner.status.text()
    assert status.startswith("error:") and "wavelength_um" in status and "optics.json" in status and "\n" not in status
    assert not out.parent.exists() and len(viewer.layers) == 0

    widget.wavelength_um.setValue(0.647)
    widget.medium_index.setValue(1.337)  # a typed value wins over the sidecar's
    _run(widget, qtbot)
    assert widget.runner.error is None, widget.runner.error
    acq = read_acquisition(out, lazy=False)
    d = np.load(DATA)
    np.testing.assert_array_equal(np.asarray(acq.holograms)[0], d["data"])
    np.testing.assert_array_equal(np.asarray(acq.background).reshape(d["bg_data"].shape), d["bg_data"])
    assert acq.wavelength_um == pytest.approx(0.647) and acq.pixel_size_um == pytest.approx(0.14)
    assert acq.medium_index == pytest.approx(1.337) and acq.objective_na == pytest.approx(0.6)
    assert acq.illumination_na is None  # not estimated when unchecked
    assert len(viewer.layers) >= 1 and "hl60.h5" in widget.runner.status.text()
    assert [p.name for p in out.parent.iterdir()] == ["hl60.h5"]  # nothing else left beside it

    # the same output again is refused (nothing is overwritten), nothing added
    n = len(viewer.layers)
    widget.runner.run_button.click()
    assert "exists" in widget.runner.status.text() and len(viewer.layers) == n
