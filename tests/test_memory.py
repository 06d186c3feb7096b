"""The memory model: estimates from declared shapes, refusal with one line, the override."""

from __future__ import annotations

import pytest

from holo.errors import ResourceError
from holo.memory import (IGNORE_ENV, RECON_BYTES_PER_VOXEL, UNET_TILE_BUDGET_BYTES, UNET_TILE_BYTES_PER_VOXEL, check_memory,
                         format_bytes, reconstruction_bytes, segmentation_bytes, unet_tile_voxels)

MIB = 2**20


def test_reconstruction_model_bounds_the_measurements():
    """The measured peaks written in holo.memory (12 frames of 278², padded 1.5×) are below the model."""
    pixels = 12 * 278 * 278
    measured = {("rytov", 1048576): 160, ("rytov", 4194304): 406,
                ("gp", 1048576): 140, ("gp", 4194304): 496,
                ("tv", 1048576): 262, ("tv", 4194304): 964}
    for (method, n), mib in measured.items():
        est = reconstruction_bytes((n, 1, 1), method, pixels, "sample-rotation") / MIB
        assert mib <= est <= 2.5 * mib + 64, (method, n, est)
    # sample rotation: gp gridded on the K grid refined across the axis, the direct rytov not
    # (holo.memory.reconstruction_bytes, UNREFINED_METHODS)
    for (method, n), mib in {("rytov", 102**3): 77, ("rytov", 161**3): 223, ("gp", 102**3): 241, ("gp", 161**3): 898}.items():
        est = reconstruction_bytes((n, 1, 1), method, pixels, "sample-rotation") / MIB
        assert mib <= est <= 2.5 * mib + 64, (method, n, est)
    assert RECON_BYTES_PER_VOXEL["gp"] > RECON_BYTES_PER_VOXEL["rytov"]


def test_refusal_names_file_item_estimate_and_available(monkeypatch):
    monkeypatch.delenv(IGNORE_ENV, raising=False)
    monkeypatch.setattr("holo.memory.available_bytes", lambda: 2**30)
    with pytest.raises(ResourceError) as info:
        check_memory(6 * 2**30, path="a.h5", item="holograms")
    msg = str(info.value)
    assert msg.startswith("a.h5: holograms: ") and "6.0 GiB" in msg and "1.0 GiB available" in msg and IGNORE_ENV in msg
    check_memory(2**29, path="a.h5", item="holograms")  # fits
    monkeypatch.setenv(IGNORE_ENV, "1")
    check_memory(6 * 2**30, path="a.h5", item="holograms")  # the user's override


def test_format_bytes():
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2**40) == "3.0 TiB"


def test_tile_budget_is_capped_and_leaves_room_for_the_rest():
    shape_in, shape_train = (96, 1024, 1024), (72, 563, 563)
    big = unet_tile_voxels(shape_in, shape_train, available=64 * 2**30)
    assert big == UNET_TILE_BUDGET_BYTES // UNET_TILE_BYTES_PER_VOXEL
    rest = segmentation_bytes(shape_in, shape_train, (0, 0, 0))
    small = unet_tile_voxels(shape_in, shape_train, available=rest + 2**29)
    assert small == 2**29 // UNET_TILE_BYTES_PER_VOXEL  # what is left after the volumes
    assert segmentation_bytes(shape_in, shape_train, (1, 1, small)) <= rest + 2**29
    assert unet_tile_voxels(shape_in, shape_train, available=rest / 2) == 0
