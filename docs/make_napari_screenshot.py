"""Make docs/napari.png: the sample tomogram segmented and classified in napari.

Run under a display (e.g. ``xvfb-run -a .venv/bin/python docs/make_napari_screenshot.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "napari.png"


def main() -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    layers = viewer.open_sample("holo", "tomogram")
    ri = layers[0]
    _, seg = viewer.window.add_plugin_dock_widget("holo", "Segment & classify")
    seg.layer_combo.setCurrentText(ri.name)
    seg.runner.run_button.click()
    app = QApplication.instance()
    while seg.runner.worker is None or not seg.runner.run_button.isEnabled():
        app.processEvents()
    if seg.runner.error is not None:
        print(f"segmentation failed: {seg.runner.error}", file=sys.stderr)
        return 1
    _, table = viewer.window.add_plugin_dock_widget("holo", "Cells table")
    table.refresh()
    table.plot()
    viewer.layers[f"{ri.name} semantic"].opacity = 0.35
    viewer.layers[f"{ri.name} cells"].visible = False
    viewer.dims.set_point(0, ri.data.shape[0] * ri.scale[0] / 2)
    viewer.window.resize(1400, 850)
    for _ in range(20):
        app.processEvents()
    OUT.parent.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(OUT)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
