"""Validation of the data model at construction: each bad input gets its own clear error."""

import numpy as np
import pytest

from holo.conventions import potential_to_ri, ri_to_potential
from holo.errors import HoloError, ValidationError
from holo.model import Acquisition, Tomogram


def _acq(**kw):
    base = dict(
        geometry="illumination-scan",
        wavelength_um=0.532,
        pixel_size_um=0.07,
        medium_index=1.337,
        objective_na=1.2,
        holograms=np.ones((3, 16, 16), np.uint16),
        background=np.ones((3, 16, 16), np.uint16),
        illumination_na=np.zeros((3, 2)),
    )
    base.update(kw)
    return Acquisition(**base)


def test_valid_acquisition_properties():
    acq = _acq()
    assert acq.n_frames == 3 and acq.frame_shape == (16, 16)
    # a single background frame serves all illuminations
    assert _acq(background=np.ones((16, 16))).n_frames == 3


@pytest.mark.parametrize(
    "kw, item, fragment",
    [
        (dict(objective_na=1.4), "objective_na", "exceeds the medium index"),
        (dict(wavelength_um=532.0), "wavelength_um", "outside the sane range"),
        (dict(wavelength_um=float("nan")), "wavelength_um", "finite"),
        (dict(geometry="tilt"), "geometry", "must be one of"),
        (dict(background=np.ones((2, 16, 16))), "background", "matches neither"),
        (dict(background=None), "background", "required"),
        (dict(holograms=np.ones((3, 16, 16), np.complex64)), "holograms", "real dtype"),
        (dict(illumination_na=np.zeros((2, 2))), "illumination_na", "shape"),
        (dict(illumination_na=np.full((3, 2), np.nan)), "illumination_na", "non-finite"),
        (dict(illumination_na=np.full((3, 2), 1.0)), "illumination_na", "reaches the medium index"),
        (dict(holograms=None, background=None), "holograms", "neither"),
    ],
)
def test_bad_acquisitions(kw, item, fragment):
    with pytest.raises(ValidationError) as info:
        _acq(**kw)
    assert info.value.item == item
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_sample_rotation_needs_radians():
    f = np.ones((4, 8, 8), np.complex64)
    kw = dict(geometry="sample-rotation", wavelength_um=0.532, pixel_size_um=0.1, medium_index=1.337, objective_na=1.2, fields=f)
    with pytest.raises(ValidationError, match="angles"):
        Acquisition(**kw)
    with pytest.raises(ValidationError, match="degrees"):
        Acquisition(**kw, angles=np.array([0, 90, 180, 270.0]))
    assert Acquisition(**kw, angles=np.linspace(0, np.pi, 4)).n_frames == 4


def test_real_fields_rejected():
    with pytest.raises(ValidationError, match="complex"):
        _acq(holograms=None, background=None, fields=np.ones((3, 16, 16)))


def test_error_names_file_and_item():
    err = HoloError("is missing", path="a.h5", item="wavelength_um")
    assert str(err) == "a.h5: wavelength_um: is missing"


def test_tomogram_validation():
    t = Tomogram(np.full((4, 5, 6), 1.337, np.float32), (0.5, 0.1, 0.1), 1.337)
    assert t.shape_zyx == (4, 5, 6) and not t.has_time
    assert "software_version" in t.provenance
    with pytest.raises(ValidationError, match="voxel_size_um"):
        Tomogram(np.zeros((4, 5, 6), np.float32), (0.5, 0.1), 1.337)
    with pytest.raises(ValidationError, match="floating point"):
        Tomogram(np.zeros((4, 5, 6), np.uint16), (0.5, 0.1, 0.1), 1.337)


def test_potential_round_trip_and_sign():
    n = np.array([1.337, 1.36, 1.45])
    f = ri_to_potential(n, 0.532, 1.337)
    # f = k0²(n_m² − n²): zero in the medium, negative where the sample is denser
    assert f[0] == 0 and np.all(f[1:] < 0)
    np.testing.assert_allclose(potential_to_ri(f, 0.532, 1.337), n, rtol=0, atol=1e-12)
