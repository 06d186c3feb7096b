"""The data model shared by every stage: :class:`Acquisition` and :class:`Tomogram`.

Conventions (units, axes, signs) are those of :mod:`holo.conventions`.
Arrays may be NumPy arrays or lazy array-likes (h5py datasets, dask arrays): validation
looks at shapes, dtypes and the small metadata arrays and never loads big frames.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from holo.conventions import GEOMETRIES
from holo.errors import ValidationError

__all__ = ["Acquisition", "Tomogram", "FluorescenceChannel", "software_version"]


def software_version() -> str:
    """Version string of the installed holo package."""
    try:
        from importlib.metadata import version

        return version("holo")
    except Exception:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _finite_positive(name: str, value: Any, *, lo: float = 0.0, hi: float = np.inf, path=None) -> float:
    try:
        v = float(np.asarray(value).reshape(-1)[0]) if np.ndim(value) else float(value)
    except (TypeError, ValueError, IndexError):
        raise ValidationError(f"must be a number, got {value!r}", path=path, item=name) from None
    if not np.isfinite(v):
        raise ValidationError(f"must be finite, got {v}", path=path, item=name)
    if not (lo < v < hi):
        raise ValidationError(f"{v} is outside the sane range ({lo}, {hi})", path=path, item=name)
    return v


def _is_real_dtype(dtype) -> bool:
    dt = np.dtype(dtype)
    return dt.kind in "uif"


@dataclass
class Acquisition:
    """One holotomography acquisition (layout on disk: ``docs/acquisition-format.md``).

    Parameters
    ----------
    geometry : {"illumination-scan", "sample-rotation"}
    wavelength_um : float
        Vacuum wavelength λ in µm.
    pixel_size_um : float
        Camera pixel pitch referred to the sample plane, µm.
    medium_index : float
        Absolute RI of the immersion medium n_m.
    objective_na : float
        Detection NA, ≤ n_m.
    holograms : (A, Y, X) real array-like, optional
        Raw off-axis hologram intensities with the sample.
    background : (A, Y, X) or (Y, X) real array-like, optional
        Sample-free holograms (required with ``holograms``).
    fields : (A, Y, X) complex array-like, optional
        u/u0 in the focal plane; wins over holograms when both are given.
    illumination_na : (A, 2) float array, optional
        (NA_x, NA_y) of each frame (illumination scan); may be estimated later.
    angles : (A,) float array, optional
        Rotation angle of each frame, radians (sample rotation).
    rotation_axis : {"y", "x"}
    metadata : dict
        Further root attributes, preserved on rewrite.
    ground_truth : dict, optional
        Digital-twin truth stored beside a simulated acquisition (see ``holo.twin``).
    source : str, optional
        File the acquisition was read from.

    Raises
    ------
    ValidationError
        Shapes disagree, NA > n_m, non-finite or out-of-range values, wrong dtypes.
    """

    geometry: str
    wavelength_um: float
    pixel_size_um: float
    medium_index: float
    objective_na: float
    holograms: Any = None
    background: Any = None
    fields: Any = None
    illumination_na: Any = None
    angles: Any = None
    rotation_axis: str = "y"
    metadata: dict = field(default_factory=dict)
    ground_truth: dict | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        p = self.source
        if self.geometry not in GEOMETRIES:
            raise ValidationError(f"must be one of {', '.join(GEOMETRIES)}, got {self.geometry!r}", path=p, item="geometry")
        self.wavelength_um = _finite_positive("wavelength_um", self.wavelength_um, lo=0.1, hi=20.0, path=p)
        self.pixel_size_um = _finite_positive("pixel_size_um", self.pixel_size_um, lo=1e-3, hi=100.0, path=p)
        self.medium_index = _finite_positive("medium_index", self.medium_index, lo=0.99, hi=3.0, path=p)
        self.objective_na = _finite_positive("objective_na", self.objective_na, lo=0.0, hi=3.0, path=p)
        if self.objective_na > self.medium_index:
            raise ValidationError(
                f"objective NA {self.objective_na} exceeds the medium index {self.medium_index}", path=p, item="objective_na"
            )
        if self.rotation_axis not in ("y", "x"):
            raise ValidationError(f"must be 'y' or 'x', got {self.rotation_axis!r}", path=p, item="rotation_axis")

        if self.fields is None and self.holograms is None:
            raise ValidationError("neither 'holograms' nor 'fields' is present", path=p, item="holograms")
        n_frames = None
        frame_shape = None
        if self.fields is not None:
            if len(self.fields.shape) != 3:
                raise ValidationError(f"must be 3D (A, Y, X), got shape {tuple(self.fields.shape)}", path=p, item="fields")
            if np.dtype(self.fields.dtype).kind != "c":
                raise ValidationError(f"must be complex, got dtype {self.fields.dtype}", path=p, item="fields")
            n_frames, frame_shape = self.fields.shape[0], tuple(self.fields.shape[1:])
        if self.holograms is not None:
            h = self.holograms
            if len(h.shape) != 3:
                raise ValidationError(f"must be 3D (A, Y, X), got shape {tuple(h.shape)}", path=p, item="holograms")
            if not _is_real_dtype(h.dtype):
                raise ValidationError(f"must be a real dtype, got {h.dtype}", path=p, item="holograms")
            if self.background is None:
                raise ValidationError("is required with 'holograms'", path=p, item="background")
            b = self.background
            if not _is_real_dtype(b.dtype):
                raise ValidationError(f"must be a real dtype, got {b.dtype}", path=p, item="background")
            if tuple(b.shape) != tuple(h.shape) and tuple(b.shape) != tuple(h.shape[1:]):
                raise ValidationError(
                    f"shape {tuple(b.shape)} matches neither holograms {tuple(h.shape)} nor one frame", path=p, item="background"
                )
            if n_frames is None:
                n_frames, frame_shape = h.shape[0], tuple(h.shape[1:])
            elif h.shape[0] != n_frames:
                raise ValidationError(f"{h.shape[0]} frames but fields has {n_frames}", path=p, item="holograms")
        if n_frames == 0 or any(s < 2 for s in frame_shape):
            raise ValidationError(f"empty frames, shape ({n_frames}, {frame_shape})", path=p, item="fields" if self.fields is not None else "holograms")

        if self.illumination_na is not None:
            na = np.asarray(self.illumination_na, dtype=np.float64)
            if na.shape != (n_frames, 2):
                raise ValidationError(f"shape {na.shape} != ({n_frames}, 2)", path=p, item="illumination_na")
            if not np.all(np.isfinite(na)):
                raise ValidationError("contains non-finite values", path=p, item="illumination_na")
            if np.any(np.hypot(na[:, 0], na[:, 1]) >= self.medium_index):
                raise ValidationError("an illumination NA reaches the medium index", path=p, item="illumination_na")
            self.illumination_na = na
        if self.angles is not None:
            ang = np.asarray(self.angles, dtype=np.float64)
            if ang.shape != (n_frames,):
                raise ValidationError(f"shape {ang.shape} != ({n_frames},)", path=p, item="angles")
            if not np.all(np.isfinite(ang)):
                raise ValidationError("contains non-finite values", path=p, item="angles")
            if np.max(np.abs(ang)) > 8 * np.pi:
                raise ValidationError("values look like degrees; angles are in radians", path=p, item="angles")
            self.angles = ang
        if self.geometry == "sample-rotation" and self.angles is None:
            raise ValidationError("is required for sample-rotation", path=p, item="angles")
        if self.geometry == "illumination-scan" and self.illumination_na is None and self.holograms is None:
            raise ValidationError("is required for illumination-scan fields (no background to estimate it from)", path=p, item="illumination_na")

    # -- convenience -----------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        arr = self.fields if self.fields is not None else self.holograms
        return int(arr.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        arr = self.fields if self.fields is not None else self.holograms
        return tuple(int(s) for s in arr.shape[1:])

    def replace(self, **changes) -> "Acquisition":
        """A copy with some attributes changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass
class FluorescenceChannel:
    """One fluorescence channel: data (Z, Y, X) or (T, Z, Y, X), its own voxel size and the
    Z offset (µm) of its first slice relative to the RI volume's first slice."""

    data: Any
    voxel_size_um: tuple[float, float, float]
    offset_z_um: float = 0.0
    time_step_s: float | None = None
    name: str = ""


@dataclass
class Tomogram:
    """A 3D refractive-index volume.

    Parameters
    ----------
    ri : (Z, Y, X) or (T, Z, Y, X) float32 array-like
        Absolute RI; may be a lazy dask array (one chunk per frame).
    voxel_size_um : (dz, dy, dx)
    medium_index : float
    wavelength_um : float, optional
    time_step_s : float, optional
        Time between frames when ``ri`` has a time axis.
    fluorescence : dict of name -> FluorescenceChannel
    mip : (Y, X) array, optional
        2D maximum-intensity projection stored beside the volume (TCF 2DMIP).
    provenance : dict
        ``method``, ``parameters``, ``software_version``, ``source_file`` and anything a
        stage adds (e.g. ``excluded_frames``).
    metadata : dict
        Free-form metadata carried across formats.
    """

    ri: Any
    voxel_size_um: tuple[float, float, float]
    medium_index: float
    wavelength_um: float | None = None
    time_step_s: float | None = None
    fluorescence: dict = field(default_factory=dict)
    mip: Any = None
    provenance: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        p = self.source
        nd = len(self.ri.shape)
        if nd not in (3, 4):
            raise ValidationError(f"must be (Z, Y, X) or (T, Z, Y, X), got shape {tuple(self.ri.shape)}", path=p, item="ri")
        if np.dtype(self.ri.dtype).kind not in "f":
            raise ValidationError(f"must be floating point RI, got {self.ri.dtype}", path=p, item="ri")
        vs = tuple(float(v) for v in np.asarray(self.voxel_size_um, dtype=float).reshape(-1))
        if len(vs) != 3:
            raise ValidationError(f"needs 3 values (dz, dy, dx), got {vs}", path=p, item="voxel_size_um")
        for v in vs:
            _finite_positive("voxel_size_um", v, lo=1e-4, hi=1e3, path=p)
        self.voxel_size_um = vs
        self.medium_index = _finite_positive("medium_index", self.medium_index, lo=0.99, hi=3.0, path=p)
        if self.wavelength_um is not None:
            self.wavelength_um = _finite_positive("wavelength_um", self.wavelength_um, lo=0.1, hi=20.0, path=p)
        if self.time_step_s is not None:
            self.time_step_s = _finite_positive("time_step_s", self.time_step_s, lo=0.0, hi=1e9, path=p)
        self.provenance = dict(self.provenance)
        self.provenance.setdefault("software_version", software_version())

    @property
    def has_time(self) -> bool:
        return len(self.ri.shape) == 4

    @property
    def n_times(self) -> int:
        return int(self.ri.shape[0]) if self.has_time else 1

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.ri.shape[-3:])

    def frame(self, t: int = 0) -> np.ndarray:
        """The RI volume at time index ``t`` as a float32 NumPy array.

        A lazy volume is computed only after :func:`holo.memory.check_memory` found room
        for it (float32 result plus one stored copy, 8 bytes per voxel)."""
        vol = self.ri[t] if self.has_time else self.ri
        if hasattr(vol, "compute"):
            from holo.memory import check_memory

            check_memory(8.0 * float(np.prod(self.shape_zyx, dtype=np.float64)), path=self.source, item="ri",
                         what="loading one RI volume")
            vol = vol.compute()
        return np.asarray(vol, dtype=np.float32)

    def replace(self, **changes) -> "Tomogram":
        return dataclasses.replace(self, **changes)
