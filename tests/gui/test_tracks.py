"""``tracks.csv`` of ``holo track`` opened in napari beside its time-lapse tomogram: one
Tracks layer with the divisions as its graph, on the RI layer's time slider and in its µm."""

from __future__ import annotations

import numpy as np
import pandas as pd

from holo.model import Tomogram
from holo.timelapse import TRACK_COLUMNS

VOXEL_UM = (0.8, 0.25, 0.25)
DT_S = 120.0


def _series(tmp_path):
    """A 3-frame TCF: a cell at voxel (6, 20, 10 + 4t) that divides at frame 2 into two at
    y = 12 and 28; and the tracks.csv a tracker would write for it."""
    ri = np.full((3, 12, 40, 40), 1.337, np.float32)
    z, y, x = np.indices(ri.shape[1:])
    rows = []
    for t in range(3):
        cells = [(1, 0, (6, 20, 10 + 4 * t))] if t < 2 else [(2, 1, (6, 12, 18)), (3, 1, (6, 28, 18))]
        for label, (tid, pid, c) in enumerate(cells, start=1):
            ri[t][(z - c[0]) ** 2 / 4 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < 16] = 1.37
            rows.append([tid, pid, t, t * DT_S, label, *(i * v for i, v in zip(c, VOXEL_UM))])
    from holo.io.tcf import write_tcf

    tcf = tmp_path / "cells.tcf"
    write_tcf(tcf, Tomogram(ri, VOXEL_UM, 1.337, wavelength_um=0.532, time_step_s=DT_S))
    csv = tmp_path / "tracks.csv"
    pd.DataFrame(rows, columns=list(TRACK_COLUMNS[:8])).assign(dry_mass_pg=[20.0, 22.0, 12.0, 12.0]).to_csv(csv, index=False)
    return tcf, csv


def test_tracks_csv_opens_as_tracks_on_the_ri_time_axis(make_napari_viewer, tmp_path):
    from napari.layers import Tracks

    tcf, csv = _series(tmp_path)
    viewer = make_napari_viewer(show=True)
    ri = viewer.open(str(tcf), plugin="holo")[0]
    (tracks,) = viewer.open(str(csv), plugin="holo")
    assert isinstance(tracks, Tracks)
    assert tracks.graph == {2: [1], 3: [1]}
    assert viewer.dims.ndim == 4 and tracks.ndim == 4
    np.testing.assert_allclose(tracks.scale, (DT_S, 1, 1, 1))
    np.testing.assert_allclose(ri.scale[0], DT_S)
    assert set(tracks.features.columns) >= {"dry_mass_pg", "track_id", "parent_id"}
    # the world position of every vertex is the RI layer's world position of its cell's centre
    for vertex in tracks.data:
        world = np.asarray(tracks.data_to_world(vertex[1:]))
        index = np.round(np.asarray(ri.world_to_data(world))).astype(int)
        assert ri.data[tuple(index)] > 1.36
    # the time slider steps frame by frame for both layers, and moving it moves the tracks
    axis = 0
    assert viewer.dims.range[axis].step == DT_S
    viewer.dims.set_current_step(axis, 2)
    assert tracks.current_time == 2  # the frame index in the layer's data
    screenshot = viewer.screenshot(canvas_only=True)
    assert screenshot.std() > 0
