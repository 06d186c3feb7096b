"""The napari plugin end to end, rendered under Xvfb: manifest, readers, writers, sample
data, every widget on the sample data, and a screenshot that is not blank."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from holo.model import FluorescenceChannel, Tomogram

MANIFEST = Path(__file__).resolve().parents[2] / "napari_plugin" / "napari.yaml"


def _tomogram(time=False):
    z, y, x = np.mgrid[:16, :40, :40].astype(np.float32)
    vol = np.full(z.shape, 1.337, np.float32)
    vol[(z - 8) ** 2 / 4 + (y - 20) ** 2 + (x - 20) ** 2 < 81] = 1.37
    ri = np.stack([vol, vol]) if time else vol
    return Tomogram(ri, (0.8, 0.2, 0.2), 1.337, wavelength_um=0.532, time_step_s=2.5 if time else None)


def test_manifest_validates():
    proc = subprocess.run([str(Path(sys.executable).parent / "npe2"), "validate", str(MANIFEST)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_reader_tcf_time_series_and_fluorescence(make_napari_viewer, tmp_path):
    from holo.io.tcf import write_tcf

    tomo = _tomogram(time=True)
    fl = np.zeros((2, 8, 40, 40), np.uint16)
    fl[:, 4, 20, 20] = 1000
    tomo.fluorescence = {"CH0": FluorescenceChannel(fl, (1.6, 0.2, 0.2), offset_z_um=3.2, name="CH0")}
    tomo.mip = tomo.frame(0).max(axis=0)
    path = tmp_path / "cells.TCF"
    write_tcf(path, tomo)
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(path), plugin="holo")
    ri = layers[0]
    assert ri.data.shape == (2, 16, 40, 40)
    np.testing.assert_allclose(ri.scale, (2.5, 0.8, 0.2, 0.2), rtol=1e-6)
    assert tuple(str(u) for u in ri.units[1:]) == ("micrometer",) * 3
    assert ri.contrast_limits[0] <= 1.337 < 1.37 <= ri.contrast_limits[1] + 1e-3
    fl_layer = [layer for layer in layers if "FL" in layer.name][0]
    np.testing.assert_allclose(fl_layer.translate[-3], 3.2)
    np.testing.assert_allclose(fl_layer.scale[-3:], (1.6, 0.2, 0.2))
    assert any("MIP" in layer.name for layer in layers)


@pytest.mark.parametrize("suffix", [".ome.tif", ".ome.zarr"])
def test_writers_round_trip(make_napari_viewer, tmp_path, suffix):
    import napari

    from holo.io import open_path

    viewer = make_napari_viewer(show=False)
    tomo = _tomogram()
    viewer.add_image(tomo.ri, scale=tomo.voxel_size_um, name="ri", metadata={"holo": {"medium_index": 1.337}})
    labels = (tomo.ri > 1.35).astype(np.int32)
    viewer.add_labels(labels, scale=tomo.voxel_size_um, name="cells")
    out = tmp_path / f"ri{suffix}"
    napari.save_layers(str(out), [viewer.layers["ri"]], plugin="holo")
    back = open_path(out)
    np.testing.assert_allclose(back.frame(0), tomo.ri, atol=1e-6)
    np.testing.assert_allclose(back.voxel_size_um, tomo.voxel_size_um, rtol=1e-6)
    lab_out = tmp_path / f"labels{suffix}"
    napari.save_layers(str(lab_out), [viewer.layers["cells"]], plugin="holo")
    assert lab_out.exists()


def test_acquisition_reader_and_reconstruct_widget(make_napari_viewer, qtbot):
    from holo.napari._sample_data import _sample_acquisition_path

    viewer = make_napari_viewer(show=True)
    path = _sample_acquisition_path()
    (holograms,) = viewer.open(str(path), plugin="holo")
    assert holograms.metadata["holo"]["kind"] == "acquisition" and holograms.data.ndim == 5 and holograms.data.shape[1:3] == (1, 1)
    _, widget = viewer.window.add_plugin_dock_widget("holo", "Reconstruct")
    assert widget.layer_combo.currentText() == holograms.name
    widget.method.setCurrentText("rytov")
    widget.runner.run_button.click()
    qtbot.waitUntil(lambda: widget.runner.run_button.isEnabled() and widget.runner.worker is not None, timeout=240_000)
    assert widget.runner.error is None, widget.runner.error
    ri = [layer for layer in viewer.layers if "RI" in layer.name][0]
    assert ri.data.ndim == 3 and ri.data.dtype == np.float32
    assert ri.metadata["holo"]["provenance"]["method"] == "rytov"
    assert "method: rytov" in widget.facts.text()
    # the acquisition's frames and the tomogram's z have separate, named sliders, one unit each
    assert viewer.dims.axis_labels[-5:] == ("frame", "t", "z", "y", "x")
    # lateral voxel from the optics is finer than the axial one
    assert ri.scale[1] == pytest.approx(ri.scale[2]) and ri.scale[0] > ri.scale[1]
    # the sample cell is denser than the medium
    assert float(np.max(ri.data)) > 1.345


def test_reconstruct_cancel(make_napari_viewer, qtbot):
    from holo.napari._sample_data import _sample_acquisition_path

    viewer = make_napari_viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget("holo", "Reconstruct")
    widget.path_edit.setText(str(_sample_acquisition_path()))
    widget.method.setCurrentText("tv")
    widget.runner.run_button.click()
    widget.runner.cancel()
    qtbot.waitUntil(lambda: widget.runner.run_button.isEnabled(), timeout=240_000)
    assert widget.runner.status.text() == "cancelled"
    assert not any("RI" in layer.name for layer in viewer.layers)


def test_segment_table_report_and_screenshot(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    layers = viewer.open_sample("holo", "tomogram")
    ri = layers[0]
    _, seg_widget = viewer.window.add_plugin_dock_widget("holo", "Segment & classify")
    seg_widget.layer_combo.setCurrentText(ri.name)
    assert [seg_widget.method.itemText(i) for i in range(seg_widget.method.count())] == ["unet", "unet_fine", "classic"]
    seg_widget.method.setCurrentText("unet")
    assert not seg_widget.fast.isChecked()  # test-time flips by default
    seg_widget.fast.setChecked(True)  # one pass per tile (what a large field needs), as `holo run --fast`
    seg_widget.runner.run_button.click()
    qtbot.waitUntil(lambda: seg_widget.runner.run_button.isEnabled() and seg_widget.runner.worker is not None, timeout=240_000)
    assert seg_widget.runner.error is None, seg_widget.runner.error
    cells = viewer.layers[f"{ri.name} cells"]
    semantic = viewer.layers[f"{ri.name} semantic"]
    np.testing.assert_allclose(cells.scale, ri.scale)
    np.testing.assert_allclose(semantic.scale, ri.scale)
    feats = cells.features
    assert len(feats) >= 1
    for col in ("volume_um3", "dry_mass_pg", "class", "confidence"):
        assert col in feats.columns
    assert set(feats["index"]) <= set(np.unique(cells.data)) - {0}

    _, table = viewer.window.add_plugin_dock_widget("holo", "Cells table")
    table.layer_combo.setCurrentText(cells.name)
    table.refresh()
    assert table.table.rowCount() == len(feats)
    world = table.center_on_row(0)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    np.testing.assert_allclose(camera.center[-2:], world[-2:], atol=1e-6)
    csv = tmp_path / "cells.csv"
    table.export_csv(str(csv))
    import pandas as pd

    assert len(pd.read_csv(csv)) == len(feats)
    table.plot()
    assert table.figure.axes and table.figure.axes[0].has_data()

    _, report = viewer.window.add_plugin_dock_widget("holo", "Report")
    report.ri_combo.setCurrentText(ri.name)
    report.cells_combo.setCurrentText(cells.name)
    report.semantic_combo.setCurrentText(semantic.name)
    report.out_edit.setText(str(tmp_path / "report"))
    report.runner.run_button.click()
    qtbot.waitUntil(lambda: report.runner.run_button.isEnabled() and report.runner.worker is not None, timeout=120_000)
    assert report.runner.error is None, report.runner.error
    assert report.report_path is not None and report.report_path.exists()

    viewer.dims.ndisplay = 2
    viewer.layers.selection.active = ri
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[0] > 50
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 5, "canvas is blank"


def test_readers_ome_tiff_zarr_and_labels(make_napari_viewer, tmp_path):
    from holo.io import save_labels, save_tomogram

    tomo = _tomogram()
    labels = (tomo.ri > 1.35).astype(np.int32)
    save_tomogram(tomo, tmp_path / "ri.ome.tif")
    save_labels(labels, tmp_path / "cells.ome.tif", tomo.voxel_size_um)
    save_tomogram(tomo, tmp_path / "both.ome.zarr", labels={"cells": labels})
    viewer = make_napari_viewer(show=True)
    (ri,) = viewer.open(str(tmp_path / "ri.ome.tif"), plugin="holo")
    (lab,) = viewer.open(str(tmp_path / "cells.ome.tif"), plugin="holo")
    zarr_layers = viewer.open(str(tmp_path / "both.ome.zarr"), plugin="holo")
    from napari.layers import Image, Labels

    assert isinstance(ri, Image) and isinstance(lab, Labels)
    for layer in (ri, lab, *zarr_layers):
        np.testing.assert_allclose(layer.scale[-3:], tomo.voxel_size_um, rtol=1e-6)
        assert tuple(str(u) for u in layer.units[-3:]) == ("micrometer",) * 3
    kinds = sorted(type(layer).__name__ for layer in zarr_layers)
    assert kinds == ["Image", "Labels"]
    np.testing.assert_array_equal(np.asarray(lab.data), labels)
    assert ri.colormap.name == "turbo"


def test_file_open_prefers_holo_and_reads_cells_table(make_napari_viewer, tmp_path):
    """File → Open (``viewer.open(path, plugin=None)``) picks holo once the plugin is active,
    without a dialog; labels written by holo run / demo come with their cells table."""
    import pandas as pd

    from holo.io import save_labels, save_tomogram
    from holo.napari._preferences import HOLO_PATTERNS, prefer_holo_reader
    from napari.settings import get_settings

    viewer = make_napari_viewer(show=False)
    settings = get_settings()
    settings.plugins.extension2reader = {"*.tcf": "napari"}  # a user's own choice stays
    assert set(prefer_holo_reader()) == set(HOLO_PATTERNS) - {"*.tcf"}
    assert settings.plugins.extension2reader["*.tcf"] == "napari"
    tomo = _tomogram()
    instances = np.zeros(tomo.ri.shape, np.int32)
    instances[tomo.ri > 1.35] = 3
    folder = tmp_path / "sample"
    folder.mkdir()
    save_tomogram(tomo, folder / "ri.ome.tif")
    save_labels(instances, folder / "instances.ome.tif", tomo.voxel_size_um)
    save_labels((instances > 0).astype(np.uint8), folder / "labels.ome.tif", tomo.voxel_size_um)
    pd.DataFrame({"cell_id": [3], "volume_um3": [12.5], "class": ["lymphocyte"]}).to_csv(folder / "cells.csv", index=False)
    (ri,) = viewer.open(str(folder / "ri.ome.tif"), plugin=None)
    (cells,) = viewer.open(str(folder / "instances.ome.tif"), plugin=None)
    (semantic,) = viewer.open(str(folder / "labels.ome.tif"), plugin=None)
    np.testing.assert_allclose(ri.scale, tomo.voxel_size_um, rtol=1e-6)
    assert list(cells.features["index"]) == [3] and cells.features["class"].iloc[0] == "lymphocyte"
    assert len(semantic.features) == 0  # the semantic file is not given the cells table
    assert viewer.dims.axis_labels == ("z", "y", "x")


def test_acquisition_beside_time_series_opens_on_the_cells(make_napari_viewer, qtbot, tmp_path):
    """An acquisition and a tomogram time series together: units agree on every axis (no
    "Inconsistent units" notification), the sliders keep the tomogram's steps, the view opens
    on the slice through the cell, with an RI colour bar and a scale bar in µm; instance labels
    added afterwards move it to the slice that cuts the most cells."""
    from holo.io import save_labels, save_tomogram
    from holo.napari._sample_data import _sample_acquisition_path
    from napari.utils.notifications import notification_manager

    messages = []
    notification_manager.notification_ready.connect(lambda event: messages.append(str(event.message)))
    viewer = make_napari_viewer(show=True)
    z, y, x = np.mgrid[:16, :40, :40].astype(np.float32)
    vol = np.where(4 * (z - 11) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 < 16, np.float32(1.37), np.float32(1.337))
    tomo = Tomogram(np.stack([vol, vol]), (0.8, 0.2, 0.2), 1.337, time_step_s=2.5)  # a cell on z = 11
    (holograms,) = viewer.open(str(_sample_acquisition_path()), plugin="holo")
    (ri,) = viewer.open(str(save_tomogram(tomo, tmp_path / "ri.ome.tif")), plugin="holo")
    viewer.screenshot()  # draws: napari checks the units on the next draw
    qtbot.wait(50)
    assert not [m for m in messages if "units" in m.lower()], messages
    assert viewer.dims.axis_labels == ("frame", "t", "z", "y", "x")
    assert [str(u) for u in viewer.layers.extent.units] == ["dimensionless", "second"] + ["micrometer"] * 3
    assert viewer.dims.range[1].step == pytest.approx(2.5) and viewer.dims.range[2].step == pytest.approx(0.8)
    assert viewer.dims.point[2] == pytest.approx(11 * 0.8)  # the slice through the cell's middle
    assert ri.colorbar.visible and viewer.canvas.overlays.scale_bar.visible
    assert not holograms.colorbar.visible
    labels = np.zeros(tomo.ri.shape[1:], np.int32)
    labels[2:6, 5:9, 5:9], labels[4:8, 20:24, 20:24], labels[4, 30:33, 30:33] = 1, 2, 3  # z = 4 cuts all three
    viewer.open(str(save_labels(labels, tmp_path / "instances.ome.tif", tomo.voxel_size_um)), plugin="holo")
    assert viewer.dims.point[2] == pytest.approx(4 * 0.8)


def test_best_slices():
    from holo.napari._layers import busiest_slice, contrast_slice

    vol = np.full((6, 8, 8), 1.337, np.float32)
    vol[4, 2:5, 2:5] = 1.36  # bright small object on z = 4
    vol[1, :, :] = 1.333  # a whole slice slightly below the medium: more matter in all
    assert contrast_slice(vol, 1.337) == 1
    lab = np.zeros((5, 4, 4), np.int32)
    lab[0, :, :] = 1  # one big cell on z = 0, two small ones on z = 3
    lab[3, 0, 0], lab[3, 3, 3] = 2, 3
    assert busiest_slice(lab) == 3
    lab[2, 1, 1], lab[2, 2, 2] = 2, 3  # tie on two labels: the slice with more labelled voxels
    lab[2, 1, 2] = 2
    assert busiest_slice(lab) == 2
