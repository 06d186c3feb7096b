"""The reconstruction stage of the pipeline: acquisition (or file) → RI :class:`Tomogram`.

``reconstruct`` opens the input, retrieves the fields (``holo.reconstruction.fields``) and runs
one reconstruction method:

* ``rytov`` / ``born``: direct Fourier diffraction tomography
  (:func:`holo.reconstruction.tomography.reconstruct_fdt`);
* ``gp`` / ``tv``: the same Fourier mapping followed by the regularised solvers of
  :mod:`holo.reconstruction.regularization`;
* ``bpm``: model-based refinement (:mod:`holo.reconstruction.model_based`) started from the
  Rytov volume.

Physics conventions: :mod:`holo.conventions`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from holo.errors import HoloError, ValidationError
from holo.model import Acquisition, Tomogram
from holo.reconstruction.methods import DIRECT_METHODS, METHODS, REGULARIZED_METHODS

__all__ = ["METHODS", "reconstruct", "retrieve"]


def _open_acquisition(acq_or_path) -> Acquisition:
    if isinstance(acq_or_path, Acquisition):
        return acq_or_path
    if isinstance(acq_or_path, (str, Path)):
        import holo
        from holo.io import detect_format
        from holo.io.acquisition import read_acquisition

        if detect_format(acq_or_path) == "acquisition":  # frames scanned after the memory check
            return read_acquisition(acq_or_path, check_frames=False)
        obj = holo.open(acq_or_path)
        if not isinstance(obj, Acquisition):
            raise HoloError("holds a reconstructed volume, not an acquisition", path=acq_or_path)
        return obj
    if hasattr(acq_or_path, "fields") and hasattr(acq_or_path, "geometry"):
        return acq_or_path  # a FieldSet
    raise ValueError(f"acq_or_path must be an Acquisition, a FieldSet or a file path, got {type(acq_or_path).__name__}")


def retrieve(acq, progress: Callable | None = None):
    """Fields u/u0 of an acquisition (:func:`holo.reconstruction.fields.retrieve_fields`:
    holograms → fields, QC); a FieldSet is returned unchanged."""
    if not isinstance(acq, Acquisition):
        return acq
    from holo.reconstruction.fields import retrieve_fields

    return retrieve_fields(acq, progress=progress)


def _stage_progress(progress, stage: str):
    if progress is None:
        return None

    def cb(done, total=None, note=""):
        progress(done, total, note=f"{stage} {note}".strip())

    return cb


def reconstruct(
    acq_or_path,
    *,
    method: str = "rytov",
    iterations: int | None = None,
    weight: float | None = None,
    shape_zyx=None,
    voxel_size_um=None,
    shrink_sigmas: float | None = None,
    progress: Callable | None = None,
) -> Tomogram:
    """Reconstruct the 3D RI of one acquisition.

    Parameters
    ----------
    acq_or_path : Acquisition, FieldSet, str or Path
        The acquisition (holograms or fields), already retrieved fields, or a file that
        ``holo.open`` reads as an acquisition.
    method : {"rytov", "born", "gp", "tv", "bpm"}
        Reconstruction method (see module docstring). Default "rytov".
    iterations : int, optional
        Iterations of gp / tv / bpm (their defaults when None); ignored by rytov / born.
    weight : float, optional
        Regularisation weight of tv / bpm; ignored otherwise.
    shape_zyx, voxel_size_um : optional
        Override of the grid chosen from the optics
        (:func:`holo.reconstruction.tomography.default_grid`).
    shrink_sigmas : float, optional
        ``gp`` and ``tv``: κ of their ℓ1 mode (λ = κ σ̂ detection of the objects, then the
        classic GP or TV result kept on their support: the background stays at n_m;
        :mod:`holo.reconstruction.regularization.gp`,
        :data:`~holo.reconstruction.regularization.SPARSE_GP_SHRINK_SIGMAS` = 3); 0: classic
        GP or plain TV. None (default): the method's default, the ℓ1 mode
        (:data:`~holo.reconstruction.regularization.DEFAULT_GP_SHRINK_SIGMAS`,
        :data:`~holo.reconstruction.regularization.DEFAULT_TV_SHRINK_SIGMAS`).
    progress : callable(done, total, note=""), optional
        Progress reports.

    Returns
    -------
    Tomogram
        float32 absolute RI with provenance: ``method``, ``parameters``,
        ``excluded_frames``, ``source_file``, ``elapsed_s`` (the reconstruction) and
        ``data_consistency`` (re-projection RMS phase residual in rad, dry-mass ratio,
        per-frame residuals and flagged frames, see
        :mod:`holo.reconstruction.consistency`).

    Raises
    ------
    ValueError
        Unknown method or bad grid; HoloError / ValidationError for bad data.
    """
    _check_arguments(method, iterations, weight, shrink_sigmas)
    t0 = time.perf_counter()
    acq = _open_acquisition(acq_or_path)
    source = getattr(acq, "source", None) or (str(acq_or_path) if isinstance(acq_or_path, (str, Path)) else None)
    _check_memory(acq, method, shape_zyx, voxel_size_um, source)
    if isinstance(acq, Acquisition) and isinstance(acq_or_path, (str, Path)):
        from holo.io.acquisition import check_acquisition_frames

        check_acquisition_frames(acq)
    fs = retrieve(acq, progress=_stage_progress(progress, "fields"))
    grid_kw = dict(shape_zyx=shape_zyx, voxel_size_um=voxel_size_um)
    tomo = _run_method(fs, method, iterations, weight, grid_kw, progress, shrink_sigmas=shrink_sigmas)
    if tomo.ri.dtype.kind != "f":
        raise ValidationError(f"the {method} reconstruction returned {tomo.ri.dtype}, not float RI", item="ri")
    prov = _final_provenance(tomo.provenance, method, iterations, weight, source, time.perf_counter() - t0)
    prov["data_consistency"] = _data_consistency(tomo, fs, method)
    return tomo.replace(provenance=prov, source=source)


def _data_consistency(tomo: Tomogram, fs, method: str) -> dict:
    """Re-projection residual and dry-mass ratio of the volume against the measured phase
    (:func:`holo.reconstruction.consistency.data_consistency`; BPM for ``bpm``, Rytov otherwise)."""
    from holo.reconstruction.consistency import data_consistency

    return data_consistency(tomo.ri, tomo.voxel_size_um, fs, model="bpm" if method == "bpm" else "rytov")


def _check_memory(acq, method: str, shape_zyx, voxel_size_um, source) -> None:
    """Refuse, before any frame is read, a reconstruction whose estimated peak
    (:func:`holo.memory.reconstruction_bytes` of the grid and the frames) exceeds the
    available memory."""
    from holo.memory import check_memory, reconstruction_bytes
    from holo.reconstruction.tomography.grid import default_grid

    frames = getattr(acq, "fields", None)
    frames = frames if frames is not None else getattr(acq, "holograms", None)
    if frames is None:
        return
    grid = default_grid(tuple(frames.shape[-2:]), acq.pixel_size_um, wavelength_um=acq.wavelength_um,
                        medium_index=acq.medium_index, objective_na=acq.objective_na, geometry=acq.geometry,
                        rotation_axis=getattr(acq, "rotation_axis", "y"), shape_zyx=shape_zyx, voxel_size_um=voxel_size_um)
    n_pixels = 1
    for s in frames.shape:
        n_pixels *= int(s)
    check_memory(reconstruction_bytes(grid.shape_zyx, method, n_pixels, acq.geometry), path=source, item=f"{method} grid {tuple(grid.shape_zyx)}",
                 what="reconstructing it")


def _check_arguments(method: str, iterations, weight, shrink_sigmas: float | None = None) -> None:
    """ValueError for an unknown method, iterations < 1, a negative weight or an ℓ1 mode
    asked of another method than gp or tv."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if iterations is not None and int(iterations) < 1:
        raise ValueError(f"iterations must be ≥ 1, got {iterations!r}")
    if weight is not None and not float(weight) >= 0:
        raise ValueError(f"weight must be ≥ 0, got {weight!r}")
    if shrink_sigmas is not None and (not float(shrink_sigmas) >= 0 or (shrink_sigmas and method not in REGULARIZED_METHODS)):
        raise ValueError(f"shrink_sigmas (the ℓ1 mode of gp and tv) must be ≥ 0 and applies to methods "
                         f"{', '.join(REGULARIZED_METHODS)} only, got {shrink_sigmas!r} with {method!r}")


def _run_method(fs, method: str, iterations, weight, grid_kw: dict, progress, *, shrink_sigmas: float | None = None) -> Tomogram:
    """The tomogram of fields ``fs`` by ``method`` (dispatch of :func:`reconstruct`)."""
    from holo.reconstruction.tomography import reconstruct_fdt

    map_progress = _stage_progress(progress, "fourier map")
    if method in DIRECT_METHODS:
        return reconstruct_fdt(fs, method=method, progress=map_progress, **grid_kw)
    if method in REGULARIZED_METHODS:
        return _run_regularized(fs, method, iterations, weight, grid_kw, map_progress, _stage_progress(progress, method),
                                shrink_sigmas=shrink_sigmas)
    return _run_bpm(fs, iterations, weight, grid_kw, map_progress, _stage_progress(progress, "bpm"))


def _run_regularized(fs, method: str, iterations, weight, grid_kw: dict, map_progress, solve_progress, *,
                     shrink_sigmas: float | None = None) -> Tomogram:
    """gp / tv: the Rytov Fourier data of ``fs`` completed by the regularised solver."""
    from holo.reconstruction.regularization import reconstruct_regularized
    from holo.reconstruction.tomography import fourier_map

    from holo.reconstruction.tomography.fdt import REGULARIZED_AXIAL_HALFWIDTH

    # accurate samples on a sparser support: with n ≥ n_m, gridding errors would add mass
    fd = fourier_map(fs, method="rytov", axial_halfwidth=REGULARIZED_AXIAL_HALFWIDTH[fs.geometry], progress=map_progress, **grid_kw)
    tomo = reconstruct_regularized(fd, method=method, iterations=iterations, weight=weight, progress=solve_progress,
                                   shrink_sigmas=shrink_sigmas)
    prov = dict(tomo.provenance)
    prov.setdefault("excluded_frames", list(fd.excluded_frames))
    prov.setdefault("fourier_map", dict(fd.provenance))
    return tomo.replace(provenance=prov)


def _run_bpm(fs, iterations, weight, grid_kw: dict, map_progress, solve_progress) -> Tomogram:
    """bpm: model-based refinement started from the Rytov volume of ``fs``."""
    from holo.reconstruction.model_based import reconstruct_bpm
    from holo.reconstruction.tomography import reconstruct_fdt

    init = reconstruct_fdt(fs, method="rytov", progress=map_progress, **grid_kw)
    tomo = reconstruct_bpm(fs, init, iterations=iterations, weight=weight, progress=solve_progress)
    prov = dict(tomo.provenance)
    prov.setdefault("excluded_frames", init.provenance.get("excluded_frames", []))
    prov.setdefault("initial", {"method": "rytov", "parameters": init.provenance.get("parameters", {})})
    return tomo.replace(provenance=prov)


def _final_provenance(provenance: dict, method: str, iterations, weight, source, elapsed_s: float) -> dict:
    """The stage's provenance with the run's method, parameters, source file and time."""
    prov = dict(provenance)
    prov["method"] = method
    params = dict(prov.get("parameters") or {})
    params.setdefault("iterations", iterations)
    params.setdefault("weight", weight)
    prov["parameters"] = params
    prov["source_file"] = source
    prov["elapsed_s"] = float(elapsed_s)
    return prov
