"""Atomic writes: write to a temporary name beside the target, then rename.

What holo writes is marked: a folder it builds (an OME-Zarr store, a sample folder) holds the
file :data:`MARKER`. An existing folder is replaced only when it carries that marker, so a
folder holo did not write is never removed; a file never replaces a folder nor a folder a
file. Temporaries are named ``.<target>.tmp-<8 hex>`` (:func:`temp_name`) so that a run
started after a killed one recognises and removes them (:func:`remove_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from pathlib import Path

from holo.errors import HoloError

__all__ = ["MARKER", "atomic_path", "temp_name", "remove_temporaries", "is_holo_folder", "check_replaceable"]

#: File inside every folder holo writes; only such folders are ever replaced.
MARKER = ".holo-output"
_TMP_RE = re.compile(r"^\.(?P<target>.+)\.(tmp|old)-[0-9a-f]{8}$")
#: errno values that mean "the destination cannot take the data" (named as such to the user).
_DEST_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """``.<name>.tmp-<8 hex>`` beside ``path`` (``kind="old"``: a folder being replaced)."""
    return path.with_name(f".{path.name}.{kind}-{uuid.uuid4().hex[:8]}")


def is_holo_folder(path: str | Path) -> bool:
    """True for a real folder (not a link) that holds holo's :data:`MARKER`."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


def check_replaceable(path: str | Path, *, folder: bool | None = None) -> None:
    """Raise :class:`HoloError` when writing ``path`` would destroy something holo did not write.

    An existing folder is replaceable only by a folder and only when it holds :data:`MARKER`;
    an existing file only by a file. ``folder`` is what is about to be written (None: unknown,
    only the marker rule applies).
    """
    path = Path(path)
    if path.is_symlink() or not path.exists():
        return
    if path.is_dir():
        if folder is False:
            raise HoloError("is a folder; refusing to replace it by a file", path=path, item="output")
        if not is_holo_folder(path):
            raise HoloError(
                "is an existing folder that holo did not write; refusing to replace it (remove it or choose another output)",
                path=path, item="output",
            )
    elif folder:
        raise HoloError("is an existing file; refusing to replace it by a folder", path=path, item="output")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _replace(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` onto ``path``; a holo folder at ``path`` is moved aside first and removed
    once the new one is in place (restored if the rename fails)."""
    check_replaceable(path, folder=tmp.is_dir())
    if tmp.is_dir() and is_holo_folder(path):
        old = temp_name(path, "old")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _missing_parents(path: Path) -> list[Path]:
    out = []
    p = path.parent
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _destination_error(exc: OSError, tmp: Path, path: Path) -> HoloError | None:
    """The one-line error naming ``path`` for an OSError of writing ``tmp`` (None: not one)."""
    text = " ".join(str(exc).split())
    about_tmp = tmp.name in text or (exc.filename is not None and tmp.name in str(exc.filename))
    if not about_tmp and exc.errno not in _DEST_ERRNOS:
        return None
    reason = exc.strerror or text
    reason = reason.replace(str(tmp), str(path)).replace(tmp.name, path.name)
    return HoloError(f"cannot write ({reason})", path=path, item="output")


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On any exception the temporary file or folder, and any parent folder created for it, is
    removed: nothing is left behind. Works for files and for folders (OME-Zarr stores, sample
    folders); a folder written this way receives :data:`MARKER`. Refuses (HoloError, before
    anything is written) to replace a folder holo did not write (:func:`check_replaceable`).
    An OSError of writing (read-only, disk full) becomes a HoloError naming ``path``, never
    the temporary name.
    """
    path = Path(path)
    check_replaceable(path)
    created = _missing_parents(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HoloError(f"cannot create the folder ({exc.strerror or exc})", path=path.parent, item="output") from None
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.is_dir() and not tmp.is_symlink():
            (tmp / MARKER).write_text("written by holo; this folder may be replaced by holo\n")
        _replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        for p in created:  # deepest first; only folders left empty
            with contextlib.suppress(OSError):
                p.rmdir()
        if isinstance(exc, OSError) and not isinstance(exc, HoloError):
            err = _destination_error(exc, tmp, path)
            if err is not None:
                raise err from None
        raise


def remove_temporaries(folder: str | Path, keep=lambda target: False) -> list[Path]:
    """Remove holo's temporaries (``.<target>.tmp-*`` / ``.old-*``) directly in ``folder``.

    ``keep(target)`` → True spares the temporaries of ``target`` (e.g. a sample another live
    run is writing). Returns what was removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP_RE.match(p.name)
        if m and not keep(m.group("target")):
            _remove(p)
            removed.append(p)
    return removed
