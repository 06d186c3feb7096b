"""Digital-twin time-lapses: cells that move, turn, grow and divide, with per-frame truth.

Every cell is a body of :mod:`holo.twin.phantoms` (same SDF models, same rasteriser) placed
at a centre c(t), turned by a spin about the optical axis θ(t) and scaled by s(t):

* **Growth** is exponential in dry mass at a known specific rate k (1/h) per cell:
  m(t) = m_b · e^{k (t − t_b)}. The RI contrast of the body is kept, so the volume grows
  like the mass and the scale like s(t) = s_b · e^{k (t − t_b)/3}. The dry mass of a body
  at scale s is m = s³ · m₁ with m₁ = (1/α) Σ (n − n_m) ΔV of the body rendered once at
  scale 1 (partial volumes included; α of :mod:`holo.conventions`).
* **Division** happens when the mass has doubled, m = 2 m_b (age ln 2 / k): the mother's
  track ends and two daughters — copies of the mother's body at scale s/2^{1/3}, hence half
  its mass each — appear side by side along a random horizontal axis, each with its own
  growth rate (the mother's, varied by a few percent) and spin.
* **Motion** is a persistent random walk in the (y, x) plane,
  v(t+1) = ρ v(t) + σ √(1 − ρ²) ξ, plus a weak repulsion that pushes overlapping cells
  apart; the spin turns by a Gaussian increment each frame (the outline seen by the
  microscope changes shape).
* **Entering / leaving**: a cell whose centre leaves the field ends its track; new cells
  enter at a random edge with an inward velocity (Poisson, ``enter_rate_per_h``).

The instance label of a cell in every frame is its **track id** (Cell Tracking Challenge
convention: a track runs from birth or entry to division or exit; the daughters are new
tracks whose parent is the mother's track). :class:`Timelapse` holds the truth tables;
:func:`render_frame` renders one frame (so long series stream frame by frame) and
:func:`make_timelapse` stacks them. :func:`degrade_labels` imitates the errors of a
segmenter (merges, splits, one-frame dropouts, boundary jitter) for scoring trackers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from holo.conventions import ALPHA_PROTEIN_UM3_PER_PG
from holo.labels import NUCLEATED_CLASSES
from holo.twin import phantoms as ph

__all__ = ["CellState", "Timelapse", "plan_timelapse", "render_frame", "make_timelapse", "degrade_labels",
           "ctc_track_table"]

_SECONDS_PER_HOUR = 3600.0


@dataclass
class CellState:
    """One cell in one frame: track id, body (shared by the track), pose and true dry mass."""

    track_id: int
    center_um: np.ndarray
    spin_rad: float
    scale: float
    dry_mass_pg: float


@dataclass
class _Track:
    track_id: int
    parent_id: int
    class_name: str
    model: object  # phantoms._CellModel in its settled orientation, scale 1
    mass_unit_pg: float  # dry mass of the body at scale 1
    growth_per_h: float
    birth_s: float
    birth_mass_pg: float
    texture_seed: int
    velocity_um: np.ndarray = field(default_factory=lambda: np.zeros(2))
    spin_rad: float = 0.0
    scale: float = 1.0
    center_um: np.ndarray = field(default_factory=lambda: np.zeros(3))
    start: int = 0
    end: int = -1
    fate: str = "end"  # "divided", "left", "end"


@dataclass
class Timelapse:
    """A planned time-lapse: the truth of every frame, rendered on demand.

    Attributes
    ----------
    shape_zyx, voxel_size_um, medium_index, interval_s, n_frames
        Grid, medium and timing (frame t is at t · interval_s seconds).
    frames : list of list of CellState
        The cells of every frame.
    tracks : dict of int -> dict
        ``parent_id`` (0 = none), ``class``, ``start``, ``end`` (frames, inclusive),
        ``fate`` ("divided", "left", "end"), ``growth_per_h`` (k), ``doubling_time_h``,
        ``birth_mass_pg``.
    """

    shape_zyx: tuple
    voxel_size_um: tuple
    medium_index: float
    interval_s: float
    n_frames: int
    frames: list
    tracks: dict
    _bodies: dict = field(default_factory=dict, repr=False)

    def times_s(self) -> np.ndarray:
        return np.arange(self.n_frames) * float(self.interval_s)

    def truth_table(self):
        """One row per (track, frame): ``track_id, parent_id, frame, time_s, class,
        centroid_z_um, centroid_y_um, centroid_x_um`` (pose centre, volume-centred
        coordinates) and ``dry_mass_pg`` (m₁ s³)."""
        import pandas as pd

        rows = []
        for t, cells in enumerate(self.frames):
            for c in cells:
                tr = self.tracks[c.track_id]
                rows.append({"track_id": c.track_id, "parent_id": tr["parent_id"], "frame": t,
                             "time_s": t * self.interval_s, "class": tr["class"],
                             "centroid_z_um": float(c.center_um[0]), "centroid_y_um": float(c.center_um[1]),
                             "centroid_x_um": float(c.center_um[2]), "dry_mass_pg": c.dry_mass_pg})
        return pd.DataFrame(rows)


def _body_mass_pg(model, voxel_size_um, medium_index: float) -> float:
    """m₁ = (1/α) Σ (n − n_m) ΔV of ``model`` rendered alone at scale 1 (texture seed 0)."""
    ext = model.lab_half_extent()
    vox = np.asarray(voxel_size_um, float)
    shape = tuple(int(2 * math.ceil(e / h) + 6) for e, h in zip(ext, vox))
    grid = ph._Grid(shape, vox, medium_index)
    body = copy.copy(model)
    body.center_um, body.scale = np.zeros(3), 1.0
    ph._render_cell(body, grid, np.random.default_rng(0), 1)
    return float(grid.ri_excess.sum(dtype=np.float64) * vox.prod() / ALPHA_PROTEIN_UM3_PER_PG)


class _Planner:
    """State of the simulation while frames are planned (see :func:`plan_timelapse`)."""

    def __init__(self, shape_zyx, voxel_size_um, medium_index, interval_s, rng, classes, doubling_h,
                 speed_um_per_h, persistence, spin_deg_per_frame, birth_scale):
        self.grid = ph._Grid(shape_zyx, voxel_size_um, medium_index)
        self.half_fov_um = np.array([(n // 2) * h for n, h in zip(self.grid.shape, self.grid.voxel)])
        self.dt_h = float(interval_s) / _SECONDS_PER_HOUR
        self.rng, self.classes, self.doubling_h = rng, tuple(classes), doubling_h
        self.sigma_um = float(speed_um_per_h) * self.dt_h
        self.rho, self.spin_sd = float(persistence), math.radians(spin_deg_per_frame)
        self.birth_scale = float(birth_scale)
        self.tracks: dict[int, _Track] = {}
        self.live: list[int] = []

    def _new_track(self, parent: _Track | None, model, mass_unit, growth, birth_s, birth_mass, frame) -> _Track:
        tid = len(self.tracks) + 1
        tr = _Track(tid, parent.track_id if parent else 0, model.class_name, model, mass_unit, growth, birth_s,
                    birth_mass, int(self.rng.integers(2**31)), start=frame)
        self.tracks[tid] = tr
        self.live.append(tid)
        return tr

    def _growth(self) -> float:
        lo, hi = self.doubling_h
        return math.log(2.0) / self.rng.uniform(lo, hi)

    def new_cell(self, frame: int, t_s: float, center_yx=None, velocity=None) -> _Track:
        """A cell drawn at a random phase of its cycle (0 ≤ age < ln 2/k)."""
        name = self.classes[int(self.rng.integers(len(self.classes)))]
        model = ph._build_model(name, self.rng)
        ph._orient(model, self.rng)
        model.rotation = model.flat_rotation if model.flat_rotation is not None else model.rotation
        m1 = _body_mass_pg(model, self.grid.voxel, self.grid.medium)
        k = self._growth()
        age_h = self.rng.uniform(0.0, math.log(2.0) / k)
        birth_mass = m1 * self.birth_scale**3
        tr = self._new_track(None, model, m1, k, t_s - age_h * _SECONDS_PER_HOUR, birth_mass, frame)
        tr.spin_rad, tr.scale = self.rng.uniform(0, 2 * math.pi), self.scale(tr, t_s)
        yx = center_yx if center_yx is not None else self.rng.uniform(-0.8, 0.8, 2) * self.half_fov_um[1:]
        tr.center_um = np.array([self.rng.uniform(-0.3, 0.3), *yx])
        tr.velocity_um = np.asarray(velocity, float) if velocity is not None else self.rng.normal(0, self.sigma_um, 2)
        return tr

    def entering_cell(self, frame: int, t_s: float) -> _Track:
        side = int(self.rng.integers(4))
        axis, sign = side // 2, (1.0 if side % 2 else -1.0)
        yx = self.rng.uniform(-0.8, 0.8, 2) * self.half_fov_um[1:]
        yx[axis] = sign * 0.9 * self.half_fov_um[1 + axis]
        v = self.rng.normal(0, 0.5 * self.sigma_um, 2)
        v[axis] = -sign * 1.5 * self.sigma_um
        return self.new_cell(frame, t_s, yx, v)

    def mass(self, tr: _Track, t_s: float) -> float:
        return tr.birth_mass_pg * math.exp(tr.growth_per_h * (t_s - tr.birth_s) / _SECONDS_PER_HOUR)

    def scale(self, tr: _Track, t_s: float) -> float:
        return (self.mass(tr, t_s) / tr.mass_unit_pg) ** (1.0 / 3.0)

    def divide(self, tr: _Track, frame: int, t_s: float) -> None:
        """End ``tr`` at frame − 1; two half-mass copies of its body start at ``frame``."""
        tr.end, tr.fate = frame - 1, "divided"
        self.live.remove(tr.track_id)
        t_div = tr.birth_s + math.log(2.0) / tr.growth_per_h * _SECONDS_PER_HOUR
        m_div = 2.0 * tr.birth_mass_pg
        phi = self.rng.uniform(0, 2 * math.pi)
        u = np.array([0.0, math.sin(phi), math.cos(phi)])
        s_d = (0.5 * m_div / tr.mass_unit_pg) ** (1.0 / 3.0)
        probe = copy.copy(tr.model)
        probe.rotation = ph._rotation_about((1.0, 0.0, 0.0), tr.spin_rad) @ tr.model.rotation
        probe.scale = s_d
        reach = probe.ray_extent(u, np.zeros(3)) + probe.ray_extent(-u, np.zeros(3))
        for sign in (1.0, -1.0):
            k = tr.growth_per_h * self.rng.uniform(0.95, 1.05)
            d = self._new_track(tr, tr.model, tr.mass_unit_pg, k, t_div, 0.5 * m_div, frame)
            d.center_um = tr.center_um + sign * u * (0.5 * reach + 0.5 * float(self.grid.voxel.max()))
            d.spin_rad, d.scale = tr.spin_rad, s_d
            d.velocity_um = sign * u[1:] * 0.3 * self.sigma_um + self.rng.normal(0, 0.3 * self.sigma_um, 2)

    def move(self) -> None:
        for tid in self.live:
            tr = self.tracks[tid]
            tr.velocity_um = self.rho * tr.velocity_um + self.sigma_um * math.sqrt(1 - self.rho**2) * self.rng.normal(0, 1, 2)
            tr.center_um = tr.center_um + np.array([0.0, *tr.velocity_um])
            tr.spin_rad += self.rng.normal(0.0, self.spin_sd)
        self._repel()

    def _repel(self, iterations: int = 3) -> None:
        """Push pairs closer than the sum of their lateral radii apart (half each)."""
        for _ in range(iterations):
            for i, a in enumerate(self.live):
                for b in self.live[i + 1:]:
                    ta, tb = self.tracks[a], self.tracks[b]
                    d = tb.center_um[1:] - ta.center_um[1:]
                    dist = float(np.hypot(*d))
                    need = (self._radius(ta) + self._radius(tb)) * 0.95
                    if dist < need:
                        u = d / dist if dist > 1e-6 else np.array([1.0, 0.0])
                        push = 0.5 * (need - dist)
                        ta.center_um[1:] -= push * u
                        tb.center_um[1:] += push * u

    def _radius(self, tr: _Track) -> float:
        return float(tr.model.half_extent_um[1:].max()) * tr.scale

    def leave(self, frame: int) -> None:
        for tid in list(self.live):
            tr = self.tracks[tid]
            if np.any(np.abs(tr.center_um[1:]) > self.half_fov_um[1:]):
                tr.end, tr.fate = frame - 1, "left"
                self.live.remove(tid)

    def snapshot(self, t_s: float) -> list:
        cells = []
        for tid in self.live:
            tr = self.tracks[tid]
            tr.scale = self.scale(tr, t_s)
            cells.append(CellState(tid, tr.center_um.copy(), tr.spin_rad, tr.scale, self.mass(tr, t_s)))
        return cells


def plan_timelapse(n_frames: int = 12, interval_s: float = 600.0, *, shape_zyx=(24, 160, 160),
                   voxel_size_um=(0.5, 0.5, 0.5), medium_index: float = 1.337, n_cells: int = 6,
                   classes=NUCLEATED_CLASSES[:2], doubling_time_h=(1.5, 3.0), speed_um_per_h: float = 12.0,
                   persistence: float = 0.7, spin_deg_per_frame: float = 8.0, enter_rate_per_h: float = 0.5,
                   birth_scale: float = 0.8, seed: int = 0) -> Timelapse:
    """Plan a time-lapse: poses, masses, divisions, entries and exits of every frame.

    Parameters
    ----------
    n_frames, interval_s
        Number of frames and seconds between them.
    shape_zyx, voxel_size_um, medium_index
        The grid of every frame (as :func:`holo.twin.phantoms.make_phantom`).
    n_cells
        Cells at frame 0 (drawn at random phases of their cycle).
    classes
        Classes drawn (nucleated ones: the growing, dividing cells of a culture).
    doubling_time_h
        (low, high) of the uniform draw of each founder's doubling time T_d; k = ln 2 / T_d.
    speed_um_per_h, persistence, spin_deg_per_frame
        Random-walk speed σ/Δt, velocity autocorrelation ρ per frame, spin increment SD.
    enter_rate_per_h
        Poisson rate of cells entering at the edges.
    birth_scale
        Scale of a body at birth (it divides at birth_scale · 2^{1/3}).
    seed
        The plan is a deterministic function of all arguments.

    Returns
    -------
    Timelapse
    """
    if int(n_frames) < 1 or not (np.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"n_frames must be >= 1 and interval_s > 0, got {n_frames!r}, {interval_s!r}")
    bad = [c for c in classes if c not in NUCLEATED_CLASSES]
    if bad:
        raise ValueError(f"classes: time-lapse cells grow and divide; {bad[0]!r} is not one of {', '.join(NUCLEATED_CLASSES)}")
    rng = np.random.default_rng(int(seed))
    pl = _Planner(shape_zyx, voxel_size_um, medium_index, interval_s, rng, classes, doubling_time_h,
                  speed_um_per_h, persistence, spin_deg_per_frame, birth_scale)
    for _ in range(int(n_cells)):
        pl.new_cell(0, 0.0)
    pl._repel(iterations=20)
    frames = []
    for t in range(int(n_frames)):
        t_s = t * float(interval_s)
        if t > 0:
            pl.move()
            pl.leave(t)
            for _ in range(rng.poisson(enter_rate_per_h * pl.dt_h)):
                pl.entering_cell(t, t_s)
            for tid in list(pl.live):
                tr = pl.tracks[tid]
                if pl.mass(tr, t_s) >= 2.0 * tr.birth_mass_pg:
                    pl.divide(tr, t, t_s)
            pl._repel()
        frames.append(pl.snapshot(t_s))
    for tid in pl.live:
        pl.tracks[tid].end = int(n_frames) - 1
    tracks = {tid: {"parent_id": tr.parent_id, "class": tr.class_name, "start": tr.start, "end": tr.end,
                    "fate": tr.fate, "growth_per_h": tr.growth_per_h,
                    "doubling_time_h": math.log(2.0) / tr.growth_per_h, "birth_mass_pg": tr.birth_mass_pg}
              for tid, tr in pl.tracks.items() if tr.end >= tr.start}
    bodies = {tid: (tr.model, tr.texture_seed) for tid, tr in pl.tracks.items()}
    return Timelapse(tuple(pl.grid.shape), tuple(float(v) for v in pl.grid.voxel), pl.grid.medium,
                     float(interval_s), int(n_frames), frames, tracks, bodies)


def render_frame(tl: Timelapse, t: int) -> ph.Phantom:
    """Render frame ``t``: RI, semantic labels and instance labels equal to track ids.

    ``Phantom.classes`` maps the track ids present to their class; ``Phantom.cells`` holds
    each cell's true ``dry_mass_pg`` and centre.
    """
    grid = ph._Grid(tl.shape_zyx, tl.voxel_size_um, tl.medium_index)
    classes, cells = {}, {}
    for c in tl.frames[int(t)]:
        body, tex_seed = tl._bodies[c.track_id]
        model = copy.copy(body)
        model.rotation = ph._rotation_about((1.0, 0.0, 0.0), c.spin_rad) @ body.rotation
        model.scale, model.center_um = float(c.scale), np.asarray(c.center_um, float)
        ph._render_cell(model, grid, np.random.default_rng(tex_seed), c.track_id)
        classes[c.track_id] = body.class_name
        cells[c.track_id] = {"class": body.class_name, "center_um": [float(v) for v in c.center_um],
                             "scale": float(c.scale), "dry_mass_pg": float(c.dry_mass_pg)}
    ri = (grid.ri_excess + np.float32(grid.medium)).astype(np.float32)
    present = set(np.unique(grid.instance).tolist()) - {0}
    classes = {k: v for k, v in classes.items() if k in present}
    cells = {k: v for k, v in cells.items() if k in present}
    return ph.Phantom(ri, grid.semantic, grid.instance, classes, tl.voxel_size_um, tl.medium_index, "cell", cells)


def make_timelapse(n_frames: int = 12, interval_s: float = 600.0, *, progress=None, **kwargs):
    """Plan and render a whole series: ``(Timelapse, ri (T,Z,Y,X) float32, semantic uint8,
    instance int32)``; keyword arguments go to :func:`plan_timelapse`."""
    tl = plan_timelapse(n_frames, interval_s, **kwargs)
    shape = (tl.n_frames, *tl.shape_zyx)
    ri, sem, inst = np.empty(shape, np.float32), np.empty(shape, np.uint8), np.empty(shape, np.int32)
    for t in range(tl.n_frames):
        p = render_frame(tl, t)
        ri[t], sem[t], inst[t] = p.ri, p.semantic, p.instance
        if progress is not None:
            progress(t + 1, tl.n_frames, note=f"frame {t}")
    return tl, ri, sem, inst


def ctc_track_table(instance) -> np.ndarray:
    """The ``res_track.txt`` rows ``(L, B, E, P)`` of an instance series whose labels are
    track ids (label, first and last frame present); the parent column is 0 here — join
    :attr:`Timelapse.tracks` for it."""
    inst = np.asarray(instance)
    rows = {}
    for t in range(inst.shape[0]):
        for lab in np.unique(inst[t]):
            if lab == 0:
                continue
            b, _ = rows.get(int(lab), (t, t))
            rows[int(lab)] = (b, t)
    return np.array([(k, b, e, 0) for k, (b, e) in sorted(rows.items())], dtype=np.int64).reshape(-1, 4)


# ----------------------------------------------------------------------------------------
# Segmentation errors
# ----------------------------------------------------------------------------------------
def _merge_one(lab: np.ndarray, rng) -> None:
    """Give the label of a touching (or nearest) neighbour to one cell: an under-segmentation."""
    ids = np.unique(lab[lab > 0])
    if len(ids) < 2:
        return
    a = int(rng.choice(ids))
    ring = ndimage.binary_dilation(lab == a, iterations=2) & (lab > 0) & (lab != a)
    if ring.any():
        b = int(rng.choice(np.unique(lab[ring])))
    else:
        com = {int(i): np.array(c) for i, c in zip(ids, ndimage.center_of_mass(lab > 0, lab, ids))}
        b = min((i for i in ids if i != a), key=lambda i: np.linalg.norm(com[int(i)] - com[a]))
    lab[lab == b] = a


def _split_one(lab: np.ndarray, rng, new_id: int) -> None:
    """Cut one cell in two halves by a vertical plane through its centroid: an over-segmentation."""
    ids = np.unique(lab[lab > 0])
    if not len(ids):
        return
    a = int(rng.choice(ids))
    zz, yy, xx = np.nonzero(lab == a)
    phi = rng.uniform(0, 2 * np.pi)
    side = (yy - yy.mean()) * math.sin(phi) + (xx - xx.mean()) * math.cos(phi) > 0
    lab[zz[side], yy[side], xx[side]] = new_id


def degrade_labels(instance, *, merge_rate: float = 0.03, split_rate: float = 0.03, dropout_rate: float = 0.02,
                   jitter_voxels: int = 1, seed: int = 0) -> np.ndarray:
    """Instance series as a realistic segmenter would give it (ids renumbered per frame).

    Per frame and cell, with the given probabilities: the cell is merged with a neighbour,
    cut in two, or missing (a one-frame dropout); every mask is then shifted laterally by up
    to ``jitter_voxels`` (jittered centroids; the dry mass read through it changes by a
    few percent). Labels are renumbered 1..K in every frame, so the track identity is
    lost as in real segmentations.
    """
    rng = np.random.default_rng(int(seed))
    out = np.zeros_like(np.asarray(instance), dtype=np.int32)
    for t, lab0 in enumerate(np.asarray(instance)):
        lab = lab0.astype(np.int32, copy=True)
        n = len(np.unique(lab[lab > 0]))
        for _ in range(rng.binomial(n, merge_rate)):
            _merge_one(lab, rng)
        for _ in range(rng.binomial(n, split_rate)):
            _split_one(lab, rng, int(lab.max()) + 1)
        ids = np.unique(lab[lab > 0])
        drop = ids[rng.uniform(size=len(ids)) < dropout_rate]
        lab[np.isin(lab, drop)] = 0
        out[t] = _jitter(lab, rng, jitter_voxels)
    return out


def _jitter(lab: np.ndarray, rng, voxels: int) -> np.ndarray:
    """Shift every label by up to ``voxels`` along y and x (uniform integers; a boundary
    error that jitters centroids), renumbered 1..K; a shifted mask does not overwrite
    another cell."""
    res = np.zeros_like(lab)
    for k, i in enumerate(np.unique(lab[lab > 0]), start=1):
        zz, yy, xx = np.nonzero(lab == i)
        dy, dx = rng.integers(-voxels, voxels + 1, 2) if voxels > 0 else (0, 0)
        yy, xx = np.clip(yy + dy, 0, lab.shape[1] - 1), np.clip(xx + dx, 0, lab.shape[2] - 1)
        free = res[zz, yy, xx] == 0
        res[zz[free], yy[free], xx[free]] = k
    return res
