"""Acquisition HDF5 (shared spec acquisition-format.md): round trips, laziness, validation."""

from __future__ import annotations

import gc

import h5py
import numpy as np
import pytest

from holo.errors import FormatError, ValidationError
from holo.io import detect_format, open_path, read_acquisition, write_acquisition
from holo.io.acquisition import close_acquisition


def _spec_file(path, **over):
    """A minimal valid file written with raw h5py exactly as the spec lays it out."""
    A, Y, X = 3, 8, 8
    attrs = dict(format="holo-acquisition", format_version=1, geometry="illumination-scan",
                 wavelength_um=0.532, pixel_size_um=0.1, medium_index=1.337, objective_na=1.2)
    data = dict(
        # fringes of period 4 px (a constant frame is refused: no hologram recorded)
        holograms=(5.0 + np.cos(np.pi / 2 * np.arange(X)) * np.ones((A, Y, 1))).astype(np.float32),
        background=(4.0 + np.cos(np.pi / 2 * np.arange(X)) * np.ones((Y, 1))).astype(np.float32),
        illumination_na=np.array([[0.0, 0.0], [0.3, 0.0], [0.0, -0.3]]),
    )
    for k, v in over.items():
        if k in attrs or k.startswith("attr_"):
            attrs[k.removeprefix("attr_")] = v
        else:
            data[k] = v
    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            if v is not None:
                f.attrs[k] = v
        for k, v in data.items():
            if v is not None:
                f.create_dataset(k, data=v)
    return path


def test_spec_file_by_hand_reads(tmp_path):
    p = _spec_file(tmp_path / "a.h5", attr_lab="KAIST")
    acq = read_acquisition(p)
    assert detect_format(p) == "acquisition"
    assert acq.geometry == "illumination-scan" and acq.n_frames == 3 and acq.frame_shape == (8, 8)
    assert acq.wavelength_um == 0.532 and acq.medium_index == 1.337 and acq.objective_na == 1.2
    assert acq.metadata == {"lab": "KAIST"}
    assert isinstance(acq.holograms, h5py.Dataset)  # lazy
    np.testing.assert_allclose(acq.background[()].mean(), 4.0, atol=1e-6)
    assert acq.source == str(p)


@pytest.mark.parametrize("fields", [False, True])
def test_round_trip_and_metadata_preserved(tmp_path, make_acquisition, fields):
    acq = make_acquisition(fields=fields, ground_truth=True)
    p = write_acquisition(tmp_path / "x.h5", acq)
    back = read_acquisition(p)
    for key in ("holograms", "background", "fields"):
        a, b = getattr(acq, key), getattr(back, key)
        assert (a is None) == (b is None)
        if a is not None:
            assert b.dtype == a.dtype
            np.testing.assert_array_equal(b[()], a)  # lossless storage
    np.testing.assert_array_equal(back.illumination_na, acq.illumination_na)
    assert back.metadata == {"operator": "me", "exposure_ms": 2.5, "tags": ["a", "b"]}
    gt = back.ground_truth
    assert gt["ri"].dtype == np.float32 and gt["semantic"].dtype == np.uint8 and gt["instance"].dtype == np.int32
    np.testing.assert_array_equal(gt["ri"], acq.ground_truth["ri"])
    assert gt["classes"] == {7: "lymphocyte"} and gt["semantic_names"] == ["background", "cytoplasm"]
    assert gt["voxel_size_um"] == (0.5, 0.25, 0.25) and gt["medium_index"] == 1.337
    # a rewrite from the lazily read file keeps unknown root attributes
    close_acquisition(back)
    with h5py.File(p, "a") as f:
        f.attrs["foreign_attr"] = "keep me"
    lazy = read_acquisition(p)
    write_acquisition(p, lazy)
    again = read_acquisition(p, lazy=False)
    assert again.metadata["foreign_attr"] == "keep me"
    assert isinstance(again.fields if fields else again.holograms, np.ndarray)
    np.testing.assert_array_equal((again.fields if fields else again.holograms), acq.fields if fields else acq.holograms)


def test_sample_rotation_round_trip(tmp_path, make_acquisition):
    acq = make_acquisition(fields=True, geometry="sample-rotation")
    back = open_path(write_acquisition(tmp_path / "r.h5", acq))
    assert back.geometry == "sample-rotation" and back.rotation_axis == "x"
    np.testing.assert_array_equal(back.angles, acq.angles)
    with h5py.File(tmp_path / "r.h5") as f:  # spec: rotation_axis is an attribute of angles
        assert f["angles"].attrs["rotation_axis"] == "x"


def test_lazy_arrays_stay_readable_and_close(tmp_path, make_acquisition):
    p = write_acquisition(tmp_path / "x.h5", make_acquisition())
    holo = read_acquisition(p).holograms  # the Acquisition itself is dropped
    gc.collect()
    assert holo[1].shape == (16, 16)
    acq = read_acquisition(p)
    close_acquisition(acq)
    with pytest.raises(Exception):
        acq.holograms[0]


def test_no_partial_file_on_failure(tmp_path, make_acquisition):
    acq = make_acquisition()
    acq.ground_truth = {"ri": np.zeros((2, 2, 2))}  # incomplete ground truth -> error mid-write
    with pytest.raises(ValueError):
        write_acquisition(tmp_path / "x.h5", acq)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "over, exc, item, fragment",
    [
        (dict(format="something-else"), FormatError, "format", "must be 'holo-acquisition'"),
        (dict(format_version=2), FormatError, "format_version", "unsupported version"),
        (dict(format=None), FormatError, "format", "missing required root attribute"),
        (dict(wavelength_um=None), FormatError, "wavelength_um", "missing required root attribute"),
        (dict(medium_index="water"), ValidationError, "medium_index", "must be a number"),
        (dict(geometry="spiral"), ValidationError, "geometry", "must be one of"),
        (dict(objective_na=1.4), ValidationError, "objective_na", "exceeds the medium index"),
        (dict(holograms=None), FormatError, "holograms", "missing dataset"),
        (dict(background=None), FormatError, "background", "missing dataset"),
        (dict(background=np.ones((7, 8), np.float32)), ValidationError, "background", "matches neither"),
        (dict(illumination_na=np.zeros((2, 2))), ValidationError, "illumination_na", "shape"),
        (dict(illumination_na=np.array([[0, 0], [np.nan, 0], [0, 0.1]])), ValidationError, "illumination_na", "non-finite"),
        (dict(illumination_na=np.array([[0, 0], [1.5, 0], [0, 0.1]])), ValidationError, "illumination_na", "reaches the medium index"),
        (dict(holograms=np.ones((3, 8, 8), np.complex64)), ValidationError, "holograms", "must be a real dtype"),
        (dict(holograms=None, fields=np.ones((3, 8, 8), np.float32)), ValidationError, "fields", "must be complex"),
        (dict(holograms=np.ones((3, 8), np.float32)), ValidationError, "holograms", "must be 3D"),
    ],
)
def test_invalid_files_name_file_and_item(tmp_path, over, exc, item, fragment):
    p = _spec_file(tmp_path / "bad.h5", **over)
    with pytest.raises(exc) as ei:
        read_acquisition(p)
    err = ei.value
    assert err.path == str(p) and err.item == item and fragment in err.message
    assert "\n" not in str(err) and str(err).startswith(f"{p}: {item}: ")


def test_nan_frames_detected(tmp_path):
    h = np.ones((3, 8, 8), np.float32)
    h[2, 3, 4] = np.nan
    with pytest.raises(ValidationError, match=r"holograms: frame 2 contains non-finite"):
        read_acquisition(_spec_file(tmp_path / "n.h5", holograms=h))
    f = np.ones((3, 8, 8), np.complex64)
    f[1, 0, 0] = complex(0, np.inf)
    with pytest.raises(ValidationError, match=r"fields: frame 1 contains non-finite"):
        read_acquisition(_spec_file(tmp_path / "f.h5", holograms=None, fields=f))
    # sample-rotation needs finite angles
    p = _spec_file(tmp_path / "ang.h5", geometry="sample-rotation", illumination_na=None, angles=np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValidationError, match=r"angles: contains 1 non-finite value"):
        read_acquisition(p)


def test_truncated_and_random_bytes(tmp_path, make_acquisition):
    p = write_acquisition(tmp_path / "ok.h5", make_acquisition())
    raw = p.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(raw[: len(raw) // 2])
    junk = tmp_path / "junk.h5"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    for bad in (trunc, junk):
        with pytest.raises(FormatError, match="not a readable HDF5 file") as ei:
            read_acquisition(bad)
        assert ei.value.path == str(bad) and ei.value.item == "file" and "\n" not in str(ei.value)
    with pytest.raises(FormatError, match="unknown content"):
        detect_format(junk)
    with pytest.raises(FormatError, match="no such file"):
        read_acquisition(tmp_path / "missing.h5")
