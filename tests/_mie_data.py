"""Exact (Mie) field sets shared by the reconstruction tests: the data never comes from the
model under test."""

from __future__ import annotations

import types

import numpy as np


def mie_fieldset(radius_um, sphere_index, illumination_na, shape_zyx, voxel_size_um, *, wavelength_um, medium_index, objective_na):
    """u/u0 of a sphere at the volume centre for each illumination (NA_x, NA_y), on the
    lateral grid of ``shape_zyx`` / ``voxel_size_um``, as a FieldSet-like namespace."""
    from holo.twin.mie import mie_sphere_field

    na = np.asarray(illumination_na, float)
    u = np.stack(
        [
            mie_sphere_field(radius_um, sphere_index, medium_index, wavelength_um, shape_zyx[1:], voxel_size_um[1], illumination_na=tuple(a), objective_na=objective_na)
            for a in na
        ]
    ).astype(np.complex64)
    return types.SimpleNamespace(
        fields=u, geometry="illumination-scan", wavelength_um=wavelength_um, pixel_size_um=voxel_size_um[1],
        medium_index=medium_index, objective_na=objective_na, illumination_na=na, valid=np.ones(len(na), bool), source=None,
    )
