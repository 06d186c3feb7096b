"""OME-TIFF and OME-Zarr: round trips with physical sizes and metadata, labels, dispatch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from holo.errors import FormatError
from holo.io import (
    detect_format,
    open_path,
    read_labels_tiff,
    read_ome_tiff,
    read_ome_zarr,
    read_ome_zarr_labels,
    save_labels,
    read_labels,
    save_tomogram,
    write_labels_tiff,
    write_ome_tiff,
    write_ome_zarr,
)


def _check_same(back, tomo):
    # float32 stored losslessly: values identical
    for t in range(tomo.n_times):
        np.testing.assert_array_equal(back.frame(t), tomo.frame(t))
    assert back.ri.shape == tomo.ri.shape
    assert back.voxel_size_um == pytest.approx(tomo.voxel_size_um, rel=1e-12)
    assert back.medium_index == tomo.medium_index and back.wavelength_um == tomo.wavelength_um
    assert back.time_step_s == tomo.time_step_s
    assert back.metadata == tomo.metadata
    assert back.provenance["method"] == "test" and back.provenance["parameters"] == {"a": 1}
    assert set(back.fluorescence) == set(tomo.fluorescence)
    for name, ch in tomo.fluorescence.items():
        b = back.fluorescence[name]
        np.testing.assert_array_equal(np.asarray(b.data), ch.data)
        assert b.offset_z_um == ch.offset_z_um and b.voxel_size_um == pytest.approx(ch.voxel_size_um)
    if tomo.mip is not None:
        np.testing.assert_array_equal(back.mip, tomo.mip)


@pytest.mark.parametrize("n_times", [None, 3])
def test_ome_tiff_round_trip(tmp_path, make_tomogram, n_times):
    tomo = make_tomogram(n_times=n_times, fluorescence=True, mip=True)
    calls = []
    p = save_tomogram(tomo, tmp_path / "x.ome.tif", progress=lambda d, n: calls.append((d, n)))
    assert calls == [(t + 1, n_times or 1) for t in range(n_times or 1)]
    assert detect_format(p) == "ome-tiff"
    _check_same(open_path(p), tomo)
    with tifffile.TiffFile(p) as tif:  # physical sizes in µm in the OME-XML itself
        s = tif.series[0]
        assert s.axes == ("TZYX" if n_times else "ZYX") and s.dtype == np.float32
        xml = tif.ome_metadata
        assert 'PhysicalSizeZ="0.8"' in xml and 'PhysicalSizeX="0.25"' in xml and 'PhysicalSizeXUnit="µm"' in xml


def test_ome_tiff_foreign_uint16_and_missing_medium(tmp_path):
    """A plain OME-TIFF with uint16 RI × 10⁴ (the usual export) and sizes in nm."""
    ri = np.full((3, 4, 5), 1.3372, np.float64)
    p = tmp_path / "foreign.ome.tif"
    tifffile.imwrite(p, np.rint(ri * 1e4).astype(np.uint16), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 200.0, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 200.0, "PhysicalSizeYUnit": "nm",
                               "PhysicalSizeZ": 0.5, "PhysicalSizeZUnit": "µm"})
    with pytest.raises(FormatError, match="medium_index: medium index not recorded"):
        read_ome_tiff(p)
    tomo = read_ome_tiff(p, medium_index=1.337)
    assert tomo.voxel_size_um == pytest.approx((0.5, 0.2, 0.2))
    assert np.abs(tomo.frame() - 1.3372).max() <= 1e-6  # 13372 / 1e4 exactly, float32 rounding only


def test_labels_tiff(tmp_path):
    lab = np.zeros((4, 6, 5), np.int32)
    lab[1:3, 2:4, 1:4] = 3
    p = save_labels(lab, tmp_path / "lab.ome.tif", (0.8, 0.2, 0.25))
    back, vs = read_labels_tiff(p)
    np.testing.assert_array_equal(back, lab)
    assert back.dtype == np.int32 and vs == pytest.approx((0.8, 0.2, 0.25))
    with pytest.raises(FormatError, match="holds labels"):
        read_ome_tiff(p)
    with pytest.raises(ValueError, match="labels: must be an integer"):
        write_labels_tiff(tmp_path / "f.ome.tif", lab.astype(float), (1, 1, 1))
    assert not (tmp_path / "f.ome.tif").exists()


@pytest.mark.parametrize("n_times", [None, 2])
def test_ome_zarr_round_trip_with_labels(tmp_path, make_tomogram, n_times):
    tomo = make_tomogram(n_times=n_times, fluorescence=True, mip=True)
    sem = (tomo.frame(0) > 1.35).astype(np.uint8)
    inst = sem.astype(np.int32) * 5
    p = save_tomogram(tomo, tmp_path / "x.ome.zarr", labels={"semantic": sem, "instance": inst})
    assert detect_format(p) == "ome-zarr"
    back = open_path(p)
    _check_same(back, tomo)
    labs = read_ome_zarr_labels(p)
    np.testing.assert_array_equal(labs["semantic"], sem)
    np.testing.assert_array_equal(labs["instance"], inst)
    assert labs["instance"].dtype == np.int32
    # the scale is in the NGFF metadata itself, image and labels, units µm
    meta = json.loads((p / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    scale = meta["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[-3:] == [0.8, 0.2, 0.25]
    assert [a.get("unit") for a in meta["axes"]][-3:] == ["micrometer"] * 3
    lmeta = json.loads((p / "labels" / "semantic" / "zarr.json").read_text())["attributes"]["ome"]
    assert lmeta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.8, 0.2, 0.25]
    assert "image-label" in lmeta
    # labels added later to the existing store
    save_labels(sem * 2, p, tomo.voxel_size_um)
    assert set(read_ome_zarr_labels(p)) == {"semantic", "instance", "labels"}
    np.testing.assert_array_equal(read_ome_zarr(p).frame(0), tomo.frame(0))


def test_ome_zarr_atomic_and_errors(tmp_path, make_tomogram):
    tomo = make_tomogram()
    with pytest.raises(ValueError, match="labels\\['bad'\\]: shape"):
        write_ome_zarr(tmp_path / "y.ome.zarr", tomo, labels={"bad": np.zeros((2, 2, 2), np.uint8)})
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "plain.zarr").mkdir()
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_array("a", data=np.zeros(3))
    with pytest.raises(FormatError, match="not an OME-Zarr"):
        read_ome_zarr(tmp_path / "plain.zarr")
    with pytest.raises(FormatError, match="folder is (not|neither) an OME-Zarr"):
        detect_format(tmp_path / "plain.zarr")


def test_save_tomogram_dispatch(tmp_path, make_tomogram):
    tomo = make_tomogram()
    for name, fmt in (("a.tif", "ome-tiff"), ("b.ome.tiff", "ome-tiff"), ("c.zarr", "ome-zarr"), ("d.tcf", "tcf")):
        assert detect_format(save_tomogram(tomo, tmp_path / name)) == fmt
    with pytest.raises(ValueError, match="cannot tell the output format"):
        save_tomogram(tomo, tmp_path / "e.png")
    # content wins over the extension: an OME-TIFF named .h5 is still an OME-TIFF
    (tmp_path / "a.tif").rename(tmp_path / "odd.h5")
    assert detect_format(tmp_path / "odd.h5") == "ome-tiff"


def test_label_only_zarr_store(tmp_path):
    lab = np.zeros((4, 6, 5), np.int32)
    lab[1:3, 2:4, 1:4] = 9
    p = save_labels(lab, tmp_path / "instances.ome.zarr", (0.8, 0.2, 0.25))
    assert detect_format(p) == "ome-zarr"
    labs, vs = read_labels(p)
    np.testing.assert_array_equal(labs["labels"], lab)
    assert labs["labels"].dtype == np.int32 and vs == pytest.approx((0.8, 0.2, 0.25))
    np.testing.assert_array_equal(read_ome_zarr_labels(p)["labels"], lab)
    with pytest.raises(FormatError, match="holds labels"):
        read_ome_zarr(p)
    meta = json.loads((p / "zarr.json").read_text())["attributes"]["ome"]
    assert "image-label" in meta and meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.8, 0.2, 0.25]
    # overwriting a label-only store replaces it (atomically), it does not merge
    save_labels(lab * 0, p, (1.0, 1.0, 1.0))
    labs, vs = read_labels(p)
    assert labs["labels"].max() == 0 and vs == (1.0, 1.0, 1.0)
    tif_labs, tif_vs = read_labels(save_labels(lab, tmp_path / "l.tif", (0.8, 0.2, 0.25)))
    np.testing.assert_array_equal(tif_labs["labels"], lab)
