"""Fine-tune widget: corrected labels in the viewer → a new U-Net weights set in the user's folder.

The user corrects the semantic and instance Labels layers that "Segment & classify" made
(paint, erase, split), names the new weights set and clicks Fine-tune. The RI volume and the
corrected labels (the semantic map made to agree with the instances,
:func:`holo.segmentation.train.consistent_labels`) are cut along Y into a part trained on and
a held-out part (:func:`holo.segmentation.train.finetune_volumes`); the run goes on in a
thread worker with a progress bar and Cancel (nothing is written when cancelled or failed),
writes the weights to ``<user weights folder>/<name>`` (:func:`holo.segmentation.infer.user_weights_root`;
the shipped weights are never written) and reports the held-out Dice and AP before and after.
The new set appears in the Segment widget's list as ``user:<name>``.
"""

from __future__ import annotations

import re
import time

import numpy as np
from qtpy.QtWidgets import QFormLayout, QLabel, QLineEdit, QSpinBox, QWidget

from holo.napari._layers import image_layer_to_tomogram
from holo.napari._widgets._common import LayerCombo, is_labels, is_ri_image
from holo.napari._widgets._task import attach_task_layout

#: Prefix of the user's weight sets in the Segment widget's method list.
USER_PREFIX = "user:"


def weight_choices() -> list[str]:
    """The Segment widget's method list: the shipped U-Net sets, the user's sets
    (``user:<name>``), then the other methods."""
    from holo.segmentation import METHODS
    from holo.segmentation.infer import unet_names, user_weight_sets

    return unet_names() + [USER_PREFIX + n for n in user_weight_sets()] + [m for m in METHODS if m != "unet"]


def resolve_choice(choice: str) -> tuple[str, str, object]:
    """(method, weights set name, weights folder or None) of an entry of :func:`weight_choices`."""
    from holo.segmentation import METHODS
    from holo.segmentation.infer import user_weight_sets

    if choice.startswith(USER_PREFIX):
        sets = user_weight_sets()
        name = choice[len(USER_PREFIX):]
        if name not in sets:
            raise ValueError(f"no user weights set {name!r} (available: {', '.join(sets) or 'none'})")
        return "unet", "unet", sets[name]
    method = choice if choice in METHODS and choice != "unet" else "unet"
    return method, choice, None


def gain_text(metrics: dict) -> str:
    """One line per score: held-out value before → after (gain)."""
    before, after = metrics.get("unet_before", {}), metrics.get("unet", {})
    lines = []
    for key, label in (("dice_cell", "Dice cell"), ("dice_nucleus", "Dice nucleus"), ("ap50", "AP@0.5")):
        if key in after:
            b = before.get(key)
            lines.append(f"{label}: {after[key]:.3f}" if b is None else
                         f"{label}: {b:.3f} → {after[key]:.3f} ({after[key] - b:+.3f})")
    return "\n".join(lines)


def _current(data, viewer) -> np.ndarray:
    """The (Z, Y, X) volume of a layer's data at the viewer's current time point."""
    arr = np.asarray(data)
    return arr[int(viewer.dims.current_step[0])] if arr.ndim == 4 else arr


class FinetuneWidget(QWidget):
    """RI layer + corrected semantic and instance layers → a fine-tuned U-Net weights set."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.ri_combo = LayerCombo(napari_viewer, is_ri_image)
        self.semantic_combo = LayerCombo(napari_viewer, is_labels)
        self.instance_combo = LayerCombo(napari_viewer, is_labels)
        self.name = QLineEdit(time.strftime("finetuned-%Y%m%d-%H%M"))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 200)
        self.epochs.setValue(10)
        self.steps = QSpinBox()
        self.steps.setRange(1, 1000)
        self.steps.setValue(30)
        self.result = QLabel("")
        form = QFormLayout()
        for label, w in (("RI layer", self.ri_combo), ("semantic labels", self.semantic_combo),
                         ("instance labels", self.instance_combo), ("new weights name", self.name),
                         ("epochs", self.epochs), ("steps per epoch", self.steps)):
            form.addRow(label, w)
        self.runner = attach_task_layout(self, form, "Fine-tune", self.run)
        self.layout().insertWidget(self.layout().count() - 1, self.result)
        self.out_dir = None
        self.start_weights = None  # folder fine-tuning starts from (None: the shipped weights)

    def _inputs(self):
        """(TrainingVolume, output folder) or a message saying what is missing."""
        from holo.segmentation.data import TrainingVolume
        from holo.segmentation.infer import user_weights_root
        from holo.segmentation.train import consistent_labels

        layers = (self.ri_combo.layer(), self.semantic_combo.layer(), self.instance_combo.layer())
        if any(layer is None for layer in layers):
            return "choose an RI layer and the corrected semantic and instance labels"
        ri_layer, sem_layer, inst_layer = layers
        if sem_layer is inst_layer:
            return "the semantic and instance labels must be two layers"
        name = self.name.text().strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            return "name: letters, digits, '.', '_' or '-' only"
        out = user_weights_root() / name
        if out.exists():
            return f"{out} exists: choose another name"
        tomo = image_layer_to_tomogram(ri_layer)
        ri = tomo.frame(int(self.viewer.dims.current_step[0])) if tomo.has_time else tomo.ri
        inst = _current(inst_layer.data, self.viewer).astype(np.int32)
        sem = _current(sem_layer.data, self.viewer)
        if inst.shape != ri.shape or sem.shape != ri.shape:
            return f"labels {inst.shape} / {sem.shape} and RI {ri.shape} differ in shape"
        vol = TrainingVolume(np.asarray(ri, np.float32), consistent_labels(sem, inst), inst,
                             tuple(tomo.voxel_size_um), float(tomo.medium_index), {}, ri_layer.name)
        return vol, out

    def run(self):
        got = self._inputs()
        if isinstance(got, str):
            self.runner.status.setText(got)
            return
        vol, out = got
        epochs, steps, start = int(self.epochs.value()), int(self.steps.value()), self.start_weights
        self.result.setText("")

        def work(progress):
            from holo.segmentation.train import finetune_volumes

            return finetune_volumes([vol], out, epochs=epochs, steps_per_epoch=steps, source=vol.source,
                                    weights_dir=start, log=lambda s: None, progress=progress)

        def done(result):
            self.out_dir = result["out_dir"]
            self.result.setText(f"held-out part, before → after:\n{gain_text(result['metrics'])}\n"
                                f"saved as {USER_PREFIX}{out.name} ({result['out_dir']})")

        self.runner.start(work, done)
