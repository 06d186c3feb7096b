"""How a viewer shows what holo opens: the z slice with the most cells (or, without labels, the
slice through the most matter), an RI colour bar and a scale bar in µm.

:func:`follow` connects a viewer once; each RI or label layer inserted afterwards (by the
reader, the sample data or a widget) reframes the view. The slices are chosen by
:func:`holo.napari._layers.busiest_slice` and :func:`holo.napari._layers.contrast_slice`.
"""

from __future__ import annotations

import weakref

import numpy as np

from holo.napari._layers import DEFAULT_MEDIUM_INDEX, META_KEY, busiest_slice, contrast_slice, holo_kind

__all__ = ["follow", "follow_current", "show_layer"]

_FOLLOWED: "weakref.WeakSet" = weakref.WeakSet()


def _is_cell_labels(layer) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels) and layer.data.ndim == 3 and bool(np.any(np.asarray(layer.data)))


def _go_to_slice(viewer, layer, z_index: int) -> None:
    """Put the viewer's z slider on slice ``z_index`` of ``layer`` (a volume whose last three
    axes are z, y, x), in world coordinates."""
    axis = viewer.dims.ndim - 3
    z_um = float(layer.translate[-3]) + z_index * float(layer.scale[-3])
    start, _, step = viewer.dims.range[axis]
    viewer.dims.set_current_step(axis, int(round((z_um - start) / step)))  # no truncation of z/step


def show_layer(viewer, layer) -> None:
    """Reframe ``viewer`` for a newly added ``layer``: labels of cells → their busiest slice; an
    RI volume → its colour bar (the only one shown), the scale bar, and, unless cell labels
    are open already, the slice through the most matter."""
    if _is_cell_labels(layer):
        _go_to_slice(viewer, layer, busiest_slice(layer.data))
        return
    if holo_kind(layer) != "tomogram":
        return
    for other in viewer.layers:
        if other is not layer and holo_kind(other) == "tomogram":
            other.colorbar.visible = False
    layer.colorbar.visible = True
    viewer.canvas.overlays.scale_bar.visible = True
    if any(_is_cell_labels(other) for other in viewer.layers if other is not layer):
        return
    meta = layer.metadata[META_KEY]
    z = meta.get("contrast_z")
    if z is None:  # an RI layer made by a widget: its current first frame
        data = layer.data[(0,) * (layer.data.ndim - 3)] if layer.data.ndim > 3 else layer.data
        z = contrast_slice(np.asarray(data), float(meta.get("medium_index") or DEFAULT_MEDIUM_INDEX))
    _go_to_slice(viewer, layer, int(z))


def follow(viewer) -> None:
    """Reframe ``viewer`` (see :func:`show_layer`) each time a layer is added; once per viewer."""
    if viewer is None or viewer in _FOLLOWED:
        return
    _FOLLOWED.add(viewer)
    ref = weakref.ref(viewer)

    def _on_inserted(event) -> None:
        v = ref()
        if v is not None:
            show_layer(v, event.value)

    # after napari's own handler, so that the sliders already span the new layer
    viewer.layers.events.inserted.connect(_on_inserted, position="last")


def follow_current() -> None:
    """:func:`follow` the viewer napari is opening files into (none outside a viewer)."""
    try:
        from napari import current_viewer
    except ImportError:  # pragma: no cover
        return
    follow(current_viewer())
