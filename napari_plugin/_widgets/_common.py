"""Small shared Qt helpers: layer pickers that follow the viewer's layer list."""

from __future__ import annotations

from typing import Callable

from qtpy.QtWidgets import QComboBox

from holo.napari._layers import META_KEY, holo_kind


class LayerCombo(QComboBox):
    """A combo box listing the viewer's layers that satisfy ``accept(layer)``."""

    def __init__(self, viewer, accept: Callable, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_):
        current = self.currentText()
        self.clear()
        names = [layer.name for layer in self.viewer.layers if self.accept(layer)]
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        elif names:
            self.setCurrentIndex(len(names) - 1)

    def layer(self):
        name = self.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None


def is_ri_image(layer) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image) and layer.data.ndim in (3, 4) and holo_kind(layer) not in ("acquisition", "fluorescence", "mip")


def is_labels(layer) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels)
