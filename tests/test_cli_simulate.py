"""``holo simulate`` and ``holo simulate-dataset`` run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from holo.io.acquisition import read_acquisition

SMALL = ["--depth", "12", "--angles", "3", "--phantom", "bacteria"]


def holo(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "holo.cli.main", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_simulate_writes_a_valid_acquisition_with_ground_truth(tmp_path):
    out = tmp_path / "acq.h5"
    res = holo("simulate", "-o", out, "--size", 64, *SMALL, "--seed", 5, "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["n_frames"] == 3 and summary["frame_shape"] == [64, 64]
    acq = read_acquisition(out, lazy=False)
    assert acq.geometry == "illumination-scan" and acq.holograms.shape == (3, 64, 64)
    assert acq.holograms.dtype == np.uint16 and acq.background.shape == (3, 64, 64)
    assert np.array_equal(acq.illumination_na[0], [0, 0])
    gt = acq.ground_truth
    assert gt is not None and gt["ri"].shape[0] == 12
    assert all(c.startswith("bacteria") for c in gt["classes"].values())
    assert acq.metadata["seed"] == 5 and acq.metadata["fringes"] > 0  # instrument-like default
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind


def test_simulate_size_y_x_rotation_and_no_noise(tmp_path):
    out = tmp_path / "rot.h5"
    res = holo("simulate", "-o", out, "--size", 48, 64, *SMALL, "--geometry", "sample-rotation", "--no-noise")
    assert res.returncode == 0, res.stderr
    acq = read_acquisition(out, lazy=False)
    assert acq.frame_shape == (48, 64) and acq.geometry == "sample-rotation"
    assert np.allclose(acq.angles, np.arange(3) * np.pi / 3)
    assert json.loads(acq.metadata["camera"])["noise"] is False


@pytest.mark.parametrize(
    "args",
    [
        ["simulate"],  # -o missing
        ["simulate", "-o", "x.h5", "--geometry", "tilt"],
        ["simulate", "-o", "x.h5", "--size", "4"],
        ["simulate", "-o", "x.h5", "--phantom", "yeast"],
        ["simulate", "-o", "x.h5", "--bit-depth", "11"],
        ["simulate-dataset", "-o", "d", "-n", "0"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    res = subprocess.run([sys.executable, "-m", "holo.cli.main", *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_simulate_dataset_writes_index_and_samples(tmp_path):
    res = holo("simulate-dataset", "-o", tmp_path / "ds", "-n", 2, "--size", 64, "--depth", 12, "--angles", 3,
               "--kinds", "bacteria,rbc", "--seed", 2, "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    doc = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert doc["complete"] and [s["seed"] for s in doc["samples"]] == [200006, 200007]
    assert sum(summary["class_counts"].values()) == sum(s["n_cells"] for s in doc["samples"])
    acq = read_acquisition(tmp_path / "ds" / "sample_0001.h5", lazy=False)
    assert acq.frame_shape == (64, 64) and acq.ground_truth is not None
