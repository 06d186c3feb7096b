"""A corpus of bad inputs, tried as a hostile user would, through the CLI in-process.

Each case builds tiny files in ``in/``, runs ``holo ...`` and asserts: the exit code (1 bad
data, 2 usage), one ``holo: error:`` line naming the file and the item (for ``holo run``: the
sample's failure line and its manifest record), no traceback, no temporary left anywhere,
nothing written at the output, nothing in ``in/`` (outside OUT) touched. Memory cases run
with the available memory pinned to 1 GiB so that they do not depend on the machine.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from holo.cli.main import main
from holo.io import write_acquisition, write_ome_tiff, write_ome_zarr, write_tcf
from holo.model import Acquisition, Tomogram

CASES: dict[str, tuple] = {}


def case(argv: str, code: int = 1, contains=(), *, memory_gib: float | None = None):
    """Register a builder ``fn(in_dir)``; ``argv`` is formatted with ``i`` (in/) and ``o`` (out)."""

    def deco(fn):
        CASES[fn.__name__] = (fn, argv, code, tuple(contains), memory_gib)
        return fn

    return deco


# -- small valid files, then broken ----------------------------------------------------------
def _tomo(ri=None) -> Tomogram:
    ri = np.full((4, 6, 6), 1.34, np.float32) if ri is None else ri
    return Tomogram(ri, (0.2, 0.1, 0.1), 1.337, wavelength_um=0.532)


def _acq_h5(path: Path, **over) -> Path:
    """An acquisition written with raw h5py (the spec layout), entries replaced by ``over``."""
    A, Y, X = 3, 8, 8
    fringes = np.cos(np.pi / 2 * np.arange(X)) * np.ones((Y, 1))
    attrs = dict(format="holo-acquisition", format_version=1, geometry="illumination-scan", wavelength_um=0.532,
                 pixel_size_um=0.1, medium_index=1.337, objective_na=1.2)
    data = dict(holograms=(5 + fringes * np.ones((A, 1, 1))).astype(np.float32), background=(4 + fringes).astype(np.float32),
                illumination_na=np.array([[0.0, 0.0], [0.3, 0.0], [0.0, -0.3]]))
    with h5py.File(path, "w") as f:
        for k, v in {**attrs, **{k: v for k, v in over.items() if k in attrs}}.items():
            if v is not None:
                f.attrs[k] = v
        for k, v in {**data, **{k: v for k, v in over.items() if k not in attrs}}.items():
            if v is not None:
                f.create_dataset(k, data=v)
    return path


def _fields_acq(path: Path) -> Path:
    fields = np.ones((3, 16, 16), np.complex64)
    acq = Acquisition("illumination-scan", 0.532, 0.1, 1.337, 1.2, fields=fields,
                      illumination_na=np.array([[0.0, 0.0], [0.3, 0.0], [0.0, -0.3]]))
    return write_acquisition(path, acq)


def _edit_h5(path: Path, fn) -> Path:
    with h5py.File(path, "a") as f:
        fn(f)
    return path


def _tcf(path: Path, **kw) -> Path:
    return write_tcf(path, _tomo(), **kw)


def _set(obj, name, value):
    obj.attrs[name] = np.array([value])


def _patch_bytes(path: Path, pattern: bytes, make) -> Path:
    raw = path.read_bytes()
    m = re.search(pattern, raw)
    assert m, pattern
    new = make(m.group(1))
    assert len(new) == len(m.group(1))  # same length: the TIFF offsets stay valid
    path.write_bytes(raw[: m.start(1)] + new + raw[m.end(1) :])
    return path


# -- acquisition HDF5 ---------------------------------------------------------------------------
@case("info {i}/trunc.h5", contains=["trunc.h5", "file", "not a readable HDF5"])
def acq_truncated(d):
    raw = _acq_h5(d / "ok.h5").read_bytes()
    (d / "trunc.h5").write_bytes(raw[: len(raw) // 3])
    (d / "ok.h5").unlink()


@case("info {i}/random.h5", contains=["random.h5", "format", "unknown content"])
def acq_random_bytes(d):
    (d / "random.h5").write_bytes(os.urandom(2048))


@case("info {i}/a.h5", contains=["a.h5", "format_version"])
def acq_wrong_version(d):
    _acq_h5(d / "a.h5", format_version=7)


@case("info {i}/a.h5", contains=["a.h5", "wavelength_um", "missing"])
def acq_missing_wavelength(d):
    _acq_h5(d / "a.h5", wavelength_um=None)


@case("info {i}/a.h5", contains=["a.h5", "wavelength_um", "number"])
def acq_text_wavelength(d):
    _acq_h5(d / "a.h5", wavelength_um="green")


@case("info {i}/a.h5", contains=["a.h5", "illumination_na"])
def acq_na_above_medium(d):
    _acq_h5(d / "a.h5", illumination_na=np.array([[0.0, 0.0], [1.5, 0.0], [0.0, 0.0]]))


@case("info {i}/a.h5", contains=["a.h5", "holograms", "real"])
def acq_complex_holograms(d):
    _acq_h5(d / "a.h5", holograms=np.ones((3, 8, 8), np.complex64))


@case("reconstruct {i}/a.h5 -o {o}/r.ome.tif", contains=["a.h5", "holograms", "non-finite"])
def acq_nan_hologram(d):
    h = (5 + np.cos(np.pi / 2 * np.arange(8)) * np.ones((3, 8, 1))).astype(np.float32)
    h[1, 2, 3] = np.nan
    _acq_h5(d / "a.h5", holograms=h)


@case("reconstruct {i}/a.h5 -o {o}/r.ome.tif", contains=["a.h5", "holograms", "constant"])
def acq_all_zero_hologram(d):
    _acq_h5(d / "a.h5", holograms=np.zeros((3, 8, 8), np.uint16))


@case("info {i}/a.h5", contains=["a.h5", "background"])
def acq_background_shape(d):
    _acq_h5(d / "a.h5", background=np.ones((5, 5), np.float32))


@case("info {i}/a.h5", contains=["a.h5", "ground_truth", "external link"])
def acq_external_link(d):
    (d / "secret.h5").write_bytes(b"")
    _edit_h5(_acq_h5(d / "a.h5"), lambda f: f.__setitem__("ground_truth", h5py.ExternalLink("/etc/passwd.h5", "/")))


@case("info {i}/a.h5", contains=["a.h5", "angles", "soft link"])
def acq_dangling_soft_link(d):
    _edit_h5(_acq_h5(d / "a.h5"), lambda f: f.__setitem__("angles", h5py.SoftLink("/nowhere")))


@case("reconstruct {i}/a.h5 -o {o}/r.ome.tif", contains=["a.h5", "holograms", "external raw storage", "/etc/passwd"])
def acq_external_storage(d):
    def build(f):
        del f["holograms"]
        f.create_dataset("holograms", shape=(3, 8, 8), dtype="u1", external=[("/etc/passwd", 0, 192)])

    _edit_h5(_acq_h5(d / "a.h5"), build)


@case("info {i}/a.h5", contains=["a.h5", "holograms", "virtual dataset"])
def acq_virtual_dataset(d):
    _acq_h5(d / "other.h5")

    def build(f):
        del f["holograms"]
        lay = h5py.VirtualLayout(shape=(3, 8, 8), dtype="f4")
        lay[:] = h5py.VirtualSource(str(d / "other.h5"), "holograms", shape=(3, 8, 8))
        f.create_virtual_dataset("holograms", lay)

    _edit_h5(_acq_h5(d / "a.h5"), build)


@case("reconstruct {i}/big.h5 -o {o}/r.ome.tif", contains=["big.h5", "grid", "memory", "available"], memory_gib=1)
def acq_huge_declared(d):
    """49 × 16384² frames declared in a file of a few KB (integer: not scanned on read)."""
    with h5py.File(_acq_h5(d / "big.h5", holograms=None, background=None), "a") as f:
        f.create_dataset("holograms", shape=(49, 16384, 16384), dtype="u2", chunks=(1, 256, 256))
        f.create_dataset("background", shape=(16384, 16384), dtype="u2", chunks=(256, 256))
        del f["illumination_na"]


@case("reconstruct {i}/f.h5 -o {o}/r.ome.tif --shape 400 1024 1024", contains=["f.h5", "grid (400, 1024, 1024)", "memory"],
      memory_gib=1)
def acq_huge_grid(d):
    _fields_acq(d / "f.h5")


# -- TCF ------------------------------------------------------------------------------------------
@case("convert {i}/nan.tcf {o}/x.ome.tif", contains=["nan.tcf", "Data/3D/000000", "non-finite"])
def tcf_nan_float_frame(d):
    def build(f):  # holo's writer refuses NaN: put it in by hand
        f["Data/3D/000000"][1, 2, 3] = np.nan

    _edit_h5(write_tcf(d / "nan.tcf", _tomo(), format_version="1.2"), build)


@case("convert {i}/o.tcf {o}/x.ome.tif", contains=["o.tcf", "TILE_", "overlaps"])
def tcf_ldm_overlap(d):
    def build(f):
        t = f["Data/3D/000000/TILE_01"]
        _set(t, "DataIndexOffsetPointX", 0)
        _set(t, "DataIndexLastPointX", 2)

    _edit_h5(_tcf(d / "o.tcf", ldm=True, tile_shape=(4, 6, 3)), build)


@case("convert {i}/h.tcf {o}/x.ome.tif", contains=["h.tcf", "Data/3D/000000", "uncovered"])
def tcf_ldm_hole(d):
    def build(f):
        t = f["Data/3D/000000/TILE_01"]
        _set(t, "DataIndexLastPointX", 4)  # one column left out

    _edit_h5(_tcf(d / "h.tcf", ldm=True, tile_shape=(4, 6, 3)), build)


@case("info {i}/t.tcf", contains=["t.tcf", "Data/3D", "missing"])
def tcf_no_3d(d):
    _edit_h5(_tcf(d / "t.tcf"), lambda f: f["Data"].__delitem__("3D"))


@case("info {i}/t.tcf", contains=["t.tcf", "ResolutionZ"])
def tcf_no_resolution(d):
    _edit_h5(_tcf(d / "t.tcf"), lambda f: f["Data/3D"].attrs.__delitem__("ResolutionZ"))


@case("info {i}/t.tcf", contains=["t.tcf", "FormatVersion"])
def tcf_bad_version(d):
    _edit_h5(_tcf(d / "t.tcf"), lambda f: _set(f, "FormatVersion", b"vx"))


@case("info {i}/t.tcf", contains=["t.tcf", "Data/3D/000001", "differs"])
def tcf_frame_shapes_differ(d):
    _edit_h5(_tcf(d / "t.tcf"), lambda f: f["Data/3D"].create_dataset("000001", data=np.zeros((4, 5, 5), np.uint16)))


@case("info {i}/t.tcf", contains=["t.tcf", "Data/3D/000000", "external link"])
def tcf_external_frame(d):
    def build(f):
        del f["Data/3D/000000"]
        f["Data/3D/000000"] = h5py.ExternalLink("/etc/passwd", "/x")

    _edit_h5(_tcf(d / "t.tcf"), build)


@case("convert {i}/t.tcf {o}/x.ome.tif", contains=["t.tcf", "Data/3D/000000", "external raw storage"])
def tcf_external_storage_frame(d):
    def build(f):
        del f["Data/3D/000000"]
        f["Data/3D"].create_dataset("000000", shape=(4, 6, 6), dtype="u2", external=[("/etc/passwd", 0, 288)])

    _edit_h5(_tcf(d / "t.tcf"), build)


@case("convert {i}/big.tcf {o}/x.ome.tif", contains=["big.tcf", "ri", "memory", "available"], memory_gib=1)
def tcf_huge_frame(d):
    def build(f):
        del f["Data/3D/000000"]
        f["Data/3D"].create_dataset("000000", shape=(1000, 2048, 2048), dtype="u2", chunks=(16, 256, 256))

    _edit_h5(_tcf(d / "big.tcf"), build)


@case("convert {i}/t.tcf {o}/x.ome.tif", contains=["t.tcf", "DataSize"])
def tcf_ldm_zero_size(d):
    _edit_h5(_tcf(d / "t.tcf", ldm=True), lambda f: _set(f["Data/3D/000000"], "DataSizeX", 0))


# -- OME-TIFF ---------------------------------------------------------------------------------------
@case("info {i}/plain.tif", contains=["plain.tif", "format", "without OME-XML"])
def tiff_without_ome(d):
    import tifffile

    tifffile.imwrite(d / "plain.tif", np.zeros((4, 6, 6), np.float32))


@case("convert {i}/nan.ome.tif {o}/x.tcf", contains=["nan.ome.tif", "ri", "non-finite"])
def tiff_nan_to_tcf(d):
    ri = np.full((4, 6, 6), 1.34, np.float32)
    ri[0, 0, 0] = np.nan
    write_ome_tiff(d / "nan.ome.tif", _tomo(ri))


@case("segment {i}/nan.ome.tif -o {o}/l.ome.tif --method classic", contains=["nan.ome.tif", "ri", "non-finite"])
def tiff_nan_segment(d):
    ri = np.full((4, 6, 6), 1.34, np.float32)
    ri[2, 2, 2] = np.inf
    write_ome_tiff(d / "nan.ome.tif", _tomo(ri))


@case("info {i}/p.ome.tif", contains=["p.ome.tif", "PhysicalSizeX", "number"])
def tiff_text_physical_size(d):
    p = write_ome_tiff(d / "p.ome.tif", _tomo())
    _patch_bytes(p, rb'PhysicalSizeX="([^"]+)"', lambda v: b"x" * len(v))


@case("info {i}/p.ome.tif", contains=["p.ome.tif", "PhysicalSizeXUnit", "unit"])
def tiff_unknown_unit(d):
    p = write_ome_tiff(d / "p.ome.tif", _tomo())
    _patch_bytes(p, rb'PhysicalSizeXUnit="([^"]+)"', lambda v: b"q" * len(v))


@case("convert {i}/t.ome.tif {o}/x.tcf", contains=["t.ome.tif", "format"])
def tiff_truncated(d):
    p = write_ome_tiff(d / "t.ome.tif", _tomo(np.full((16, 32, 32), 1.34, np.float32)))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


# -- OME-Zarr ------------------------------------------------------------------------------------------
def _zarr(d: Path, name="z.ome.zarr", ri=None) -> Path:
    return write_ome_zarr(d / name, _tomo(ri))


@case("info {i}/plain.zarr", contains=["plain.zarr", "OME-Zarr"])
def zarr_no_multiscales(d):
    import zarr

    zarr.open_group(str(d / "plain.zarr"), mode="w").create_array("a", data=np.zeros(3))


@case("convert {i}/z.ome.zarr {o}/x.ome.tif", contains=["z.ome.zarr", "s0", "chunk"])
def zarr_corrupt_chunk(d):
    p = _zarr(d)
    chunk = next(q for q in p.rglob("*") if q.is_file() and "/c/" in str(q))
    chunk.write_bytes(b"\x00garbage" * 3)


@case("info {i}/z.ome.zarr", contains=["z.ome.zarr", "s0", "metadata"])
def zarr_broken_array_metadata(d):
    p = _zarr(d)
    (p / "s0" / "zarr.json").write_text("{not json")


@case("convert {i}/z.ome.zarr {o}/x.ome.tif", contains=["z.ome.zarr", "s0", "non-finite"])
def zarr_nan(d):
    ri = np.full((4, 6, 6), 1.34, np.float32)
    ri[3, 5, 5] = np.nan
    _zarr(d, ri=ri)


@case("info {i}/z.ome.zarr", contains=["z.ome.zarr", "multiscales"])
def zarr_malformed_multiscales(d):
    p = _zarr(d)
    meta = json.loads((p / "zarr.json").read_text())
    meta["attributes"]["ome"]["multiscales"] = [{}]
    (p / "zarr.json").write_text(json.dumps(meta))


# -- commands: outputs and usage ------------------------------------------------------------------------
@case("convert {i}/t.ome.tif {i}/mine.ome.zarr", contains=["mine.ome.zarr", "output", "did not write"])
def convert_onto_foreign_folder(d):
    write_ome_tiff(d / "t.ome.tif", _tomo())
    (d / "mine.ome.zarr").mkdir()
    (d / "mine.ome.zarr" / "notes.txt").write_text("precious")


@case("convert {i}/t.ome.tif {i}/folder.ome.tif", contains=["folder.ome.tif", "output"])
def convert_file_onto_folder(d):
    write_ome_tiff(d / "t.ome.tif", _tomo())
    (d / "folder.ome.tif").mkdir()
    (d / "folder.ome.tif" / "keep.txt").write_text("precious")


@case("reconstruct {i}/f.h5 -o {i}/existing.ome.zarr", contains=["existing.ome.zarr", "output", "did not write"])
def reconstruct_onto_existing_folder(d):
    _fields_acq(d / "f.h5")
    (d / "existing.ome.zarr").mkdir()
    (d / "existing.ome.zarr" / "data.txt").write_text("precious")


@case("segment {i}/t.ome.tif -o {o}/l.ome.tif --method unet --weights {i}/w", contains=["unet.json", "unet", "JSON"])
def segment_weights_json_syntax(d):
    write_ome_tiff(d / "t.ome.tif", _tomo())
    (d / "w").mkdir()
    (d / "w" / "unet.pt").write_bytes(b"not a torch file")
    (d / "w" / "unet.json").write_text("{bad json")


@case("info {i}/nosuch.h5", contains=["nosuch.h5"])
def info_missing_file(d):
    pass


@case("convert {i}/t.ome.tif {o}/x.png", code=2)
def convert_unknown_extension(d):
    write_ome_tiff(d / "t.ome.tif", _tomo())


@case("convert {i}/t.ome.tif {i}/t.ome.tif", code=2)
def convert_onto_itself(d):
    write_ome_tiff(d / "t.ome.tif", _tomo())


@case("run {i}/x.h5 -o {o} --timeout 0", code=2)
def run_zero_timeout(d):
    (d / "x.h5").write_bytes(b"")


@case("run {i}/nosuch.h5 -o {o}", contains=["nosuch.h5", "input", "matches no file"])
def run_missing_input_leaves_no_out(d):
    pass


# -- holo run: the sample fails alone, nothing lost -----------------------------------------------------
@case("run {i}/..tcf -o {o}", contains=["..tcf", "format"])
def run_dotdot_name(d):
    (d / "..tcf").write_bytes(os.urandom(512))


@case("run {i}/summary.html.tcf {i}/manifest.json.h5 -o {o}", contains=["summary.html.tcf", "manifest.json.h5"])
def run_run_file_names(d):
    (d / "summary.html.tcf").write_bytes(os.urandom(512))
    (d / "manifest.json.h5").write_bytes(os.urandom(512))


@case("run {i}/a.h5 -o {o}", contains=["a.h5", "external raw storage"])
def run_external_storage(d):
    acq_external_storage(d)


@case("run {i}/nan.ome.tif -o {o} --seg-method classic", contains=["nan.ome.tif", "ri", "non-finite"])
def run_nan_tomogram(d):
    tiff_nan_to_tcf(d)


RUN_FILES = {"manifest.json", "summary.json", "summary.html", "all_cells.csv", ".locks", ".manifest.lock"}


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, capsys, monkeypatch):
    build, argv, code, contains, memory_gib = CASES[name]
    monkeypatch.delenv("HOLO_IGNORE_MEMORY", raising=False)
    if memory_gib is not None:
        monkeypatch.setattr("holo.memory.available_bytes", lambda: int(memory_gib * 2**30))
    d, o = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    build(d)
    before = _snapshot(d)
    capsys.readouterr()
    rc = main(argv.format(i=d, o=o).split())
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert _snapshot(d) == before  # nothing outside OUT touched, the inputs included
    if code == 2:
        return
    if argv.startswith("run "):
        if "matches no file" in contains:
            assert not o.exists()  # nothing created for a run that could not start
        else:
            assert {p.name for p in o.iterdir()} <= RUN_FILES  # no sample folder, no partial output
            failures = [line for line in err.splitlines() if line.startswith("failed ")]
            records = json.loads((o / "manifest.json").read_text())["samples"]
            assert failures and len(failures) == len(records)
            assert not set(records) & {"summary.html", "manifest.json", ".", ".."}
            text = " ".join(failures)
            for s in contains:
                assert s in text, text
            return
    else:
        assert not o.exists() or not any(o.iterdir())
    lines = [line for line in err.splitlines() if line.startswith("holo: error:")]
    assert len(lines) == 1, err
    for s in contains:
        assert s in lines[0], lines[0]


def test_corpus_size():
    """The issue asks for at least 40 cases across formats and commands."""
    assert len(CASES) >= 40
