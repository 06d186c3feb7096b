"""Cells table widget: sortable per-cell table, click to centre the view, CSV export,
and a histogram or scatter plot of the features."""

from __future__ import annotations

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from holo.napari._widgets._common import LayerCombo, is_labels

_CENTROID = ("centroid_z_um", "centroid_y_um", "centroid_x_um")


class _NumericItem(QTableWidgetItem):
    """Sorts by number, not by text."""

    def __lt__(self, other):
        a, b = self.data(Qt.UserRole), other.data(Qt.UserRole)
        if a is None or b is None:
            return super().__lt__(other)
        return a < b


class CellsTableWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.layer_combo = LayerCombo(napari_viewer, lambda layer: is_labels(layer) and len(getattr(layer, "features", [])) > 0)
        self.layer_combo.currentTextChanged.connect(self.refresh)
        napari_viewer.layers.events.inserted.connect(lambda *_: self.refresh())
        self.table = QTableWidget()
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.cellClicked.connect(self._row_clicked)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._export_dialog)
        self.x_feature = QComboBox()
        self.y_feature = QComboBox()
        self.plot_button = QPushButton("Plot")
        self.plot_button.clicked.connect(self.plot)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.table.setMinimumHeight(160)
        form = QFormLayout()
        form.addRow("cells layer", self.layer_combo)
        plot_row = QHBoxLayout()
        plot_row.addWidget(self.x_feature)
        plot_row.addWidget(self.y_feature)
        plot_row.addWidget(self.plot_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.table, 2)
        lay.addWidget(self.export_button)
        lay.addLayout(plot_row)
        lay.addWidget(self.canvas, 1)
        self.refresh()

    # -- table --------------------------------------------------------------------------
    def features(self):
        layer = self.layer_combo.layer()
        return None if layer is None else layer.features

    def refresh(self, *_):
        df = self.features()
        self.table.setSortingEnabled(False)
        self.table.clear()
        if df is None or len(df) == 0:
            self.table.setRowCount(0)
            self.table.setColumnCount(0)
            return
        cols = [c for c in df.columns if c != "index"]
        self.table.setColumnCount(len(cols))
        self.table.setRowCount(len(df))
        self.table.setHorizontalHeaderLabels(cols)
        for r, (_, row) in enumerate(df.iterrows()):
            for c, col in enumerate(cols):
                val = row[col]
                if isinstance(val, (int, float, np.integer, np.floating)) and not isinstance(val, bool):
                    item = _NumericItem(f"{val:.4g}" if isinstance(val, (float, np.floating)) else str(val))
                    item.setData(Qt.UserRole, float(val))
                else:
                    item = QTableWidgetItem(str(val))
                if c == 0:
                    item.setData(Qt.UserRole + 1, int(row["index"]) if "index" in df.columns else r + 1)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        numeric = [c for c in cols if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
        for combo, default in ((self.x_feature, "volume_um3"), (self.y_feature, "")):
            combo.clear()
            if combo is self.y_feature:
                combo.addItem("(histogram)")
            combo.addItems(numeric)
            if default in numeric:
                combo.setCurrentText(default)

    def _row_clicked(self, row: int, _col: int):
        self.center_on_row(row)

    def center_on_row(self, row: int) -> tuple[float, float, float]:
        """Centre the camera and the Z slider on the cell of the table row (table order)."""
        label = self.table.item(row, 0).data(Qt.UserRole + 1)
        layer = self.layer_combo.layer()
        df = layer.features
        rec = df[df["index"] == label].iloc[0] if "index" in df.columns else df.iloc[row]
        if all(c in df.columns for c in _CENTROID):
            world = tuple(float(rec[c]) for c in _CENTROID)
            world = tuple(w + float(t) for w, t in zip(world, layer.translate[-3:]))
        else:
            from scipy import ndimage

            idx = ndimage.center_of_mass(np.asarray(layer.data) == label)
            world = tuple(float(layer.data_to_world(idx)[d]) for d in range(-3, 0))
        self.viewer.dims.set_point(self.viewer.dims.ndim - 3, world[0])
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # napari >= 0.9
        camera.center = world[-self.viewer.dims.ndisplay:]
        layer.selected_label = int(label)
        return world

    def export_csv(self, path: str) -> None:
        from holo.io._atomic import atomic_path

        df = self.features()
        with atomic_path(path) as tmp:
            df.drop(columns=[c for c in ("index",) if c in df.columns]).to_csv(tmp, index=False)

    def _export_dialog(self):  # pragma: no cover - interactive dialog
        path, _ = QFileDialog.getSaveFileName(self, "Export cells", "cells.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    # -- plot ---------------------------------------------------------------------------
    def plot(self):
        df = self.features()
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        x = self.x_feature.currentText()
        y = self.y_feature.currentText()
        if df is not None and x in df.columns:
            from matplotlib.ticker import MaxNLocator

            from holo.segmentation.report import class_colors, class_names, histogram_bins

            names = class_names(df)
            colors = class_colors(names)
            bins = None if y in df.columns else histogram_bins(df[x].to_numpy(float), integer=x.endswith("_count"))
            for name, g in df.groupby(names):
                if y in df.columns:
                    ax.scatter(g[x], g[y], s=14 if len(df) < 2000 else 3, color=colors[name], label=str(name))
                else:
                    ax.hist(g[x].dropna(), bins=bins, histtype="step", linewidth=1.6, color=colors[name], label=str(name))
            ax.set_xlabel(x)
            ax.set_ylabel(y if y in df.columns else "cells")
            if y not in df.columns:
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7)
        self.canvas.draw()
