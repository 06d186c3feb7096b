"""napari writers: RI images and labels to OME-TIFF / OME-Zarr with their µm scale."""

from __future__ import annotations

import numpy as np

from holo.model import Tomogram
from holo.napari._layers import META_KEY


def _tomogram(data, meta: dict) -> Tomogram:
    hmeta = (meta.get("metadata") or {}).get(META_KEY, {})
    scale = tuple(float(s) for s in (meta.get("scale") or (1.0, 1.0, 1.0))[-3:])
    ri = data if np.issubdtype(np.dtype(data.dtype), np.floating) else np.asarray(data, np.float32)
    return Tomogram(
        ri=np.asarray(ri, dtype=np.float32),
        voxel_size_um=scale,
        medium_index=float(hmeta.get("medium_index") or 1.337),
        wavelength_um=hmeta.get("wavelength_um"),
        time_step_s=hmeta.get("time_step_s") if np.ndim(data) == 4 else None,
        provenance=dict(hmeta.get("provenance") or {}),
    )


def write_image_ome_tiff(path: str, data, meta: dict) -> list[str]:
    from holo.io.ometiff import write_ome_tiff

    write_ome_tiff(path, _tomogram(data, meta))
    return [path]


def write_image_ome_zarr(path: str, data, meta: dict) -> list[str]:
    from holo.io.omezarr import write_ome_zarr

    write_ome_zarr(path, _tomogram(data, meta))
    return [path]


def _labels_voxel(meta: dict):
    return tuple(float(s) for s in (meta.get("scale") or (1.0, 1.0, 1.0))[-3:])


def write_labels_ome_tiff(path: str, data, meta: dict) -> list[str]:
    from holo.io import save_labels

    save_labels(np.asarray(data), path, _labels_voxel(meta))
    return [path]


def write_labels_ome_zarr(path: str, data, meta: dict) -> list[str]:
    from holo.io import save_labels

    save_labels(np.asarray(data), path, _labels_voxel(meta))
    return [path]
