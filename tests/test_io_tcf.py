"""Tomocube TCF: every variant of the domain notes, a hand-built file, laziness, errors.

Quantisation tolerances: uint16 stores round(RI × 10⁴), so |RI_read − RI| ≤ 0.5·10⁻⁴; uint8
LDM stores round((RI − RIMin) × 10³), so |error| ≤ 0.5·10⁻³. Decoding runs in float32,
whose spacing near RI ≈ 1.4 is 1.2·10⁻⁷, so we add 1e-6 of slack on top of the half step.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import holo.io.tcf as tcf_mod
from holo.errors import FormatError
from holo.io import detect_format, open_path, read_tcf, write_tcf
from holo.io.tcf import tcf_version

SLACK = 1e-6


def _a(v):
    """A TCF attribute: 1-element array, strings as fixed-length bytes."""
    if isinstance(v, str):
        return np.array([v.encode()])
    return np.array([v])


def test_version_compared_numerically():
    assert tcf_version("1.10") > tcf_version("1.3") > tcf_version("1.2.9")
    assert tcf_version("1.4.1") == (1, 4, 1)


@pytest.mark.parametrize(
    "kw, step",
    [
        (dict(format_version="1.2"), 0.0),  # float RI stored directly: exact
        (dict(format_version="1.4.1"), 1e-4),
        (dict(format_version="1.10"), 1e-4),  # 1.10 > 1.3 numerically -> uint16
        (dict(format_version="1.4.1", compression="lz4"), 1e-4),
        (dict(format_version="1.6.0", ldm=True, scalar_type=0, tile_shape=(8, 5, 4)), 1e-4),
        (dict(format_version="1.6.0", ldm=True, scalar_type=1, tile_shape=(3, 5, 7)), 1e-3),
    ],
)
def test_round_trip_variants(tmp_path, make_tomogram, kw, step):
    tomo = make_tomogram(mip=True)
    p = write_tcf(tmp_path / "x.tcf", tomo, **kw)
    assert detect_format(p) == "tcf"
    back = read_tcf(p)
    assert back.shape_zyx == tomo.shape_zyx and back.ri.dtype == np.float32
    err = np.abs(back.frame(0) - tomo.frame(0)).max()
    assert err <= step / 2 + SLACK
    if step:  # quantisation really happens (the fixture's values are not on the grid)
        assert err > 0
    assert np.abs(back.mip - tomo.mip).max() <= step / 2 + SLACK
    assert back.voxel_size_um == tomo.voxel_size_um
    assert back.medium_index == pytest.approx(1.337) and back.wavelength_um == pytest.approx(0.532)
    assert back.metadata["FormatVersion"] == kw["format_version"] and back.metadata["Title"] == "sample A"
    with h5py.File(p) as f:
        frame = f["Data/3D/000000"]
        v = tcf_version(kw["format_version"])
        if kw.get("ldm"):
            assert isinstance(frame, h5py.Group) and int(frame.attrs["NumberOfTiles"][0]) >= 2
        elif v < (1, 3):
            assert frame.dtype == np.float32
        else:
            assert frame.dtype == np.uint16
        assert f.attrs["FormatVersion"].dtype.kind == "S" and f.attrs["FormatVersion"].shape == (1,)


def test_time_series_fluorescence_lazy(tmp_path, make_tomogram, monkeypatch):
    tomo = make_tomogram(n_times=4, fluorescence=True, mip=False)
    p = write_tcf(tmp_path / "t.tcf", tomo)
    with h5py.File(p) as f:  # time step must come from TimeInterval, not DataCount
        assert f["Data/3D"].attrs["DataCount"][0] == 4 and f["Data/3D"].attrs["TimeInterval"][0] == 2.0
    calls = []
    real = tcf_mod._read_frame
    monkeypatch.setattr(tcf_mod, "_read_frame", lambda *a: calls.append(a[1]) or real(*a))
    back = read_tcf(p)
    assert calls == []  # opening reads no frame
    assert back.ri.shape == (4, 8, 12, 10) and back.ri.numblocks == (4, 1, 1, 1)
    assert back.time_step_s == 2.0
    vol = back.frame(2)
    assert calls == ["/Data/3D/000002"]
    assert np.abs(vol - tomo.frame(2)).max() <= 0.5e-4 + SLACK
    ch0, ch1 = back.fluorescence["CH0"], back.fluorescence["CH1"]
    assert ch0.data.shape == (3, 4, 12, 10) and ch0.data.dtype == np.uint8  # 3 FL frames vs 4 HT
    np.testing.assert_array_equal(np.asarray(ch0.data), tomo.fluorescence["CH0"].data)
    assert ch0.offset_z_um == 1.5 and ch0.time_step_s == 3.0 and ch0.voxel_size_um == (1.0, 0.2, 0.2)
    assert ch1.data.dtype == np.uint16 and ch1.offset_z_um == -0.5
    np.testing.assert_array_equal(np.asarray(ch1.data), tomo.fluorescence["CH1"].data)


def test_ldm_fluorescence_and_mip_tiles(tmp_path, make_tomogram):
    tomo = make_tomogram(n_times=2, fluorescence=True, mip=True)
    p = write_tcf(tmp_path / "l.tcf", tomo, format_version="1.6.1", ldm=True, scalar_type=1, tile_shape=(5, 7, 3))
    back = read_tcf(p)
    for t in range(2):
        assert np.abs(back.frame(t) - tomo.frame(t)).max() <= 0.5e-3 + SLACK
    np.testing.assert_array_equal(np.asarray(back.fluorescence["CH1"].data), tomo.fluorescence["CH1"].data)


def _hand_built(path):
    """A TCF written with raw h5py following the domain notes, independent of write_tcf.

    Frame 0: uint16 RI × 10⁴ dataset (FormatVersion 1.4.1 -> ≥ 1.3).
    Frame 1: an LDM group, ScalarType 1 (uint8, RI = v/10³ + RIMin), two padded tiles plus a
    SamplingStep-2 tile that must be ignored. RIMin stored ×10⁴ (> 100).
    """
    Z, Y, X = 4, 6, 10
    truth0 = 1.337 + 1e-4 * np.arange(Z * Y * X, dtype=np.float64).reshape(Z, Y, X) % 0.05
    raw1 = (np.arange(Z * Y * X).reshape(Z, Y, X) % 200).astype(np.uint8)
    ri_min1 = 1.3300
    truth1 = raw1 / 1e3 + ri_min1
    with h5py.File(path, "w") as f:
        for k, v in dict(FormatVersion="1.4.1", SoftwareVersion="HT 1.0", CreateDate="2024-01-02 03:04:05",
                         Title="hand", DeviceModelType="HT-2H").items():
            f.attrs[k] = _a(v)
        g = f.create_group("Data/3D")
        for k, v in dict(DataCount=2, SizeX=X, SizeY=Y, SizeZ=Z, ResolutionX=0.196, ResolutionY=0.196,
                         ResolutionZ=0.839, TimeInterval=30.0, RIMin=13300.0, RIMax=14000.0).items():
            g.attrs[k] = _a(v)
        d0 = g.create_dataset("000000", data=np.rint(truth0 * 1e4).astype(np.uint16))
        d0.attrs["Time"] = _a(0.0)
        fr = g.create_group("000001")
        for k, v in dict(NumberOfTiles=3, ScalarType=1, DataSizeX=X, DataSizeY=Y, DataSizeZ=Z,
                         RIMin=ri_min1 * 1e4, RIMax=14000.0, Time=30.0).items():
            fr.attrs[k] = _a(v)
        # tiles split X at 6: [0..5] and [6..9]; each stored padded to (4, 8, 8)
        for i, (x0, x1) in enumerate([(0, 5), (6, 9)]):
            tile = np.full((4, 8, 8), 255, np.uint8)
            tile[:, :Y, : x1 - x0 + 1] = raw1[:, :, x0 : x1 + 1]
            t = fr.create_dataset(f"TILE_{i:02d}", data=tile)
            for k, v in dict(SamplingStep=1, DataIndexOffsetPointX=x0, DataIndexOffsetPointY=0, DataIndexOffsetPointZ=0,
                             DataIndexLastPointX=x1, DataIndexLastPointY=Y - 1, DataIndexLastPointZ=Z - 1).items():
                t.attrs[k] = _a(v)
        t = fr.create_dataset("TILE_02", data=np.zeros((2, 3, 5), np.uint8))
        for k, v in dict(SamplingStep=2, DataIndexOffsetPointX=0, DataIndexOffsetPointY=0, DataIndexOffsetPointZ=0,
                         DataIndexLastPointX=4, DataIndexLastPointY=2, DataIndexLastPointZ=1).items():
            t.attrs[k] = _a(v)
        m = f.create_group("Data/2DMIP")
        m.attrs["DataCount"] = _a(1)
        m.create_dataset("000000", data=np.rint(truth0.max(axis=0) * 1e4).astype(np.uint16))
        fl = f.create_group("Data/3DFL")
        for k, v in dict(Channels=1, DataCount=1, ResolutionX=0.2, ResolutionY=0.2, ResolutionZ=1.0,
                         SizeX=X, SizeY=Y, SizeZ=2, TimeInterval=0.0).items():
            fl.attrs[k] = _a(v)
        ch = fl.create_group("CH0")
        ch.attrs["OffsetZ"] = _a(2.5)
        ch.create_dataset("000000", data=np.arange(2 * Y * X, dtype=np.uint16).reshape(2, Y, X))
        dev = f.create_group("Info/Device")
        for k, v in dict(Magnification=60.0, NA=1.2, RI=1.337, Wavelength=0.532).items():
            dev.attrs[k] = _a(v)
    return truth0, truth1


def test_hand_built_file_matches_documented_layout(tmp_path):
    p = tmp_path / "hand.TCF"
    truth0, truth1 = _hand_built(p)
    tomo = open_path(p)
    assert detect_format(p) == "tcf"
    assert tomo.ri.shape == (2, 4, 6, 10)
    assert tomo.voxel_size_um == (0.839, 0.196, 0.196)
    assert tomo.time_step_s == 30.0  # TimeInterval, not DataCount (2)
    assert tomo.medium_index == 1.337 and tomo.wavelength_um == 0.532
    assert np.abs(tomo.frame(0) - truth0).max() <= 0.5e-4 + SLACK
    assert np.abs(tomo.frame(1) - truth1).max() <= SLACK  # uint8 values exact on the 1e-3 grid
    assert np.abs(tomo.mip - truth0.max(axis=0)).max() <= 0.5e-4 + SLACK
    ch = tomo.fluorescence["CH0"]
    assert ch.offset_z_um == 2.5 and ch.voxel_size_um == (1.0, 0.2, 0.2) and ch.data.shape == (2, 6, 10)
    assert tomo.metadata["DeviceModelType"] == "HT-2H" and tomo.metadata["Device"]["Magnification"] == 60.0
    # rewriting it with write_tcf and reading again keeps the values
    again = read_tcf(write_tcf(tmp_path / "re.tcf", tomo))
    assert np.abs(again.frame(1) - truth1).max() <= 0.5e-4 + SLACK
    assert again.metadata["DeviceModelType"] == "HT-2H"


def test_broken_files(tmp_path, make_tomogram):
    p = write_tcf(tmp_path / "ok.tcf", make_tomogram())
    raw = p.read_bytes()
    (tmp_path / "trunc.tcf").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(FormatError, match="not a readable HDF5 file"):
        read_tcf(tmp_path / "trunc.tcf")
    with h5py.File(p, "a") as f:
        del f["Data/3D"].attrs["ResolutionZ"]
    with pytest.raises(FormatError, match=r"Data/3D/ResolutionZ: missing attribute"):
        read_tcf(p)
    p2 = write_tcf(tmp_path / "t.tcf", make_tomogram(), ldm=True, tile_shape=(8, 6, 5))
    with h5py.File(p2, "a") as f:
        del f["Data/3D/000000/TILE_00"]
    tomo = read_tcf(p2)  # lazy: the damage shows when the frame is read
    with pytest.raises(FormatError, match="uncovered"):
        tomo.frame(0)
    with pytest.raises(ValueError, match="scalar_type"):
        write_tcf(tmp_path / "u.tcf", make_tomogram(), scalar_type=1)
    assert not (tmp_path / "u.tcf").exists()
