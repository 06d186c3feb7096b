"""Digital-twin cell phantoms: 3D refractive-index volumes with semantic and instance truth.

Every object is described in its own body frame by signed distance functions (SDF, µm,
negative inside; primitives in :mod:`holo.twin._shapes`) and rasterised on the voxel grid
only inside its bounding box:

* **Labels** come from the SDF sign: a voxel whose centre has d < 0 belongs to the object.
  Organelles are nested (nucleolus ⊂ nucleus ⊂ cell, lipid droplets in the cytoplasm)
  by clamping their SDF with the parent's, d ← max(d, d_parent + m), m = one voxel.
* **RI** uses partial volumes: the fraction of a voxel inside an object is the linear
  ramp f = clip(1/2 − d/w, 0, 1) with w the voxel size along the surface normal
  (:func:`holo.twin._shapes.partial_volume_fraction`), and nested objects add their
  contrast to their parent's: n = n_m + f_cell (n_cyto − n_m) + f_nuc (n_nuc − n_cyto) + …
* **Touching cells**: where the boxes of two cells overlap, the voxel goes to the cell with
  the smaller SDF (labels stay a partition) and that cell's volume fraction is kept whole
  while the other's is reduced so that the fractions sum to at most one.

Coordinates follow :mod:`holo.conventions` (µm, (Z, Y, X)). The grid is centred on the
optical axis with the volume centre at the focal plane: voxel index k along an axis of N
voxels of size h sits at (k − N//2)·h (see :func:`grid_axes_um`). Cells settle near z = 0
with their flattest axis roughly along z (random azimuth, a small random tilt); the inner
structures (nucleus lobes, nucleoli, droplets) take their own random 3D orientation.

Refractive indices are absolute (see :mod:`holo.conventions`); the ranges drawn per class
are in :data:`RI_RANGES`.

Besides the classifier's classes the twin draws object types the classifier never saw
(:data:`UNSEEN_CLASSES`: HL60-like cells, adherent flat cells, debris; models and published
RI values in :mod:`holo.twin._unseen`), and can add debris and out-of-focus neighbours cut
by the volume's faces to any field (``n_debris``, ``n_out_of_focus`` of :func:`make_phantom`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from holo.labels import (  # the vocabulary of labels and classes, re-exported for the twin's users
    BACKGROUND,
    BACTERIA_CLASSES,
    CELL_CLASSES,
    CYTOPLASM,
    LIPID_DROPLET,
    NUCLEATED_CLASSES,
    NUCLEOLUS,
    NUCLEUS,
    RBC_CLASSES,
    SEMANTIC_NAMES,
)
from holo.twin import _shapes as sh

__all__ = [
    "SEMANTIC_NAMES",
    "BACKGROUND",
    "CYTOPLASM",
    "NUCLEUS",
    "NUCLEOLUS",
    "LIPID_DROPLET",
    "NUCLEATED_CLASSES",
    "RBC_CLASSES",
    "BACTERIA_CLASSES",
    "CELL_CLASSES",
    "UNSEEN_CLASSES",
    "FAMILY_OF",
    "KINDS",
    "UNSEEN_KINDS",
    "RI_RANGES",
    "Phantom",
    "grid_axes_um",
    "make_phantom",
    "make_cell",
    "make_sphere_phantom",
]

#: Phantom kinds: one family each, or all of them.
KINDS = ("cell", "rbc", "bacteria", "mixed")
_FAMILIES = {"cell": NUCLEATED_CLASSES, "rbc": RBC_CLASSES, "bacteria": BACTERIA_CLASSES}
#: Object types the classifier never saw (not in :data:`CELL_CLASSES`): an HL60-like
#: suspended cell line, adherent flat cells spread on the coverslip, debris (small irregular
#: particles without nucleus). Built in :mod:`holo.twin._unseen`. They check that the chain
#: answers ``unknown`` (:data:`holo.labels.UNKNOWN`) on them; each is its own phantom kind
#: and family. Their ground truth carries the class name and the usual semantic labels.
UNSEEN_CLASSES = ("hl60_like", "adherent", "debris")
#: Phantom kinds of the unseen object types (one class each).
UNSEEN_KINDS = UNSEEN_CLASSES
_FAMILIES.update({c: (c,) for c in UNSEEN_CLASSES})
#: Family ("cell", "rbc", "bacteria", or the unseen type itself) of each class.
FAMILY_OF = {c: fam for fam, members in _FAMILIES.items() for c in members}

#: Absolute RI interval of every voxel fully inside a structure (away from its edges), per
#: family and semantic label. Nucleated cells: cytoplasm 1.355–1.365 plus a smooth texture
#: of ±0.004 and granules up to +0.02 (eosinophils); nucleus 0.001–0.006 below its
#: cytoplasm with ±0.002 chromatin texture; nucleoli 1.38–1.39; lipid droplets 1.39–1.45.
#: Red blood cells 1.392–1.408 (haemoglobin ≈ 33 g/dL), bacteria 1.382–1.398, homogeneous.
RI_RANGES = {
    "cell": {CYTOPLASM: (1.350, 1.390), NUCLEUS: (1.345, 1.367), NUCLEOLUS: (1.380, 1.390), LIPID_DROPLET: (1.390, 1.450)},
    "rbc": {CYTOPLASM: (1.390, 1.410)},
    "bacteria": {CYTOPLASM: (1.380, 1.400)},
    # Unseen types (holo.twin._unseen): the drawn base RI ± 3 σ of the texture layers.
    "hl60_like": {CYTOPLASM: (1.345, 1.377), NUCLEUS: (1.342, 1.369), NUCLEOLUS: (1.372, 1.385), LIPID_DROPLET: (1.390, 1.450)},
    "adherent": {CYTOPLASM: (1.349, 1.383), NUCLEUS: (1.346, 1.376), NUCLEOLUS: (1.372, 1.388), LIPID_DROPLET: (1.390, 1.450)},
    "debris": {CYTOPLASM: (1.354, 1.426)},
}

_F32 = np.float32
SDF = Callable[[tuple], np.ndarray]


# ----------------------------------------------------------------------------------------
# Phantom container
# ----------------------------------------------------------------------------------------
@dataclass
class Phantom:
    """A phantom volume with its ground truth.

    Attributes
    ----------
    ri : (Z, Y, X) float32
        Absolute refractive index.
    semantic : (Z, Y, X) uint8
        Label values index :data:`SEMANTIC_NAMES`.
    instance : (Z, Y, X) int32
        Cell id, 0 for background; ``instance > 0`` exactly where ``semantic > 0``.
    classes : dict of int -> str
        Class name (:data:`CELL_CLASSES`, or ``"sphere"``) of every cell id.
    voxel_size_um : (dz, dy, dx)
    medium_index : float
    kind : str
        ``"cell"``, ``"rbc"``, ``"bacteria"``, ``"mixed"``, ``"sphere"``, or one of the
        unseen types :data:`UNSEEN_KINDS`.
    cells : dict of int -> dict
        Parameters drawn for every cell (centre in µm on the :func:`grid_axes_um` grid,
        RI values, sizes, number of nucleus lobes, …); JSON-serialisable.
    """

    ri: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    classes: dict
    voxel_size_um: tuple
    medium_index: float
    kind: str
    cells: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = self.ri.shape
        if self.ri.ndim != 3:
            raise ValueError(f"ri: must be (Z, Y, X), got shape {shape}")
        for name in ("semantic", "instance"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name}: shape {getattr(self, name).shape} differs from ri {shape}")
        self.voxel_size_um = tuple(float(v) for v in self.voxel_size_um)
        self.medium_index = float(self.medium_index)

    @property
    def shape_zyx(self) -> tuple:
        return tuple(int(s) for s in self.ri.shape)

    def ground_truth(self) -> dict:
        """The ground-truth dict of a simulated acquisition (``docs/design.md``).

        Returns
        -------
        dict
            ``ri`` float32, ``semantic`` uint8, ``instance`` int32 (the phantom's arrays, not
            copies), ``voxel_size_um``, ``medium_index``, ``classes`` {id: name},
            ``semantic_names`` list.
        """
        return {
            "ri": self.ri,
            "semantic": self.semantic,
            "instance": self.instance,
            "voxel_size_um": tuple(self.voxel_size_um),
            "medium_index": float(self.medium_index),
            "classes": {int(k): str(v) for k, v in self.classes.items()},
            "semantic_names": list(SEMANTIC_NAMES),
        }


# ----------------------------------------------------------------------------------------
# Grid and small geometry helpers
# ----------------------------------------------------------------------------------------
def grid_axes_um(shape_zyx, voxel_size_um) -> tuple:
    """Voxel-centre coordinates (µm) along Z, Y, X: x_k = (k − N//2)·h, so 0 is the centre."""
    shape, vox = _check_grid(shape_zyx, voxel_size_um)
    return tuple(((np.arange(n) - n // 2) * h).astype(np.float32) for n, h in zip(shape, vox))


def _check_grid(shape_zyx, voxel_size_um):
    try:
        shape = tuple(int(s) for s in shape_zyx)
    except (TypeError, ValueError):
        raise ValueError(f"shape_zyx: must be three integers, got {shape_zyx!r}") from None
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape_zyx: must be three sizes >= 4, got {shape_zyx!r}")
    try:
        vox = tuple(float(v) for v in np.broadcast_to(np.asarray(voxel_size_um, dtype=float), (3,)))
    except (TypeError, ValueError):
        raise ValueError(f"voxel_size_um: must be (dz, dy, dx) in µm, got {voxel_size_um!r}") from None
    if not all(np.isfinite(v) and 1e-3 <= v <= 10.0 for v in vox):
        raise ValueError(f"voxel_size_um: values must lie in [0.001, 10] µm, got {vox}")
    return shape, vox


def _check_medium(medium_index) -> float:
    n = float(medium_index)
    if not (np.isfinite(n) and 1.0 <= n <= 2.0):
        raise ValueError(f"medium_index: must be an absolute RI in [1, 2], got {medium_index!r}")
    return n


class _Grid:
    """Voxel grid of a phantom: axes, partial-volume width and accumulation buffers."""

    def __init__(self, shape_zyx, voxel_size_um, medium_index):
        self.shape, vox = _check_grid(shape_zyx, voxel_size_um)
        self.voxel = np.asarray(vox, dtype=np.float64)
        self.medium = _check_medium(medium_index)
        self.axes = grid_axes_um(self.shape, vox)
        self.center_index = np.array([n // 2 for n in self.shape])
        #: Largest |coordinate| a cell may reach on each axis (one voxel kept free).
        self.avail_um = np.array(
            [min(n // 2, n - 1 - n // 2) * h for n, h in zip(self.shape, vox)]
        ) - self.voxel
        self.isotropic = float(self.voxel.max() / self.voxel.min()) < 1.01
        #: Nesting margin and width of the partial-volume ramp (one voxel).
        self.margin = _F32(self.voxel.max())
        self.ri_excess = np.zeros(self.shape, np.float32)
        self.occupancy = np.zeros(self.shape, np.float32)
        self.best_d = np.full(self.shape, np.inf, np.float32)
        self.semantic = np.zeros(self.shape, np.uint8)
        self.instance = np.zeros(self.shape, np.int32)

    def width(self, d):
        """Ramp width w: the voxel size, or for anisotropic voxels its extent along ∇d,
        w = √(Σ (n_i h_i)²) with n = ∇d/|∇d|."""
        if self.isotropic or min(d.shape) < 2:
            return _F32(self.voxel.mean())
        g = np.gradient(d, *self.voxel)
        g2 = g[0] * g[0] + g[1] * g[1] + g[2] * g[2]
        h2 = (g[0] * _F32(self.voxel[0])) ** 2 + (g[1] * _F32(self.voxel[1])) ** 2 + (g[2] * _F32(self.voxel[2])) ** 2
        # A weighted RMS of the h_i, so never below min(h); where ∇d vanishes use min(h).
        w = np.sqrt(h2 / np.maximum(g2, _F32(1e-12)))
        return np.maximum(w, _F32(self.voxel.min())).astype(np.float32, copy=False)

    def box(self, center_um, half_um):
        """Index slices of the box centre ± half (µm), clipped to the grid; None if empty."""
        lo = np.ceil((np.asarray(center_um) - half_um) / self.voxel + self.center_index).astype(int)
        hi = np.floor((np.asarray(center_um) + half_um) / self.voxel + self.center_index).astype(int) + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, self.shape)
        if np.any(hi <= lo):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _rotation_about(axis, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix about a unit ``axis`` (z, y, x components) by ``angle`` rad."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * (K @ K)


def _random_rotation(rng) -> np.ndarray:
    """Uniformly distributed rotation (normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _settled_rotation(rng, max_tilt_deg: float) -> np.ndarray:
    """Rotation about the optical axis by a uniform azimuth, then a tilt ≤ ``max_tilt_deg``
    about a random horizontal axis: an object resting with its body z near the lab z."""
    spin = _rotation_about((1.0, 0.0, 0.0), rng.uniform(0.0, 2.0 * np.pi))
    phi = rng.uniform(0.0, 2.0 * np.pi)
    tilt = _rotation_about((0.0, math.sin(phi), math.cos(phi)), math.radians(rng.uniform(0.0, max_tilt_deg)))
    return tilt @ spin


def _local(p, rotation, offset_um):
    """Coordinates in a frame placed at ``offset_um`` with axes ``rotation`` (columns)."""
    q = (p[0] - _F32(offset_um[0]), p[1] - _F32(offset_um[1]), p[2] - _F32(offset_um[2]))
    R = np.asarray(rotation, dtype=np.float32)
    return tuple(q[0] * R[0, i] + q[1] * R[1, i] + q[2] * R[2, i] for i in range(3))


def _as_tuple(points):
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    return (pts[:, 0], pts[:, 1], pts[:, 2])


def _fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly uniform unit vectors (z, y, x)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([z, r * np.sin(phi), r * np.cos(phi)], axis=1)


def _low_order_noise(rng, n_terms: int = 6):
    """Random coefficients of :func:`holo.twin._shapes.radial_perturbation`, Σ|a_j| = 1."""
    dirs = rng.standard_normal((n_terms, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    k = dirs * rng.uniform(1.0, 3.0, (n_terms, 1))
    ph = rng.uniform(0.0, 2.0 * np.pi, n_terms)
    a = rng.standard_normal(n_terms)
    return k, ph, a / np.abs(a).sum()


# ----------------------------------------------------------------------------------------
# Cell models (body frame)
# ----------------------------------------------------------------------------------------
@dataclass
class _Part:
    """An organelle: body-frame SDF, bounding sphere and RI."""

    sdf: SDF
    center_um: np.ndarray
    radius_um: float
    ri: float


@dataclass
class _CellModel:
    """One cell in its body frame; lab position x = centre + scale · rotation @ p_body."""

    class_name: str
    membrane: SDF
    half_extent_um: np.ndarray
    n_cytoplasm: float
    nucleus: _Part | None = None
    n_nucleus: float = 0.0
    nucleoli: list = field(default_factory=list)
    lipids: list = field(default_factory=list)
    texture_std: float = 0.0
    texture_corr_um: float = 0.6
    chromatin_std: float = 0.0
    granules: tuple | None = None  # (correlation µm, Δn amplitude, threshold in σ)
    max_tilt_deg: float = 15.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    center_um: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0
    info: dict = field(default_factory=dict)
    flat_rotation: np.ndarray | None = None
    #: Extra texture of the cytoplasm and of the nucleus: (correlation µm, σ) per independent
    #: Gaussian random field, each clipped at ±3σ (unseen types; blood cells and bacteria use
    #: ``texture_std`` alone, and their phantoms do not draw these fields).
    texture_layers: tuple = ()
    chromatin_layers: tuple = ()
    _cloud: tuple | None = None

    @property
    def family(self) -> str:
        return FAMILY_OF.get(self.class_name, self.class_name)

    def lab_half_extent(self) -> np.ndarray:
        """Half extents (µm) of a lab-frame box around the cell centre that holds the cell.

        The support max |(R p)_i| of the body's interior sample points plus one sampling
        step, capped by the box around the rotated body box."""
        pts, step = self._sampled_interior()
        box = np.abs(self.rotation) @ self.half_extent_um
        if len(pts):
            box = np.minimum(box, np.abs(pts @ self.rotation.T).max(axis=0) + float(np.linalg.norm(step)))
        return self.scale * box

    def min_width_um(self) -> float:
        """Smallest body width 2·min(half extents), scaled (µm)."""
        return float(2.0 * self.scale * self.half_extent_um.min())

    def bounding_radius(self) -> float:
        return float(self.scale * np.linalg.norm(self.half_extent_um))

    def membrane_lab(self, points_um, center_um=None) -> np.ndarray:
        """Cell SDF (µm) at lab points (N, 3), the cell centred at ``center_um``."""
        c = self.center_um if center_um is None else center_um
        body = (np.asarray(points_um, dtype=np.float64) - c) @ self.rotation / self.scale
        return self.membrane(_as_tuple(body)).astype(np.float64) * self.scale

    def _sampled_interior(self):
        """Body-frame points inside the membrane on a 33³ grid over the body box (cached),
        and the grid step (µm) per axis."""
        if self._cloud is None:
            n = 33
            ax = [np.linspace(-e, e, n) for e in self.half_extent_um]
            pts = np.stack(np.meshgrid(*ax, indexing="ij"), axis=-1).reshape(-1, 3)
            self._cloud = (pts[self.membrane(_as_tuple(pts)) < 0], 2.0 * self.half_extent_um / (n - 1))
        return self._cloud

    def interior_points(self, max_points: int = 2000) -> np.ndarray:
        """A subset (≤ ``max_points``) of the body-frame interior sample points."""
        pts = self._sampled_interior()[0]
        return pts[:: max(1, -(-len(pts) // max_points))]

    def ray_extent(self, direction, center_um=None) -> float:
        """Distance from the centre to the outermost membrane crossing along ``direction``."""
        c = np.zeros(3) if center_um is None else np.asarray(center_um, float)
        t = np.linspace(0.0, self.bounding_radius() * 1.05, 400)
        pts = c + t[:, None] * np.asarray(direction, float)[None, :]
        d = self.membrane_lab(pts, center_um=c)
        inside = np.nonzero(d < 0)[0]
        if inside.size == 0:
            return 0.0
        i = int(inside[-1])
        if i + 1 >= t.size:
            return float(t[-1])
        return float(t[i] + (t[i + 1] - t[i]) * (-d[i]) / (d[i + 1] - d[i]))


def _ellipsoid_surface(semi_axes, n: int = 64) -> np.ndarray:
    u = _fibonacci_sphere(n)
    return u * np.asarray(semi_axes, dtype=np.float64)[None, :]


def _fits(points_body, sdf: SDF, margin_um: float) -> bool:
    """All points at least ``margin_um`` inside the object of ``sdf``."""
    return bool(np.all(sdf(_as_tuple(points_body)) <= -margin_um))


def _transformed_sdf(base: SDF, rotation, offset_um) -> SDF:
    R = np.asarray(rotation, dtype=np.float64)
    o = np.asarray(offset_um, dtype=np.float64)
    return lambda p: base(_local(p, R, o))


def _nucleated_body(rng, diameter_um, flat):
    r = 0.5 * diameter_um
    axes = np.array([r * rng.uniform(*flat), r * rng.uniform(0.92, 1.0), r * rng.uniform(0.97, 1.03)])
    eps = rng.uniform(0.02, 0.04)
    k, ph, a = _low_order_noise(rng)
    amp = _F32(eps * r)
    ax32 = tuple(float(v) for v in axes)

    def membrane(p):
        return sh.ellipsoid(p, ax32) - amp * sh.radial_perturbation(p, k, ph, a)

    return membrane, axes + eps * r, axes


def _round_nucleus(rng, membrane, axes, cell_r):
    """Lymphocyte: a big, nearly spherical, slightly eccentric nucleus."""
    r_n = cell_r * rng.uniform(0.74, 0.82)
    n_axes = np.array([min(r_n * rng.uniform(0.92, 1.0), axes[0] - 0.35),
                       r_n * rng.uniform(0.95, 1.02), r_n * rng.uniform(0.98, 1.05)])
    rot = _settled_rotation(rng, 15.0)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    room = max(min(axes[1], axes[2]) - n_axes[1:].max() - 0.3, 0.0)
    off_len = room * rng.uniform(0.2, 0.9)
    for _ in range(40):
        offset = np.array([0.0, off_len * math.sin(phi), off_len * math.cos(phi)])
        surf = _ellipsoid_surface(n_axes) @ rot.T + offset
        if _fits(surf, membrane, 0.15):
            break
        off_len *= 0.7
        n_axes = n_axes * 0.98
    base_axes = tuple(float(v) for v in n_axes)
    sdf = _transformed_sdf(lambda q: sh.ellipsoid(q, base_axes), rot, offset)
    return sdf, offset, float(n_axes.max()), {"nucleus_shape": "round"}


def _kidney_nucleus(rng, membrane, axes, cell_r):
    """Monocyte: an ellipsoid with a spherical indentation on one side (bean shape)."""
    A = cell_r * rng.uniform(0.62, 0.72)
    B = A * rng.uniform(0.7, 0.8)
    C = min(A * rng.uniform(0.6, 0.7), axes[0] - 0.6)
    r_i = A * rng.uniform(0.55, 0.7)
    c_i = B + r_i * rng.uniform(0.1, 0.3)
    for _ in range(60):
        rot = _settled_rotation(rng, 15.0)
        indent_dir = rot[:, 1]
        offset = -indent_dir * rng.uniform(0.3, 1.2)
        offset[0] = rng.uniform(-0.2, 0.2)
        surf = _ellipsoid_surface((C, B, A)) @ rot.T + offset
        if _fits(surf, membrane, 0.3):
            break
        A, B, C, r_i, c_i = (v * 0.97 for v in (A, B, C, r_i, c_i))
    axes_n = (float(C), float(B), float(A))
    ci = (0.0, float(c_i), 0.0)
    ri_ = float(r_i)

    def base(q):
        return sh.smooth_subtract(sh.ellipsoid(q, axes_n), sh.sphere(q, ri_, ci), 0.4)

    sdf = _transformed_sdf(base, rot, offset)
    return sdf, offset, float(A), {"nucleus_shape": "kidney"}


def _lobed_nucleus(rng, membrane, axes, n_lobes, lobe_r):
    """Neutrophil / eosinophil: ``n_lobes`` lobes on an arc joined by thin chromatin strands.

    Consecutive lobe surfaces are 0.45–0.8 µm apart, bridged by capsules of radius
    0.25–0.35 µm, so the lobes are separate once the strands are eroded away.
    """
    radii = rng.uniform(*lobe_r, size=n_lobes)
    gap = rng.uniform(0.45, 0.8)
    r_f = rng.uniform(0.25, 0.35)
    flat = rng.uniform(0.85, 1.0, size=n_lobes)
    for attempt in range(10_000):  # shrinking every 20 tries makes it fit quickly
        if n_lobes == 2:
            half = 0.5 * (radii[0] + radii[1] + gap)
            local = np.array([[0.0, 0.0, -half], [0.0, 0.0, half]])
        else:
            # Arc span ≤ 360°(n−1)/n − 10° keeps the first and last lobes apart.
            span = min(270.0, 360.0 * (n_lobes - 1) / n_lobes - 10.0)
            step = math.radians(min(span / (n_lobes - 1), 95.0))
            pair = max(radii[i] + radii[i + 1] for i in range(n_lobes - 1)) + gap
            R_arc = pair / (2.0 * math.sin(0.5 * step))
            th = (np.arange(n_lobes) - 0.5 * (n_lobes - 1)) * step
            local = np.stack([rng.uniform(-0.15, 0.15, n_lobes), R_arc * np.sin(th), R_arc * np.cos(th)], axis=1)
            local -= local.mean(axis=0)
        rot = _settled_rotation(rng, 20.0)
        offset = np.array([0.0, *rng.uniform(-0.6, 0.6, 2)])
        centres = local @ rot.T + offset
        ok = all(
            membrane(_as_tuple(centres[i]))[0] <= -(radii[i] + 0.35) for i in range(n_lobes)
        )
        sep = all(
            np.linalg.norm(centres[i] - centres[j]) >= radii[i] + radii[j] + 0.4
            for i in range(n_lobes) for j in range(i + 1, n_lobes)
        )
        if ok and sep:
            break
        if attempt % 20 == 19:
            radii = radii * 0.96
            gap = max(gap * 0.96, 0.45)
    lobes = [(tuple(float(v) for v in centres[i]), float(radii[i]), float(flat[i])) for i in range(n_lobes)]
    R = rot.copy()
    strands = [(centres[i], centres[i + 1]) for i in range(n_lobes - 1)]

    def sdf(p):
        d = None
        for c, r, fl in lobes:
            q = _local(p, R, c)
            di = sh.ellipsoid(q, (r * fl, r, r))
            d = di if d is None else np.minimum(d, di)
        for a, b in strands:
            d = np.minimum(d, sh.capsule(p, a, b, r_f))
        return d

    center = centres.mean(axis=0)
    radius = float(max(np.linalg.norm(c - center) + r for c, r in zip(centres, radii)))
    info = {"nucleus_shape": "lobed", "n_lobes": int(n_lobes), "lobe_radius_um": float(radii.mean()),
            "strand_radius_um": float(r_f)}
    return sdf, center, radius, info


def _place_spheres(rng, n, r_range, bound_center, bound_radius, ok_fn, others=(), tries=300):
    """Up to ``n`` spheres (centre, radius) inside a ball where ``ok_fn(c, r)`` holds and not
    closer than 0.25 µm to each other."""
    out = list(others)
    new = []
    for _ in range(tries):
        if len(new) >= n:
            break
        r = rng.uniform(*r_range)
        v = rng.standard_normal(3)
        c = np.asarray(bound_center) + v / np.linalg.norm(v) * bound_radius * rng.uniform() ** (1 / 3)
        if not ok_fn(c, r):
            continue
        if any(np.linalg.norm(c - c2) < r + r2 + 0.25 for c2, r2 in out):
            continue
        out.append((c, r))
        new.append((c, r))
    return new


def _blob_part(rng, c, r, ri) -> _Part:
    """A slightly ellipsoidal blob (nucleolus, lipid droplet) of mean radius r."""
    axes = tuple(float(v) for v in r * rng.uniform(0.88, 1.12, 3))
    rot = _random_rotation(rng)
    return _Part(_transformed_sdf(lambda q: sh.ellipsoid(q, axes), rot, c), np.asarray(c), float(max(axes)), float(ri))


#: White blood cell classes. diameter: cell diameter range (µm); flat: height/diameter of the
#: settled cell; nucleus: shape (round, kidney, lobed with ``lobes`` lobes of radius
#: ``lobe_r`` µm); nucleoli, lipids: count ranges; nucleolus_r: radius range (µm);
#: granules: (correlation length µm, Δn amplitude, threshold in σ of the smooth noise) of
#: the granule texture added to the cytoplasm, without a label of its own.
_NUCLEATED = {
    "lymphocyte": dict(diameter=(7.0, 8.5), flat=(0.85, 0.95), nucleus="round", nucleoli=(1, 2),
                       nucleolus_r=(0.4, 0.65), lipids=(0, 1), granules=None),
    "monocyte": dict(diameter=(12.0, 15.0), flat=(0.6, 0.7), nucleus="kidney", nucleoli=(1, 3),
                     nucleolus_r=(0.4, 0.75), lipids=(3, 8), granules=None),
    "neutrophil": dict(diameter=(10.0, 12.0), flat=(0.68, 0.8), nucleus="lobed", lobes=(3, 5), lobe_r=(1.3, 1.6),
                       nucleoli=(0, 0), lipids=(0, 2), granules=(0.25, 0.006, 1.0)),
    "eosinophil": dict(diameter=(11.5, 13.0), flat=(0.68, 0.8), nucleus="lobed", lobes=(2, 2), lobe_r=(1.9, 2.3),
                       nucleoli=(0, 0), lipids=(0, 2), granules=(0.3, 0.02, 0.3)),
}


def _build_nucleated(class_name, rng, *, diameter_um=None, n_lobes=None):
    """A white blood cell of :data:`_NUCLEATED`: perturbed ellipsoid body, nucleus,
    nucleoli inside the nucleus, lipid droplets in the cytoplasm (rejection sampling)."""
    spec = _NUCLEATED[class_name]
    D = float(diameter_um) if diameter_um is not None else rng.uniform(*spec["diameter"])
    membrane, half, axes = _nucleated_body(rng, D, spec["flat"])
    cell_r = 0.5 * D
    n_c = rng.uniform(1.355, 1.365)
    n_n = n_c - rng.uniform(0.001, 0.006)
    info = {"diameter_um": float(D), "height_um": float(2 * axes[0])}
    if spec["nucleus"] == "round":
        nuc_sdf, nuc_c, nuc_r, ninfo = _round_nucleus(rng, membrane, axes, cell_r)
    elif spec["nucleus"] == "kidney":
        nuc_sdf, nuc_c, nuc_r, ninfo = _kidney_nucleus(rng, membrane, axes, cell_r)
    else:
        lo, hi = spec["lobes"]
        k = int(n_lobes) if n_lobes is not None else int(rng.integers(lo, hi + 1))
        if k < 2:
            raise ValueError(f"n_lobes: a lobed nucleus needs at least 2 lobes, got {n_lobes}")
        nuc_sdf, nuc_c, nuc_r, ninfo = _lobed_nucleus(rng, membrane, axes, k, spec["lobe_r"])
    info.update(ninfo)
    nucleus = _Part(nuc_sdf, np.asarray(nuc_c, float), nuc_r, float(n_n))

    def in_nucleus(c, r):
        pt = _as_tuple(c)
        return nuc_sdf(pt)[0] <= -(r + 0.3) and membrane(pt)[0] <= -(r + 0.5)

    lo, hi = spec["nucleoli"]
    nl = _place_spheres(rng, int(rng.integers(lo, hi + 1)), spec.get("nucleolus_r", (0.4, 0.6)), nuc_c, nuc_r, in_nucleus)
    nucleoli = [_blob_part(rng, c, r, rng.uniform(1.38, 1.39)) for c, r in nl]

    def in_cytoplasm(c, r):
        pt = _as_tuple(c)
        return membrane(pt)[0] <= -(r + 0.3) and nuc_sdf(pt)[0] >= r + 0.3

    lo, hi = spec["lipids"]
    ld = _place_spheres(rng, int(rng.integers(lo, hi + 1)), (0.3, 0.6), np.zeros(3), float(half.max()), in_cytoplasm, tries=600)
    lipids = [_blob_part(rng, c, r, rng.uniform(1.39, 1.45)) for c, r in ld]
    gran = None
    if spec["granules"] is not None:
        corr, amp, thr = spec["granules"]
        gran = (corr, amp * rng.uniform(0.75, 1.0), thr)
    info.update(
        ri_cytoplasm=float(n_c), ri_nucleus=float(n_n), n_nucleoli=len(nucleoli),
        ri_nucleoli=[p.ri for p in nucleoli], n_lipid_droplets=len(lipids), ri_lipid_droplets=[p.ri for p in lipids],
        granule_amplitude=0.0 if gran is None else float(gran[1]),
    )
    return _CellModel(
        class_name, membrane, np.asarray(half, float), float(n_c), nucleus=nucleus, n_nucleus=float(n_n),
        nucleoli=nucleoli, lipids=lipids, texture_std=0.0013, texture_corr_um=0.6, chromatin_std=0.0007,
        granules=gran, max_tilt_deg=10.0, info=info,
    )


def _build_rbc(class_name, rng, *, diameter_um=None):
    """Red blood cells: Evans–Fung discocyte, spiculated echinocyte, cup-shaped
    stomatocyte, spherocyte; one homogeneous compartment (haemoglobin)."""
    n_rbc = rng.uniform(1.392, 1.408)
    if class_name == "rbc_discocyte":
        D = float(diameter_um) if diameter_um is not None else float(np.clip(rng.normal(7.8, 0.25), 7.3, 8.3))
        rho = np.linspace(0.0, D / 2, 400)
        t_max = float(sh.evans_fung_thickness_um(rho, D).max())
        membrane = lambda p: sh.evans_fung_disc(p, D)  # noqa: E731
        half = np.array([0.5 * t_max + 0.05, D / 2, D / 2])
        info = {"diameter_um": D, "rim_thickness_um": t_max, "centre_thickness_um": float(sh.evans_fung_thickness_um(0.0, D))}
        tilt, flip = 20.0, False
    elif class_name == "rbc_echinocyte":
        a = 0.5 * float(diameter_um) if diameter_um is not None else rng.uniform(3.0, 3.4)
        axes = np.array([a * rng.uniform(0.8, 0.92), a * rng.uniform(0.97, 1.0), a])
        n_sp = int(rng.integers(20, 41))
        dirs = _fibonacci_sphere(n_sp) @ _random_rotation(rng).T + rng.normal(0.0, 0.08, (n_sp, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        lengths = rng.uniform(0.6, 1.1, n_sp)
        radii = rng.uniform(0.28, 0.38, n_sp)
        t_surf = 1.0 / np.sqrt(((dirs / axes) ** 2).sum(axis=1))
        spikes = [(0.6 * t * u, (t + L) * u, r) for u, t, L, r in zip(dirs, t_surf, lengths, radii)]
        ax = tuple(float(v) for v in axes)

        def membrane(p):
            d = sh.ellipsoid(p, ax)
            for base, tip, r in spikes:
                d = sh.smooth_union(d, sh.capsule(p, base, tip, r), 0.35)
            return d

        half = axes + lengths.max() + radii.max()
        info = {"diameter_um": float(2 * a), "n_spicules": n_sp}
        tilt, flip = 30.0, False
    elif class_name == "rbc_stomatocyte":
        a = 0.5 * float(diameter_um) if diameter_um is not None else rng.uniform(3.4, 3.8)
        axes = (float(rng.uniform(1.5, 1.8)), float(a * rng.uniform(0.97, 1.0)), float(a))
        r_c = float(rng.uniform(2.3, 2.7))
        depth = float(rng.uniform(1.1, 1.5))
        cup = (axes[0] + r_c - depth, 0.0, 0.0)

        def membrane(p):
            return sh.smooth_subtract(sh.ellipsoid(p, axes), sh.sphere(p, r_c, cup), 0.4)

        half = np.asarray(axes)
        info = {"diameter_um": float(2 * a), "cup_depth_um": depth}
        tilt, flip = 20.0, bool(rng.uniform() < 0.5)
    elif class_name == "rbc_spherocyte":
        D = float(diameter_um) if diameter_um is not None else rng.uniform(5.6, 6.4)
        ax = (0.5 * D * rng.uniform(0.95, 1.0), 0.5 * D * rng.uniform(0.98, 1.02), 0.5 * D)
        membrane = lambda p: sh.ellipsoid(p, ax)  # noqa: E731
        half = np.asarray(ax)
        info = {"diameter_um": D}
        tilt, flip = 90.0, False
    else:  # pragma: no cover - guarded by _build_model
        raise ValueError(f"class_name: unknown red blood cell class {class_name!r}")
    info["ri_cytoplasm"] = float(n_rbc)
    model = _CellModel(class_name, membrane, np.asarray(half, float), float(n_rbc), max_tilt_deg=tilt, info=info)
    model.info["_flip"] = flip
    return model


def _build_bacterium(class_name, rng, *, diameter_um=None, length_um=None, n_cocci=None):
    """Bacteria: rod (capsule along body x), coccus (sphere), chain of 3–8 overlapping
    cocci along a gently bent line (one instance)."""
    n_b = rng.uniform(1.382, 1.398)
    if class_name == "bacteria_rod":
        d = float(diameter_um) if diameter_um is not None else rng.uniform(0.8, 1.0)
        L = float(length_um) if length_um is not None else rng.uniform(2.0, 4.0)
        r = 0.5 * d
        a, b = (0.0, 0.0, -(0.5 * L - r)), (0.0, 0.0, 0.5 * L - r)
        membrane = lambda p: sh.capsule(p, a, b, r)  # noqa: E731
        half = np.array([r, r, 0.5 * L])
        info = {"diameter_um": d, "length_um": L}
    elif class_name == "bacteria_coccus":
        d = float(diameter_um) if diameter_um is not None else rng.uniform(0.9, 1.1)
        membrane = lambda p: sh.sphere(p, 0.5 * d)  # noqa: E731
        half = np.full(3, 0.5 * d)
        info = {"diameter_um": d}
    elif class_name == "bacteria_chain":
        n = int(n_cocci) if n_cocci is not None else int(rng.integers(3, 9))
        d = float(diameter_um) if diameter_um is not None else rng.uniform(0.85, 1.05)
        spacing = d * rng.uniform(0.8, 0.9)
        bend = rng.normal(0.0, 0.12)
        ang = np.cumsum(np.r_[0.0, rng.normal(bend, 0.05, n - 1)])
        steps = np.stack([rng.normal(0.0, 0.03, n), np.sin(ang), np.cos(ang)], axis=1) * spacing
        centres = np.cumsum(steps, axis=0)
        centres -= centres.mean(axis=0)
        radii = 0.5 * d * rng.uniform(0.95, 1.05, n)
        balls = [(tuple(float(v) for v in c), float(r)) for c, r in zip(centres, radii)]

        def membrane(p):
            dd = None
            for c, r in balls:
                di = sh.sphere(p, r, c)
                dd = di if dd is None else sh.smooth_union(dd, di, 0.1)
            return dd

        half = np.abs(centres).max(axis=0) + radii.max()
        info = {"diameter_um": d, "n_cocci": n, "length_um": float(np.ptp(centres[:, 2]) + d)}
    else:  # pragma: no cover - guarded by _build_model
        raise ValueError(f"class_name: unknown bacteria class {class_name!r}")
    info["ri_cytoplasm"] = float(n_b)
    return _CellModel(class_name, membrane, np.asarray(half, float), float(n_b), max_tilt_deg=10.0, info=info)


def _build_model(class_name, rng, **params) -> _CellModel:
    if class_name in UNSEEN_CLASSES:
        from holo.twin._unseen import build_unseen  # imports this module's helpers

        return build_unseen(class_name, rng, **params)
    if class_name not in CELL_CLASSES:
        raise ValueError(f"class_name: must be one of {', '.join(CELL_CLASSES + UNSEEN_CLASSES)}, got {class_name!r}")
    fam = FAMILY_OF[class_name]
    if fam == "cell":
        return _build_nucleated(class_name, rng, **params)
    if fam == "rbc":
        return _build_rbc(class_name, rng, **params)
    return _build_bacterium(class_name, rng, **params)


def _orient(model: _CellModel, rng, orientation=None) -> None:
    """Body → lab rotation: ``orientation`` if given, else a settled one (uniform azimuth,
    tilt ≤ the class's ``max_tilt_deg``; cups of stomatocytes face up or down)."""
    if orientation is not None:
        R = np.asarray(orientation, dtype=np.float64)
        if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) <= 0:
            raise ValueError("orientation: must be a 3×3 rotation matrix (body → lab, (z, y, x) order)")
        model.rotation = R
    else:
        flip = _rotation_about((0.0, 0.0, 1.0), np.pi) if model.info.get("_flip") else np.eye(3)
        spin = _rotation_about((1.0, 0.0, 0.0), rng.uniform(0.0, 2.0 * np.pi)) @ flip
        phi = rng.uniform(0.0, 2.0 * np.pi)
        tilt = _rotation_about((0.0, math.sin(phi), math.cos(phi)), math.radians(rng.uniform(0.0, model.max_tilt_deg)))
        model.rotation = tilt @ spin
        model.flat_rotation = spin
    model.info.pop("_flip", None)


def _fit_scale(model: _CellModel, grid: _Grid) -> None:
    """Make the cell fit in the volume: first lay it flat (drop the random tilt), then shrink
    it uniformly (SDF(p/s)·s is the exact SDF of the shrunk shape)."""
    s = float(np.min(grid.avail_um / np.maximum(model.lab_half_extent(), 1e-9)))
    if s < 1.0 and model.flat_rotation is not None:
        model.rotation = model.flat_rotation
        model.info["tilt_removed"] = True
        s = float(np.min(grid.avail_um / np.maximum(model.lab_half_extent(), 1e-9)))
    if s < 1.0:
        model.scale *= 0.98 * s
        model.info["scale"] = float(model.scale)
        if model.scale < 0.8:
            warnings.warn(
                f"a {model.class_name} was shrunk to {model.scale:.2f} of its size to fit the "
                f"{' × '.join(f'{2 * a:.1f}' for a in grid.avail_um)} µm usable volume; enlarge shape_zyx",
                stacklevel=3,
            )


# ----------------------------------------------------------------------------------------
# Rasterisation
# ----------------------------------------------------------------------------------------
def _smooth_noise(shape, sigma_um, voxel, rng) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with Gaussian correlation of σ µm."""
    g = rng.standard_normal(shape, dtype=np.float32)
    g = ndimage.gaussian_filter(g, sigma=[max(sigma_um / h, 0.3) for h in voxel], mode="nearest", truncate=3.0)
    std = float(g.std())
    return g / _F32(std if std > 0 else 1.0)


def _sub_box(part: _Part, model: _CellModel, grid: _Grid, outer):
    """Slices of ``part``'s box relative to the cell box ``outer`` (None if empty)."""
    c = model.center_um + model.scale * model.rotation @ part.center_um
    sl = grid.box(c, model.scale * part.radius_um + 2.0 * grid.voxel)
    if sl is None:
        return None
    out = []
    for s, o in zip(sl, outer):
        a, b = max(s.start, o.start) - o.start, min(s.stop, o.stop) - o.start
        if b <= a:
            return None
        out.append(slice(a, b))
    return tuple(out)


def _at(a, sl):
    return a[sl] if isinstance(a, np.ndarray) else a


def _render_cell(model: _CellModel, grid: _Grid, rng, cell_id: int) -> None:
    """Rasterise one cell in its bounding box and composite it into the grid buffers."""
    s = model.scale
    c = np.asarray(model.center_um, float)
    box = grid.box(c, model.lab_half_extent() + 2.0 * grid.voxel)
    if box is None:
        return
    X = (
        (grid.axes[0][box[0]] - _F32(c[0]))[:, None, None],
        (grid.axes[1][box[1]] - _F32(c[1]))[None, :, None],
        (grid.axes[2][box[2]] - _F32(c[2]))[None, None, :],
    )
    Rt = (model.rotation / s).astype(np.float32)
    P = tuple(X[0] * Rt[0, i] + X[1] * Rt[1, i] + X[2] * Rt[2, i] for i in range(3))
    shape = P[0].shape
    s32, m = _F32(s), grid.margin
    n_m = _F32(grid.medium)

    d_cell = model.membrane(P) * s32
    f_cell = sh.partial_volume_fraction(d_cell, grid.width(d_cell))
    n_c = _F32(model.n_cytoplasm)
    n_n = _F32(model.n_nucleus)
    if model.texture_std > 0:
        g = np.clip(_smooth_noise(shape, model.texture_corr_um, grid.voxel, rng), -3.0, 3.0)
        n_c = n_c + _F32(model.texture_std) * g
        n_n = n_n + _F32(model.chromatin_std) * g
    if model.granules is not None:
        corr, amp, thr = model.granules
        gg = _smooth_noise(shape, corr, grid.voxel, rng)
        n_c = n_c + _F32(amp) * np.clip((gg - _F32(thr)) / _F32(0.5), 0.0, 1.0)
    for corr, std in model.texture_layers:
        n_c = n_c + _F32(std) * np.clip(_smooth_noise(shape, corr, grid.voxel, rng), -3.0, 3.0)
    for corr, std in model.chromatin_layers:
        n_n = n_n + _F32(std) * np.clip(_smooth_noise(shape, corr, grid.voxel, rng), -3.0, 3.0)
    dn = f_cell * (n_c - n_m)
    sem = np.where(d_cell < 0, np.uint8(CYTOPLASM), np.uint8(BACKGROUND))

    def paint_inclusion(part: _Part, d_host, d_excluded, n_host, label: int) -> None:
        """Add an organelle (nucleolus, lipid droplet) to ``dn`` and ``sem``: its SDF is
        clipped to stay a margin inside its host, d = max(d_part, d_host + m), and, when
        ``d_excluded`` is given, a margin outside that region, d = max(d, m − d_excluded);
        its volume fraction f(d) replaces the host index, dn += f·(n_part − n_host)."""
        sb = _sub_box(part, model, grid, box)
        if sb is None:
            return
        d = np.maximum(part.sdf(tuple(a[sb] for a in P)) * s32, d_host[sb] + m)
        if d_excluded is not None:
            d = np.maximum(d, m - d_excluded[sb])
        f = sh.partial_volume_fraction(d, grid.width(d))
        dn[sb] += f * (_F32(part.ri) - _at(n_host, sb))
        sem[sb][d < 0] = label

    d_nuc = None
    if model.nucleus is not None:
        d_nuc = np.maximum(model.nucleus.sdf(P) * s32, d_cell + m)
        f = sh.partial_volume_fraction(d_nuc, grid.width(d_nuc))
        dn += f * (n_n - n_c)
        sem[d_nuc < 0] = NUCLEUS
        for part in model.nucleoli:
            paint_inclusion(part, d_nuc, None, n_n, NUCLEOLUS)
    for part in model.lipids:
        paint_inclusion(part, d_cell, d_nuc, n_c, LIPID_DROPLET)

    # Composite: the cell with the smaller SDF owns the voxel (label) and keeps its whole
    # volume fraction; the other cells' fractions are scaled so that all sum to ≤ 1.
    g_dn, g_occ, g_best = grid.ri_excess[box], grid.occupancy[box], grid.best_d[box]
    claim = d_cell < g_best
    tiny = _F32(1e-12)
    one = _F32(1.0)
    keep_old = np.where(claim, np.minimum(g_occ, one - f_cell) / np.maximum(g_occ, tiny), one)
    f_used = np.where(claim, f_cell, np.minimum(f_cell, np.maximum(one - g_occ, 0.0)))
    g_dn *= keep_old
    g_dn += dn * (f_used / np.maximum(f_cell, tiny))
    g_occ *= keep_old
    g_occ += f_used
    np.copyto(g_best, d_cell, where=claim)
    inside = claim & (d_cell < 0)
    np.copyto(grid.semantic[box], sem, where=inside)
    np.copyto(grid.instance[box], np.int32(cell_id), where=inside)


def _finish(grid: _Grid, models, kind: str) -> Phantom:
    """Phantom from the grid buffers; ids renumbered 1..K over the cells that got voxels."""
    ri = (grid.ri_excess + _F32(grid.medium)).astype(np.float32)
    present = np.zeros(len(models) + 1, bool)
    present[np.unique(grid.instance)] = True
    lut = np.zeros(len(models) + 1, np.int32)
    classes, cells = {}, {}
    k = 0
    for i, model in enumerate(models, start=1):
        if not present[i]:
            continue
        k += 1
        lut[i] = k
        classes[k] = model.class_name
        info = {"class": model.class_name, "family": model.family,
                "center_um": [float(v) for v in model.center_um],
                "rotation": np.asarray(model.rotation).round(6).tolist(), "scale": float(model.scale)}
        info.update({key: v for key, v in model.info.items() if not key.startswith("_")})
        cells[k] = info
    instance = grid.instance if k == len(models) else lut[grid.instance]
    return Phantom(ri, grid.semantic, instance.astype(np.int32, copy=False), classes,
                   tuple(float(v) for v in grid.voxel), grid.medium, kind, cells)


# ----------------------------------------------------------------------------------------
# Placement in a field of view
# ----------------------------------------------------------------------------------------
def _overlap_depth(a: _CellModel, b: _CellModel) -> float:
    """Deepest penetration (µm, ≥ 0) of either cell's interior sample points into the other."""
    if np.linalg.norm(a.center_um - b.center_um) > a.bounding_radius() + b.bounding_radius():
        return 0.0
    depth = 0.0
    for u, v in ((a, b), (b, a)):
        pts = u.center_um + u.scale * u.interior_points() @ u.rotation.T
        d = v.membrane_lab(pts)
        depth = max(depth, float(-d.min()) if d.size else 0.0)
    return depth


def _inside_volume(model: _CellModel, grid: _Grid) -> bool:
    return bool(np.all(np.abs(model.center_um) + model.lab_half_extent() <= grid.avail_um))


def _place(models, grid: _Grid, rng, *, touch_probability: float, max_overlap_um: float, tries: int = 300,
           stop_on_failure: bool = False, existing=()):
    """Rejection sampling of cell centres; returns the models that were placed.

    A candidate is either uniform in the field or (with ``touch_probability``, and always
    first for the second cell) set against a placed cell A along a horizontal direction u at
    centre distance ρ_A(u) + ρ_B(−u) − one voxel, ρ being the outermost membrane crossing
    along the ray: the two cells then touch with an overlap of about one voxel. A
    candidate is kept if it lies inside the volume and no interior point of either cell
    penetrates another by more than ``max_overlap_um`` or a quarter of the thinner cell's
    smallest width (thin bacteria must not be cut in two). A cell that finds no place is
    skipped, or ends the placement with ``stop_on_failure``. Cells in ``existing`` (already
    placed) are avoided and may be touched; only the newly placed models are returned.
    """
    placed: list[_CellModel] = list(existing)
    z_jitter = 0.5
    for model in models:
        e = model.lab_half_extent()
        free = grid.avail_um - e
        if np.any(free < 0):
            if stop_on_failure:
                break
            continue
        ok = False
        for attempt in range(tries):
            touch = bool(placed) and ((len(placed) == 1 and attempt < tries // 2) or rng.uniform() < touch_probability)
            if touch:
                A = placed[int(rng.integers(len(placed)))]
                phi = rng.uniform(0.0, 2.0 * np.pi)
                u = np.array([0.0, math.sin(phi), math.cos(phi)])
                model.center_um = np.zeros(3)
                overlap = 0.5 * min(max_overlap_um, 0.25 * min(A.min_width_um(), model.min_width_um()))
                dist = A.ray_extent(u, A.center_um) + model.ray_extent(-u) - min(float(grid.voxel.max()), overlap)
                c = A.center_um + u * dist
            else:
                zmax = min(z_jitter, free[0])
                c = np.array([rng.uniform(-zmax, zmax), rng.uniform(-free[1], free[1]), rng.uniform(-free[2], free[2])])
            model.center_um = c
            if not _inside_volume(model, grid):
                continue
            if any(_overlap_depth(model, o) > min(max_overlap_um, 0.25 * min(model.min_width_um(), o.min_width_um()))
                   for o in placed):
                continue
            ok = True
            break
        if ok:
            placed.append(model)
        elif stop_on_failure:
            break
    return placed[len(existing):]


_FOOTPRINT_UM2 = {"cell": 100.0, "rbc": 48.0, "bacteria": 2.5, "hl60_like": 95.0, "adherent": 600.0, "debris": 5.0}
_COVERAGE = {"cell": 0.25, "rbc": 0.25, "bacteria": 0.04, "hl60_like": 0.25, "adherent": 0.4, "debris": 0.03}
_MIXED_WEIGHTS = {"cell": 0.4, "rbc": 0.4, "bacteria": 0.2}


def _draw_classes(rng, allowed: Sequence[str], weights: np.ndarray, n: int) -> list:
    """The first min(n, len(allowed)) draws without replacement, the rest with."""
    k = min(n, len(allowed))
    first = list(rng.choice(len(allowed), size=k, replace=False, p=weights)) if k else []
    rest = list(rng.choice(len(allowed), size=n - k, replace=True, p=weights)) if n > k else []
    return [allowed[i] for i in first + rest]


def _default_n_cells(kind: str, grid: _Grid) -> int:
    area = float(grid.shape[1] * grid.voxel[1] * grid.shape[2] * grid.voxel[2])
    if kind == "mixed":
        n = sum(w * _COVERAGE[f] * area / _FOOTPRINT_UM2[f] for f, w in _MIXED_WEIGHTS.items())
        return max(2, int(round(n)))
    return max(1, int(round(_COVERAGE[kind] * area / _FOOTPRINT_UM2[kind])))


def _class_weights(kind: str, classes) -> tuple[tuple[str, ...], np.ndarray]:
    """Classes a phantom of ``kind`` draws from and their (unnormalised) probabilities:
    ``classes`` equally likely when given (checked against ``kind``), else the family's
    classes equally likely, or for ``"mixed"`` each family's weight shared among its classes."""
    if classes is not None:
        allowed = tuple(dict.fromkeys(str(c) for c in ([classes] if isinstance(classes, str) else classes)))
        if not allowed:
            raise ValueError("classes: must name at least one class")
        for c in allowed:
            if c not in CELL_CLASSES + UNSEEN_CLASSES:
                raise ValueError(f"classes: {c!r} is not one of {', '.join(CELL_CLASSES + UNSEEN_CLASSES)}")
            if kind != "mixed" and FAMILY_OF[c] != kind:
                raise ValueError(f"classes: {c!r} is not a {kind!r} class")
        return allowed, np.full(len(allowed), 1.0 / len(allowed))
    if kind == "mixed":
        return CELL_CLASSES, np.array([_MIXED_WEIGHTS[FAMILY_OF[c]] / len(_FAMILIES[FAMILY_OF[c]]) for c in CELL_CLASSES])
    allowed = _FAMILIES[kind]
    return allowed, np.full(len(allowed), 1.0 / len(allowed))


def _place_cut(models, grid: _Grid, rng, existing, *, max_overlap_um: float, tries: int = 200) -> list:
    """Out-of-focus neighbours: each model is centred so that the volume's faces cut it, on a
    random side, along Z (the cell lies mostly above or below the volume, far from the focal
    plane) with probability 1/2, else along Y or X (the cell sticks out at a lateral edge):
    centre coordinate ±(A + u·e) on that axis, A the half size of the volume, e the cell's
    half extent, u uniform in [−0.6, 0.6] (between 20 % and 80 % of the cell's extent inside
    along that axis); uniform over the free range on the other lateral axes, ±0.5 µm in z.
    Rejected when it penetrates a cell of ``existing`` or an earlier neighbour by more than
    ``max_overlap_um``; a model that finds no place is skipped. Returns the placed models
    (``info["out_of_focus"]`` = "z", "y" or "x")."""
    placed = list(existing)
    half = np.array([n * h for n, h in zip(grid.shape, grid.voxel)]) / 2.0
    for model in models:
        e = model.lab_half_extent()
        free = np.maximum(grid.avail_um - e, 0.0)
        for _ in range(tries):
            axis = 0 if rng.uniform() < 0.5 else int(rng.integers(1, 3))
            c = np.array([rng.uniform(-min(0.5, free[0]), min(0.5, free[0])),
                          rng.uniform(-free[1], free[1]), rng.uniform(-free[2], free[2])])
            c[axis] = rng.choice((-1.0, 1.0)) * (half[axis] + rng.uniform(-0.6, 0.6) * e[axis])
            model.center_um = c
            if all(_overlap_depth(model, o) <= max_overlap_um for o in placed):
                model.info["out_of_focus"] = "zyx"[axis]
                placed.append(model)
                break
    return placed[len(existing):]


def _extras(grid: _Grid, placed, seed_seq, allowed, weights, n_debris: int, n_out_of_focus: int) -> list:
    """Debris particles (placed inside the volume among the cells) and out-of-focus
    neighbours (classes drawn like the field's cells, :func:`_place_cut`), from their own
    random stream so that the field's cells are those of the same seed without extras."""
    rng = np.random.default_rng(seed_seq.spawn(1)[0])
    debris = []
    for r in rng.spawn(n_debris):
        model = _build_model("debris", r)
        _orient(model, r)
        debris.append(model)
    overlap = 2.0 * float(grid.voxel.max()) + 0.1
    debris = _place(debris, grid, rng, touch_probability=0.0, max_overlap_um=overlap, existing=placed)
    names = _draw_classes(rng, allowed, weights / weights.sum(), n_out_of_focus) if n_out_of_focus else []
    cut = []
    for name, r in zip(names, rng.spawn(len(names))):
        model = _build_model(name, r)
        _orient(model, r)
        cut.append(model)
    return debris + _place_cut(cut, grid, rng, list(placed) + debris, max_overlap_um=overlap)


def _cell_count(kind: str, grid: _Grid, n_cells) -> tuple[int, bool]:
    """(number of cells, whether it was given explicitly): :func:`_default_n_cells` when
    ``n_cells`` is None."""
    if n_cells is None:
        return _default_n_cells(kind, grid), False
    n = int(n_cells)
    if n < 0:
        raise ValueError(f"n_cells: must be >= 0, got {n_cells!r}")
    return n, True


# ----------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------
def make_phantom(
    kind: str = "cell",
    shape_zyx=(64, 128, 128),
    voxel_size_um=(0.2, 0.2, 0.2),
    medium_index: float = 1.337,
    n_cells: int | None = None,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    n_debris: int = 0,
    n_out_of_focus: int = 0,
) -> Phantom:
    """A seeded field of view of cells with RI, semantic and instance ground truth.

    Parameters
    ----------
    kind : {"cell", "rbc", "bacteria", "mixed", "hl60_like", "adherent", "debris"}
        Family drawn from: nucleated white blood cells, red blood cells, bacteria, or all
        (mixed draws families with weights 0.4 / 0.4 / 0.2); or one of the types the
        classifier never saw (:data:`UNSEEN_KINDS`): HL60-like cells, adherent flat cells
        (20–40 µm wide: use a field of ≥ 45 µm), debris.
    shape_zyx : (Z, Y, X) ints
    voxel_size_um : (dz, dy, dx) in µm (a scalar is taken for all three)
    medium_index : float
        Absolute RI n_m of the medium.
    n_cells : int, optional
        Number of cells; default from the lateral field area (≈ 25 % covered by cells or
        red blood cells, 4 % by bacteria; at least 2 for ``"mixed"``).
    seed : int
        The volume is a deterministic function of all arguments.
    classes : sequence of str, optional
        Restrict the classes drawn (each then equally likely); must belong to ``kind``'s
        family unless ``kind="mixed"``. The first min(n_cells, len(classes)) cells are
        distinct classes.
    n_debris : int
        Debris particles (class ``"debris"``) added among the cells, inside the volume;
        those that find no room are left out.
    n_out_of_focus : int
        Neighbours of the field's classes placed partly outside the volume, cut by its top or
        bottom face (far from the focal plane) or by a lateral face (``cells[id]
        ["out_of_focus"]`` names the axis). Only the part inside the volume exists in the
        twin. With both at 0 (default) the phantom is exactly the one of earlier versions
        for the same arguments; with extras, the field's own cells are unchanged (drawn
        from a separate stream) except where an extra touches them.

    Returns
    -------
    Phantom
        Cells are centred near z = 0 (±0.5 µm), at least one pair touches when
        ``n_cells >= 2``; a cell larger than the volume is shrunk uniformly
        (``cells[id]["scale"]``).

    Raises
    ------
    ValueError
        Unknown ``kind`` or class, bad grid, or when an explicit ``n_cells`` cannot be
        placed (the message says how many fitted).
    """
    if kind not in KINDS + UNSEEN_KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS + UNSEEN_KINDS)}, got {kind!r}")
    n_debris, n_out_of_focus = _extra_count(n_debris, "n_debris"), _extra_count(n_out_of_focus, "n_out_of_focus")
    grid = _Grid(shape_zyx, voxel_size_um, medium_index)
    try:
        seed_seq = np.random.SeedSequence(int(seed))
    except (TypeError, ValueError):
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}") from None
    allowed, weights = _class_weights(kind, classes)
    n, explicit = _cell_count(kind, grid, n_cells)

    rng_main, rng_cells, rng_tex = (np.random.default_rng(s) for s in seed_seq.spawn(3))
    names = _draw_classes(rng_main, allowed, weights / weights.sum(), n)
    cell_seeds = rng_cells.spawn(n) if n else []
    models = []
    for name, r in zip(names, cell_seeds):
        model = _build_model(name, r)
        _orient(model, r)
        _fit_scale(model, grid)
        models.append(model)
    # Large cells first: they are the hard ones to fit.
    order = sorted(range(n), key=lambda i: -models[i].bounding_radius())
    placed = _place([models[i] for i in order], grid, rng_main,
                    touch_probability=0.3, max_overlap_um=2.0 * float(grid.voxel.max()) + 0.1,
                    stop_on_failure=explicit)
    if explicit and len(placed) < n:
        fov = " × ".join(f"{s * h:.1f}" for s, h in zip(grid.shape, grid.voxel))
        raise ValueError(f"n_cells: no room for cell {len(placed) + 1} of {n} in the {fov} µm volume; "
                         "use a larger shape_zyx or fewer cells")
    extras = _extras(grid, placed, seed_seq, allowed, weights, n_debris, n_out_of_focus) if n_debris or n_out_of_focus else []
    tex_seeds = rng_tex.spawn(len(placed)) if placed else []
    for i, (model, r) in enumerate(zip(placed, tex_seeds), start=1):
        _render_cell(model, grid, r, i)
    if extras:
        for i, (model, r) in enumerate(zip(extras, rng_tex.spawn(len(extras))), start=len(placed) + 1):
            _render_cell(model, grid, r, i)
    return _finish(grid, placed + extras, kind)


def _extra_count(value, name: str) -> int:
    n = int(value)
    if n < 0:
        raise ValueError(f"{name}: must be >= 0, got {value!r}")
    return n


def make_cell(
    class_name: str,
    shape_zyx=(64, 128, 128),
    voxel_size_um=(0.2, 0.2, 0.2),
    center_um=(0.0, 0.0, 0.0),
    rng=None,
    *,
    medium_index: float = 1.337,
    orientation=None,
    **params,
) -> Phantom:
    """One cell of class ``class_name`` in its own volume (instance id 1).

    Parameters
    ----------
    class_name : str
        One of :data:`CELL_CLASSES` or :data:`UNSEEN_CLASSES`.
    shape_zyx, voxel_size_um, medium_index
        As in :func:`make_phantom`.
    center_um : (z, y, x)
        Cell centre on the :func:`grid_axes_um` grid (0 = volume centre).
    rng : int or numpy.random.Generator, optional
        Source of the random shape, RI and texture (default seed 0).
    orientation : (3, 3) array, optional
        Rotation body → lab in (z, y, x) order; default a settled random orientation.
        The body z axis is the disc axis of red blood cells and the flattest axis of
        nucleated cells; rods lie along body x.
    **params
        Class parameters: ``diameter_um`` (all classes), ``n_lobes`` (neutrophil,
        eosinophil), ``length_um`` (bacteria_rod), ``n_cocci`` (bacteria_chain),
        ``thickness_um`` (adherent).

    Returns
    -------
    Phantom
        ``kind`` is the family; ``cells[1]`` holds the drawn parameters. A cell that cannot
        fit in the volume is shrunk uniformly; one placed off-centre may be cut by the
        volume's faces.
    """
    grid = _Grid(shape_zyx, voxel_size_um, medium_index)
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(0 if rng is None else int(rng))
    elif not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: must be an int seed or a numpy Generator, got {type(rng).__name__}")
    c = np.asarray(center_um, dtype=np.float64).reshape(-1)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ValueError(f"center_um: must be finite (z, y, x) in µm, got {center_um!r}")
    model = _build_model(class_name, rng, **params)
    _orient(model, rng, orientation)
    _fit_scale(model, grid)
    model.center_um = c
    _render_cell(model, grid, rng, 1)
    return _finish(grid, [model], model.family)


def make_sphere_phantom(
    radius_um: float,
    ri: float,
    shape_zyx=(64, 128, 128),
    voxel_size_um=(0.2, 0.2, 0.2),
    medium_index: float = 1.337,
    center_um=(0.0, 0.0, 0.0),
) -> Phantom:
    """A homogeneous sphere of RI ``ri`` with partial-volume edges (reference object).

    n(r) = n_m + f(r) (n_s − n_m), f = clip(1/2 − (|r − c| − R)/h, 0, 1) with h the voxel
    size along the radius, so Σ f·dV equals 4/3 π R³ up to O((h/R)²). The centre defaults
    to the volume centre (index N//2 on every axis, see :func:`grid_axes_um`). Labels:
    semantic 1, instance 1, class ``"sphere"``.
    """
    r = float(radius_um)
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"radius_um: must be > 0, got {radius_um!r}")
    n_s = float(ri)
    if not (np.isfinite(n_s) and 1.0 <= n_s <= 3.0):
        raise ValueError(f"ri: must be an absolute RI in [1, 3], got {ri!r}")
    grid = _Grid(shape_zyx, voxel_size_um, medium_index)
    c = np.asarray(center_um, dtype=np.float64).reshape(-1)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ValueError(f"center_um: must be finite (z, y, x) in µm, got {center_um!r}")
    model = _CellModel("sphere", lambda p: sh.sphere(p, r), np.full(3, r), n_s,
                       info={"radius_um": r, "ri": n_s})
    model.center_um = c
    _render_cell(model, grid, None, 1)
    ph = _finish(grid, [model], "sphere")
    return ph
