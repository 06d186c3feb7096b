"""The Track dry mass widget: choosing a daughter's track (by id, or by clicking her cell in
the Labels layer of track ids) plots her dry mass after her mother's, in the tracks' colours;
with the ``growth.csv`` beside, her fit, its rate's 95 % interval and the note of a rate not
identifiable."""

from __future__ import annotations

import numpy as np
import pandas as pd

from holo.timelapse import TRACK_COLUMNS

DT_S = 1800.0


def _tracks_csv(tmp_path):
    """Mother 1 (frames 0-1, 20 → 24 pg) divides into 2 and 3 (12 → 13 pg) at frame 2."""
    rows = [[1, 0, 0, 0.0, 1, 2.0, 5.0, 5.0, 20.0], [1, 0, 1, DT_S, 1, 2.0, 5.0, 6.0, 24.0],
            [2, 1, 2, 2 * DT_S, 1, 2.0, 3.0, 6.0, 12.0], [3, 1, 2, 2 * DT_S, 2, 2.0, 7.0, 6.0, 12.5],
            [2, 1, 3, 3 * DT_S, 1, 2.0, 3.0, 7.0, 13.0], [3, 1, 3, 3 * DT_S, 2, 2.0, 7.0, 7.0, 13.5]]
    path = tmp_path / "tracks.csv"
    pd.DataFrame(rows, columns=[*TRACK_COLUMNS[:8], "dry_mass_pg"]).to_csv(path, index=False)
    return path


def test_daughter_track_plots_her_lineage_and_a_click_selects_a_track(make_napari_viewer, tmp_path):
    from types import SimpleNamespace

    from holo.napari._tracks import track_rgba
    from holo.napari._widgets.track_plot import TrackPlotWidget

    viewer = make_napari_viewer()
    viewer.open(str(_tracks_csv(tmp_path)), plugin="holo")
    widget = TrackPlotWidget(viewer)
    widget.select_track(3)
    lines = widget.figure.axes[0].get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), [20.0, 24.0])
    np.testing.assert_allclose(lines[1].get_xdata(), [1.0, 1.5])  # hours
    np.testing.assert_allclose(lines[1].get_ydata(), [12.5, 13.5])
    np.testing.assert_allclose(lines[1].get_color(), track_rgba([3])[0])
    widget.select_track(99)  # no such track: an empty plot, no error
    assert not widget.figure.axes[0].get_lines()
    lab = np.zeros((4, 4, 10, 10), np.int32)
    lab[3, :, 2:4, 6:8] = 2
    viewer.add_labels(lab, scale=(DT_S, 1, 1, 1))
    position = (3 * DT_S, 2.0, 3.0, 7.0)
    viewer.dims.point = position  # the click lands in the frame and plane on screen
    widget._on_click(viewer, SimpleNamespace(position=position))
    assert widget.track_spin.value() == 2
    np.testing.assert_allclose(widget.figure.axes[0].get_lines()[1].get_ydata(), [12.0, 13.0])


def test_track_plot_shows_the_rate_interval_and_note(make_napari_viewer, tmp_path):
    from matplotlib.collections import PolyCollection

    from holo.napari._widgets.track_plot import TrackPlotWidget

    path = _tracks_csv(tmp_path)
    k, se = np.log(13.5 / 12.5) / 0.5, 0.02  # daughter 3: 12.5 -> 13.5 pg over 0.5 h
    growth = pd.DataFrame([{"track_id": 3, "parent_id": 1, "n_frames_fitted": 2, "n_frames_alone": 0,
                            "first_time_h": 1.0, "last_time_h": 1.5, "mass_start_pg": 12.5, "mass_end_pg": 13.5,
                            "growth_rate_per_h": k, "growth_rate_se_per_h": se,
                            "growth_rate_ci95_low_per_h": k - 1.96 * se, "growth_rate_ci95_high_per_h": k + 1.96 * se,
                            "growth_identifiable": False, "growth_note": "touches its sister in every fitted frame",
                            "growth_rate_pg_per_h": 2.0, "doubling_time_h": np.log(2.0) / k}])
    growth.to_csv(tmp_path / "growth.csv", index=False)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="holo")
    widget = TrackPlotWidget(viewer)
    widget.select_track(3)
    text = widget.growth_label.text()
    assert text.startswith(f"track 3: k = {k:.3f} ± 0.039 /h (95 %), doubling time ")
    assert text.endswith("† not identifiable: touches its sister in every fitted frame")
    ax = widget.figure.axes[0]
    fit = ax.get_lines()[-1]
    assert fit.get_linestyle() == "--"  # not identifiable
    np.testing.assert_allclose(fit.get_ydata()[[0, -1]], [12.5, 13.5])
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(band) == 1
    widget.select_track(2)  # no row in growth.csv: no fit, no text
    assert widget.growth_label.text() == "" and len(ax.figure.axes[0].get_lines()) == 2
