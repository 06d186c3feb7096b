"""Per-cell dry mass from each cell's whole share of the excess RI, not from its tight mask.

Why a tight mask under-counts. A tomograph measures Δn = n − n_m low-passed by its optical
transfer function (OTF): laterally to |K_⊥| ≤ (NA_obj + NA_ill)/λ, and with a missing cone
about K_z. The blur moves part of every cell's excess RI outside its boundary — laterally by
about one resolution length δ_⊥ = λ / (NA_obj + NA_ill), axially much further, because the
low lateral frequencies of a cell of radius a have no K_z support: an object of lateral
radius a is smeared along z over ≈ a · cot θ_ill, with sin θ_ill = NA_ill / n_m the largest
illumination angle in the medium. The OTF contains K = 0, so the *total* excess RI is kept
(∭ Δn_rec dV = ∭ Δn dV): dry mass is conserved by the blur, only displaced. Summing over the
tight mask misses the displaced part (≈ 10 % for blood cells on the twin).

The share of a cell. Every voxel within cell k's blur margin is given to the cell it is
nearest to in that cell's own blur metric,

    ρ_k(r) = min over voxels r' of cell k of  ‖((z − z') / m_z,k, (y − y') / m_⊥, (x − x') / m_⊥)‖,

    owner(r) = argmin_k ρ_k(r)  among the cells with ρ_k(r) ≤ 1  (tight-mask voxels keep their cell),

with the margins

    m_⊥ = c · δ_⊥,      m_z,k = m_⊥ + κ · a_k · cot θ_ill,

a_k the cell's equivalent lateral radius √(A_k/π) (A_k the area of its XY footprint), c =
:data:`MARGIN_RESOLUTIONS` resolution lengths and κ = :data:`CONE_FRACTION` the part of the
full missing-cone smear kept (κ = 1 for a linear Rytov/Born reconstruction with an empty cone;
a reconstruction with a non-negativity constraint fills part of the cone and smears less).
c = 2 and κ = ½ were chosen on twin volumes of both kinds (cone empty and cone filled by the
``gp`` non-negativity; sweep and per-family errors in ``segmentation/weights/MODEL_CARD.md``),
not fitted per volume; both are options of :func:`cell_margins_um`. The owners form a
partition of the volume: no voxel is counted twice, and between touching cells the blurred
excess is split at equal normalised distance. The dry mass of cell k is then

    m_k = (1/α) Σ_{owner(r) = k} (n(r) − n_m) ΔV

with α the specific refraction increment (:data:`holo.conventions.ALPHA_PROTEIN_UM3_PER_PG`).
The share grows the integration volume, so an error δn_m of the medium index biases m_k by
−δn_m · V_share / α: the medium must be right (:mod:`holo.segmentation.medium`).

Memory: each cell is handled in its bounding box widened by one margin (every voxel within
ρ_k ≤ 1 is inside it, and so are all of the cell's voxels, so ρ_k there is exact); the whole-volume arrays are the
owner labels (int32) and the best normalised distance (float32); integer label volumes are
read as they are, never copied to a wider type.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from holo.conventions import ALPHA_PROTEIN_UM3_PER_PG
from holo.threads import thread_map

__all__ = [
    "MARGIN_RESOLUTIONS",
    "CONE_FRACTION",
    "DEFAULT_OBJECTIVE_NA",
    "DEFAULT_ILLUMINATION_NA",
    "blur_lengths_um",
    "cell_margins_um",
    "cell_distance",
    "mass_partition",
    "partition_dry_mass_pg",
]

#: Lateral margin in resolution lengths δ_⊥ = λ / (NA_obj + NA_ill).
MARGIN_RESOLUTIONS = 2.0
#: Fraction κ of the missing-cone axial smear a · cot θ_ill added to the axial margin.
CONE_FRACTION = 0.5
#: Optics assumed when the tomogram does not say (the twin's and a Tomocube HT-2's).
DEFAULT_OBJECTIVE_NA = 1.2
DEFAULT_ILLUMINATION_NA = 1.1


def blur_lengths_um(wavelength_um: float, medium_index: float, objective_na: float = DEFAULT_OBJECTIVE_NA,
                    illumination_na: float = DEFAULT_ILLUMINATION_NA) -> tuple[float, float]:
    """(δ_⊥ in µm, cot θ_ill): the lateral resolution length λ / (NA_obj + NA_ill) and the axial
    smear per µm of lateral radius, cot θ_ill with sin θ_ill = NA_ill / n_m (module docstring)."""
    lam, n_m = float(wavelength_um), float(medium_index)
    if not (lam > 0 and n_m > 0 and objective_na > 0 and 0 < illumination_na < n_m):
        raise ValueError(f"need λ > 0, NA_obj > 0 and 0 < NA_ill < n_m, got λ={wavelength_um}, n_m={medium_index}, "
                         f"NA_obj={objective_na}, NA_ill={illumination_na}")
    s = illumination_na / n_m
    return lam / (objective_na + illumination_na), math.sqrt(1.0 - s * s) / s


def cell_margins_um(instance: np.ndarray, voxel_size_um, wavelength_um: float, medium_index: float, *,
                    objective_na: float = DEFAULT_OBJECTIVE_NA, illumination_na: float = DEFAULT_ILLUMINATION_NA,
                    resolutions: float = MARGIN_RESOLUTIONS,
                    cone_fraction: float = CONE_FRACTION,
                    floor_um=None, slices=None) -> dict[int, tuple[float, float, float]]:
    """Blur margin (m_z, m_⊥, m_⊥) in µm of every cell id: m_⊥ = c δ_⊥, m_z = m_⊥ + κ a cot θ_ill,
    a = √(A/π) with A the area of the cell's XY footprint (c = ``resolutions``, κ =
    ``cone_fraction``); each at least ``floor_um`` (a (z, y, x) floor, e.g. the mask's own
    position error) when given. ``slices``: the cells' boxes (:func:`label_slices`) when known."""
    d_perp, cot = blur_lengths_um(wavelength_um, medium_index, objective_na, illumination_na)
    m_perp = float(resolutions) * d_perp
    inst = np.asarray(instance)
    out = {}
    for k, sl in enumerate(label_slices(inst) if slices is None else slices, start=1):
        if sl is None:
            continue
        area = float((inst[sl] == k).any(axis=0).sum()) * voxel_size_um[1] * voxel_size_um[2]
        out[k] = (m_perp + float(cone_fraction) * math.sqrt(area / math.pi) * cot, m_perp, m_perp)
    if floor_um is not None:
        floor = np.broadcast_to(np.asarray(floor_um, float), (3,))
        out = {k: tuple(float(v) for v in np.maximum(m, floor)) for k, m in out.items()}
    return out


def label_slices(instance: np.ndarray) -> list:
    """``scipy.ndimage.find_objects`` of an integer label volume without a widened copy
    (any other dtype is converted to int64 first)."""
    inst = np.asarray(instance)
    if inst.dtype.kind not in "iu" or inst.dtype.itemsize > 8 or inst.dtype == np.uint64:
        inst = inst.astype(np.int64)
    return ndi.find_objects(inst)


def _box(sl, margin_vox, shape):
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(sl, margin_vox, shape))


def cell_distance(instance: np.ndarray, k: int, sl, margin_um, voxel_size_um):
    """``(box, ρ_k)``: cell k's normalised distance ρ_k (module docstring; float32, 0 on the
    cell) over its box ``sl`` widened by one margin ``margin_um`` = (m_z, m_y, m_x). Every voxel
    with ρ_k ≤ 1 lies in that box, and all of the cell's voxels are in it, so ρ_k there is exact."""
    vs = np.asarray(voxel_size_um, float)
    m = np.asarray(margin_um, float)
    box = _box(sl, np.ceil(m / vs).astype(int) + 1, instance.shape)
    return box, ndi.distance_transform_edt(instance[box] != k, sampling=vs / m).astype(np.float32)


def mass_partition(instance: np.ndarray, voxel_size_um, margins_um: dict, slices=None) -> np.ndarray:
    """Owner label (int32, 0 = nobody) of every voxel: the partition of the module docstring.

    Parameters
    ----------
    instance : (Z, Y, X) int array, 0 = background
    voxel_size_um : (dz, dy, dx)
    margins_um : {cell id: (m_z, m_y, m_x)} in µm (:func:`cell_margins_um`)
    slices : the cells' boxes (:func:`label_slices`) when already known
    """
    inst = np.asarray(instance)
    vs = np.asarray(voxel_size_um, float)
    owner = inst.astype(np.int32, copy=True)
    best = np.full(inst.shape, np.inf, np.float32)
    best[owner > 0] = 0.0
    def rho_of(k_sl):
        k, sl = k_sl
        return (k, *cell_distance(inst, k, sl, margins_um[k], vs))

    cells = [(k, sl) for k, sl in enumerate(label_slices(inst) if slices is None else slices, start=1)
             if sl is not None and k in margins_um]
    for k, box, rho in thread_map(rho_of, cells, ahead=1):  # ρ_k on several threads, taken in the order of k
        b, o = best[box], owner[box]
        take = (rho <= 1.0) & (rho < b)
        b[take] = rho[take]
        o[take] = k
    return owner


def partition_dry_mass_pg(ri: np.ndarray, owner: np.ndarray, medium_index: float, voxel_size_um,
                          alpha_um3_per_pg: float = ALPHA_PROTEIN_UM3_PER_PG) -> dict[int, float]:
    """m_k = (1/α) Σ_{owner = k} (n − n_m) ΔV in pg, for every owner id present (only the owned
    voxels are read in float64; each m_k sums the same terms in the same order as over all)."""
    owner = np.asarray(owner)
    n = int(owner.max(initial=0))
    if n == 0:
        return {}
    dv = float(np.prod(np.asarray(voxel_size_um, float)))
    flat_owner, flat_ri = owner.reshape(-1), np.asarray(ri).reshape(-1)
    excess = np.zeros(n + 1)
    count = np.zeros(n + 1, np.int64)
    step = 1 << 22  # float64 weights a few million voxels at a time
    for i in range(0, flat_owner.size, step):
        owned = np.flatnonzero(flat_owner[i:i + step]) + i
        o = flat_owner[owned]
        excess += np.bincount(o, weights=flat_ri[owned].astype(np.float64) - float(medium_index), minlength=n + 1)
        count += np.bincount(o, minlength=n + 1)
    present = count > 0
    return {k: float(excess[k] * dv / alpha_um3_per_pg) for k in range(1, n + 1) if present[k]}
