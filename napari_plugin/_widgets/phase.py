"""Phase widget: one hologram (2D image layer or file) → phase map and 2D cells (holo.phase)."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QWidget

from holo.napari._layers import cells_features
from holo.napari._widgets._common import LayerCombo
from holo.napari._widgets._task import attach_task_layout

NO_BACKGROUND = "(none)"


def is_hologram_image(layer) -> bool:
    """A single-channel 2D image layer (a camera frame)."""
    from napari.layers import Image

    return isinstance(layer, Image) and layer.data.ndim == 2 and not getattr(layer, "rgb", False)


class OptionalLayerCombo(LayerCombo):
    """A :class:`LayerCombo` whose first entry, and default, is :data:`NO_BACKGROUND`."""

    def refresh(self, *_):
        current = self.currentText() or NO_BACKGROUND
        super().refresh()
        self.insertItem(0, NO_BACKGROUND)
        self.setCurrentText(current if self.findText(current) >= 0 else NO_BACKGROUND)

    def layer(self):
        return None if self.currentText() == NO_BACKGROUND else super().layer()


def _spin(value: float, lo: float, hi: float, decimals: int, suffix: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


class PhaseWidget(QWidget):
    """Single-hologram QPI: :func:`holo.phase.analyse_hologram` on the chosen hologram layer (or
    the file typed in, which takes precedence) with an optional background layer; adds the
    phase map (rad, µm scale) and the 2D cell labels carrying the cells table (area, dry
    mass, phase volume) as ``features``."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.hologram = LayerCombo(napari_viewer, is_hologram_image)
        self.background = OptionalLayerCombo(napari_viewer, is_hologram_image)
        self.path = QLineEdit()
        self.path.setPlaceholderText("or a hologram file (TIFF/PNG)")
        self.pixel_size_um = _spin(0.1, 0.001, 100.0, 4, " µm")
        self.wavelength_um = _spin(0.633, 0.2, 2.0, 4, " µm")
        self.objective_na = _spin(0.0, 0.0, 1.7, 3, "")
        self.objective_na.setSpecialValueText("unknown")
        form = QFormLayout()
        form.addRow("hologram layer", self.hologram)
        form.addRow("hologram file", self.path)
        form.addRow("background", self.background)
        form.addRow("pixel size (sample)", self.pixel_size_um)
        form.addRow("wavelength", self.wavelength_um)
        form.addRow("objective NA", self.objective_na)
        self.runner = attach_task_layout(self, form, "Phase && cells", self.run)

    def _inputs(self):
        """(name, hologram array, background array or None), or None with a status message."""
        from holo.phase import read_frame

        bg_layer = self.background.layer()
        background = None if bg_layer is None else np.asarray(bg_layer.data)
        if self.path.text().strip():
            from pathlib import Path

            path = Path(self.path.text().strip())
            return path.stem, read_frame(path), background
        layer = self.hologram.layer()
        if layer is None:
            self.runner.status.setText("choose a hologram layer or type a file")
            return None
        return layer.name, np.asarray(layer.data), background

    def run(self):
        from holo.errors import HoloError

        try:
            inputs = self._inputs()
        except HoloError as exc:
            self.runner.status.setText(str(exc))
            return
        if inputs is None:
            return
        name, hologram, background = inputs
        options = dict(pixel_size_um=self.pixel_size_um.value(), wavelength_um=self.wavelength_um.value(),
                       objective_na=self.objective_na.value() or None)

        def work(progress):
            from holo.phase import analyse_hologram

            return analyse_hologram(hologram, background, **options)

        def done(result):
            pm = result.phase_map
            scale = (pm.pixel_size_um, pm.pixel_size_um)
            self.viewer.add_image(np.asarray(pm.phase, np.float32), name=f"{name} phase", scale=scale, units=("µm", "µm"),
                                  colormap="gray", metadata={"holo": {"kind": "phase", "unit": "rad"}})
            self.viewer.add_labels(np.asarray(result.labels, np.int32), name=f"{name} cells", scale=scale, units=("µm", "µm"),
                                   features=cells_features(result.cells))
            self.runner.status.setText(f"{len(result.cells)} cells, {float(result.cells['dry_mass_pg'].sum()):.1f} pg in all"
                                       if len(result.cells) else "no cell found")

        self.runner.start(work, done)
