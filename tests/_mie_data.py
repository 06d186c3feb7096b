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


GOLDEN = np.pi * (3 - np.sqrt(5))


def _spiral(n, na):
    k = np.arange(1, n + 1)
    r, p = na * np.sqrt(k / n), k * GOLDEN
    return np.c_[r * np.cos(p), r * np.sin(p)]


def _ring(n, na):
    t = 2 * np.pi * np.arange(n) / n
    return np.c_[na * np.cos(t), na * np.sin(t)]


def scan_pattern(name):
    """(A, 2) illumination NAs (NA_x, NA_y) of the issue-18 scan patterns, normal incidence
    first: a ring at NA 0.8 ("ring"), three concentric rings ("rings"), a Fermat spiral of 48
    ("spiral") or 24 ("sparse"), 36 random directions ("random"), a half disc ("one-sided")."""
    centre = np.zeros((1, 2))
    if name == "ring":
        return np.r_[centre, _ring(36, 0.8)]
    if name == "rings":
        return np.r_[centre, _ring(6, 0.37), _ring(12, 0.73), _ring(18, 1.1)]
    if name == "spiral":
        return np.r_[centre, _spiral(48, 1.1)]
    if name == "sparse":
        return np.r_[centre, _spiral(24, 1.1)]
    if name == "random":
        rng = np.random.default_rng(1)
        r, t = 1.1 * np.sqrt(rng.random(36)), 2 * np.pi * rng.random(36)
        return np.r_[centre, np.c_[r * np.cos(t), r * np.sin(t)]]
    if name == "one-sided":
        g = _spiral(72, 1.1)
        return np.r_[centre, g[g[:, 0] >= 0][:36]]
    raise ValueError(f"unknown pattern {name!r}")
