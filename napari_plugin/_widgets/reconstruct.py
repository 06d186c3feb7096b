"""Reconstruct widget: acquisition (layer or file) → RI layer, in a thread with Cancel."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QWidget

from holo.napari._layers import tomogram_layers
from holo.napari._view import follow
from holo.napari._widgets._common import LayerCombo, holo_kind
from holo.napari._widgets._task import attach_task_layout
from holo.reconstruction.methods import DEFAULT_METHOD, METHODS


class ReconstructWidget(QWidget):
    """Pick an acquisition layer (opened with this plugin) or a file, a method and its
    iterations; Run adds the RI layer with its µm scale."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        follow(napari_viewer)  # added RI and label layers open on the cells (holo.napari._view)
        self.layer_combo = LayerCombo(napari_viewer, lambda layer: holo_kind(layer) == "acquisition")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("…or an acquisition .h5 file")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit)
        path_row.addWidget(browse)

        self.method = QComboBox()
        self.method.addItems(METHODS)
        self.method.setCurrentText(DEFAULT_METHOD)  # what the shipped U-Net is trained on
        self.iterations = QSpinBox()
        self.iterations.setRange(0, 10000)
        self.iterations.setSpecialValueText("default")
        form = QFormLayout()
        form.addRow("acquisition layer", self.layer_combo)
        form.addRow("file", path_row)
        form.addRow("method", self.method)
        form.addRow("iterations", self.iterations)
        self.facts = QLabel("")
        self.facts.setWordWrap(True)
        form.addRow(self.facts)
        self.runner = attach_task_layout(self, form, "Reconstruct", self.run)

    def _browse(self):  # pragma: no cover - interactive dialog
        path, _ = QFileDialog.getOpenFileName(self, "Acquisition", "", "Acquisition (*.h5 *.hdf5)")
        if path:
            self.path_edit.setText(path)

    def source_path(self) -> str:
        if self.path_edit.text().strip():
            return self.path_edit.text().strip()
        layer = self.layer_combo.layer()
        if layer is None:
            raise ValueError("choose an acquisition layer or a file")
        return layer.metadata["holo"]["path"]

    def run(self):
        try:
            path = self.source_path()
        except ValueError as exc:
            self.runner.status.setText(str(exc))
            return
        method = self.method.currentText()
        iterations = self.iterations.value() or None

        def work(progress):
            from holo.pipeline import reconstruct

            return reconstruct(path, method=method, iterations=iterations, progress=progress)

        def done(tomo):
            from holo.sample import sample_name
            from holo.segmentation.report import reconstruction_facts

            for data, kw, kind in tomogram_layers(tomo, f"{sample_name(path)} RI ({method})"):
                getattr(self.viewer, f"add_{kind}")(data, **kw)
            # method, iterations, convergence and the data-consistency residual when present
            self.facts.setText("\n".join(f"{k}: {v}" for k, v in reconstruction_facts(tomo.provenance)))

        self.runner.start(work, done)
