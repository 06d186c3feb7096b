"""Segment & classify widget: RI layer → semantic and instance Labels with a features table."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QWidget

from holo.napari._layers import cells_features, image_layer_to_tomogram, labels_layer
from holo.napari._view import follow
from holo.napari._widgets._common import LayerCombo, is_ri_image
from holo.napari._widgets._task import attach_task_layout


class SegmentWidget(QWidget):
    """Runs segmentation (a shipped U-Net weights set, e.g. ``unet`` or ``unet_fine``, or the
    classic baseline), per-cell classification and morphometrics on the chosen RI layer
    (current time point) and adds two Labels layers; the instance layer carries the cells
    table (morphometrics, class, confidence) as ``features``."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        follow(napari_viewer)  # added RI and label layers open on the cells (holo.napari._view)
        self.layer_combo = LayerCombo(napari_viewer, is_ri_image)
        from holo.napari._widgets.finetune import weight_choices

        self.method = QComboBox()
        self.method.addItems(weight_choices())  # shipped U-Nets, the user's fine-tuned sets, other methods
        self.method.setCurrentText("unet")
        self.fast = QCheckBox("fast (no test-time flips, ≈ 4× faster)")
        self.fast.setToolTip("U-Net only: one forward pass per tile instead of four mirrored ones; "
                             "slightly fewer small cells found (model card, fast mode)")
        form = QFormLayout()
        form.addRow("RI layer", self.layer_combo)
        form.addRow("method", self.method)
        form.addRow("", self.fast)
        self.runner = attach_task_layout(self, form, "Segment && classify", self.run)

    def run(self):
        layer = self.layer_combo.layer()
        if layer is None:
            self.runner.status.setText("choose an RI layer")
            return
        tomo = image_layer_to_tomogram(layer)
        if tomo.has_time:
            t = int(self.viewer.dims.current_step[0])
            tomo = tomo.replace(ri=tomo.frame(t), time_step_s=None)
        from holo.napari._widgets.finetune import resolve_choice

        method, name, weights = resolve_choice(self.method.currentText())
        base = layer.name
        fast = self.fast.isChecked() and method == "unet"

        def work(progress):
            from holo.segmentation import diagnose

            seg, cells, _ = diagnose(tomo, method=method, name=name, weights_dir=weights, progress=progress, fast=fast)
            return seg, cells

        def done(result):
            seg, cells = result
            features = cells_features(cells)
            sem_data, sem_kw, _ = labels_layer(seg.semantic, tomo.voxel_size_um, f"{base} semantic")
            self.viewer.add_labels(sem_data, **sem_kw)
            inst_data, inst_kw, _ = labels_layer(seg.instance, tomo.voxel_size_um, f"{base} cells", features=features)
            inst_kw["metadata"]["holo"]["ri_layer"] = base
            self.viewer.add_labels(inst_data, **inst_kw)

        self.runner.start(work, done)
