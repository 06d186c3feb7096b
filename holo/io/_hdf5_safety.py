"""Refuse HDF5 content that would make a reader read outside the given file.

HDF5 can point elsewhere in four ways: external links (``/a`` → ``other.h5:/b``), soft links
(paths inside the file, dangerous only when they lead through an external link or nowhere),
datasets with external raw storage (the bytes live in another, arbitrary file) and virtual
datasets (mapped from other files). :func:`check_hdf5_file` walks every link of an open file
once (hard-link cycles are visited once by HDF5's link iteration) and raises
:class:`~holo.errors.FormatError` naming the file and the item for any of them, before any
array is read. Every HDF5 reader of holo (acquisition, TCF, format detection) calls it.
"""

from __future__ import annotations

from pathlib import Path

from holo.errors import FormatError

__all__ = ["check_hdf5_file"]


def _refuse(path, item: str, what: str) -> FormatError:
    return FormatError(f"{what} refused (holo reads nothing outside the input file)", path=path, item=item)


def _check_link(f, name: str, link, path) -> None:
    """Raise for a dangling or looping soft link, a virtual dataset or one with external
    storage (external and unknown links are refused before, by :func:`check_hdf5_file`)."""
    import h5py

    if isinstance(link, h5py.SoftLink):
        parent = f[name.rsplit("/", 1)[0]] if "/" in name else f
        try:
            parent[link.path]  # relative to the link's group; externals are refused already, so this stays in the file
        except Exception:  # noqa: BLE001 - KeyError, RuntimeError or OSError by HDF5 version
            raise FormatError(f"soft link to {link.path!r} leads nowhere in the file (missing or a loop)",
                              path=path, item=name) from None
        return
    obj = f[name]
    if isinstance(obj, h5py.Dataset):
        if obj.is_virtual:
            raise _refuse(path, name, "virtual dataset (data mapped from other files)")
        if obj.external:
            files = ", ".join(sorted({str(e[0]) for e in obj.external}))
            raise _refuse(path, name, f"external raw storage in {files}")


def check_hdf5_file(f, path: str | Path | None = None) -> None:
    """Raise :class:`FormatError` if the open ``h5py.File`` ``f`` reaches outside itself.

    Every link is listed first without following any; external and user-defined links are
    refused before a soft link is resolved or a dataset opened.

    Parameters
    ----------
    f : h5py.File (or Group)
    path : str or Path, optional
        Named in the error (default ``f.filename``).
    """
    import h5py

    path = f.file.filename if path is None else path
    links: list[tuple[str, object]] = []
    try:
        f.visititems_links(lambda name, link: links.append((name, link)))
    except (OSError, RuntimeError) as exc:
        raise FormatError(f"unreadable HDF5 structure ({' '.join(str(exc).split())})", path=path, item="file") from None
    for name, link in links:
        if isinstance(link, h5py.ExternalLink):
            raise _refuse(path, name, f"external link to {link.filename}:{link.path}")
        if not isinstance(link, (h5py.SoftLink, h5py.HardLink)):
            raise _refuse(path, name, f"link of unknown kind ({type(link).__name__})")
    for name, link in links:
        try:
            _check_link(f, name, link, path)
        except (OSError, RuntimeError) as exc:
            raise FormatError(f"unreadable ({' '.join(str(exc).split())})", path=path, item=name) from None
