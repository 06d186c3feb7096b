"""Camera frames → acquisition: `holo import`, holo.io.camera, detect_format/open_path.

Frames are the digital twin's raw 16-bit holograms written as a camera would (one TIFF per
frame, unpadded numbers so that natural order matters); the illumination NAs measured at
import are checked against the twin's (independent of the import code).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tifffile

from holo.errors import HoloError
from holo.io import detect_format, open_path, read_acquisition
from holo.io.camera import list_frames, read_camera


def holo(*args):
    return subprocess.run([sys.executable, "-m", "holo.cli.main", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def twin_acq():
    from holo.twin.acquire import simulate_acquisition
    from holo.twin.phantoms import make_phantom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph = make_phantom("cell", shape_zyx=(24, 48, 48), voxel_size_um=(0.4, 0.2, 0.2), n_cells=1, seed=1)
    return simulate_acquisition(ph, n_angles=5, forward="born", seed=0)


def _camera_folder(root, acq, *, sidecar=True):
    d = root / "cam"
    (d / "background").mkdir(parents=True)
    for i, h in enumerate(acq.holograms):
        tifffile.imwrite(d / f"holo_{i + 1}.tif", h)
    for i, b in enumerate(acq.background):
        tifffile.imwrite(d / "background" / f"bg_{i + 1}.tif", b)
    if sidecar:
        (d / "optics.yaml").write_text(
            f"wavelength_um: {acq.wavelength_um}\ncamera_pixel_um: {acq.pixel_size_um * 50}\nmagnification: 50\n"
            f"medium_index: {acq.medium_index}\nobjective_na: {acq.objective_na}\n"
        )
    return d


def test_import_folder_measures_illumination_na(tmp_path, twin_acq):
    d = _camera_folder(tmp_path, twin_acq)
    out = tmp_path / "out" / "a.h5"
    r = holo("import", d, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["illumination_na_estimated"] is True
    acq = read_acquisition(out, lazy=False)
    # natural order (holo_10 would follow holo_9), bits and dtype kept exactly
    np.testing.assert_array_equal(acq.holograms, twin_acq.holograms)
    np.testing.assert_array_equal(acq.background, twin_acq.background)
    assert acq.holograms.dtype == np.uint16
    assert acq.pixel_size_um == pytest.approx(twin_acq.pixel_size_um, rel=1e-12)
    # NA resolution of the peak fit: a quarter of the frequency bin λ/(N Δx)
    ny, nx = twin_acq.frame_shape
    tol = 0.25 * twin_acq.wavelength_um / (max(ny, nx) * twin_acq.pixel_size_um)
    np.testing.assert_allclose(acq.illumination_na, twin_acq.illumination_na, atol=tol)
    assert acq.metadata["illumination_na_estimated"] is True and acq.metadata["sidecar"] == "optics.yaml"


def test_folder_with_sidecar_is_a_format(tmp_path, twin_acq):
    d = _camera_folder(tmp_path, twin_acq)
    assert detect_format(d) == "camera"
    acq = open_path(d)
    assert acq.n_frames == 5 and acq.illumination_na is None  # estimated by the retrieval later
    # a plain TIFF stack with <stem>.json beside it
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, twin_acq.holograms)
    tifffile.imwrite(tmp_path / "bg.tif", twin_acq.background[0])
    (tmp_path / "stack.json").write_text(json.dumps({
        "wavelength_um": 0.532, "pixel_size_um": twin_acq.pixel_size_um, "medium_index": 1.337, "objective_na": 1.2,
        "background": "bg.tif", "illumination_na": twin_acq.illumination_na.tolist(),
    }))
    assert detect_format(stack) == "camera"
    acq = open_path(stack)
    assert acq.holograms.shape == (5, *twin_acq.frame_shape) and acq.background.shape == twin_acq.frame_shape
    np.testing.assert_array_equal(acq.illumination_na, twin_acq.illumination_na)


def test_png_8bit_and_options(tmp_path):
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(3, 20, 24), dtype=np.uint8)
    for i, f in enumerate(frames):
        iio.imwrite(tmp_path / f"f{i:03d}.png", f)
    iio.imwrite(tmp_path / "bg.png", frames[0])
    acq = read_camera(tmp_path, frames="f*.png", background=tmp_path / "bg.png", wavelength_um=0.633,
                      pixel_size_um=0.1, medium_index=1.33, objective_na=0.8, geometry="sample-rotation",
                      angles=[0, 90, 180], angles_unit="deg")
    np.testing.assert_array_equal(acq.holograms, frames)
    np.testing.assert_allclose(acq.angles, [0, np.pi / 2, np.pi])


def _one_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("fault, expect", [
    ("missing", ["holo_3", "missing", "frames"]),
    ("size", ["holo_2.tif", "frame size"]),
    ("optics", ["optics.yaml", "wavelength_um", "missing"]),
    ("typo", ["optics.yaml", "wavelenght_um", "unknown key"]),
    ("background_count", ["background", "2 frames for 5"]),
])
def test_bad_input_one_line_exit_1_nothing_written(tmp_path, twin_acq, fault, expect, capsys):
    from holo.cli.main import main

    d = _camera_folder(tmp_path, twin_acq)
    if fault == "missing":
        (d / "holo_3.tif").unlink()
        expect = ["cam", "frame 3 missing between 'holo_2.tif' and 'holo_4.tif'"]
    elif fault == "size":
        tifffile.imwrite(d / "holo_2.tif", twin_acq.holograms[1][:-1])
    elif fault == "optics":
        text = (d / "optics.yaml").read_text().splitlines()
        (d / "optics.yaml").write_text("\n".join(t for t in text if not t.startswith("wavelength")))
    elif fault == "typo":
        (d / "optics.yaml").write_text((d / "optics.yaml").read_text().replace("wavelength_um", "wavelenght_um"))
    else:
        for i in (3, 4, 5):
            (d / "background" / f"bg_{i}.tif").unlink()
    out = tmp_path / "out" / "a.h5"
    assert main(["import", str(d), "-o", str(out)]) == 1
    line = _one_line(capsys)
    for word in expect:
        assert word in line, line
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no temporary left


def test_usage_errors_exit_2(tmp_path, twin_acq):
    from holo.cli.main import main

    d = _camera_folder(tmp_path, twin_acq)
    assert main(["import", str(d), "-o", str(tmp_path / "a.tif")]) == 2
    assert main(["import", str(d), "-o", str(tmp_path / "a.h5"), "--pixel-size-um", "0.1", "--camera-pixel-um", "5"]) == 2


def test_sidecar_paths_stay_inside_the_input(tmp_path, twin_acq):
    d = _camera_folder(tmp_path, twin_acq)
    tifffile.imwrite(tmp_path / "outside.tif", twin_acq.background[0])
    (d / "optics.yaml").write_text((d / "optics.yaml").read_text() + "background: ../outside.tif\n")
    with pytest.raises(HoloError, match="outside the input"):
        read_camera(d)


def test_natural_order_of_frames(tmp_path):
    for i in (10, 2, 1, 9, 3, 4, 5, 6, 7, 8):
        tifffile.imwrite(tmp_path / f"img_{i}.tif", np.full((4, 4), i, np.uint16))
    assert [p.name for p in list_frames(tmp_path)] == [f"img_{i}.tif" for i in range(1, 11)]


def test_info_and_batch_take_a_camera_folder(tmp_path, twin_acq):
    from holo.batch import expand_inputs
    from holo.cli.info import describe

    d = _camera_folder(tmp_path, twin_acq)
    info = describe(d)
    assert info["format"] == "camera" and info["kind"] == "acquisition" and info["n_frames"] == 5
    assert expand_inputs([d]) == [d]  # `holo run FOLDER`: the folder is one sample


@pytest.mark.slow
def test_run_on_a_camera_folder_with_sidecar(tmp_path, twin_acq):
    """`holo run CAMERA_FOLDER -o OUT`: the folder (frames + background/ + optics.yaml) is one
    sample, reconstructed, segmented and measured end to end; nothing is written into it."""
    import pandas as pd

    from holo.cli.main import main

    d = _camera_folder(tmp_path, twin_acq)
    before = sorted((p.relative_to(d), p.stat().st_mtime_ns) for p in d.rglob("*"))
    out = tmp_path / "out"
    assert main(["run", str(d), "-o", str(out), "--method", "rytov", "--seg-method", "classic"]) == 0
    sample = out / "cam"
    for name in ("ri.ome.tif", "labels.ome.tif", "cells.csv", "provenance.json", "report.html"):
        assert (sample / name).is_file(), name
    prov = json.loads((sample / "provenance.json").read_text())["tomogram"]
    assert prov["source_file"] == str(d) and prov["geometry"] == "illumination-scan"
    # optics came from the sidecar: camera pixel / magnification is the twin's sample pixel
    ri = tifffile.imread(sample / "ri.ome.tif")
    dx = json.loads((sample / "provenance.json").read_text())["voxel_size_um"][2]
    assert ri.shape[2] * dx == pytest.approx(twin_acq.holograms.shape[2] * twin_acq.pixel_size_um, rel=0.02)
    assert ri.max() > twin_acq.medium_index + 0.003  # the phantom cell is there (Δn ≈ 0.01–0.03)
    cells = pd.read_csv(sample / "cells.csv")
    assert len(cells) >= 1 and (cells["dry_mass_pg"] > 0).all()
    assert sorted((p.relative_to(d), p.stat().st_mtime_ns) for p in d.rglob("*")) == before


# -- raw off-axis hologram HDF5 (qpformat layout, holo.io.raw_oah) ---------------------------
HL60 = __import__("pathlib").Path(__file__).parent / "data" / "hl60_hologram_cell.npz"


def _raw_oah_file(path, frames, *, reference=None, attrs=None, root=None):
    """A raw off-axis HDF5 as qpformat documents it: root attributes, datasets "0", "1", …
    with SI optics attributes, optional "reference"."""
    import h5py

    attrs = {"wavelength": 6.33e-7, "pixel size": 1.4e-7, "medium index": 1.335, "numerical aperture": 0.6} if attrs is None else attrs
    with h5py.File(path, "w") as f:
        f.attrs.update({"file_format": "qpformat", "imaging_modality": "off-axis holography"} if root is None else root)
        for name, fr in frames.items():
            f[name] = fr
            f[name].attrs.update({**attrs, "time": 0.1 * int(name)})
        if reference is not None:
            f["reference"] = reference
    return path


def test_import_raw_oah_hdf5_series_with_reference(tmp_path):
    """The measured HL60 hologram twice ("0", "1") and its sample-free frame as "reference":
    frames unchanged, the reference is the background, SI attributes become µm, and an option
    wins over the file's attribute."""
    from holo.importing import import_camera

    d = np.load(HL60)
    src = _raw_oah_file(tmp_path / "holo.h5", {"0": d["data"], "1": d["data"][::-1].copy()}, reference=d["bg_data"])
    out = tmp_path / "out" / "acq.h5"
    import_camera(src, out, estimate_na=False, medium_index=1.337)
    acq = read_acquisition(out, lazy=False)
    np.testing.assert_array_equal(np.asarray(acq.holograms), np.stack([d["data"], d["data"][::-1]]))
    np.testing.assert_array_equal(np.asarray(acq.background).reshape(d["bg_data"].shape), d["bg_data"])
    assert acq.wavelength_um == pytest.approx(0.633) and acq.pixel_size_um == pytest.approx(0.14)
    assert acq.objective_na == pytest.approx(0.6) and acq.medium_index == pytest.approx(1.337)


@pytest.mark.parametrize("case, item", [
    ("other layout", "file_format"),
    ("gap", "1"),
    ("size", "1"),
    ("optics differ", "1"),
    ("no background", "background"),
])
def test_raw_oah_hdf5_errors_are_one_line(tmp_path, case, item):
    d = np.load(HL60)
    h, bg = d["data"], d["bg_data"]
    frames, kw = {"0": h, "1": h}, {"reference": bg}
    if case == "other layout":
        kw["root"] = {"file_format": "qpformat", "imaging_modality": "quadriwave lateral shearing interferometry"}
    elif case == "gap":
        frames = {"0": h, "2": h}
    elif case == "size":
        frames = {"0": h, "1": h[:-2]}
    elif case == "no background":
        kw = {}
    src = _raw_oah_file(tmp_path / "holo.h5", frames, **kw)
    if case == "optics differ":
        import h5py

        with h5py.File(src, "a") as f:
            f["1"].attrs["wavelength"] = 5.32e-7
    with pytest.raises(HoloError) as exc:
        read_camera(src)
    msg = str(exc.value)
    assert "holo.h5" in msg and item in msg and "\n" not in msg, msg
