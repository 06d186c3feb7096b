"""`holo info` and `holo convert` end to end in a subprocess: output, exit codes, atomicity."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from holo.io import read_ome_tiff, read_ome_zarr, read_tcf, write_acquisition, write_tcf


def holo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "holo.cli.main", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def tcf_series(tmp_path, make_tomogram):
    tomo = make_tomogram(n_times=3, fluorescence=True, mip=True)
    return write_tcf(tmp_path / "in" / "series.tcf", tomo), tomo


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_info_json_every_format(tmp_path, tcf_series, make_acquisition):
    tcf, tomo = tcf_series
    r = holo("info", tcf, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)  # plain JSON only on stdout
    assert info["format"] == "tcf" and info["kind"] == "tomogram"
    assert info["shape"] == [3, 8, 12, 10] and info["voxel_size_um"] == [0.8, 0.2, 0.25]
    assert info["time_step_s"] == 2.0 and info["n_times"] == 3 and info["medium_index"] == 1.337
    assert info["wavelength_um"] == 0.532 and info["channels"]["CH0"]["offset_z_um"] == 1.5
    assert info["channels"]["CH0"]["shape"] == [2, 4, 12, 10] and info["mip"]["shape"] == [12, 10]

    acq = write_acquisition(tmp_path / "a.h5", make_acquisition(ground_truth=True))
    info = json.loads(holo("info", acq, "--json").stdout)
    assert info["kind"] == "acquisition" and info["geometry"] == "illumination-scan"
    assert info["n_frames"] == 3 and info["frame_shape"] == [16, 16] and info["pixel_size_um"] == 0.1
    assert info["holograms"] == {"shape": [3, 16, 16], "dtype": "float32"} and info["fields"] is None
    assert info["ground_truth"]["classes"] == ["lymphocyte"] and info["metadata"]["operator"] == "me"


def test_info_labels_and_zarr(tmp_path, make_tomogram):
    from holo.io import save_labels, save_tomogram

    tomo = make_tomogram()
    lab = np.zeros(tomo.shape_zyx, np.uint16)
    lab[1:3, 1:3, 1:3], lab[5:7, 5:7, 5:7] = 1, 4
    info = json.loads(holo("info", save_labels(lab, tmp_path / "l.ome.tif", tomo.voxel_size_um), "--json").stdout)
    assert info["kind"] == "labels" and info["n_labels"] == 2 and info["max_label"] == 4
    info = json.loads(holo("info", save_labels(lab, tmp_path / "l.ome.zarr", tomo.voxel_size_um), "--json").stdout)
    assert info["kind"] == "labels" and info["format"] == "ome-zarr" and info["voxel_size_um"] == [0.8, 0.2, 0.25]
    z = save_tomogram(tomo, tmp_path / "z.ome.zarr", labels={"semantic": lab})
    info = json.loads(holo("info", z, "--json").stdout)
    assert info["format"] == "ome-zarr" and info["labels"] == ["semantic"] and info["time_step_s"] is None


def test_info_human(tcf_series):
    r = holo("info", tcf_series[0])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{tcf_series[0]}: tomogram, Tomocube TCF"
    rows = dict(ln.strip().split(": ", 1) for ln in lines[1:])
    assert rows["voxel_size"].strip() == "0.8, 0.2, 0.25 µm" and rows["shape"].strip() == "3 × 8 × 12 × 10"
    assert rows["channels.CH0"].strip() == "2 × 4 × 12 × 10 uint8" and rows["channels.CH1.offset_z"].strip() == "-0.5 µm"
    assert rows["metadata.Title"].strip() == "sample A" and rows["time_step"].strip() == "2 s"
    assert len({len(ln) - len(ln.split(": ", 1)[1].lstrip()) for ln in lines[1:]}) == 1  # values in one column


def test_info_human_reads_nested_metadata():
    """JSON stored in a string is flattened; a long list of pairs is summarised, not listed."""
    from holo.cli.info import format_human

    drift = [[0.1 * (i % 3), 0.0] for i in range(48)] + [[0.18, -0.24]]  # longest step: 0.3 µm
    info = {"file": "a.h5", "format": "acquisition", "kind": "acquisition", "pixel_size_um": 0.0691266,
            "holograms": {"shape": [49, 384, 384], "dtype": "uint16"}, "fields": None, "illumination_na": True,
            "metadata": {"camera": json.dumps({"bit_depth": 12, "read_noise_e": 3.0, "noise": True}),
                         "drift_shifts_yx_um": json.dumps(drift), "angles_rad": list(np.linspace(0, 3, 49))}}
    text = format_human(info)
    assert text.splitlines()[0] == "a.h5: acquisition, holo acquisition HDF5"
    rows = {k.strip(): v.strip() for k, v in (ln.split(": ", 1) for ln in text.splitlines()[1:])}
    assert rows == {
        "pixel_size": "0.06913 µm", "holograms": "49 × 384 × 384 uint16", "fields": "—",
        "illumination NA per frame": "recorded", "metadata.camera.bit_depth": "12", "metadata.camera.read_noise": "3 e⁻",
        "metadata.camera.noise": "yes", "metadata.drift_shifts_yx": "49 pairs, max 0.3 µm",
        "metadata.angles": "49 values, 0 to 3 rad",
    }
    assert '\\"' not in text and "[[" not in text


@pytest.mark.parametrize("ext, reader", [(".ome.tif", read_ome_tiff), (".ome.zarr", read_ome_zarr), (".tcf", read_tcf)])
def test_convert_whole_and_frame(tmp_path, tcf_series, ext, reader):
    tcf, tomo = tcf_series
    out = tmp_path / f"out{ext}"
    r = holo("convert", tcf, out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # progress on stderr only
    back = reader(out)
    assert back.ri.shape == (3, 8, 12, 10) and back.time_step_s == 2.0
    # the TCF stored RI × 1e4 in uint16: values agree to half a quantisation step
    assert np.abs(back.frame(2) - tomo.frame(2)).max() <= 0.5e-4 + 1e-6
    assert back.voxel_size_um == pytest.approx(tomo.voxel_size_um) and back.wavelength_um == 0.532
    assert back.metadata["Title"] == "sample A" and back.fluorescence["CH0"].offset_z_um == 1.5
    one = tmp_path / f"one{ext}"
    assert holo("convert", tcf, one, "--frame", 1).returncode == 0
    b1 = reader(one)
    assert b1.ri.shape == (8, 12, 10) and not b1.has_time
    assert np.abs(b1.frame() - tomo.frame(1)).max() <= 0.5e-4 + 1e-6


def test_convert_acquisition(tmp_path, make_acquisition):
    src = write_acquisition(tmp_path / "a.h5", make_acquisition(fields=True))
    assert holo("convert", src, tmp_path / "b.h5").returncode == 0
    with h5py.File(tmp_path / "b.h5") as f:
        assert f.attrs["format"] == "holo-acquisition" and f["fields"].dtype == np.complex64
    r = holo("convert", src, tmp_path / "b.ome.tif")
    assert r.returncode == 2 and "acquisition converts to .h5 only" in r.stderr


def test_exit_1_bad_data_one_line_nothing_left(tmp_path, tcf_series):
    junk = tmp_path / "junk.tcf"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    r = holo("info", junk)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"holo: error: {junk}: file: not a readable HDF5 file")
    r = holo("convert", junk, tmp_path / "o.ome.tif")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(f"holo: error: {junk}: file:")
    assert _files(tmp_path) == ["in", "junk.tcf"]
    # damage the last frame: the conversion fails half way and must leave nothing behind
    tcf, _ = tcf_series
    with h5py.File(tcf, "a") as f:
        del f["Data/3D/000002"]
        f["Data/3D"].create_dataset("000002", data=np.zeros((8, 12), np.uint16))
    for ext in (".ome.tif", ".ome.zarr", ".tcf"):
        r = holo("convert", tcf, tmp_path / f"o{ext}")
        assert r.returncode == 1, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("holo: error:")]
        assert len(errors) == 1 and errors[0].startswith(f"holo: error: {tcf}: /Data/3D/000002: must be 3D")
        assert "Traceback" not in r.stderr
        assert _files(tmp_path) == ["in", "junk.tcf"] and _files(tmp_path / "in") == ["series.tcf"]


def test_exit_2_usage(tmp_path, tcf_series):
    tcf, _ = tcf_series
    assert holo("info").returncode == 2
    assert holo("convert", tcf).returncode == 2
    r = holo("convert", tcf, tmp_path / "o.ome.tif", "--frame", 7)
    assert r.returncode == 2 and "frame 7 is outside 0..2" in r.stderr
    r = holo("convert", tcf, tmp_path / "o.png")
    assert r.returncode == 2 and "cannot tell the output format" in r.stderr
    assert _files(tmp_path) == ["in"]
