"""Body-frame models of the twin's *unseen* object types: an HL60-like cell line, adherent
flat cells and debris.

These objects are not classifier classes (they are absent from
:data:`holo.labels.CELL_CLASSES`): they exist so that the analysis chain can be checked on
objects it was never trained on, which it should report as ``unknown`` rather than as a blood
cell. Their ground truth carries the class name (:data:`UNSEEN_CLASSES`) and the usual
semantic labels (cytoplasm, nucleus, nucleolus, lipid droplet; debris is one compartment,
labelled cytoplasm).

Refractive indices (absolute, visible light) follow published measurements of cell
compartments:

* the nucleus is *lower* in RI than the cytoplasm around it: shown on isolated nuclei and in
  whole cells of several lines by quantitative phase imaging (Schürmann et al., "Cell nuclei
  have lower refractive index and mass density than cytoplasm", J. Biophotonics 9, 1068,
  2016; Steelman et al., "Is the nuclear refractive index lower than cytoplasm? Validation of
  phase measurements and implications for light scattering technologies", J. Biophotonics
  10, 1714, 2017), and for HL60 cells in 3D by optical diffraction tomography (Schürmann et
  al., "Three-dimensional correlative single-cell imaging utilizing fluorescence and
  refractive index tomography", J. Biophotonics 11, e201700145, 2018: HL60 RI ≈ 1.335–1.36
  in a medium of 1.335, nucleus below cytoplasm, nucleoli above the nucleus);
* cytoplasm ≈ 1.36, nucleus ≈ 1.355–1.36, nucleoli ≈ 1.37–1.39, lipid droplets ≥ 1.39
  (``/work/shared/notes/domain.md``, "Typical RI").

The exact differences drawn here (nucleus 0.003–0.008 below the cytoplasm, texture σ) are
the twin's choice within those ranges, not fitted values.

Texture. The cytoplasm of measured tomograms is not homogeneous: organelles below the
resolution give an RI fluctuation over several length scales. It is modelled as a sum of
independent Gaussian random fields, one per (correlation length, σ) layer
(:data:`TEXTURE_LAYERS`), each clipped at ±3σ, so the RI standard deviation inside the
cytoplasm is σ_tex = √(Σ σ_i²) minus a little for the clipping (about 1 %).
"""

from __future__ import annotations

import math

import numpy as np

from holo.twin import _shapes as sh
from holo.twin.phantoms import (
    UNSEEN_CLASSES,
    _F32,
    _as_tuple,
    _blob_part,
    _CellModel,
    _ellipsoid_surface,
    _fits,
    _low_order_noise,
    _nucleated_body,
    _Part,
    _place_spheres,
    _settled_rotation,
    _transformed_sdf,
)

__all__ = ["UNSEEN_CLASSES", "TEXTURE_LAYERS", "CHROMATIN_LAYERS", "texture_std", "build_unseen"]

#: (correlation length µm, σ of RI) of the cytoplasm texture layers: organelle-scale
#: granularity and a mesoscale fluctuation; σ_tex = √(0.0025² + 0.002²) ≈ 0.0032.
TEXTURE_LAYERS = ((0.35, 0.0025), (1.2, 0.002))
#: Texture layers of the nucleus (chromatin), σ ≈ 0.002.
CHROMATIN_LAYERS = ((0.5, 0.002),)
#: Texture of debris (a fragment: no organelles, one finer layer).
_DEBRIS_LAYERS = ((0.3, 0.002),)


def texture_std(layers) -> float:
    """Nominal RI standard deviation √(Σ σ_i²) of a sum of independent texture layers."""
    return float(math.sqrt(sum(s * s for _, s in layers)))


# ----------------------------------------------------------------------------------------
# HL60-like suspended cell line
# ----------------------------------------------------------------------------------------
def _irregular_nucleus(rng, membrane, axes, cell_r):
    """A large, slightly eccentric, slightly irregular nucleus (a promyelocyte's nucleus fills
    most of the cell): ellipsoid of mean radius 0.62–0.74 of the cell radius with a
    low-order radial perturbation of 3–6 %, shrunk until it lies 0.4 µm inside the membrane."""
    r_n = cell_r * rng.uniform(0.62, 0.74)
    n_axes = np.array([min(r_n * rng.uniform(0.9, 1.0), axes[0] - 0.5),
                       r_n * rng.uniform(0.92, 1.02), r_n * rng.uniform(0.98, 1.06)])
    rot = _settled_rotation(rng, 20.0)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    off_len = max(min(axes[1], axes[2]) - n_axes[1:].max() - 0.4, 0.0) * rng.uniform(0.3, 0.9)
    eps = rng.uniform(0.03, 0.06)
    k, ph, a = _low_order_noise(rng)
    for _ in range(60):
        offset = np.array([0.0, off_len * math.sin(phi), off_len * math.cos(phi)])
        surf = _ellipsoid_surface(n_axes * (1.0 + eps), 96) @ rot.T + offset
        if _fits(surf, membrane, 0.4):
            break
        off_len *= 0.8
        n_axes = n_axes * 0.97
    ax = tuple(float(v) for v in n_axes)
    amp = _F32(eps * float(n_axes.mean()))

    def base(q):
        return sh.ellipsoid(q, ax) - amp * sh.radial_perturbation(q, k, ph, a)

    return _transformed_sdf(base, rot, offset), offset, float(n_axes.max() * (1.0 + eps))


def _organelles(rng, membrane, nuc_sdf, nuc_c, nuc_r, half, n_nucleoli, nucleolus_ri, n_lipids):
    """Nucleoli inside the nucleus and lipid droplets in the cytoplasm (rejection sampling)."""

    def in_nucleus(c, r):
        pt = _as_tuple(c)
        return nuc_sdf(pt)[0] <= -(r + 0.3) and membrane(pt)[0] <= -(r + 0.5)

    def in_cytoplasm(c, r):
        pt = _as_tuple(c)
        return membrane(pt)[0] <= -(r + 0.3) and nuc_sdf(pt)[0] >= r + 0.3

    nl = _place_spheres(rng, n_nucleoli, (0.45, 0.8), nuc_c, nuc_r, in_nucleus)
    nucleoli = [_blob_part(rng, c, r, rng.uniform(*nucleolus_ri)) for c, r in nl]
    ld = _place_spheres(rng, n_lipids, (0.3, 0.6), np.zeros(3), float(np.max(half)), in_cytoplasm, tries=600)
    lipids = [_blob_part(rng, c, r, rng.uniform(1.39, 1.45)) for c, r in ld]
    return nucleoli, lipids


def _build_hl60(rng, *, diameter_um=None) -> _CellModel:
    """An HL60-like promyelocytic cell: round (suspended, settled with height/diameter
    0.88–0.97), diameter 10–12 µm, a large irregular nucleus 0.003–0.008 below the
    cytoplasm (cytoplasm 1.356–1.366), 2–4 nucleoli of 1.372–1.385, 0–3 lipid droplets,
    textured cytoplasm and chromatin (:data:`TEXTURE_LAYERS`, :data:`CHROMATIN_LAYERS`)."""
    D = float(diameter_um) if diameter_um is not None else rng.uniform(10.0, 12.0)
    membrane, half, axes = _nucleated_body(rng, D, (0.88, 0.97))
    n_c = rng.uniform(1.356, 1.366)
    n_n = n_c - rng.uniform(0.003, 0.008)
    nuc_sdf, nuc_c, nuc_r = _irregular_nucleus(rng, membrane, axes, 0.5 * D)
    nucleoli, lipids = _organelles(rng, membrane, nuc_sdf, nuc_c, nuc_r, half, int(rng.integers(2, 5)),
                                   (1.372, 1.385), int(rng.integers(0, 4)))
    info = {"diameter_um": D, "height_um": float(2 * axes[0]), "nucleus_shape": "irregular",
            "ri_cytoplasm": float(n_c), "ri_nucleus": float(n_n), "n_nucleoli": len(nucleoli),
            "ri_nucleoli": [p.ri for p in nucleoli], "n_lipid_droplets": len(lipids),
            "ri_lipid_droplets": [p.ri for p in lipids], "texture_std": texture_std(TEXTURE_LAYERS),
            "unseen": True}
    return _CellModel("hl60_like", membrane, np.asarray(half, float), float(n_c),
                      nucleus=_Part(nuc_sdf, np.asarray(nuc_c, float), nuc_r, float(n_n)), n_nucleus=float(n_n),
                      nucleoli=nucleoli, lipids=lipids, max_tilt_deg=10.0, info=info,
                      texture_layers=TEXTURE_LAYERS, chromatin_layers=CHROMATIN_LAYERS)


# ----------------------------------------------------------------------------------------
# Adherent flat cell
# ----------------------------------------------------------------------------------------
def _star_outline(rng, mean_radius_um: float):
    """Irregular closed outline R(θ) = R0 (1 + Σ_{k=2..6} a_k cos(kθ + φ_k)), Σ|a_k| = 0.25–0.4, a_k ∝ N(0, 1)/√k
    (protrusions and concave bays), and its 2D distance d ≈ (ρ − R(θ)) / √(1 + (R'(θ)/R)²)
    (the implicit function over its gradient norm on the outline, ρ = R). Returns
    (sdf_2d(y, x), max R)."""
    ks = np.arange(2, 7)
    a = rng.standard_normal(ks.size) / np.sqrt(ks)
    a *= rng.uniform(0.25, 0.4) / np.abs(a).sum()
    phase = rng.uniform(0.0, 2.0 * np.pi, ks.size)
    R0 = _F32(mean_radius_um)
    coef = [(int(k), _F32(ak), _F32(pk)) for k, ak, pk in zip(ks, a, phase)]

    def sdf_2d(y, x):
        th = np.arctan2(y, x)
        rel = np.ones_like(th)
        drel = np.zeros_like(th)
        for k, ak, pk in coef:
            rel += ak * np.cos(k * th + pk)
            drel -= ak * k * np.sin(k * th + pk)
        R = R0 * rel
        return (np.sqrt(y * y + x * x) - R) / np.sqrt(_F32(1.0) + (drel / rel) ** 2)

    th = np.linspace(0.0, 2.0 * np.pi, 721)
    r_max = float(mean_radius_um * (1.0 + np.sum(a[:, None] * np.cos(ks[:, None] * th + phase[:, None]), axis=0)).max())
    return sdf_2d, r_max


def _build_adherent(rng, *, diameter_um=None, thickness_um=None) -> _CellModel:
    """A cell spread on the coverslip: flat base (body z = −H/2), a thin lamella of
    0.6–1.2 µm over an irregular outline (:func:`_star_outline`, mean diameter 2R0 = 21–29 µm, so 20–40 µm
    wide at its widest), and
    a dome over the nucleus reaching the full thickness H = 3–5 µm (a half ellipsoid joined by
    a smooth union). Inside the dome a flattened nucleus 0.002–0.008 below the cytoplasm
    (cytoplasm 1.360–1.372), 1–4 nucleoli of 1.372–1.388, 2–10 lipid droplets; textured
    cytoplasm and chromatin. Lies flat (no tilt)."""
    D = float(diameter_um) if diameter_um is not None else rng.uniform(21.0, 29.0)
    H = float(thickness_um) if thickness_um is not None else rng.uniform(3.0, 5.0)
    outline, r_max = _star_outline(rng, 0.5 * D)
    zb, h_lam = -0.5 * H, rng.uniform(0.6, 1.2)
    z_lam = _F32(zb + 0.5 * h_lam)
    dome = (H, 0.5 * D * rng.uniform(0.28, 0.4), 0.5 * D * rng.uniform(0.3, 0.42))
    dome_c = (zb, *(0.5 * D * rng.uniform(-0.15, 0.15, 2)))

    def membrane(p):
        lam = np.maximum(outline(p[1], p[2]), np.abs(p[0] - z_lam) - _F32(0.5 * h_lam))
        cap = sh.ellipsoid(p, dome, dome_c)
        return np.maximum(sh.smooth_union(lam, cap, 1.5), _F32(zb) - p[0])

    half = np.array([0.5 * H + 0.05, r_max + 0.3, r_max + 0.3])
    # Flattened nucleus in the dome, resting 0.4 µm above the base.
    n_axes = np.array([0.5 * H * rng.uniform(0.55, 0.7), dome[1] * rng.uniform(0.6, 0.75), dome[2] * rng.uniform(0.6, 0.75)])
    rot = _settled_rotation(rng, 5.0)
    for _ in range(60):
        nuc_c = np.array([zb + 0.4 + n_axes[0], dome_c[1], dome_c[2]])
        if _fits(_ellipsoid_surface(n_axes, 128) @ rot.T + nuc_c, membrane, 0.35):
            break
        n_axes = n_axes * 0.96
    ax = tuple(float(v) for v in n_axes)
    nuc_sdf = _transformed_sdf(lambda q: sh.ellipsoid(q, ax), rot, nuc_c)
    n_c = rng.uniform(1.360, 1.372)
    n_n = n_c - rng.uniform(0.002, 0.008)
    nucleoli, lipids = _organelles(rng, membrane, nuc_sdf, nuc_c, float(n_axes.max()), half, int(rng.integers(1, 5)),
                                   (1.372, 1.388), int(rng.integers(2, 11)))
    info = {"diameter_um": D, "thickness_um": H, "lamella_thickness_um": float(h_lam), "outline_max_radius_um": float(r_max),
            "nucleus_shape": "flat", "ri_cytoplasm": float(n_c), "ri_nucleus": float(n_n), "n_nucleoli": len(nucleoli),
            "ri_nucleoli": [p.ri for p in nucleoli], "n_lipid_droplets": len(lipids),
            "ri_lipid_droplets": [p.ri for p in lipids], "texture_std": texture_std(TEXTURE_LAYERS), "unseen": True}
    return _CellModel("adherent", membrane, half, float(n_c),
                      nucleus=_Part(nuc_sdf, nuc_c, float(n_axes.max()), float(n_n)), n_nucleus=float(n_n),
                      nucleoli=nucleoli, lipids=lipids, max_tilt_deg=0.0, info=info,
                      texture_layers=TEXTURE_LAYERS, chromatin_layers=CHROMATIN_LAYERS)


# ----------------------------------------------------------------------------------------
# Debris
# ----------------------------------------------------------------------------------------
def _build_debris(rng, *, diameter_um=None) -> _CellModel:
    """A small irregular particle without nucleus (cell fragment, aggregate): an ellipsoid of
    size 1–4 µm with a 12–25 % low-order radial perturbation, joined (smooth union) with 0–3
    smaller lumps on its surface; RI 1.36–1.42 with a fine texture; randomly oriented."""
    D = float(diameter_um) if diameter_um is not None else rng.uniform(1.0, 4.0)
    r = 0.5 * D
    axes = tuple(float(v) for v in r * rng.uniform(0.6, 1.0, 3))
    eps = rng.uniform(0.12, 0.25)
    k, ph, a = _low_order_noise(rng)
    amp = _F32(eps * r)
    lumps = []
    for _ in range(int(rng.integers(0, 4))):
        u = rng.standard_normal(3)
        u /= np.linalg.norm(u)
        lumps.append((tuple(float(v) for v in u * np.asarray(axes) * 0.9), float(r * rng.uniform(0.25, 0.5))))

    def membrane(p):
        d = sh.ellipsoid(p, axes) - amp * sh.radial_perturbation(p, k, ph, a)
        for c, rl in lumps:
            d = sh.smooth_union(d, sh.sphere(p, rl, c), 0.3 * r)
        return d

    ext = max(axes) * (1.0 + eps) + max([0.0] + [rl for _, rl in lumps]) + 0.1
    n_d = rng.uniform(1.36, 1.42)
    info = {"diameter_um": D, "ri_cytoplasm": float(n_d), "n_lumps": len(lumps), "unseen": True}
    return _CellModel("debris", membrane, np.full(3, ext), float(n_d), max_tilt_deg=90.0, info=info,
                      texture_layers=_DEBRIS_LAYERS)


_BUILDERS = {"hl60_like": _build_hl60, "adherent": _build_adherent, "debris": _build_debris}


def build_unseen(class_name: str, rng, **params) -> _CellModel:
    """Body-frame model of one of :data:`UNSEEN_CLASSES` (``params``: ``diameter_um``, and
    ``thickness_um`` for ``"adherent"``)."""
    return _BUILDERS[class_name](rng, **params)
