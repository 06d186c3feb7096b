"""Per-cell and per-organelle morphometrics of a segmented RI tomogram (pure NumPy/scikit-image).

For every instance (cell) the table holds, with the voxel size (dz, dy, dx) in µm
(axes and units per :mod:`holo.conventions`):

* volume V = N_voxels · dz·dy·dx (µm³);
* surface area A (µm²): the mask is smoothed by a Gaussian of physical width
  σ = max(min(d), ½·max(d)) µm (this removes the staircase of the voxel grid, whose
  triangulated area would otherwise exceed the true area by 10–15 % on anisotropic grids),
  then ``skimage.measure.marching_cubes`` at level ½ with ``spacing`` = voxel size, and the
  mesh areas are summed;
* sphericity Ψ = π^{1/3} (6V)^{2/3} / A (1 for a sphere, < 1 otherwise), V the volume
  enclosed by the same surface (so Ψ ≤ 1 also for objects a few voxels across);
* mean, max and standard deviation (``ri_std``, the texture) of the RI over the tight mask;
* dry mass m = (1/α) ∭ (n − n_m) dV (pg) with α = :data:`holo.conventions.ALPHA_PROTEIN_UM3_PER_PG`,
  integrated by default over the cell's **share** of the volume, not its tight mask
  (``mass_region="share"``, :mod:`holo.segmentation.drymass`): the transfer function blurs part
  of every cell's excess RI outside its boundary (laterally by ≈ λ/(NA_obj + NA_ill), axially
  by the missing cone), and the OTF keeps K = 0, so the integral over a region that holds the
  blur is the true mass. The share of cell k is every voxel within its blur margin (m_⊥ = c δ_⊥
  laterally, m_z = m_⊥ + κ a_k cot θ_ill axially) that is nearer to k than to any other cell in
  the normalised metric of each cell's margins: a partition, so no mass is counted twice.
  ``dry_mass_mask_pg`` is the same integral over the tight mask (what ``mass_region="mask"``
  reports as ``dry_mass_pg``); the volume always comes from the tight mask;
* concentration c = m / V in pg/µm³ and in g/dL (1 pg/µm³ = 100 g/dL), the dry mass over the
  tight-mask volume (for a uniform cell without blur, (⟨n⟩ − n_m)/α);
* the medium index used (``medium_index``) and whether the background of the tomogram
  disagrees with the metadata value (``medium_mismatch``, :mod:`holo.segmentation.medium`:
  robust mode of the voxels outside every share, tolerance from the noise); with
  ``medium="estimate"`` the estimated n_m is used for every RI difference, otherwise
  (default) the metadata's. The table's ``attrs["medium"]`` holds the estimate and
  ``attrs["warnings"]`` a sentence when they disagree;
* nucleus volume, area, sphericity, mean RI and dry mass; nucleolus count and volume; lipid
  droplet count (26-connected components) and volume; nucleus/cytoplasm volume ratio
  V_nucleus / (V_cell − V_nucleus);
* centroid (z, y, x) in µm, index · voxel size from the first voxel's centre;
* ``touches_border``: the cell touches a lateral face (y or x) of the volume, i.e. it is cut
  by the field's edge and its volume and dry mass are truncated (:func:`border_labels`).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from holo.conventions import ALPHA_PROTEIN_UM3_PER_PG
from holo.labels import LIPID_DROPLET, NUCLEOLUS, NUCLEUS
from holo.segmentation import drymass
from holo.segmentation.medium import estimate_medium_index
from holo.threads import thread_map

__all__ = [
    "surface_area_um2",
    "sphericity",
    "dry_mass_pg",
    "measure_cells",
    "CELL_COLUMNS",
    "MASS_REGIONS",
    "MEDIUM_CHOICES",
    "PG_PER_UM3_TO_G_PER_DL",
]

#: 1 pg/µm³ = 1e-12 g / 1e-13 dL = 100 g/dL.
PG_PER_UM3_TO_G_PER_DL = 100.0

CELL_COLUMNS = (
    "cell_id",
    "centroid_z_um",
    "centroid_y_um",
    "centroid_x_um",
    "volume_um3",
    "surface_area_um2",
    "sphericity",
    "mean_ri",
    "max_ri",
    "ri_std",
    "dry_mass_pg",
    "dry_mass_mask_pg",
    "concentration_pg_per_um3",
    "concentration_g_per_dl",
    "nucleus_volume_um3",
    "nucleus_surface_area_um2",
    "nucleus_sphericity",
    "nucleus_mean_ri",
    "nucleus_dry_mass_pg",
    "nucleolus_count",
    "nucleolus_volume_um3",
    "lipid_droplet_count",
    "lipid_droplet_volume_um3",
    "nucleus_cytoplasm_ratio",
    "medium_index",
    "medium_mismatch",
    "touches_border",
)
#: Where the dry mass is integrated: the cell's share of the volume, or its tight mask.
MASS_REGIONS = ("share", "mask")
#: Which n_m the RI differences use: the tomogram's metadata, or the background's estimate.
MEDIUM_CHOICES = ("metadata", "estimate")


def _voxel(voxel_size_um) -> tuple[float, float, float]:
    vs = tuple(float(v) for v in np.asarray(voxel_size_um, dtype=float).reshape(-1))
    if len(vs) != 3 or not all(np.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size_um must be three positive numbers (dz, dy, dx), got {voxel_size_um!r}")
    return vs


def _mask_mesh(mask: np.ndarray, voxel_size_um):
    """Closed triangle mesh (vertices in µm, faces) of a non-empty binary 3D mask: the mask is
    smoothed by a Gaussian of physical width σ = max(min(d), ½ max(d)) µm (d = voxel size),
    padded so the surface closes, and triangulated by marching cubes at level ½."""
    from skimage.measure import marching_cubes

    vs = _voxel(voxel_size_um)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3D (Z, Y, X), got shape {mask.shape}")
    sigma_um = max(min(vs), 0.5 * max(vs))
    sigma_vox = [sigma_um / v for v in vs]
    pad = [int(np.ceil(3 * s)) + 1 for s in sigma_vox]
    sl = ndi.find_objects(mask.astype(np.uint8))[0]
    crop = mask[sl]
    f = np.pad(crop.astype(np.float32), [(p, p) for p in pad])
    f = ndi.gaussian_filter(f, sigma_vox, mode="constant")
    if f.max() <= 0.5:  # an object thinner than the smoothing: fall back to the raw mask
        f = np.pad(crop.astype(np.float32), 1)
    verts, faces, _, _ = marching_cubes(f, 0.5, spacing=vs)
    return verts, faces


def mesh_volume_um3(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed triangle mesh, V = |Σ_f v₀·(v₁ × v₂)| / 6 (divergence
    theorem; vertices in µm)."""
    v0, v1, v2 = (verts[faces[:, k]].astype(np.float64) for k in range(3))
    return float(abs(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum()) / 6.0)


def surface_area_um2(mask: np.ndarray, voxel_size_um) -> float:
    """Surface area (µm²) of a binary 3D mask.

    The mask is smoothed by a Gaussian of physical width σ = max(min(d), ½ max(d)) µm
    (d = voxel size), then triangulated by marching cubes at level ½ with
    ``spacing=voxel_size_um``; the area is the sum of the triangle areas. For a ball of radius
    R ≥ 3 voxel sizes the error is below 1 %; the smoothing shifts a surface of curvature
    radius R inward by ≈ σ²/(2R), so thinner objects are underestimated.

    Parameters
    ----------
    mask : (Z, Y, X) bool array
    voxel_size_um : (dz, dy, dx)

    Returns
    -------
    float
        0 for an empty mask.
    """
    return surface_and_sphericity(mask, voxel_size_um)[0]


def surface_and_sphericity(mask: np.ndarray, voxel_size_um) -> tuple[float, float]:
    """Surface area A (µm², as :func:`surface_area_um2`) and sphericity Ψ of a binary 3D mask.

    Ψ = π^{1/3} (6V)^{2/3} / A with V the volume enclosed by the *same* surface (not the voxel
    count): the smoothing moves the surface of a small object inward by ≈ σ²/(2R), which
    shrinks A; pairing it with the voxel volume would give Ψ > 1, impossible for a closed
    surface (isoperimetric inequality). Returns (0, NaN) for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3D (Z, Y, X), got shape {mask.shape}")
    if not mask.any():
        return 0.0, float("nan")
    from skimage.measure import mesh_surface_area

    verts, faces = _mask_mesh(mask, voxel_size_um)
    area = float(mesh_surface_area(verts, faces))
    return area, sphericity(mesh_volume_um3(verts, faces), area)


def sphericity(volume_um3: float, area_um2: float) -> float:
    """Ψ = π^{1/3} (6V)^{2/3} / A; NaN when A = 0."""
    if area_um2 <= 0:
        return float("nan")
    return float(np.pi ** (1.0 / 3.0) * (6.0 * volume_um3) ** (2.0 / 3.0) / area_um2)


def border_labels(instance: np.ndarray) -> set:
    """Labels that touch a lateral face (y or x) of the volume: cells cut by the field's edge,
    whose volume and dry mass are truncated."""
    inst = np.asarray(instance)
    faces = (inst[..., 0, :], inst[..., -1, :], inst[..., :, 0], inst[..., :, -1])
    return set(np.unique(np.concatenate([f.ravel() for f in faces])).tolist()) - {0}


def dry_mass_pg(ri_values: np.ndarray, medium_index: float, voxel_volume_um3: float,
                alpha_um3_per_pg: float = ALPHA_PROTEIN_UM3_PER_PG) -> float:
    """m = (1/α) Σ (n − n_m) ΔV over the given voxels, in pg."""
    ri_values = np.asarray(ri_values, dtype=np.float64)
    return float(np.sum(ri_values - medium_index) * voxel_volume_um3 / alpha_um3_per_pg)


def _organelle(mask, ri, medium_index, vs, dv):
    n = int(mask.sum())
    if n == 0:
        return 0.0, 0.0, float("nan"), float("nan"), 0.0
    vol = n * dv
    area, psi = surface_and_sphericity(mask, vs)
    vals = ri[mask]
    return vol, area, psi, float(vals.mean()), dry_mass_pg(vals, medium_index, dv)


def _cell_features(m: np.ndarray, r: np.ndarray, offset, vs, medium_index: float) -> dict:
    """Features of one cell: mask ``m`` and RI ``r`` on its bounding box starting at voxel
    ``offset``."""
    dv = float(np.prod(vs))
    vals = r[m]
    vol = int(m.sum()) * dv
    area, psi = surface_and_sphericity(m, vs)
    coords = np.argwhere(m).mean(axis=0) + np.asarray(offset)
    mean_ri = float(vals.mean())
    mass = dry_mass_pg(vals, medium_index, dv)
    return {
        "centroid_z_um": float(coords[0] * vs[0]),
        "centroid_y_um": float(coords[1] * vs[1]),
        "centroid_x_um": float(coords[2] * vs[2]),
        "volume_um3": vol,
        "surface_area_um2": area,
        "sphericity": psi,
        "mean_ri": mean_ri,
        "max_ri": float(vals.max()),
        "ri_std": float(vals.std()),
        "dry_mass_pg": mass,
        "dry_mass_mask_pg": mass,
    }


def _organelle_features(m: np.ndarray, s: np.ndarray | None, r: np.ndarray, vol: float, vs,
                        medium_index: float) -> dict:
    """Nucleus, nucleolus and lipid-droplet features of one cell of volume ``vol`` (mask ``m``,
    semantic labels ``s`` or None, RI ``r`` on its bounding box)."""
    dv = float(np.prod(vs))
    if s is not None:
        nuc = m & ((s == NUCLEUS) | (s == NUCLEOLUS))
        nv, na, nsph, nri, nmass = _organelle(nuc, r, medium_index, vs, dv)
        nucleoli = m & (s == NUCLEOLUS)
        lipid = m & (s == LIPID_DROPLET)
        full = np.ones((3, 3, 3), bool)
        n_nucleoli = int(ndi.label(nucleoli, structure=full)[1]) if nucleoli.any() else 0
        n_lipid = int(ndi.label(lipid, structure=full)[1]) if lipid.any() else 0
        cyto_v = vol - nv
    else:
        nv, na, nsph, nri, nmass = 0.0, 0.0, float("nan"), float("nan"), 0.0
        nucleoli = lipid = np.zeros_like(m)
        n_nucleoli = n_lipid = 0
        cyto_v = vol
    return {
        "nucleus_volume_um3": nv,
        "nucleus_surface_area_um2": na,
        "nucleus_sphericity": nsph,
        "nucleus_mean_ri": nri,
        "nucleus_dry_mass_pg": nmass,
        "nucleolus_count": n_nucleoli,
        "nucleolus_volume_um3": float(nucleoli.sum()) * dv,
        "lipid_droplet_count": n_lipid,
        "lipid_droplet_volume_um3": float(lipid.sum()) * dv,
        "nucleus_cytoplasm_ratio": (nv / cyto_v) if cyto_v > 0 else float("nan"),
    }


def _check_inputs(ri, semantic, instance):
    ri = np.asarray(ri, dtype=np.float32)
    instance = np.asarray(instance)
    if ri.ndim != 3:
        raise ValueError(f"ri must be 3D (Z, Y, X), got shape {ri.shape}")
    if instance.shape != ri.shape:
        raise ValueError(f"instance shape {instance.shape} differs from ri shape {ri.shape}")
    if semantic is not None:
        semantic = np.asarray(semantic)
        if semantic.shape != ri.shape:
            raise ValueError(f"semantic shape {semantic.shape} differs from ri shape {ri.shape}")
    return ri, semantic, instance


def _share_and_medium(ri, inst, vs, medium_index, medium, optics, margin, slices, pool):
    """(owner labels of the shares, MediumEstimate, the n_m to use); ``slices`` the cells' boxes.
    With the metadata's n_m the estimate (only compared) is a Future of ``pool``, made while
    the cells are measured."""
    margins = drymass.cell_margins_um(inst, vs, optics["wavelength_um"], medium_index,
                                      objective_na=optics["objective_na"],
                                      illumination_na=optics["illumination_na"], slices=slices, **margin)
    owner = drymass.mass_partition(inst, vs, margins, slices=slices)
    if medium != "estimate":
        return owner, pool.submit(estimate_medium_index, ri, owner == 0, vs, medium_index, **optics), float(medium_index)
    est = estimate_medium_index(ri, owner == 0, vs, medium_index, **optics)
    return owner, est, est.medium_index


def measure_cells(ri: np.ndarray, semantic: np.ndarray | None, instance: np.ndarray,
                  voxel_size_um, medium_index: float, *, mass_region: str = "share", medium: str = "metadata",
                  wavelength_um: float = 0.532, objective_na: float = drymass.DEFAULT_OBJECTIVE_NA,
                  illumination_na: float = drymass.DEFAULT_ILLUMINATION_NA,
                  margin_resolutions: float = drymass.MARGIN_RESOLUTIONS,
                  cone_fraction: float = drymass.CONE_FRACTION) -> pd.DataFrame:
    """Morphometrics of every instance (cell) of a labelled RI volume.

    Parameters
    ----------
    ri : (Z, Y, X) float array
        Absolute RI.
    semantic : (Z, Y, X) int array or None
        Labels of :data:`holo.labels.SEMANTIC_NAMES` (0 background, 1 cytoplasm, 2 nucleus,
        3 nucleolus, 4 lipid droplet). Without it the organelle columns are 0/NaN.
    instance : (Z, Y, X) int array
        0 background, k > 0 the cell with id k.
    voxel_size_um : (dz, dy, dx)
    medium_index : float
        n_m of the metadata.
    mass_region : {"share", "mask"}
        Integrate ``dry_mass_pg`` over each cell's share of the volume (default) or its tight
        mask (module docstring).
    medium : {"metadata", "estimate"}
        The n_m of every RI difference: ``medium_index`` (default) or the robust mode of the
        background (:func:`holo.segmentation.medium.estimate_medium_index`); the estimate is
        made and compared either way.
    wavelength_um, objective_na, illumination_na
        Optics of the blur margins (:func:`holo.segmentation.drymass.cell_margins_um`).
    margin_resolutions, cone_fraction
        c and κ of the margins.

    Returns
    -------
    pandas.DataFrame
        One row per cell id (ascending) with the columns :data:`CELL_COLUMNS`;
        ``attrs["medium"]`` (estimate, metadata value, tolerance, noise) and
        ``attrs["warnings"]`` (list of sentences).
    """
    if mass_region not in MASS_REGIONS:
        raise ValueError(f"mass_region must be one of {MASS_REGIONS}, got {mass_region!r}")
    if medium not in MEDIUM_CHOICES:
        raise ValueError(f"medium must be one of {MEDIUM_CHOICES}, got {medium!r}")
    vs = _voxel(voxel_size_um)
    ri, semantic, instance = _check_inputs(ri, semantic, instance)
    inst = instance  # integer labels as given: find_objects needs no int64 copy (drymass.label_slices)
    optics = {"wavelength_um": wavelength_um, "objective_na": objective_na, "illumination_na": illumination_na}
    slices = drymass.label_slices(inst)  # the cells' boxes, found once
    with ThreadPoolExecutor(1, thread_name_prefix="holo-medium") as pool:  # the medium estimate, meanwhile
        owner, est, n_m = _share_and_medium(ri, inst, vs, medium_index, medium, optics,
                                            {"resolutions": margin_resolutions, "cone_fraction": cone_fraction},
                                            slices, pool)
        rows = _cell_rows(ri, semantic, inst, slices, vs, n_m, mass_region,
                          drymass.partition_dry_mass_pg(ri, owner, n_m, vs), border_labels(inst))
        del owner
        est = est.result() if isinstance(est, Future) else est
    for row in rows:
        row["medium_mismatch"] = est.differs
    df = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    df.attrs["medium"] = {"estimated": est.medium_index, "metadata": est.metadata_index, "tolerance": est.tolerance,
                          "noise_std": est.noise_std, "used": n_m, "mismatch": est.differs}
    df.attrs["warnings"] = [w for w in (est.warning(),) if w]
    return df


def _cell_rows(ri, semantic, inst, slices, vs, n_m: float, mass_region: str, share: dict, cut: set) -> list[dict]:
    """The rows of :func:`measure_cells` (``medium_mismatch`` aside), one cell per task on
    several threads (:func:`holo.threads.thread_map`), in the order of the ids."""

    def row_of(idx_sl):
        idx, sl = idx_sl
        m = inst[sl] == idx + 1
        row = {"cell_id": idx + 1, **_cell_features(m, ri[sl], [s.start for s in sl], vs, n_m)}
        if mass_region == "share":
            row["dry_mass_pg"] = share.get(idx + 1, row["dry_mass_mask_pg"])
        conc = row["dry_mass_pg"] / row["volume_um3"]
        row.update(concentration_pg_per_um3=conc, concentration_g_per_dl=conc * PG_PER_UM3_TO_G_PER_DL,
                   medium_index=n_m, medium_mismatch=None, touches_border=(idx + 1) in cut)
        s = None if semantic is None else semantic[sl]
        row.update(_organelle_features(m, s, ri[sl], row["volume_um3"], vs, n_m))
        return row

    return list(thread_map(row_of, [(idx, sl) for idx, sl in enumerate(slices) if sl is not None]))
