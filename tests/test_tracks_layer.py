"""A ``tracks.csv`` of the time-lapse chain as napari Tracks layer data (no Qt): header
recognition, vertices in the RI layer's world coordinates, the division graph, the time
step, the features and one cell's dry-mass history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from holo.napari._tracks import (division_graph, frame_interval_s, is_tracks_table, read_tracks_table,
                                 track_series, tracks_layer, tracks_layer_data)
from holo.segmentation.tracking import frame_detections
from holo.timelapse import TRACK_COLUMNS

VOXEL_UM = (0.8, 0.4, 0.4)
SHAPE = (12, 64, 64)
DT_S = 300.0
N_MEDIUM = 1.337
DN = 0.03
ALPHA_UM3_PER_PG = 0.19  # refractive increment, mL/g = µm³/pg


def _ball(shape, centre_vox, radius_um):
    z, y, x = np.indices(shape, dtype=np.float32)
    r2 = sum(((g - c) * v) ** 2 for g, c, v in zip((z, y, x), centre_vox, VOXEL_UM))
    return r2 <= radius_um ** 2


def _cells(t):
    """(label, centre voxel, radius µm) in frame ``t``: mother M walks along x and divides
    at frame 3 into two daughters of half her volume 3 µm either side along y; cell B sits
    still. Labels are numbered backwards so that they differ from the track ids."""
    x = 12 + 2 * t
    cells = [(9, (6, 52, 20), 3.0)]
    if t < 3:
        cells.append((7, (6, 20, x), 3.0))
    else:
        r = 3.0 / 2 ** (1 / 3)
        cells += [(5, (6, 20 - 7.5, x), r), (3, (6, 20 + 7.5, x), r)]
    return cells


@pytest.fixture(scope="module")
def tracks_csv(tmp_path_factory):
    """A ``tracks.csv`` written like ``holo track`` does (measured detections with track and
    parent ids, time, the columns in :data:`TRACK_COLUMNS` order), plus the ball centres
    (voxel index) per frame. The ids are the known truth (B → 1, M → 2, daughters → 3, 4):
    this tests the layer, not the linker."""
    tables, centres = [], {}
    for t in range(6):
        lab = np.zeros(SHAPE, np.int32)
        for label, c, r in _cells(t):
            lab[_ball(SHAPE, c, r)] = label
            centres[(t, label)] = c
        tables.append(frame_detections(lab, VOXEL_UM, frame=t))
    det = pd.concat(tables, ignore_index=True)
    det["dry_mass_pg"] = det["volume_um3"] * DN / ALPHA_UM3_PER_PG  # uniform RI excess Δn
    det["time_s"] = det["frame"] * DT_S
    tr = det.assign(track_id=det["label"].map({9: 1, 7: 2, 5: 3, 3: 4}),
                    parent_id=det["label"].map({9: 0, 7: 0, 5: 2, 3: 2}))
    tr = tr.assign(mean_ri=N_MEDIUM + DN, touches_border=False, **{"class": "cell"})
    tr = tr[[c for c in TRACK_COLUMNS if c in tr]]
    path = tmp_path_factory.mktemp("track") / "tracks.csv"
    tr.to_csv(path, index=False)
    return path, centres


def test_header_of_holo_tracks_is_recognised_and_others_are_not(tracks_csv, tmp_path):
    path, _ = tracks_csv
    assert is_tracks_table(path)
    truth = tmp_path / "truth_tracks.csv"  # the twin's truth: no label column, volume-centred
    truth.write_text("track_id,parent_id,frame,time_s,class,centroid_z_um,centroid_y_um,centroid_x_um\n1,0,0,0,a,1,2,3\n")
    cells = tmp_path / "cells.csv"
    cells.write_text("cell_id,volume_um3\n1,2\n")
    tsv = tmp_path / "tracks.tsv"
    tsv.write_text(path.read_text())
    assert not any(is_tracks_table(p) for p in (truth, cells, tsv, tmp_path / "missing_tracks.csv", tmp_path))


def test_vertices_lie_on_the_cells_in_the_ri_layer_world(tracks_csv):
    """World coordinate of a vertex (vertex · scale) = the RI layer's world coordinate of the
    ball centre, (t·Δt, i_z v_z, i_y v_y, i_x v_x), for an RI layer of scale (Δt, v)."""
    path, centres = tracks_csv
    tracks = read_tracks_table(path)
    data, kw, kind = tracks_layer(tracks, "tracks")
    assert kind == "tracks" and data.shape == (len(centres), 5)
    assert kw["scale"] == pytest.approx((DT_S, 1.0, 1.0, 1.0))
    assert kw["axis_labels"] == ("t", "z", "y", "x") and kw["units"][0] == "s"
    ri_scale = np.array((DT_S, *VOXEL_UM))
    for row, vertex in zip(tracks.itertuples(index=False), data):
        t, label = int(row.frame), int(row.label)
        assert vertex[0] == row.track_id
        expected = np.array((t, *centres[(t, label)])) * ri_scale
        np.testing.assert_allclose(vertex[1:] * np.array(kw["scale"]), expected, atol=1e-6)


def test_divisions_become_the_graph_and_features_carry_dry_mass(tracks_csv):
    path, centres = tracks_csv
    tracks = read_tracks_table(path)
    data, graph, features = tracks_layer_data(tracks)
    mother = int(tracks.loc[(tracks["frame"] == 0) & (tracks["label"] == 7), "track_id"].iloc[0])
    daughters = set(tracks.loc[tracks["label"].isin([5, 3]), "track_id"].astype(int))
    assert len(daughters) == 2 and mother not in daughters
    assert graph == {d: [mother] for d in daughters}
    assert len(features) == len(data) and "class" not in features
    np.testing.assert_array_equal(features["track_id"], data[:, 0])
    np.testing.assert_array_equal(features["frame"], data[:, 1])
    np.testing.assert_allclose(features["dry_mass_pg"], tracks["dry_mass_pg"])
    # each daughter holds half her mother's volume at the same Δn, to the voxelisation of a
    # 2.4 µm ball on 0.8 µm axial voxels (a few percent)
    m = features.groupby(["track_id"])["dry_mass_pg"].mean()
    for d in daughters:
        assert m[d] / m[mother] == pytest.approx(0.5, rel=0.08)
    # a parent outside the table (a cropped series) is no edge
    assert division_graph(tracks[tracks["track_id"] != mother]) == {}


def test_frame_interval_from_time_column():
    t = pd.DataFrame({"frame": [0, 1, 2, 4], "time_s": [0.0, 90.0, 180.0, 360.0]})
    assert frame_interval_s(t) == pytest.approx(90.0)
    assert frame_interval_s(t[t["frame"] == 0]) == 1.0


def test_dry_mass_history_follows_the_lineage(tracks_csv):
    tracks = read_tracks_table(tracks_csv[0])
    daughter = int(tracks.loc[tracks["label"] == 3, "track_id"].iloc[0])
    own = track_series(tracks, daughter, ancestors=False)
    full = track_series(tracks, daughter)
    assert list(own["time_h"]) == pytest.approx([3 * DT_S / 3600, 4 * DT_S / 3600, 5 * DT_S / 3600])
    assert len(full) == 6 and np.all(np.diff(full["time_h"]) > 0)
    jump = full["dry_mass_pg"].to_numpy()
    assert jump[3] / jump[2] == pytest.approx(0.5, rel=0.08)  # the division halves the mass


def test_labels_of_holo_track_open_on_the_time_axis_in_the_tracks_colours(tracks_csv):
    """``labels.ome.zarr`` beside ``tracks.csv``: a (T, Z, Y, X) Labels layer of scale
    (Δt, v) whose colour of track id k is the Tracks layer's colour of the vertices of k,
    background transparent, ids 1 and 2 (neighbours) clearly different."""
    from napari.layers import Labels, Tracks

    from holo.io.omezarr import write_labels_zarr
    from holo.napari._reader import get_reader
    from holo.napari._tracks import track_rgba

    path, _ = tracks_csv
    tracks = read_tracks_table(path)
    lab = np.zeros((6, *SHAPE), np.int32)
    for t in range(6):
        for label, c, r in _cells(t):
            lab[t][_ball(SHAPE, c, r)] = {9: 1, 7: 2, 5: 3, 3: 4}[label]
    store = path.parent / "labels.ome.zarr"
    write_labels_zarr(store, lab, VOXEL_UM, name="tracks", time_step_s=DT_S)
    (data, kw, kind), = get_reader(str(store))(str(store))
    assert kind == "labels" and data.shape == lab.shape
    assert kw["scale"] == pytest.approx((DT_S, *VOXEL_UM)) and kw["axis_labels"][0] == "t"
    np.testing.assert_array_equal(np.asarray(data[4]), lab[4])
    labels = Labels(data, **kw)
    vertices, tkw, _ = tracks_layer(tracks, "tracks")
    layer = Tracks(vertices, **tkw)
    for tid in (1, 2, 3, 4):
        on_track = layer.track_colors[vertices[:, 0] == tid]
        np.testing.assert_allclose(on_track, np.repeat(track_rgba([tid]), len(on_track), 0), atol=1e-6)
        np.testing.assert_allclose(labels.colormap.map(np.array([tid]))[0], on_track[0], atol=1e-6)
    assert labels.colormap.map(np.array([0]))[0][3] == 0
    assert np.abs(track_rgba([1])[0, :3] - track_rgba([2])[0, :3]).max() > 0.3
