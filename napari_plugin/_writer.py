"""napari writers: RI images and labels to OME-TIFF / OME-Zarr with their µm scale.

The manifest offers one writer per layer type and format; labels go through
:func:`holo.io.save_labels`, which picks the format from the extension.
"""

from __future__ import annotations

import numpy as np

from holo.model import Tomogram
from holo.napari._layers import layer_to_tomogram


def _scale(meta: dict) -> tuple:
    return tuple(meta.get("scale") or (1.0, 1.0, 1.0))


def _tomogram(data, meta: dict) -> Tomogram:
    return layer_to_tomogram(np.asarray(data, dtype=np.float32), _scale(meta), meta.get("metadata"))


def _write_labels(path: str, data, meta: dict) -> list[str]:
    from holo.io import save_labels

    save_labels(np.asarray(data), path, tuple(float(s) for s in _scale(meta)[-3:]))
    return [path]


def write_image_ome_tiff(path: str, data, meta: dict) -> list[str]:
    from holo.io.ometiff import write_ome_tiff

    write_ome_tiff(path, _tomogram(data, meta))
    return [path]


def write_image_ome_zarr(path: str, data, meta: dict) -> list[str]:
    from holo.io.omezarr import write_ome_zarr

    write_ome_zarr(path, _tomogram(data, meta))
    return [path]


def write_labels_ome_tiff(path: str, data, meta: dict) -> list[str]:
    return _write_labels(path, data, meta)


def write_labels_ome_zarr(path: str, data, meta: dict) -> list[str]:
    return _write_labels(path, data, meta)
