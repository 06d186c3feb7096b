"""napari reader: acquisition HDF5, Tomocube TCF, OME-TIFF and OME-Zarr (by content), and the
``tracks.csv`` of ``holo track`` (by its header) as a Tracks layer."""

from __future__ import annotations

from holo.errors import HoloError
from holo.napari._layers import acquisition_layers, cells_table_beside, default_name, labels_layer, tomogram_layers


def get_reader(path):
    """Return a reader function when holo recognises ``path`` by its content, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    from holo.io import detect_format
    from holo.napari._tracks import is_tracks_table

    if is_tracks_table(path):
        return read_tracks
    try:
        detect_format(path)
    except (HoloError, OSError):
        return None
    return read_layers


def read_layers(path) -> list[tuple]:
    """Layer-data tuples for one file: RI (+ fluorescence, MIP) or holograms; label files
    and the labels stored in an OME-Zarr tomogram come as Labels layers."""
    import holo
    from holo.io import detect_format, is_label_file, read_labels
    from holo.model import Acquisition

    from holo.napari._view import follow_current

    if isinstance(path, (list, tuple)):
        path = path[0]
    follow_current()  # the view opens on the cells, with colour and scale bars
    name = default_name(path)
    fmt = detect_format(path)
    if is_label_file(path, fmt):
        from holo.napari._tracks import track_labels_layer

        timed = track_labels_layer(path, name) if fmt == "ome-zarr" else None
        if timed is not None:  # (T, Z, Y, X) cells by track id of holo track
            return [timed]
        labels, voxel = read_labels(path)
        return [labels_layer(lab, voxel, name if len(labels) == 1 else f"{name} {lab_name}",
                             features=_instance_features(path, lab_name, lab))
                for lab_name, lab in labels.items()]
    obj = holo.open(path)
    if isinstance(obj, Acquisition):
        return acquisition_layers(obj, name)
    layers = tomogram_layers(obj, name)
    if fmt == "ome-zarr":
        from holo.io.omezarr import read_ome_zarr_labels

        for lab_name, lab in read_ome_zarr_labels(path).items():
            layers.append(labels_layer(lab, obj.voxel_size_um, f"{name} {lab_name}",
                                       features=_instance_features(path, lab_name, lab)))
    return layers


def _instance_features(path, label_name: str, labels):
    """The cells table written beside an instance-label image by ``holo run`` / ``holo demo``
    (``instances.ome.tif``, or the ``instances`` labels of ``ri.ome.zarr``), else None."""
    if "instance" not in f"{default_name(path)} {label_name}".lower():
        return None
    return cells_table_beside(path, labels)


def read_tracks(path) -> list[tuple]:
    """The Tracks layer of a ``tracks.csv`` written by ``holo track``."""
    from holo.napari._tracks import read_tracks_table, tracks_layer

    if isinstance(path, (list, tuple)):
        path = path[0]
    from pathlib import Path

    return [tracks_layer(read_tracks_table(path), Path(str(path)).stem, source=str(path))]


__all__ = ["get_reader", "read_layers", "read_tracks"]
