"""The fine-tune widget: corrected labels → a user weights set (never the shipped folder),
the held-out gain shown, the set selectable in the Segment widget; Cancel leaves nothing."""

from __future__ import annotations

import numpy as np
import pytest

from holo.model import Tomogram

VS = (0.4, 0.2, 0.2)


@pytest.fixture(scope="module")
def start_weights(tmp_path_factory):
    """Starting weights like the shipped ones with a two-level U-Net and no test-time
    augmentation (cheap to fine-tune and evaluate)."""
    import json
    import shutil

    from holo.segmentation.infer import WEIGHTS_DIR
    from holo.segmentation.train import inherited_config, save_weights
    from holo.segmentation.unet import unet_from_config

    d = tmp_path_factory.mktemp("start")
    cfg = {**inherited_config(json.loads((WEIGHTS_DIR / "unet.json").read_text())), "channels": [4, 8], "tta": 0}
    save_weights(unet_from_config(cfg).eval(), cfg, d, "unet")
    for name in ("classifier.pt", "classifier.json"):
        shutil.copyfile(WEIGHTS_DIR / name, d / name)
    return d


def _viewer_with_labels(make_napari_viewer, start):
    from holo.napari._layers import labels_layer, tomogram_layers

    z, y, x = np.indices((16, 32, 32)).astype(np.float32)
    cell = ((z - 8) * VS[0]) ** 2 + ((y - 16) * VS[1]) ** 2 + ((x - 16) * VS[2]) ** 2 < 1.6 ** 2
    ri = np.where(cell, 1.367, 1.337).astype(np.float32)
    viewer = make_napari_viewer(show=False)
    for data, kw, kind in tomogram_layers(Tomogram(ri, VS, 1.337, wavelength_um=0.532), name="RI"):
        getattr(viewer, f"add_{kind}")(data, **kw)
    for name, lab in (("RI semantic", cell.astype(np.uint8)), ("RI cells", cell.astype(np.int32))):
        data, kw, _ = labels_layer(lab, VS, name)
        viewer.add_labels(data, **kw)
    _, widget = viewer.window.add_plugin_dock_widget("holo", "Fine-tune on corrected labels")
    widget.ri_combo.setCurrentText("RI")
    widget.semantic_combo.setCurrentText("RI semantic")
    widget.instance_combo.setCurrentText("RI cells")
    widget.epochs.setValue(1)
    widget.steps.setValue(1)
    widget.start_weights = start
    return viewer, widget


@pytest.fixture
def weights_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLO_WEIGHTS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_finetune_widget_saves_a_selectable_user_set(make_napari_viewer, qtbot, weights_home, start_weights):
    viewer, widget = _viewer_with_labels(make_napari_viewer, start_weights)
    widget.name.setText("mine")
    widget.runner.run_button.click()
    qtbot.waitUntil(lambda: widget.runner.run_button.isEnabled() and widget.runner.worker is not None, timeout=240_000)
    assert widget.runner.error is None, widget.runner.error
    assert (weights_home / "mine" / "unet.pt").is_file()
    assert "Dice cell" in widget.result.text() and "→" in widget.result.text()
    _, seg = viewer.window.add_plugin_dock_widget("holo", "Segment & classify")
    assert "user:mine" in [seg.method.itemText(i) for i in range(seg.method.count())]
    widget.run()  # the same name again is refused before anything runs
    assert "exists" in widget.runner.status.text()


def test_finetune_widget_cancel_leaves_nothing(make_napari_viewer, qtbot, weights_home, start_weights):
    _, widget = _viewer_with_labels(make_napari_viewer, start_weights)
    widget.steps.setValue(200)
    widget.runner.run_button.click()
    widget.runner.cancel()
    qtbot.waitUntil(lambda: widget.runner.run_button.isEnabled(), timeout=240_000)
    assert widget.runner.status.text() == "cancelled"
    assert not weights_home.exists() or not any(weights_home.iterdir())
