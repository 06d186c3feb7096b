"""Import widget: camera frames (folder or TIFF stack) + optics → acquisition ``.h5``, then opened.

The same import as ``holo import`` (:func:`holo.importing.import_camera`): frames, optional
background, optics from a sidecar and/or the fields here (fields win; a field left at its
"from sidecar" value is not given), illumination NAs measured when missing, written
atomically. Errors appear as one line in the status (file and item); nothing is added then.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QWidget

from holo.napari._widgets._task import attach_task_layout

FROM_SIDECAR = "from sidecar"
GEOMETRY_CHOICES = (FROM_SIDECAR, "illumination-scan", "sample-rotation")


def _optional_spin(lo: float, hi: float, decimals: int, suffix: str) -> QDoubleSpinBox:
    """A spin box whose minimum (0) reads :data:`FROM_SIDECAR` and means "not given"."""
    box = QDoubleSpinBox()
    box.setRange(0.0, hi)
    box.setDecimals(decimals)
    box.setSuffix(suffix)
    box.setSpecialValueText(FROM_SIDECAR)
    box.setValue(0.0)
    box.setToolTip(f"{FROM_SIDECAR} (0) or a value ≥ {lo}")
    return box


def _path_edit(placeholder: str) -> QLineEdit:
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    return edit


def _text_path(edit: QLineEdit) -> Path | None:
    text = edit.text().strip()
    return Path(text).expanduser() if text else None


class ImportWidget(QWidget):
    """Camera frames → acquisition ``.h5`` (:func:`holo.importing.import_camera`), opened in the
    viewer with holo's reader once written."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.frames = _path_edit("folder of TIFF/PNG frames, a multi-page TIFF or a raw off-axis .h5")
        self.background = _path_edit("optional: folder, stack or one frame (default background/)")
        self.sidecar = _path_edit("optional: optics.json/yaml (default: found beside the frames)")
        self.out = _path_edit("acquisition file to write (.h5)")
        self.wavelength_um = _optional_spin(0.2, 2.0, 4, " µm")
        self.pixel_size_um = _optional_spin(0.001, 100.0, 4, " µm")
        self.medium_index = _optional_spin(1.0, 2.0, 4, "")
        self.objective_na = _optional_spin(0.05, 1.7, 3, "")
        self.geometry = QComboBox()
        self.geometry.addItems(GEOMETRY_CHOICES)
        self.estimate_na = QCheckBox("measure missing illumination NAs")
        self.estimate_na.setChecked(True)
        form = QFormLayout()
        form.addRow("frames", self.frames)
        form.addRow("background", self.background)
        form.addRow("optics file", self.sidecar)
        form.addRow("wavelength", self.wavelength_um)
        form.addRow("pixel size (sample)", self.pixel_size_um)
        form.addRow("medium index", self.medium_index)
        form.addRow("objective NA", self.objective_na)
        form.addRow("geometry", self.geometry)
        form.addRow("", self.estimate_na)
        form.addRow("write to", self.out)
        self.runner = attach_task_layout(self, form, "Import", self.run)

    def optics(self) -> dict:
        """The optics typed in, as sidecar keys (only those given)."""
        given = {
            "wavelength_um": self.wavelength_um.value(),
            "pixel_size_um": self.pixel_size_um.value(),
            "medium_index": self.medium_index.value(),
            "objective_na": self.objective_na.value(),
        }
        out = {k: v for k, v in given.items() if v > 0}
        if self.geometry.currentText() != FROM_SIDECAR:
            out["geometry"] = self.geometry.currentText()
        return out

    def _paths(self) -> tuple[Path, Path] | None:
        """(frames, out), or None with the reason in the status line."""
        frames, out = _text_path(self.frames), _text_path(self.out)
        if frames is None:
            self.runner.status.setText("type the frames folder or stack")
        elif out is None or not out.name.lower().endswith((".h5", ".hdf5")):
            self.runner.status.setText("type the acquisition file to write (.h5)")
        elif out.exists():
            self.runner.status.setText(f"{out.name} exists: choose a new name (nothing is overwritten)")
        else:
            return frames, out
        return None

    def run(self):
        paths = self._paths()
        if paths is None:
            return
        frames, out = paths
        background, sidecar = _text_path(self.background), _text_path(self.sidecar)
        optics, estimate = self.optics(), self.estimate_na.isChecked()

        def work(progress):
            from holo.importing import import_camera

            return import_camera(frames, out, sidecar=sidecar, background=background, estimate_na=estimate,
                                 progress=progress, **optics)

        def done(acq):
            self.viewer.open(str(out), plugin="holo")
            note = ", illumination NA measured" if acq.metadata.get("illumination_na_estimated") else ""
            self.runner.status.setText(f"wrote {out.name}: {acq.n_frames} frames{note}")

        self.runner.start(work, done)
