"""Run library work in a napari thread worker with a progress bar and cooperative Cancel.

The library functions take ``progress(done, total, note="")``; the callback stores the
state for a QTimer to display and raises :class:`Cancelled` once Cancel was pressed, which
unwinds the computation at its next progress report.
"""

from __future__ import annotations

from typing import Callable

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget


class Cancelled(Exception):
    """Raised inside the worker when the user pressed Cancel."""


class TaskRunner(QWidget):
    """A Run button, a progress bar, a Cancel button and a status line.

    ``start(fn, on_done)`` runs ``fn(progress)`` in a thread worker and calls ``on_done(result)``
    in the GUI thread. ``worker`` is the running napari worker (tests wait on its signals).
    """

    def __init__(self, run_text: str = "Run", parent=None):
        super().__init__(parent)
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.status = QLabel("")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.run_button, self.bar, self.cancel_button):
            lay.addWidget(w)
        self.worker = None
        self.error: BaseException | None = None
        self._state = {"done": 0, "total": 0, "note": "", "cancel": False}
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._refresh)
        self.cancel_button.clicked.connect(self.cancel)

    def _progress(self, done, total=None, note=""):
        if self._state["cancel"]:
            raise Cancelled()
        self._state.update(done=done, total=total or 0, note=note)

    def _refresh(self):
        s = self._state
        if s["total"]:
            self.bar.setValue(int(100 * min(1.0, s["done"] / s["total"])))
        if s["note"] != "":
            self.status.setText(str(s["note"]))

    def cancel(self):
        self._state["cancel"] = True
        self.status.setText("cancelling…")

    def start(self, fn: Callable, on_done: Callable) -> None:
        from napari.qt.threading import create_worker

        self._state.update(done=0, total=0, note="", cancel=False)
        self.error = None
        self.bar.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("running…")
        # errors are handled here (shown in the status line), so napari must not re-raise them
        worker = create_worker(
            fn,
            self._progress,
            _start_thread=False,
            _connect={
                "returned": lambda result: self._finish(on_done, result),
                "errored": self._failed,
                "finished": self._reset,
            },
        )
        self.worker = worker
        self._timer.start()
        worker.start()

    def _finish(self, on_done, result):
        self.bar.setValue(100)
        self.status.setText("done")
        on_done(result)

    def _failed(self, exc):
        self.error = exc
        if isinstance(exc, Cancelled):
            self.status.setText("cancelled")
        else:
            self.status.setText(f"error: {' '.join(str(exc).split())}")

    def _reset(self):
        self._timer.stop()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)


def attach_task_layout(widget: QWidget, form, run_text: str, run_slot: Callable) -> TaskRunner:
    """Lay out ``form`` above a :class:`TaskRunner` and its status line in ``widget``;
    the run button calls ``run_slot``."""
    runner = TaskRunner(run_text)
    runner.run_button.clicked.connect(run_slot)
    lay = QVBoxLayout(widget)
    lay.addLayout(form)
    lay.addWidget(runner)
    lay.addWidget(runner.status)
    lay.addStretch(1)
    return runner
