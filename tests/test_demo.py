"""`holo demo` end to end: twin → holograms → fields → RI → segmentation → classes →
measurements → report, in a subprocess, checked against the twin's ground truth."""

import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "holo.cli.main", "demo", "-o", str(out), "--size", "256", "--angles", "25", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    report = out / "demo_acquisition" / "report.html"
    assert summary["report"] == str(report) and report.exists()
    for name in ("ri.ome.tif", "labels.ome.tif", "cells.csv", "provenance.json", "report.json"):
        assert (out / "demo_acquisition" / name).exists(), name

    import holo

    tomo = holo.open(out / "demo_acquisition" / "ri.ome.tif")
    truth = holo.open(out / "demo_acquisition.h5").ground_truth
    ri = tomo.frame(0)
    # cells are denser than the medium: the reconstructed RI exceeds n_m inside cells
    assert float(np.percentile(ri, 99.9)) > truth["medium_index"] + 0.01
    # the number of cells found matches the twin within one (touching cells may merge)
    assert abs(summary["n_cells"] - len(truth["classes"])) <= 1
    # organelles: lipid droplets are found when the twin has them (each is 7–40 voxels and
    # two may touch, hence a count within two), no nucleolus is invented
    import pandas as pd
    from scipy import ndimage as ndi

    cells = pd.read_csv(out / "demo_acquisition" / "cells.csv")
    full = np.ones((3, 3, 3), bool)
    n_droplets = ndi.label(truth["semantic"] == 4, structure=full)[1]
    n_nucleoli = ndi.label(truth["semantic"] == 3, structure=full)[1]
    assert n_droplets >= 1
    assert 1 <= int(cells["lipid_droplet_count"].sum()) <= n_droplets + 2
    assert int(cells["nucleolus_count"].sum()) <= n_nucleoli + 1
