"""Digital twin of a holotomography experiment: phantoms with ground truth, simulated
acquisitions and exact references.

The phantom API is imported eagerly (NumPy/SciPy only); the other stages are loaded on
first access so that ``import holo.twin`` stays light.
"""

from __future__ import annotations

import importlib

from holo.twin.phantoms import (
    CELL_CLASSES,
    FAMILY_OF,
    RI_RANGES,
    KINDS,
    SEMANTIC_NAMES,
    UNSEEN_CLASSES,
    UNSEEN_KINDS,
    Phantom,
    grid_axes_um,
    make_cell,
    make_phantom,
    make_sphere_phantom,
)

_LAZY = {
    "simulate_acquisition": "holo.twin.acquire",
    "mie_sphere_field": "holo.twin.mie",
}

__all__ = [
    "CELL_CLASSES",
    "FAMILY_OF",
    "RI_RANGES",
    "KINDS",
    "SEMANTIC_NAMES",
    "UNSEEN_CLASSES",
    "UNSEEN_KINDS",
    "Phantom",
    "grid_axes_um",
    "make_cell",
    "make_phantom",
    "make_sphere_phantom",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'holo.twin' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
