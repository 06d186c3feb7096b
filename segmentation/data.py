"""Training data for the segmentation and classification networks.

A training sample is an RI volume *as the instrument reconstructs it* with the ground-truth
labels on the same grid. Three sources:

``"pipeline"``
    digital twin end to end: phantom (:func:`holo.twin.phantoms.make_phantom`) → simulated
    holograms (:func:`holo.twin.acquire.simulate_acquisition`) → reconstruction
    (:func:`holo.pipeline.reconstruct`, first-order Rytov); the phantom's labels are
    resampled (nearest neighbour, both grids centred on the optical axis with the volume
    centre at z = 0) onto the reconstruction grid.
``"gp"``
    the same chain reconstructed with ``method="gp"`` (Rytov + Gerchberg–Papoulis
    non-negativity, which fills part of the missing cone; the default of ``holo run``).
``"otf"``
    the instrument's optical transfer function applied to the phantom RI: in 3D Fourier
    space Δn = n − n_m keeps only the frequencies K = k_s − k_in reached by the scattered
    waves k_s (|k_s| = n_m/λ, |k_s⊥| ≤ NA_obj/λ) of illuminations k_in
    (|k_in| = n_m/λ, |k_in⊥| ≤ NA_ill/λ, a Fibonacci spiral of ``n_illum`` directions) — the
    first-order Born support with its missing cone along K_z — plus white noise passed
    through the same support (std ``noise_ri``), then resampled to the reconstruction grid.

Every sample is finally put on the training voxel grid (linear for RI, nearest for labels)
and carries the normalised distance map used to seed instances (see
:func:`normalised_distance`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from holo.threads import fft_workers

from holo.labels import ORGANELLE_LABELS

__all__ = [
    "TrainingVolume",
    "otf_support",
    "apply_otf",
    "normalised_distance",
    "labels_to_grid",
    "phantom_volume",
    "save_volume",
    "load_volume",
    "load_user_folder",
    "random_crop",
]


@dataclass
class TrainingVolume:
    """RI + labels on one grid; ``classes`` maps instance id → cell class name."""

    ri: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    voxel_size_um: tuple
    medium_index: float
    classes: dict = field(default_factory=dict)
    source: str = ""


def otf_support(shape_zyx, voxel_size_um, *, wavelength_um: float = 0.532, medium_index: float = 1.337,
                objective_na: float = 1.2, illumination_na: float = 1.1, n_illum: int = 100) -> np.ndarray:
    """Boolean Fourier support (scipy.fft layout) of an illumination-scan tomograph.

    For each illumination k_in and each detected direction k_s on the lateral frequency grid
    (both on the Ewald sphere of radius n_m/λ, cycles/µm) the voxel of K = k_s − k_in is
    marked; a 1-voxel closing fills the gaps between neighbouring caps. Includes K = 0.
    """
    shape = tuple(int(s) for s in shape_zyx)
    vs = np.asarray(voxel_size_um, float)
    if objective_na > medium_index or illumination_na >= medium_index:
        raise ValueError(f"NA must stay below the medium index {medium_index}, got {objective_na}, {illumination_na}")
    km = medium_index / wavelength_um
    fy = np.fft.fftfreq(shape[1], vs[1])
    fx = np.fft.fftfreq(shape[2], vs[2])
    FY, FX = np.meshgrid(fy, fx, indexing="ij")
    det = FY**2 + FX**2 <= (objective_na / wavelength_um) ** 2
    sy, sx = FY[det], FX[det]
    sz = np.sqrt(km**2 - sy**2 - sx**2)
    # Fibonacci spiral of illumination directions inside the condenser disk (+ normal incidence)
    i = np.arange(n_illum)
    r = np.sqrt((i + 0.5) / n_illum) * illumination_na / wavelength_um
    th = i * np.pi * (3 - np.sqrt(5))
    iy = np.concatenate([[0.0], r * np.sin(th)])
    ix = np.concatenate([[0.0], r * np.cos(th)])
    iz = np.sqrt(km**2 - iy**2 - ix**2)
    dfz, dfy, dfx = 1.0 / (shape[0] * vs[0]), 1.0 / (shape[1] * vs[1]), 1.0 / (shape[2] * vs[2])
    hit = np.zeros(shape, bool)
    for ky, kx, kz in zip(iy, ix, iz):
        Kz = np.rint((sz - kz) / dfz).astype(np.int64)
        Ky = np.rint((sy - ky) / dfy).astype(np.int64)
        Kx = np.rint((sx - kx) / dfx).astype(np.int64)
        ok = (np.abs(Kz) <= shape[0] // 2) & (np.abs(Ky) <= shape[1] // 2) & (np.abs(Kx) <= shape[2] // 2)
        hit[Kz[ok] % shape[0], Ky[ok] % shape[1], Kx[ok] % shape[2]] = True
    # close the gaps between caps (on the centred spectrum, then back)
    c = np.fft.fftshift(hit)
    c = ndi.binary_closing(c, structure=np.ones((3, 3, 3), bool), iterations=1) | c
    return np.fft.ifftshift(c)


def apply_otf(ri: np.ndarray, voxel_size_um, medium_index: float, *, rng=None, noise_ri: float = 0.0015,
              **optics) -> np.ndarray:
    """RI as the tomograph sees it: Δn low-passed by :func:`otf_support` + band-limited noise."""
    import scipy.fft as sfft

    rng = np.random.default_rng(rng)
    dn = np.asarray(ri, np.float32) - np.float32(medium_index)
    sup = otf_support(dn.shape, voxel_size_um, medium_index=medium_index, **optics)
    spec = sfft.fftn(dn, workers=fft_workers())
    if noise_ri > 0:
        noise = sfft.fftn(rng.standard_normal(dn.shape).astype(np.float32), workers=fft_workers())
        # white noise of unit variance keeps a fraction sup.mean() of its power after the mask
        noise *= noise_ri / np.sqrt(max(sup.mean(), 1e-6))
        spec = spec + noise
    out = sfft.ifftn(spec * sup, workers=fft_workers()).real.astype(np.float32)
    return out + np.float32(medium_index)


def normalised_distance(instance: np.ndarray, voxel_size_um) -> np.ndarray:
    """d(r) = EDT_k(r) / max EDT_k inside each instance k (0 outside), float32 in [0, 1].

    EDT_k is the Euclidean distance (µm, physical voxel size) to the nearest voxel not in k,
    so touching cells get a valley of d at their common face.
    """
    vs = tuple(float(v) for v in voxel_size_um)
    inst = np.asarray(instance)
    out = np.zeros(inst.shape, np.float32)
    for k, sl in enumerate(ndi.find_objects(inst.astype(np.int64)), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        m = inst[sl] == k
        d = ndi.distance_transform_edt(m, sampling=vs)
        mx = d.max()
        if mx > 0:
            out[sl][m] = (d[m] / mx).astype(np.float32)
    return out


def labels_to_grid(labels: np.ndarray, voxel_from_um, shape_to, voxel_to_um) -> np.ndarray:
    """Nearest-neighbour resampling of labels between two grids sharing their centre.

    Voxel k of an axis of N voxels of size h sits at (k − N//2)·h, the convention of the
    phantoms and of the reconstruction grid (volume centre at the focal plane z = 0).
    """
    vf = np.asarray(voxel_from_um, float)
    vt = np.asarray(voxel_to_um, float)
    axes = [((np.arange(n) - n // 2) * vt[a]) / vf[a] + labels.shape[a] // 2 for a, n in enumerate(shape_to)]
    idx = [np.clip(np.rint(ax).astype(np.int64), 0, labels.shape[a] - 1) for a, ax in enumerate(axes)]
    inside = [(ax >= -0.5) & (ax <= labels.shape[a] - 0.5) for a, ax in enumerate(axes)]
    out = labels[np.ix_(*idx)]
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    return np.where(mask, out, 0).astype(labels.dtype)


def ri_to_grid(ri: np.ndarray, voxel_from_um, shape_to, voxel_to_um, medium_index: float) -> np.ndarray:
    """Linear resampling of RI between two grids sharing their centre (medium outside)."""
    vf = np.asarray(voxel_from_um, float)
    vt = np.asarray(voxel_to_um, float)
    axes = [((np.arange(n) - n // 2) * vt[a]) / vf[a] + ri.shape[a] // 2 for a, n in enumerate(shape_to)]
    grid = np.meshgrid(*axes, indexing="ij")
    return ndi.map_coordinates(np.asarray(ri, np.float32), grid, order=1, mode="constant",
                               cval=float(medium_index)).astype(np.float32)


def phantom_volume(seed: int, *, kind: str = "mixed", source: str = "otf", train_voxel_um=(0.4, 0.2, 0.2),
                   phantom_shape_zyx=(96, 256, 256), phantom_voxel_um=(0.2, 0.1, 0.1), medium_index: float = 1.337,
                   noise_ri=None, **phantom_kw) -> TrainingVolume:
    """One training volume from a digital-twin phantom, on the training voxel grid.

    Parameters
    ----------
    seed : int
        Seed of the phantom (and of the noise).
    kind : phantom kind ("cell", "rbc", "bacteria", "mixed").
    source : {"otf", "pipeline", "gp"}
        See the module docstring.
    """
    from holo.twin.phantoms import make_phantom

    rng = np.random.default_rng(seed + 7919)
    ph = make_phantom(kind, shape_zyx=tuple(phantom_shape_zyx), voxel_size_um=tuple(phantom_voxel_um),
                      medium_index=medium_index, seed=int(seed), **phantom_kw)
    pv = tuple(float(v) for v in ph.voxel_size_um)
    ext = np.asarray(ph.ri.shape) * np.asarray(pv)
    out_shape = tuple(int(s) for s in np.maximum(1, np.round(ext / np.asarray(train_voxel_um))))
    if source == "otf":
        noise = float(rng.uniform(0.001, 0.004)) if noise_ri is None else float(noise_ri)
        rec = apply_otf(ph.ri, pv, medium_index, rng=rng, noise_ri=noise)
        rec_vs = pv
    elif source in ("pipeline", "gp"):
        from holo.pipeline import reconstruct
        from holo.twin.acquire import simulate_acquisition

        acq = simulate_acquisition(ph, seed=int(seed))
        tomo = reconstruct(acq, method="rytov" if source == "pipeline" else "gp")
        rec, rec_vs = tomo.frame(0), tuple(tomo.voxel_size_um)
    else:
        raise ValueError(f"source must be 'otf', 'pipeline' or 'gp', got {source!r}")
    ri = ri_to_grid(rec, rec_vs, out_shape, train_voxel_um, medium_index)
    sem = labels_to_grid(np.asarray(ph.semantic), pv, out_shape, train_voxel_um)
    inst = labels_to_grid(np.asarray(ph.instance), pv, out_shape, train_voxel_um)
    classes = {int(k): str(v) for k, v in dict(ph.classes).items()}
    return TrainingVolume(ri, sem.astype(np.uint8), inst.astype(np.int32), tuple(train_voxel_um), medium_index,
                          classes, source)


def save_volume(vol: TrainingVolume, path) -> Path:
    """Write a training volume as a compressed ``.npz``."""
    from holo.io._atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, ri=vol.ri.astype(np.float32), semantic=vol.semantic.astype(np.uint8),
                        instance=vol.instance.astype(np.int32), voxel_size_um=np.asarray(vol.voxel_size_um, float),
                        medium_index=np.float64(vol.medium_index),
                        classes=np.array(json.dumps({str(k): v for k, v in vol.classes.items()})),
                        source=np.array(vol.source))
    return path


def load_volume(path) -> TrainingVolume:
    """Read a volume written by :func:`save_volume`."""
    with np.load(path) as z:
        return TrainingVolume(z["ri"], z["semantic"], z["instance"], tuple(z["voxel_size_um"].tolist()),
                              float(z["medium_index"]), {int(k): v for k, v in json.loads(str(z["classes"])).items()},
                              str(z["source"]))


def load_user_folder(folder) -> list[TrainingVolume]:
    """Annotated volumes of a user for fine-tuning.

    Layout of ``folder``::

        <name>.tcf | <name>.ome.tif | <name>.ome.zarr      RI tomogram (any format holo.open reads)
        <name>_semantic.ome.tif (or .tif/.ome.zarr)         uint8 0..4 (SEMANTIC_NAMES order)
        <name>_instance.ome.tif (or .tif/.ome.zarr)         int cell ids, 0 background
        <name>_cells.csv          optional, columns cell_id,class

    Label volumes must have the tomogram's (Z, Y, X) shape. Without a semantic file every
    instance voxel counts as cytoplasm; without an instance file the semantic foreground's
    connected components are the cells.
    """
    import pandas as pd

    import holo
    from holo.errors import FormatError
    from holo.model import Tomogram

    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError("is not a folder", path=folder, item="data")
    label_tags = ("_semantic", "_instance")
    vols = []
    for p in sorted(folder.iterdir()):
        name = p.name
        low = name.lower()
        stem = None
        for suf in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tcf", ".tiff", ".tif", ".zarr"):
            if low.endswith(suf):
                stem = name[: -len(suf)]
                break
        if stem is None or any(stem.endswith(t) for t in label_tags):
            continue
        tomo = holo.open(p)
        if not isinstance(tomo, Tomogram):
            continue

        def _find(tag):
            for suf in (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".ome.zarr", ".zarr", ".npy"):
                q = folder / f"{stem}{tag}{suf}"
                if q.exists():
                    return q
            return None

        def _read_labels(q):
            if q.suffix == ".npy":
                return np.load(q)
            if q.name.endswith(".zarr"):
                import zarr

                g = zarr.open(str(q), mode="r")
                arr = g["0"] if hasattr(g, "keys") and "0" in g else g
                return np.asarray(arr)
            import tifffile

            return tifffile.imread(q)

        ri = tomo.frame(0)
        qs, qi = _find("_semantic"), _find("_instance")
        if qs is None and qi is None:
            continue
        sem = None if qs is None else np.squeeze(_read_labels(qs)).astype(np.uint8)
        inst = None if qi is None else np.squeeze(_read_labels(qi)).astype(np.int32)
        if inst is None:
            inst = ndi.label(sem > 0, structure=np.ones((3, 3, 3), bool))[0].astype(np.int32)
        if sem is None:
            sem = (inst > 0).astype(np.uint8)
        for arr, q in ((sem, qs), (inst, qi)):
            if arr.shape != ri.shape:
                raise FormatError(f"label shape {arr.shape} differs from the tomogram {ri.shape}", path=q or p, item="labels")
        classes = {}
        csv = folder / f"{stem}_cells.csv"
        if csv.is_file():
            df = pd.read_csv(csv)
            if not {"cell_id", "class"} <= set(df.columns):
                raise FormatError("needs columns cell_id and class", path=csv, item="columns")
            classes = {int(r.cell_id): str(r["class"]) for _, r in df.iterrows()}
        vols.append(TrainingVolume(ri, sem, inst, tuple(tomo.voxel_size_um), float(tomo.medium_index), classes, str(p)))
    if not vols:
        raise FormatError("no tomogram with label volumes found (see the documented layout)", path=folder, item="data")
    return vols


def random_crop(arrays, crop_zyx, rng, *, fg=None, fg_fraction: float = 0.8, centre=None):
    """The same random (Z, Y, X) window of several arrays (padded when smaller).

    With ``fg`` (a boolean volume), the window is centred on a random foreground voxel with
    probability ``fg_fraction``; with ``centre`` (a (z, y, x) voxel index), on that voxel.
    Windows are clipped to the (padded) volume.
    """
    shape = np.asarray(arrays[0].shape[-3:])
    crop = np.asarray(crop_zyx)
    pad = np.maximum(crop - shape, 0)
    if pad.any():
        arrays = [np.pad(a, [(0, 0)] * (a.ndim - 3) + [(0, int(p)) for p in pad]) for a in arrays]
        if fg is not None:
            fg = np.pad(fg, [(0, int(p)) for p in pad])
        shape = np.asarray(arrays[0].shape[-3:])
    hi = shape - crop
    if centre is not None:
        start = np.clip(np.asarray(centre, int) - crop // 2, 0, hi)
    elif fg is not None and rng.random() < fg_fraction and fg.any():
        idx = np.flatnonzero(fg)
        c = np.asarray(np.unravel_index(idx[rng.integers(len(idx))], fg.shape))
        start = np.clip(c - crop // 2, 0, hi)
    else:
        start = np.array([rng.integers(0, h + 1) for h in hi])
    sl = tuple(slice(int(s), int(s + c)) for s, c in zip(start, crop))
    return [a[(Ellipsis,) + sl] for a in arrays]
