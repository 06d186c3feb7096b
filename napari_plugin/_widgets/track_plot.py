"""Track dry mass: one cell's dry mass over time, back through its mother and earlier
ancestors (the curve halves at each division), for a track chosen by its id or by clicking
its cell in a Labels layer of ``holo track`` (cells labelled by track id). With the
``growth.csv`` beside the tracks table, the chosen track's exponential fit is drawn with the
band of its rate's 95 % interval (dashed when the rate is not identifiable) and a line below
the plot gives k ± interval, the doubling time and the note
(:func:`holo.segmentation.report.growth_rate_text`)."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFormLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

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
        self.growth_label = QLabel("")
        self.growth_label.setWordWrap(True)
        self._growth = (None, None)  # (growth.csv path and mtime, its table)
        form = QFormLayout()
        form.addRow("tracks layer", self.layer_combo)
        form.addRow("track id", self.track_spin)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.growth_label)
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

    def growth_row(self):
        """The chosen track's row of the ``growth.csv`` beside the layer's tracks table (None without)."""
        from holo.napari._layers import META_KEY
        from holo.napari._tracks import read_growth_beside, track_growth

        layer = self.layer_combo.layer()
        source = layer.metadata.get(META_KEY, {}).get("source") if layer is not None else None
        if not source:
            return None
        path = Path(str(source)).parent / "growth.csv"
        key = (str(path), path.stat().st_mtime_ns if path.is_file() else None)
        if self._growth[0] != key:
            self._growth = (key, read_growth_beside(source))
        return track_growth(self._growth[1], self.track_spin.value())

    def plot(self, *_):
        from holo.napari._tracks import track_rgba
        from holo.segmentation.report import growth_rate_text

        self.figure.clear()
        ax = self.figure.add_subplot(111)
        s = self.series()
        text = ""
        if s is not None:
            for tid, g in s.groupby("track_id", sort=False):
                ax.plot(g["time_h"], g["dry_mass_pg"], "o-", ms=3, color=track_rgba([tid])[0], label=f"track {tid}")
            row = self.growth_row()
            if row is not None:
                self._draw_fit(ax, row, track_rgba([self.track_spin.value()])[0])
                text = f"track {self.track_spin.value()}: {growth_rate_text(row)}"
            ax.legend(fontsize=7)
        self.growth_label.setText(text)
        ax.set_xlabel("time (h)")
        ax.set_ylabel("dry mass (pg)")
        self.canvas.draw()

    @staticmethod
    def _draw_fit(ax, row, color) -> None:
        """The fitted exponential over the fitted span and the band of k's 95 % interval."""
        import numpy as np

        from holo.segmentation.report import growth_fit_curves, growth_identifiable

        if not np.isfinite(float(row["growth_rate_per_h"])):
            return
        t = np.linspace(float(row["first_time_h"]), float(row["last_time_h"]), 20)
        fit, lo, hi = growth_fit_curves(row, t)
        ident = bool(growth_identifiable(row.to_frame().T)[0])
        ax.plot(t, fit, "-" if ident else "--", lw=1, color="0.2", label="fit" if ident else "fit (not identifiable)")
        if np.isfinite(lo).all() and np.isfinite(hi).all():
            ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0, label="95 % interval of k")
