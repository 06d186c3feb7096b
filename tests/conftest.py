"""Shared pytest fixtures of holo (keep small: tiny arrays only)."""

from __future__ import annotations

import os
import sys
from importlib.abc import MetaPathFinder

import numpy as np
import pytest

from holo.model import Acquisition, FluorescenceChannel, Tomogram

#: Folder names of the repository that install under ``holo.`` and must never be imported bare.
BARE_FOLDER_NAMES = ("reconstruction", "segmentation", "napari_plugin")


class _RefuseBareFolderNames(MetaPathFinder):
    """``python -m pytest`` puts the working directory first on sys.path; from the repository
    root that would make the folders importable under their bare names. Tests see holo only as
    it is installed (holo, holo.reconstruction, holo.segmentation, holo.napari)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in BARE_FOLDER_NAMES:
            raise ModuleNotFoundError(f"No module named {fullname!r} (installed under the holo root)", name=fullname)
        return None


sys.meta_path.insert(0, _RefuseBareFolderNames())


@pytest.fixture(autouse=True, scope="session")
def _no_user_weight_sets(tmp_path_factory):
    """Tests see the shipped weights only: the user's fine-tuned weight sets
    (``$HOLO_WEIGHTS_HOME``, else the XDG data folder) would change model lists and defaults."""
    saved = os.environ.get("HOLO_WEIGHTS_HOME")
    os.environ["HOLO_WEIGHTS_HOME"] = str(tmp_path_factory.mktemp("user-weights"))
    yield
    if saved is None:
        os.environ.pop("HOLO_WEIGHTS_HOME", None)
    else:
        os.environ["HOLO_WEIGHTS_HOME"] = saved


#: Environment variable that runs the ``slow`` end-to-end tests (set by .ci/run).
RUN_SLOW = "HOLO_RUN_SLOW"


def pytest_collection_modifyitems(config, items):
    """``slow`` tests (end-to-end physics and training, a minute or more each on 2 cores) are
    skipped unless ``HOLO_RUN_SLOW=1`` (CI) or they are asked for with ``-m slow``."""
    if os.environ.get(RUN_SLOW) == "1" or "slow" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason=f"slow end-to-end check: set {RUN_SLOW}=1 to run it (CI does)")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def sphere_ri(shape_zyx=(8, 12, 10), *, medium_index=1.337, inside=1.37, radius_vox=3.0) -> np.ndarray:
    """A float32 RI volume: a sphere of index ``inside`` in the medium, plus a small gradient
    so that every voxel value differs (detects axis swaps and quantisation errors)."""
    z, y, x = np.indices(shape_zyx, dtype=np.float32)
    c = [(s - 1) / 2 for s in shape_zyx]
    r2 = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
    ri = np.where(r2 <= radius_vox**2, inside, medium_index).astype(np.float32)
    ri += np.float32(1e-4) * (0.5 * z + 0.25 * y + 0.125 * x) / max(shape_zyx)
    return ri


@pytest.fixture
def make_tomogram():
    """Factory: ``make_tomogram(n_times=None, fluorescence=False, mip=False, shape_zyx=...)``."""

    def _make(n_times=None, fluorescence=False, mip=False, shape_zyx=(8, 12, 10), seed=0):
        rng = np.random.default_rng(seed)
        base = sphere_ri(shape_zyx)
        if n_times:
            ri = np.stack([base + np.float32(0.002 * t) for t in range(n_times)])
        else:
            ri = base
        fl = {}
        if fluorescence:
            n_fl = max(1, (n_times or 1) - 1)
            data = rng.integers(0, 250, size=(n_fl, 4, shape_zyx[1], shape_zyx[2])).astype(np.uint8)
            fl["CH0"] = FluorescenceChannel(
                data=data if n_times else data[0], voxel_size_um=(1.0, 0.2, 0.2), offset_z_um=1.5,
                time_step_s=(3.0 if n_times else None), name="CH0",
            )
            fl["CH1"] = FluorescenceChannel(
                data=rng.integers(0, 4000, size=(4, shape_zyx[1], shape_zyx[2])).astype(np.uint16),
                voxel_size_um=(1.0, 0.2, 0.2), offset_z_um=-0.5, name="CH1",
            )
        return Tomogram(
            ri=ri,
            voxel_size_um=(0.8, 0.2, 0.25),
            medium_index=1.337,
            wavelength_um=0.532,
            time_step_s=2.0 if n_times else None,
            fluorescence=fl,
            mip=(base.max(axis=0) if mip else None),
            provenance={"method": "test", "parameters": {"a": 1}},
            metadata={"Title": "sample A", "operator": "me"},
        )

    return _make


@pytest.fixture
def make_acquisition():
    """Factory of a small valid illumination-scan acquisition with holograms (or fields)."""

    def _make(fields=False, n_frames=3, shape_yx=(16, 16), geometry="illumination-scan", ground_truth=False):
        rng = np.random.default_rng(1)
        A = n_frames
        kw = {}
        if fields:
            kw["fields"] = np.exp(1j * rng.normal(size=(A, *shape_yx))).astype(np.complex64)
        else:
            kw["holograms"] = rng.uniform(0, 1000, size=(A, *shape_yx)).astype(np.float32)
            kw["background"] = rng.uniform(0, 1000, size=shape_yx).astype(np.float32)
        if geometry == "illumination-scan":
            kw["illumination_na"] = np.stack([np.linspace(-0.5, 0.5, A), np.zeros(A)], axis=1)
        else:
            kw["angles"] = np.linspace(0, np.pi, A, endpoint=False)
            kw["rotation_axis"] = "x"
        gt = None
        if ground_truth:
            gt = {
                "ri": sphere_ri((4, 6, 6)),
                "semantic": np.ones((4, 6, 6), np.uint8),
                "instance": np.full((4, 6, 6), 7, np.int32),
                "voxel_size_um": (0.5, 0.25, 0.25),
                "medium_index": 1.337,
                "classes": {7: "lymphocyte"},
                "semantic_names": ["background", "cytoplasm"],
            }
        return Acquisition(
            geometry=geometry, wavelength_um=0.532, pixel_size_um=0.1, medium_index=1.337, objective_na=1.2,
            metadata={"operator": "me", "exposure_ms": 2.5, "tags": ["a", "b"]}, ground_truth=gt, **kw,
        )

    return _make
