"""Raw camera frames + a sidecar of optics → :class:`holo.model.Acquisition`.

A *camera input* is what an off-axis microscope leaves on disk:

* a folder of frames (TIFF or PNG, 8/12/16-bit, one hologram per file), ordered by the
  natural sort of their names (``img_2.tif`` before ``img_10.tif``); numbered names must form
  an unbroken sequence, so a missing frame is an error, not a silently shorter scan;
* or one multi-page TIFF stack (pages = frames);
* or one raw off-axis hologram HDF5 file in the qpformat layout (:mod:`holo.io.raw_oah`:
  holograms ``"0"``, ``"1"``, …, an optional ``"reference"`` frame used as the background
  when none is given, optics as attributes that a sidecar or options override);
* background frames (sample-free): a folder, a stack or one frame; by default the
  sub-folder ``background/`` (or ``bg/``) of a frame folder;
* the optics in a small sidecar file, JSON or YAML (``optics.json``/``optics.yaml`` in the
  folder, or ``<stack stem>.json``/``.yaml`` beside a stack), or given as options.

Sidecar keys (all lengths in µm, conventions of :mod:`holo.conventions`)::

    wavelength_um: 0.532        # vacuum wavelength
    pixel_size_um: 0.11         # camera pitch at the sample plane, or instead:
    camera_pixel_um: 6.5        #   the camera pitch ...
    magnification: 60           #   ... and the total magnification (pixel = camera / M)
    medium_index: 1.337
    objective_na: 1.2
    geometry: illumination-scan # or sample-rotation
    illumination_na: na.txt     # (A, 2) (NA_x, NA_y), a file or a list; optional
    angles: angles.txt          # (A,) rotation angles (sample-rotation), a file or a list
    angles_unit: rad            # or deg
    rotation_axis: y            # or x
    background: background/     # folder, stack or one frame (relative to the sidecar)
    frames: "holo_*.tif"        # glob of the frames inside the folder (default: all images)

Unknown keys are refused (a typo must not silently drop an optic). Paths in the sidecar are
relative to the sidecar's folder and must stay inside the input (users' data rule: nothing is
read from outside the given input). Errors are :class:`holo.errors.FormatError` /
:class:`~holo.errors.ValidationError` naming the file and the item.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from holo.conventions import GEOMETRIES
from holo.errors import FormatError, ValidationError
from holo.memory import check_memory
from holo.model import Acquisition

__all__ = [
    "FRAME_SUFFIXES",
    "SIDECAR_NAMES",
    "SIDECAR_KEYS",
    "find_sidecar",
    "read_sidecar",
    "list_frames",
    "read_frames",
    "resolve_optics",
    "read_camera",
    "is_camera_input",
]

#: Suffixes of camera frame files (lower case).
FRAME_SUFFIXES = (".tif", ".tiff", ".png")
#: Sidecar names looked for inside a frame folder, in order.
SIDECAR_NAMES = ("optics.json", "optics.yaml", "optics.yml")
_SIDECAR_SUFFIXES = (".json", ".yaml", ".yml")
_BACKGROUND_FOLDERS = ("background", "bg")
#: Keys a sidecar may hold.
SIDECAR_KEYS = (
    "wavelength_um", "pixel_size_um", "camera_pixel_um", "magnification", "medium_index", "objective_na",
    "geometry", "illumination_na", "angles", "angles_unit", "rotation_axis", "background", "frames",
)
_OPTICS_REQUIRED = ("wavelength_um", "medium_index", "objective_na")
_NUMBER = re.compile(r"(\d+)")


# -- sidecar ---------------------------------------------------------------------------------
def find_sidecar(path: str | Path) -> Path | None:
    """The sidecar of a camera input: ``optics.json|yaml|yml`` inside a folder, or
    ``<stem>.json|yaml|yml`` beside a stack file; None when there is none."""
    p = Path(path)
    if p.is_dir():
        cands = [p / n for n in SIDECAR_NAMES]
    else:
        stem = p.name[: -len(p.suffix)] if p.suffix else p.name
        cands = [p.with_name(stem + s) for s in _SIDECAR_SUFFIXES]
    return next((c for c in cands if c.is_file()), None)


def read_sidecar(path: str | Path) -> dict:
    """Keys of a JSON or YAML sidecar (module docstring), checked against :data:`SIDECAR_KEYS`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read ({exc})", path=p, item="file") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        msg = " ".join(str(exc).split())
        raise FormatError(f"not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'} ({msg})", path=p, item="file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FormatError(f"must be a mapping of keys, got {type(data).__name__}", path=p, item="file")
    for key in data:
        if key not in SIDECAR_KEYS:
            raise ValidationError(f"unknown key (known: {', '.join(SIDECAR_KEYS)})", path=p, item=str(key))
    return dict(data)


# -- frames ----------------------------------------------------------------------------------
def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in _NUMBER.split(name)]


def _pattern_of(name: str) -> tuple[str, int | None]:
    """(name with its last number replaced by '#', that number) — the frame's sequence."""
    parts = _NUMBER.split(name)
    idx = [i for i, t in enumerate(parts) if t.isdigit()]
    if not idx:
        return name, None
    j = idx[-1]
    return "".join(parts[:j]) + "#" + "".join(parts[j + 1 :]), int(parts[j])


def _check_sequence(files: list[Path], folder: Path) -> None:
    """One naming pattern, numbers unbroken: else a ValidationError naming the file/frame."""
    pats = [_pattern_of(f.name) for f in files]
    first = pats[0][0]
    for f, (pat, _) in zip(files, pats):
        if pat != first:
            raise ValidationError(
                f"frame names follow two patterns ({files[0].name!r} and {f.name!r}); "
                "select the frames with the sidecar key 'frames' (a glob)",
                path=folder,
                item=f.name,
            )
    nums = [n for _, n in pats]
    if nums[0] is None:
        return
    for (a, na), (b, nb) in zip(zip(files, nums), zip(files[1:], nums[1:])):
        if nb == na:
            raise ValidationError(f"frame number {nb} appears twice (also {a.name!r})", path=folder, item=b.name)
        if nb != na + 1:
            missing = na + 1 if nb - na == 2 else f"{na + 1}..{nb - 1}"
            raise ValidationError(f"frame {missing} missing between {a.name!r} and {b.name!r}", path=folder, item="frames")


def list_frames(folder: str | Path, pattern: str | None = None) -> list[Path]:
    """Frame files of a folder in natural order, checked for gaps (module docstring).

    Parameters
    ----------
    folder : path
    pattern : str, optional
        Glob of the frame names (default: every TIFF/PNG file not starting with a dot).

    Raises
    ------
    FormatError
        No frame in the folder.
    ValidationError
        Two naming patterns, a number twice, or a gap in the numbers.
    """
    folder = Path(folder)
    cands = folder.glob(pattern) if pattern else folder.iterdir()
    files = [p for p in cands if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")]
    if not files:
        what = f"matching {pattern!r}" if pattern else f"({', '.join(FRAME_SUFFIXES)})"
        raise FormatError(f"no frame files {what}", path=folder, item="frames")
    files.sort(key=lambda p: _natural_key(p.name))
    _check_sequence(files, folder)
    return files


def _read_image(path: Path) -> np.ndarray:
    """Pixels of one file: (Y, X) or, for a multi-page TIFF, (P, Y, X); colour refused."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            arr = iio.imread(path)
    except Exception as exc:  # the readers raise many types on corrupt files
        raise FormatError(f"not a readable image ({' '.join(str(exc).split())})", path=path, item="file") from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and path.suffix.lower() == ".png":
        raise ValidationError(f"colour image {arr.shape}; holograms are single-channel", path=path, item="pixels")
    if arr.ndim not in (2, 3) or arr.dtype.kind not in "uif":
        raise ValidationError(f"expected (Y, X) or (pages, Y, X) real pixels, got {arr.dtype} {arr.shape}", path=path, item="pixels")
    return arr


def read_frames(paths: list[Path] | Path) -> np.ndarray:
    """Frames (A, Y, X) of a list of single-frame files, of one stack, or of one frame.

    The dtype is kept (8/12/16-bit cameras give uint8/uint16; 12-bit data sits in uint16).

    Raises
    ------
    ValidationError
        A file whose frame size or dtype differs from the first (named with both sizes).
    """
    if isinstance(paths, (str, Path)):
        arr = _read_image(Path(paths))
        return arr[None] if arr.ndim == 2 else arr
    paths = [Path(p) for p in paths]
    first = _read_image(paths[0])
    if first.ndim != 2:
        raise ValidationError(f"a frame folder holds single frames, got {first.shape[0]} pages", path=paths[0], item="pixels")
    check_memory(len(paths) * first.nbytes, path=paths[0].parent, item="frames", what="reading the frames")
    out = np.empty((len(paths),) + first.shape, first.dtype)
    out[0] = first
    for i, p in enumerate(paths[1:], start=1):
        a = _read_image(p)
        if a.shape != first.shape:
            raise ValidationError(f"size {a.shape} differs from {first.shape} of {paths[0].name!r}", path=p, item="frame size")
        if a.dtype != first.dtype:
            raise ValidationError(f"dtype {a.dtype} differs from {first.dtype} of {paths[0].name!r}", path=p, item="pixels")
        out[i] = a
    return out


def _frames_of(path: Path, pattern: str | None = None) -> np.ndarray:
    return read_frames(list_frames(path, pattern)) if path.is_dir() else read_frames(path)


# -- optics ----------------------------------------------------------------------------------
def _inside(base: Path, rel: Any, sidecar: Path, key: str) -> Path:
    """``base / rel`` when it stays inside ``base`` (no reading outside the input)."""
    p = (base / str(rel)).resolve()
    if not p.is_relative_to(base.resolve()):
        raise ValidationError(f"{rel!r} points outside the input folder", path=sidecar, item=key)
    if not p.exists():
        raise FormatError(f"{rel!r}: no such file or folder", path=sidecar, item=key)
    return p


def _small_array(value: Any, base: Path | None, source: Path | None, key: str) -> np.ndarray:
    """A list from the sidecar/options or a text/.npy file → float64 array."""
    if isinstance(value, (str, Path)):
        p = _inside(base, value, source, key) if base is not None else Path(value)
        try:
            arr = np.load(p) if p.suffix.lower() == ".npy" else np.loadtxt(p, delimiter="," if p.suffix.lower() == ".csv" else None, ndmin=1)
        except (OSError, ValueError) as exc:
            raise FormatError(f"not a readable number table ({' '.join(str(exc).split())})", path=p, item=key) from None
        source = p
    else:
        arr = value
    try:
        arr = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"must be numbers, got {value!r}", path=source, item=key) from None
    if not np.all(np.isfinite(arr)):
        raise ValidationError("contains non-finite values", path=source, item=key)
    return arr


def _number(d: dict, key: str, source) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValidationError(f"must be a number, got {v!r}", path=source, item=key)
    return float(v)


def resolve_optics(sidecar: dict, options: dict, *, sidecar_path: Path | None = None,
                   required: tuple = _OPTICS_REQUIRED, input_path: Path | None = None) -> dict:
    """Optics of a camera input: options win over the sidecar.

    ``required`` names the optics that must be given (a tomographic acquisition needs all of
    wavelength, medium index and NA; a single phase image only the wavelength); the others of
    ``wavelength_um, medium_index, objective_na`` are None when absent. Errors name the
    sidecar, or ``input_path`` when there is none.

    Returns
    -------
    dict
        ``wavelength_um, pixel_size_um, medium_index, objective_na, geometry, rotation_axis``
        (pixel_size_um from ``camera_pixel_um / magnification`` when not given directly).

    Raises
    ------
    ValidationError
        A required optic missing (named, with where to give it), or not a number.
    """
    merged = {**sidecar, **{k: v for k, v in options.items() if v is not None}}
    src = sidecar_path or input_path
    where = f"give it in {sidecar_path.name}" if sidecar_path else "give it as an option or in an optics.json/yaml sidecar"
    out: dict[str, Any] = {}
    for key in _OPTICS_REQUIRED:
        v = _number(merged, key, src)
        if v is None and key in required:
            raise ValidationError(f"missing ({where})", path=src, item=key)
        out[key] = v
    pixel = _number(merged, "pixel_size_um", src)
    if pixel is None:
        cam, mag = _number(merged, "camera_pixel_um", src), _number(merged, "magnification", src)
        if cam is None or mag is None:
            raise ValidationError(f"missing: pixel_size_um, or camera_pixel_um with magnification ({where})", path=src, item="pixel_size_um")
        if mag <= 0:
            raise ValidationError(f"must be positive, got {mag}", path=src, item="magnification")
        pixel = cam / mag
    out["pixel_size_um"] = pixel
    out["geometry"] = str(merged.get("geometry", "illumination-scan"))
    if out["geometry"] not in GEOMETRIES:
        raise ValidationError(f"must be one of {', '.join(GEOMETRIES)}, got {out['geometry']!r}", path=src, item="geometry")
    out["rotation_axis"] = str(merged.get("rotation_axis", "y"))
    return out


# -- the whole input -------------------------------------------------------------------------
def _background(path: Path, sidecar: dict, sidecar_path: Path | None, given) -> np.ndarray | None:
    if given is not None:
        return _frames_of(Path(given))
    if "background" in sidecar:
        return _frames_of(_inside(sidecar_path.parent, sidecar["background"], sidecar_path, "background"))
    if path.is_dir():
        for name in _BACKGROUND_FOLDERS:
            if (path / name).is_dir():
                return _frames_of(path / name)
    return None


def _per_frame(sc: dict, options: dict, sc_path: Path | None, n: int) -> dict:
    """``illumination_na`` (A, 2) and ``angles`` (A,) from the options or the sidecar (whose
    file names are relative to the sidecar and must stay inside the input), checked."""
    out: dict[str, Any] = {}
    for key in ("illumination_na", "angles"):
        if options.get(key) is not None:
            value, base, src = options[key], None, None
        elif sc.get(key) is not None:
            value, base, src = sc[key], sc_path.parent, sc_path
        else:
            continue
        arr = _small_array(value, base, src, key)
        if key == "illumination_na":
            if arr.size != 2 * n:
                raise ValidationError(f"has {arr.size} values; needs {n} rows of (NA_x, NA_y), one per frame", path=src, item=key)
            out[key] = arr.reshape(n, 2)
            continue
        if arr.size != n:
            raise ValidationError(f"has {arr.size} values for {n} frames", path=src, item=key)
        unit = str(options.get("angles_unit") or sc.get("angles_unit", "rad"))
        if unit not in ("rad", "deg"):
            raise ValidationError(f"must be 'rad' or 'deg', got {unit!r}", path=sc_path, item="angles_unit")
        out[key] = np.deg2rad(arr.reshape(n)) if unit == "deg" else arr.reshape(n)
    return out


def _raw_hdf5(path: Path) -> tuple | None:
    """(holograms, reference or None, optics) of an HDF5 input (:mod:`holo.io.raw_oah`, which
    refuses any other HDF5 layout in one line); None for frames and TIFF stacks."""
    from holo.io.raw_oah import RAW_OAH_SUFFIXES, read_raw_oah_hdf5

    if path.is_file() and path.suffix.lower() in RAW_OAH_SUFFIXES:
        return read_raw_oah_hdf5(path)
    return None


def read_camera(
    path: str | Path,
    *,
    sidecar: str | Path | None = None,
    background: str | Path | None = None,
    lazy: bool = False,
    **options,
) -> Acquisition:
    """Read a camera input (module docstring) into an in-memory :class:`Acquisition`.

    Parameters
    ----------
    path : path
        Frame folder, multi-page TIFF stack or raw off-axis hologram HDF5 (qpformat layout).
    sidecar : path, optional
        Optics file (default: :func:`find_sidecar`).
    background : path, optional
        Background folder, stack or frame (default: the sidecar's ``background`` or the
        ``background/`` sub-folder).
    lazy : bool
        Ignored: camera frames are always read into memory (after a memory check), since
        they are spread over many files. Accepted so that :func:`holo.io.open_path` can pass
        it to every reader.
    **options
        Any sidecar key (``wavelength_um=``, ``pixel_size_um=``, ``illumination_na=`` …);
        given values win over the sidecar's.

    Returns
    -------
    Acquisition
        ``holograms`` (A, Y, X) in the camera dtype, ``background`` (A, Y, X) or (Y, X),
        ``metadata`` recording the camera input (``camera_frames``, ``camera_dtype``,
        ``sidecar``), ``source`` = ``str(path)``. Illumination NAs stay None when not given
        (the retrieval estimates them from the background).

    Raises
    ------
    FormatError, ValidationError
        One line naming the file and the item (missing or mismatched frames, missing optics,
        background count neither 1 nor A).
    """
    path = Path(path)
    del lazy
    if not path.exists():
        raise FormatError("no such file or folder", path=path, item="file")
    unknown = [k for k in options if k not in SIDECAR_KEYS]
    if unknown:
        raise ValidationError(f"unknown option(s) {unknown}", path=path, item="options")
    sc_path = Path(sidecar) if sidecar is not None else find_sidecar(path)
    sc = read_sidecar(sc_path) if sc_path is not None else {}
    raw = _raw_hdf5(path)
    optics = resolve_optics({**raw[2], **sc} if raw else sc, options, sidecar_path=sc_path, input_path=path)
    merged = {**sc, **{k: v for k, v in options.items() if v is not None}}
    holo_frames = raw[0] if raw else _frames_of(path, merged.get("frames") if path.is_dir() else None)
    n = holo_frames.shape[0]
    bg = _background(path, sc, sc_path, background)
    if bg is None and raw:
        bg = raw[1]
    if bg is None:
        raise FormatError("no background frames (give --background, the sidecar key 'background' or a background/ folder)", path=path, item="background")
    if bg.shape[1:] != holo_frames.shape[1:]:
        raise ValidationError(f"frame size {bg.shape[1:]} differs from the holograms' {holo_frames.shape[1:]}", path=path, item="background")
    if bg.shape[0] not in (1, n):
        raise ValidationError(f"{bg.shape[0]} frames for {n} holograms (need 1 or {n})", path=path, item="background")
    kw = _per_frame(sc, options, sc_path, n)
    meta = {"camera_frames": int(n), "camera_dtype": str(holo_frames.dtype), "camera_input": path.name}
    if sc_path is not None:
        meta["sidecar"] = sc_path.name
    return Acquisition(
        geometry=optics["geometry"],
        wavelength_um=optics["wavelength_um"],
        pixel_size_um=optics["pixel_size_um"],
        medium_index=optics["medium_index"],
        objective_na=optics["objective_na"],
        holograms=holo_frames,
        background=bg[0] if bg.shape[0] == 1 else bg,
        rotation_axis=optics["rotation_axis"],
        metadata=meta,
        source=str(path),
        **kw,
    )


def is_camera_input(path: str | Path) -> bool:
    """True for a folder of frames with an optics sidecar inside, or a non-OME TIFF stack
    with ``<stem>.json|yaml`` beside it (what :func:`holo.io.detect_format` calls "camera")."""
    p = Path(path)
    if find_sidecar(p) is None:
        return False
    if p.is_dir():
        return any(q.suffix.lower() in FRAME_SUFFIXES and not q.name.startswith(".") for q in p.iterdir())
    return p.suffix.lower() in (".tif", ".tiff")
