"""atomic_path: replaces only what holo wrote, leaves nothing behind, names the destination."""

from __future__ import annotations

import errno

import pytest

from holo.errors import HoloError
from holo.io._atomic import MARKER, atomic_path, remove_temporaries


def test_folder_replaced_only_when_holo_wrote_it(tmp_path):
    target = tmp_path / "store.ome.zarr"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    assert (target / MARKER).is_file()
    with atomic_path(target) as tmp:  # holo's own folder: replaced
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert not (target / "a").exists() and (target / "b").exists()
    foreign = tmp_path / "mine.ome.zarr"
    foreign.mkdir()
    (foreign / "data").write_text("precious")
    with pytest.raises(HoloError, match="did not write"):
        with atomic_path(foreign) as tmp:
            tmp.mkdir()
    assert (foreign / "data").read_text() == "precious"
    with pytest.raises(HoloError, match="by a file"):  # a file never replaces a folder
        with atomic_path(target) as tmp:
            tmp.write_text("x")
    assert (target / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.ome.zarr", "store.ome.zarr"]


def test_failure_removes_temporary_and_created_parents(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new" / "deeper" / "x.ome.tif") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_errors_name_the_destination(tmp_path):
    target = tmp_path / "r.ome.tif"
    with pytest.raises(HoloError) as info:
        with atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    msg = str(info.value)
    assert str(target) in msg and "No space left" in msg and ".tmp-" not in msg


def test_remove_temporaries_spares_what_is_kept(tmp_path):
    (tmp_path / ".a.tmp-0123abcd").mkdir()
    (tmp_path / ".b.tmp-0123abcd").write_text("x")
    (tmp_path / ".c.old-0123abcd").mkdir()
    (tmp_path / "keep.tmp-0123abcd").write_text("not ours: no leading dot")
    remove_temporaries(tmp_path, keep=lambda t: t == "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.tmp-0123abcd", "keep.tmp-0123abcd"]
