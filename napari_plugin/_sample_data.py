"""Sample data: a small simulated acquisition from the digital twin, and its RI tomogram."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

from holo.napari._layers import acquisition_layers, tomogram_layers

SAMPLE_SEED = 7


@lru_cache(maxsize=1)
def _sample_acquisition_path() -> Path:
    """Simulate once per session (a single nucleated cell, 25 illuminations) into a temp file."""
    from holo.io.acquisition import write_acquisition
    from holo.twin.acquire import phantom_grid_for_frame, simulate_acquisition
    from holo.twin.phantoms import make_phantom

    folder = Path(tempfile.gettempdir()) / "holo-napari-sample"
    path = folder / f"sample_seed{SAMPLE_SEED}.h5"
    if not path.exists():
        (ny, nx), voxel_size_um, _ = phantom_grid_for_frame((256, 256), voxel_size_um=0.2)
        phantom = make_phantom("cell", shape_zyx=(48, ny, nx), voxel_size_um=(voxel_size_um,) * 3, n_cells=1, seed=SAMPLE_SEED)
        acq = simulate_acquisition(phantom, n_angles=25, seed=SAMPLE_SEED)
        write_acquisition(path, acq)
    return path


def sample_acquisition() -> list[tuple]:
    from holo.io.acquisition import read_acquisition

    from holo.napari._view import follow_current

    follow_current()
    return acquisition_layers(read_acquisition(_sample_acquisition_path()), "sample acquisition")


@lru_cache(maxsize=1)
def _sample_tomogram():
    from holo.io.acquisition import read_acquisition
    from holo.pipeline import reconstruct

    return reconstruct(read_acquisition(_sample_acquisition_path()), method="gp")


def sample_tomogram() -> list[tuple]:
    from holo.napari._view import follow_current

    follow_current()
    return tomogram_layers(_sample_tomogram(), "sample RI")
