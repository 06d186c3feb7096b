"""Opening a file reads headers only: `holo info` on an OME-TIFF reads no pixel, a TCF's 2D MIP
is read when it is used (like its RI frames), never when the file is opened."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import tifffile

import holo.memory
from holo.cli.info import describe
from holo.errors import ResourceError, ValidationError
from holo.io import read_ome_tiff, read_tcf, write_ome_tiff, write_tcf


def no_pixel_reads(monkeypatch):
    """Make any pixel read through tifffile fail, and leave no memory for one."""

    def refuse(*args, **kwargs):
        raise AssertionError("pixel data read")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", refuse)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", refuse)
    monkeypatch.setattr(holo.memory, "available_bytes", lambda: 1024)


def test_info_ome_tiff_reads_headers_only(tmp_path, make_tomogram, monkeypatch):
    tomo = make_tomogram(n_times=3, fluorescence=True, mip=True)
    path = write_ome_tiff(tmp_path / "t.ome.tif", tomo)
    back = read_ome_tiff(path)  # the reader and the header agree
    with monkeypatch.context() as m:
        no_pixel_reads(m)
        with pytest.raises((AssertionError, ResourceError)):
            read_ome_tiff(path)  # the reader would read pixels
        info = describe(path)
    assert info["kind"] == "tomogram" and info["format"] == "ome-tiff"
    assert info["shape"] == list(back.ri.shape) == [3, 8, 12, 10] and info["dtype"] == "float32"
    assert info["voxel_size_um"] == list(back.voxel_size_um) and info["medium_index"] == back.medium_index
    assert info["n_times"] == back.n_times == 3 and info["time_step_s"] == back.time_step_s == 2.0
    assert info["wavelength_um"] == back.wavelength_um and info["mip"] == {"shape": [12, 10], "dtype": "float32"}
    for name, ch in back.fluorescence.items():
        c = info["channels"][name]
        assert c["shape"] == list(ch.data.shape) and c["dtype"] == str(ch.data.dtype)
        assert c["voxel_size_um"] == list(ch.voxel_size_um) and c["offset_z_um"] == ch.offset_z_um
        assert c["time_step_s"] == ch.time_step_s
    assert info["metadata"] == back.metadata and info["provenance"]["method"] == "test"


def test_info_ome_tiff_of_uint16_export(tmp_path, monkeypatch):
    """A foreign uint16 export (RI × 10⁴) is described without reading it (its pixels are never
    written: the file is as large as declared, sparse on disk)."""
    path = tmp_path / "export.ome.tif"
    desc = json.dumps({"holo": {"medium_index": 1.337}})
    with tifffile.TiffWriter(path, ome=True, bigtiff=True) as tw:
        tw.write(shape=(16, 512, 512), dtype=np.uint16,
                 metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 0.5, "Description": desc})
    no_pixel_reads(monkeypatch)
    info = describe(path)
    assert info["shape"] == [16, 512, 512] and info["dtype"] == "float32" and info["stored_dtype"] == "uint16"
    assert info["voxel_size_um"] == [0.5, 0.2, 0.2] and info["medium_index"] == 1.337 and info["mip"] is None


def test_tcf_mip_read_on_access(tmp_path, make_tomogram):
    tomo = make_tomogram(mip=True)
    path = write_tcf(tmp_path / "m.tcf", tomo)
    with h5py.File(path, "a") as f:  # a NaN in the stored MIP: found when, and only when, it is read
        g = f["Data/2DMIP/000000"]
        bad = np.asarray(g[()], np.float32)
        del f["Data/2DMIP/000000"]
        bad[3, 4] = np.nan
        f["Data/2DMIP"].create_dataset("000000", data=bad)
    back = read_tcf(path)
    assert back.mip.shape == (12, 10) and back.mip.dtype == np.float32
    assert np.abs(np.asarray(back.ri) - tomo.ri).max() <= 0.5e-4 + 1e-6  # the volume is intact
    with pytest.raises(ValidationError, match="000000: contains 1 non-finite"):
        np.asarray(back.mip)
