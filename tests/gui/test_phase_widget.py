"""The napari phase widget: measured HL60 hologram layer (or file) → phase image + 2D cell labels.

The widget only orchestrates: its layers must hold what holo.phase.analyse_hologram returns
for the same hologram and optics, on the µm scale of the stated pixel size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "hl60_hologram_cell.npz"
PIX, LAM = 0.14, 0.633


def _run(widget, qtbot):
    widget.pixel_size_um.setValue(PIX)
    widget.wavelength_um.setValue(LAM)
    widget.runner.run_button.click()
    qtbot.waitUntil(lambda: widget.runner.run_button.isEnabled() and widget.runner.worker is not None, timeout=120_000)


def test_phase_widget_layers_and_cells_table(make_napari_viewer, qtbot, tmp_path):
    from holo.napari._widgets.phase import NO_BACKGROUND, PhaseWidget
    from holo.phase import analyse_hologram

    d = np.load(DATA)
    viewer = make_napari_viewer()
    viewer.add_image(d["data"], name="hl60")
    viewer.add_image(d["bg_data"], name="hl60 bg")
    widget = PhaseWidget(viewer)
    assert widget.background.currentText() == NO_BACKGROUND  # no background unless chosen
    widget.hologram.setCurrentText("hl60")
    widget.background.setCurrentText("hl60 bg")
    _run(widget, qtbot)

    ref = analyse_hologram(d["data"], d["bg_data"], pixel_size_um=PIX, wavelength_um=LAM)
    phase, cells = viewer.layers["hl60 phase"], viewer.layers["hl60 cells"]
    np.testing.assert_allclose(phase.data, ref.phase_map.phase, atol=1e-5)
    np.testing.assert_array_equal(cells.data, ref.labels)
    assert tuple(phase.scale) == pytest.approx((PIX, PIX)) and tuple(cells.scale) == pytest.approx((PIX, PIX))
    assert len(cells.features) == len(ref.cells) == 1
    assert list(cells.features["index"]) == list(ref.cells["cell_id"])
    assert cells.features["dry_mass_pg"].iloc[0] == pytest.approx(ref.cells["dry_mass_pg"].iloc[0])
    assert "1 cells" in widget.runner.status.text()


def test_phase_widget_from_a_file(make_napari_viewer, qtbot, tmp_path):
    import tifffile

    from holo.napari._widgets.phase import PhaseWidget

    d = np.load(DATA)
    tifffile.imwrite(tmp_path / "cell.tif", d["data"])
    viewer = make_napari_viewer()
    widget = PhaseWidget(viewer)
    widget.path.setText(str(tmp_path / "cell.tif"))
    _run(widget, qtbot)
    assert "cell phase" in viewer.layers and "cell cells" in viewer.layers
    assert viewer.layers["cell phase"].data.shape == d["data"].shape
    # a stack is refused with one line naming the file, and nothing is added
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([d["data"], d["data"]]))
    n = len(viewer.layers)
    widget.path.setText(str(tmp_path / "stack.tif"))
    widget.runner.run_button.click()
    assert "stack.tif" in widget.runner.status.text() and len(viewer.layers) == n
