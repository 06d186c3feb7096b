"""Track dry mass: one cell's dry mass over time, back through its mother and earlier
ancestors (the curve halves at each division), for a track chosen by its id or by clicking
its cell in a Labels layer of ``holo track`` (cells labelled by track id)."""

from __future__ import annotations

from qtpy.QtWidgets import QFormLayout, QSpinBox, QVBoxLayout, QWidget

from holo.napari._widgets._common import LayerCombo

__all__ = ["TrackPlotWidget"]


def _is_tracks(layer) -> bool:
    from napari.layers import Tracks

    return isinstance(layer, Tracks) and "dry_mass_pg" in layer.features


class TrackPlotWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.layer_combo = LayerCombo(napari_viewer, _is_tracks)
        self.track_spin = QSpinBox()
        self.track_spin.setRange(0, 2**31 - 1)
        self.figure = Figure(figsize=(4, 3), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        form = QFormLayout()
        form.addRow("tracks layer", self.layer_combo)
        form.addRow("track id", self.track_spin)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.canvas, 1)
        self.track_spin.valueChanged.connect(self.plot)
        self.layer_combo.currentTextChanged.connect(self.plot)
        napari_viewer.mouse_drag_callbacks.append(self._on_click)

    def _on_click(self, viewer, event):
        """A click on a cell of a time-lapse Labels layer selects its track."""
        from napari.layers import Labels

        for layer in reversed(list(viewer.layers)):
            if isinstance(layer, Labels) and layer.visible and layer.ndim == 4:
                value = layer.get_value(event.position, world=True)
                if value:
                    self.select_track(int(value))
                    return

    def select_track(self, track_id: int) -> None:
        self.track_spin.setValue(int(track_id))
        self.plot()

    def series(self):
        """The chosen track's :func:`holo.napari._tracks.track_series` (None without one)."""
        from holo.napari._tracks import track_series

        layer = self.layer_combo.layer()
        tid = self.track_spin.value()
        if layer is None or tid <= 0 or tid not in set(layer.features["track_id"].astype(int)):
            return None
        return track_series(layer.features, tid)

    def plot(self, *_):
        from holo.napari._tracks import track_rgba

        self.figure.clear()
        ax = self.figure.add_subplot(111)
        s = self.series()
        if s is not None:
            for tid, g in s.groupby("track_id", sort=False):
                ax.plot(g["time_h"], g["dry_mass_pg"], "o-", ms=3, color=track_rgba([tid])[0], label=f"track {tid}")
            ax.legend(fontsize=7)
        ax.set_xlabel("time (h)")
        ax.set_ylabel("dry mass (pg)")
        self.canvas.draw()
