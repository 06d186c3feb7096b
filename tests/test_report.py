"""The HTML diagnostic report: real JSON, the reconstruction facts, readable figures and a
cells table a biologist reads from the left; rendered by a real browser when one is here."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

from holo.model import Tomogram
from holo.segmentation import Segmentation, measure
from holo.segmentation.report import (
    column_groups,
    column_header,
    histogram_bins,
    mip_contrast_limits,
    reconstruction_facts,
    write_report,
)

N_M = 1.337
PROVENANCE = {
    "method": "gp", "direct_method": "rytov", "parameters": {"iterations": 40, "tol": 1e-3},
    "iterations_run": 40, "converged": False, "relative_change": 0.0028, "data_residual": 0.041,
    "excluded_frames": [], "fourier_map": {"shape_zyx": [12, 48, 48], "hermitian": True},
    "data_consistency": {"rms_phase_residual_rad": 0.081, "dry_mass_ratio": 0.97,
                         "frame_rms_phase_residual_rad": np.array([0.07, 0.2, 0.08]), "flagged_frames": [1],
                         "model": "bpm"},
}


def _sample(classified=True):
    """Two cells (a light and a dense one, the dense one as bright as a spherocyte) in medium."""
    z, y, x = np.mgrid[:12, :48, :48].astype(np.float32)
    ri = np.full(z.shape, N_M, np.float32)
    inst = np.zeros(z.shape, np.int32)
    for label, (cy, cx, n) in enumerate([(14, 14, 1.36), (32, 32, 1.41)], start=1):
        m = (z - 6) ** 2 / 4 + (y - cy) ** 2 + (x - cx) ** 2 < 64
        ri[m] = n + 0.002 * np.sin(x[m])  # some texture inside the cell
        inst[m] = label
    sem = (inst > 0).astype(np.uint8)
    tomo = Tomogram(ri, (0.4, 0.2, 0.2), N_M, wavelength_um=0.532, provenance=PROVENANCE)
    classes = (pd.DataFrame({"cell_id": [1, 2], "class": ["lymphocyte", "rbc_spherocyte"], "confidence": [0.9, 0.8]})
               if classified else None)
    return tomo, Segmentation(sem, inst, method="classic"), measure(tomo, sem, inst, classes=classes)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    tomo, seg, cells = _sample()
    return write_report(out, tomo, seg, cells, title="two cells")


def test_report_json_is_real_json_with_nested_provenance(report):
    text = (report.parent / "report.json").read_text(encoding="utf-8")
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    prov = doc["summary"]["provenance"]
    assert prov["parameters"] == {"iterations": 40, "tol": 1e-3}  # a dict, not str(dict)
    assert prov["data_consistency"]["frame_rms_phase_residual_rad"] == [0.07, 0.2, 0.08]
    assert doc["summary"]["class_counts"] == {"lymphocyte": 1, "rbc_spherocyte": 1}
    assert [c["class"] for c in doc["cells"]] == ["lymphocyte", "rbc_spherocyte"]


def test_reconstruction_facts_in_the_page(report):
    page = report.read_text(encoding="utf-8")
    facts = dict(reconstruction_facts(PROVENANCE))
    assert facts["method"].startswith("gp") and facts["iterations"] == "40 of at most 40"
    assert facts["converged"].startswith("no") and "0.0028" in facts["converged"]
    assert "0.081 rad" in facts["data consistency"] and facts["frames flagged as inconsistent"] == "1"
    for text in facts.values():
        assert text in page
    assert reconstruction_facts({}) == []


def test_cells_table_identity_class_first_units_in_headers(report):
    tomo, seg, cells = _sample()
    cells.insert(0, "sample", "s")
    groups = column_groups(cells.columns)
    assert groups[0] == ("cell", ["sample", "cell_id", "class", "confidence"])
    assert [g for g, _ in groups[1:4]] == ["position", "size and shape", "refractive index and mass"]
    assert sum(len(cols) for _, cols in groups) == len(cells.columns)
    assert column_header("volume_um3") == "volume (µm³)"
    assert column_header("concentration_pg_per_um3") == "concentration (pg/µm³)"
    assert column_header("centroid_z_um") == "z (µm)" and column_header("p_monocyte") == "monocyte"
    page = report.read_text(encoding="utf-8")
    head = page[page.index("<table class='cells'>"):page.index("</thead>")]
    assert head.index(">class<") < head.index(">volume (µm³)<") < head.index(">dry mass (pg)<")


def test_mip_grey_scale_does_not_clip_a_small_dense_cell():
    # a spherocyte-like bead (RI 1.41 with texture) covering ~0.2 % of a wide field, and one
    # hot pixel: a percentile of the field would clip the bead to a white disc
    z, y, x = np.mgrid[:16, :128, :128].astype(np.float32)
    ri = np.full(z.shape, N_M, np.float32)
    bead = (z - 8) ** 2 + (y - 60) ** 2 + (x - 70) ** 2 < 9
    ri[bead] = 1.41 + 0.004 * np.cos(y[bead] + x[bead])
    ri[2, 5, 5] = 1.6
    mips = [ri.max(axis=a) for a in range(3)]
    lo, hi = mip_contrast_limits(mips, N_M)
    assert lo == pytest.approx(N_M)
    inside = ri.max(axis=0)[bead.any(axis=0)]
    assert np.mean(inside >= hi) < 0.25 and hi < 1.5  # the bead keeps its texture, the spike is ignored
    assert np.percentile(ri, 99.9) < np.median(inside)  # the volume's percentile (as before) clips it
    # plain medium: a visible window around it, no division by a zero range
    assert mip_contrast_limits([np.full((4, 4), N_M)], N_M) == pytest.approx((N_M, N_M + 0.005))


@pytest.mark.parametrize("n", [1, 2, 10_000])
def test_histogram_bins_for_1_to_10000_cells(n):
    rng = np.random.default_rng(0)
    vals = rng.lognormal(5, 0.4, n)
    edges = histogram_bins(vals)
    counts, _ = np.histogram(vals, edges)
    assert counts.sum() == n and 1 <= len(edges) - 1 <= 40
    ints = rng.poisson(2, n).astype(float)
    edges = histogram_bins(ints, integer=True)
    assert np.allclose(edges % 1, 0.5) and np.histogram(ints, edges)[0].sum() == n


def test_unclassified_cells_without_warnings(tmp_path):
    tomo, seg, cells = _sample(classified=False)
    cells["class"] = np.nan  # a float column, as read back from a CSV without classes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(tmp_path, tomo, seg, cells)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["summary"]["class_counts"] == {"unclassified": 2}


def _browser():
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium here (apt-get install chromium; .ci/run does)")
def test_report_renders_in_a_browser(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    base = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}"]
    proc = subprocess.run(base + ["--window-size=1400,2400", f"--screenshot={shot}", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    rgb = np.asarray(Image.open(shot).convert("RGB"), float)
    assert rgb.shape[:2] == (2400, 1400)
    assert rgb.std() > 20, "blank page"
    # the MIP figure is drawn: a block of dark (medium) pixels in the upper part of the page
    assert (rgb[:1600].mean(axis=2) < 30).mean() > 0.02
    dom = subprocess.run(base + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<img") >= 3 and "<table class=\"cells\">" in dom and dom.count("<tr>") >= 2 + 2


def _lineage_tracks():
    """Cell 1 grows for 4 frames and divides into 2 and 3; 2 divides again into 4 and 5;
    cell 6 enters at frame 2 and is lost after frame 4; masses double every hour and halve at a
    division (each daughter takes half her mother's)."""
    spans = {1: (0, 3, 0, 0), 2: (4, 7, 1, 1), 3: (4, 9, 1, 1), 4: (8, 9, 2, 2), 5: (8, 9, 2, 2), 6: (2, 4, 0, 0)}
    rows = []
    for tid, (a, b, pid, generation) in spans.items():
        for f in range(a, b + 1):
            rows.append({"track_id": tid, "parent_id": pid, "frame": f, "time_s": f * 900.0,
                         "dry_mass_pg": 20.0 * 2 ** (f * 0.25 - generation), "touches_border": False})
    return pd.DataFrame(rows)


def test_timelapse_report_lineage_layout_and_growth(tmp_path):
    from holo.segmentation.growth import growth_table, lineage_table
    from holo.segmentation.report import lineage_layout, write_timelapse_report

    tracks = _lineage_tracks()
    # sisters 2 and 3 touch in frames 4-7: 2 is never alone (rate not identifiable), 3 is alone in 8-9
    tracks["contact_group"] = np.where(tracks["track_id"].isin([2, 3]) & (tracks["frame"] <= 7), 1, 0)
    growth, lineage = growth_table(tracks), lineage_table(tracks)
    y = lineage_layout(lineage)
    # leaves 4, 5, 3, 6 on 0, 1, 2, 3; each mother midway between her daughters
    assert [y[t] for t in (4, 5, 3, 6)] == [0.0, 1.0, 2.0, 3.0]
    assert y[2] == 0.5 and y[1] == (y[2] + y[3]) / 2
    tomo = Tomogram(np.full((10, 4, 8, 8), N_M, np.float32), voxel_size_um=(0.5,) * 3, medium_index=N_M,
                    time_step_s=900.0)
    page = write_timelapse_report(tmp_path, tomo, tracks, growth, lineage).read_text()
    assert "alt='growth curves'" in page and "alt='lineage'" in page
    doc = json.loads((tmp_path / "report.json").read_text())
    s = doc["summary"]
    assert s["n_tracks"] == 6 and s["n_divisions"] == 2 and s["n_frames"] == 10
    # k = ln 2 per hour exactly (tracks with ≥ 4 frames), doubling time 1 h
    assert s["median_growth_rate_per_h"] == pytest.approx(np.log(2.0), rel=1e-9)
    assert s["median_doubling_time_h"] == pytest.approx(1.0, rel=1e-9)
    # each fitted rate with its 95 % interval (which holds the true ln 2 / h), the note of track 2
    assert s["n_growth_fits"] == 3 and s["n_growth_not_identifiable"] == 1 and s["n_growth_not_fitted"] == 3
    assert "3 growth rates fitted, 1 not identifiable" in page
    rows = {r["track_id"]: r for r in doc["growth"]}
    for tid in (1, 2, 3):
        r = rows[tid]
        assert r["growth_rate_ci95_low_per_h"] < np.log(2.0) < r["growth_rate_ci95_high_per_h"]
        half = 0.5 * (r["growth_rate_ci95_high_per_h"] - r["growth_rate_ci95_low_per_h"])
        mark = "†" if tid == 2 else ""
        assert f"<td>0.693 ± {half:#.2g}{mark}</td>" in page
    assert rows[2]["growth_identifiable"] is False
    assert rows[2]["growth_note"] == "touches its sister in every fitted frame"
    assert rows[3]["growth_identifiable"] is True and rows[3]["n_frames_alone"] == 2
    row2 = page[page.index("<tr><td>2</td>"):]
    assert row2[: row2.index("</tr>")].endswith("<td>touches its sister in every fitted frame</td>")
    assert "<p>† rate not identifiable" in page
    assert rows[6]["growth_note"] == "fewer than 4 usable frames" and "fewer than 4 usable frames</td>" in page


def test_doubling_time_interval_and_growth_text():
    from holo.segmentation.report import doubling_time_interval_h, growth_rate_text

    ln2 = np.log(2.0)
    assert doubling_time_interval_h(0.5, 1.0) == pytest.approx((ln2, 2 * ln2))
    assert doubling_time_interval_h(-0.1, 0.2) == (pytest.approx(ln2 / 0.2), np.inf)  # no growth within the interval
    assert all(np.isnan(doubling_time_interval_h(-0.2, -0.1)))
    row = {"growth_rate_per_h": 0.2, "growth_rate_ci95_low_per_h": 0.18, "growth_rate_ci95_high_per_h": 0.22,
           "doubling_time_h": ln2 / 0.2, "growth_rate_pg_per_h": 5.0, "growth_identifiable": False,
           "growth_note": "touches other cells in every fitted frame"}
    assert growth_rate_text(row) == ("k = 0.200 ± 0.020 /h (95 %), doubling time 3.47 (3.15–3.85) h, 5.00 pg/h; "
                                     "† not identifiable: touches other cells in every fitted frame")
    short = {"growth_rate_per_h": np.nan, "growth_note": "fewer than 4 usable frames", "growth_identifiable": False}
    assert growth_rate_text(short) == "no growth rate: fewer than 4 usable frames"
