"""Report widget: writes the HTML diagnostic report of an RI layer and its cells layer."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QFormLayout, QHBoxLayout, QLineEdit, QPushButton, QWidget

from holo.napari._layers import image_layer_to_tomogram
from holo.napari._widgets._common import LayerCombo, is_labels, is_ri_image
from holo.napari._widgets._task import attach_task_layout


class ReportWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.ri_combo = LayerCombo(napari_viewer, is_ri_image)
        self.cells_combo = LayerCombo(napari_viewer, lambda layer: is_labels(layer) and len(getattr(layer, "features", [])) > 0)
        self.semantic_combo = LayerCombo(napari_viewer, is_labels)
        self.out_edit = QLineEdit(str(Path.cwd() / "holo-report"))
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.out_edit)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("RI layer", self.ri_combo)
        form.addRow("cells layer", self.cells_combo)
        form.addRow("semantic layer", self.semantic_combo)
        form.addRow("output folder", row)
        self.report_path: Path | None = None
        self.runner = attach_task_layout(self, form, "Write report", self.run)

    def _browse(self):  # pragma: no cover - interactive dialog
        path = QFileDialog.getExistingDirectory(self, "Report folder")
        if path:
            self.out_edit.setText(path)

    def run(self):
        ri_layer, cells_layer = self.ri_combo.layer(), self.cells_combo.layer()
        if ri_layer is None or cells_layer is None:
            self.runner.status.setText("needs an RI layer and a cells layer (run Segment & classify)")
            return
        sem_layer = self.semantic_combo.layer() or cells_layer
        tomo = image_layer_to_tomogram(ri_layer)
        if tomo.has_time:
            tomo = tomo.replace(ri=tomo.frame(int(self.viewer.dims.current_step[0])), time_step_s=None)
        out_dir = Path(self.out_edit.text())
        cells = cells_layer.features.drop(columns=["index"], errors="ignore")

        def work(progress):
            import numpy as np

            from holo.segmentation import Segmentation, write_report

            seg = Segmentation(semantic=np.asarray(sem_layer.data), instance=np.asarray(cells_layer.data))
            out_dir.mkdir(parents=True, exist_ok=True)
            return write_report(out_dir, tomo, seg, cells)

        def done(path):
            self.report_path = Path(path)
            self.runner.status.setText(f"report: {path}")

        self.runner.start(work, done)
