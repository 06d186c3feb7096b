"""holo as the reader napari uses for the files holo writes (File → Open, drag and drop).

napari asks which plugin to use when several readers match a file name and no preference is
stored (and ``viewer.open(path, plugin=None)`` raises); a stored preference
(``settings.plugins.extension2reader``) decides without asking. On activation the plugin
stores holo as the preferred reader for the patterns below, ONLY where the user has not
chosen one: the acquisition HDF5 (napari's built-in reader cannot read it), Tomocube TCF and
OME-TIFF / OME-Zarr (napari's built-in reader drops their µm scale and metadata). For a file
holo does not understand, its reader returns None and napari offers the other readers. The
user changes the choice in Preferences → Plugins → File extension readers.
"""

from __future__ import annotations

#: The file-name patterns holo claims (the manifest's ``filename_patterns`` less the folders).
HOLO_PATTERNS = ("*.h5", "*.hdf5", "*.tcf", "*.ome.tif", "*.ome.tiff", "*.ome.zarr")
PLUGIN_NAME = "holo"


def prefer_holo_reader(settings=None) -> list[str]:
    """Store holo as the reader of :data:`HOLO_PATTERNS` that have no preference yet;
    returns the patterns set (the user's own choices are never changed)."""
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    missing = [p for p in HOLO_PATTERNS if p not in current]
    if missing:
        settings.plugins.extension2reader = {**current, **{p: PLUGIN_NAME for p in missing}}
    return missing


def activate(context=None) -> None:
    """npe2 ``on_activate`` hook of the holo plugin."""
    prefer_holo_reader()
