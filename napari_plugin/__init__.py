"""napari plugin of holo: readers, writers, sample data and widgets.

Only orchestration lives here; all computation comes from :mod:`holo`,
:mod:`holo.reconstruction` and :mod:`holo.segmentation`, which never import napari or Qt.
"""

__all__: list[str] = []
