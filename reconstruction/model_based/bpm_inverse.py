"""Model-based multiple-scattering reconstruction: inverse of the multi-slice BPM.

The RI volume n is fitted to the measured fields m_a = u/u0 of the A illuminations by

    min_n  J(n) = (1/L) · (1/A) Σ_a Σ_pixels |BPM_a(n) − m_a|²  +  λ TV_h(n)   s.t.  n ≥ n_m,

where BPM_a is the split-step model of :mod:`holo.reconstruction.forward.bpm` (pupil-filtered
envelope in the focal plane z = 0), written in torch (:mod:`._torch_bpm`) so that its gradient
comes from autograd. The data term is scaled by an upper bound L of the Lipschitz constant of
its gradient, so a step of one is safe: linearising the screens, a change δn of one voxel
column changes the envelope of frame a by at most k0·dz·c_a per slab, c_a = k_m/k_in,z (the
1/cos θ tilt factor of the screen), and adding Z slabs coherently (the zero spatial
frequency) gives ‖∂BPM_a‖² ≤ (k0 dz c_a)² Z; averaged over the frames,
L = 2 (k0 dz)² Z · mean_a(c_a²).

The optimiser is FISTA (Beck & Teboulle 2009): gradient step on the momentum point, then the
proximal operator of λ TV_h + ι{n ≥ n_m} (the FGP of :mod:`holo.reconstruction.regularization.tv`
applied to n_m − n, which must be ≤ 0), with gradient restart. The steps are stochastic
(incremental): the frames are cut once into G = ⌈A/B⌉ groups of B = ``frames_per_step``
frames that each sample the whole scan, and each step uses the data term of one group,
(1/B) Σ_{a∈g} |BPM_a(n) − m_a|², whose gradient is an unbiased estimate of the full one, with
the step 1/L_g of that group's bound (L_g = 2 (k0 dz)² Z mean_{a∈g}(c_a²)). One iteration is
one pass over the G groups (an epoch): it costs one full gradient but moves the volume G
times, so the fit needs several times fewer passes than with the full gradient (measured:
49 frames of a Mie bead, 4 frames per step: field misfit 0.20 → 0.031 in 4 passes, against
0.20 → 0.17 in 3 full-gradient iterations). Within a step the gradient is accumulated
exactly over autograd passes of ``batch_size`` frames, which bounds the memory. It stops when
the relative change of the epoch's mean data term falls below ``tol``.

The model works on the measured lateral grid (pixel size of the fields); the initial volume
(normally the Rytov tomogram) is resampled onto it, and along Z slabs thinner than
``max_slice_um`` (default λ/n_m, where the split-step phase error is small) are used by
subdividing the initial voxels.

λ = weight · s, with s the 99.9th percentile of n_init − n_m (dimensionless ``weight``).
Both geometries are modelled: an illumination scan (tilted plane waves) and a sample rotation
(the volume turned by each frame's angle, differentiably, at normal incidence).

References
----------
U. S. Kamilov et al., "Learning approach to optical tomography", Optica 2 (2015).
L. Tian, L. Waller, "3D intensity and phase imaging from light field measurements in an LED
array microscope", Optica 2 (2015).
"""

from __future__ import annotations

import contextlib
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from holo.conventions import GEOMETRIES, medium_wavenumber, vacuum_wavenumber
from holo.errors import ValidationError
from holo.model import Tomogram
from holo.threads import cpu_threads
from holo.reconstruction.forward.propagation import grid_coordinates
from holo.reconstruction.methods import MODEL_BASED_METHODS

__all__ = ["METHODS", "DEFAULT_BPM_ITERATIONS", "DEFAULT_BPM_WEIGHT", "DEFAULT_BPM_FRAMES_PER_STEP", "frame_groups", "reconstruct_bpm", "resample_volume", "bpm_lipschitz"]

#: Name of the method of this module (its part of the reconstruction method names).
METHODS = MODEL_BASED_METHODS

#: Default FISTA iterations and relative TV weight of the BPM inversion.
DEFAULT_BPM_ITERATIONS = 30
DEFAULT_BPM_WEIGHT = 0.002

#: Default frames per stochastic step (module docstring).
DEFAULT_BPM_FRAMES_PER_STEP = 4


def resample_volume(vol, voxel_size_um, shape_zyx, new_voxel_size_um, *, cval: float) -> np.ndarray:
    """Trilinear resampling of a (Z, Y, X) volume onto another grid with the same origin.

    Both grids put the coordinate origin at index N//2 of each axis
    (:func:`holo.reconstruction.forward.propagation.grid_coordinates`); points outside the input take
    ``cval``.
    """
    vol = np.asarray(vol, dtype=np.float32)
    old = [float(v) for v in voxel_size_um]
    new = [float(v) for v in new_voxel_size_um]
    shape = tuple(int(s) for s in shape_zyx)
    if vol.shape == shape and np.allclose(old, new, rtol=1e-9):
        return vol.copy()
    # index_in = (x_new)/d_old + N_old//2 with x_new = (i − N_new//2) d_new
    coords = [(grid_coordinates(n, dn) / do + no // 2) for n, dn, do, no in zip(shape, new, old, vol.shape)]
    zz, yy, xx = np.meshgrid(*coords, indexing="ij", sparse=True)
    grid = np.broadcast_arrays(zz, yy, xx)
    return ndimage.map_coordinates(vol, grid, order=1, mode="constant", cval=float(cval), prefilter=False).astype(np.float32)


def bpm_lipschitz(wavelength_um: float, medium_index: float, dz_um: float, n_slices: int, kin_z) -> float:
    """L = 2 (k0 dz)² Z mean_a (k_m/k_in,z,a)², the bound of the module docstring.

    Parameters
    ----------
    kin_z : (A,) array
        k_in,z of the frames, rad/µm.
    """
    k0 = vacuum_wavenumber(wavelength_um)
    km = medium_wavenumber(wavelength_um, medium_index)
    c2 = float(np.mean((km / np.asarray(kin_z, dtype=np.float64)) ** 2))
    return 2.0 * (k0 * float(dz_um)) ** 2 * c2 * int(n_slices)


def _fieldset_arrays(fieldset):
    """Valid frames of a FieldSet: (fields, illumination_na or None, angles or None, indices)."""
    src = getattr(fieldset, "source", None)
    fields = getattr(fieldset, "fields", None)
    if fields is None or len(fields.shape) != 3 or np.dtype(fields.dtype).kind != "c":
        raise ValidationError("must be complex (A, Y, X) u/u0", path=src, item="fields")
    n = int(fields.shape[0])
    geometry = getattr(fieldset, "geometry", "illumination-scan")
    na = ang = None
    if geometry == "illumination-scan":
        na = getattr(fieldset, "illumination_na", None)
        if na is None:
            raise ValidationError("is required for the BPM inversion of an illumination scan", path=src, item="illumination_na")
        na = np.asarray(na, dtype=np.float64)
        if na.shape != (n, 2):
            raise ValidationError(f"shape {na.shape} != ({n}, 2)", path=src, item="illumination_na")
    elif geometry == "sample-rotation":
        ang = getattr(fieldset, "angles", None)
        if ang is None:
            raise ValidationError("is required for the BPM inversion of a sample rotation", path=src, item="angles")
        ang = np.asarray(ang, dtype=np.float64).reshape(-1)
        if ang.shape != (n,):
            raise ValidationError(f"shape {ang.shape} != ({n},)", path=src, item="angles")
    else:
        raise ValidationError(f"must be one of {', '.join(GEOMETRIES)}, got {geometry!r}", path=src, item="geometry")
    valid = getattr(fieldset, "valid", None)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if valid.shape != (n,) or not valid.any():
        raise ValidationError("no valid frame to fit", path=src, item="valid")
    idx = np.flatnonzero(valid)
    return (
        np.asarray(fields)[idx].astype(np.complex64),
        None if na is None else na[idx],
        None if ang is None else ang[idx],
        idx,
    )


def reconstruct_bpm(
    fieldset,
    init: Tomogram,
    iterations: int | None = None,
    weight: float | None = None,
    batch_size: int | None = None,
    progress=None,
    *,
    frames_per_step: int | None = None,
    tol: float = 2e-2,
    max_slice_um: float | None = None,
    inner_iterations: int = 4,
    device: str | None = None,
    dtype: str = "float32",
    wide_angle: bool = True,
) -> Tomogram:
    """RI tomogram by inverting the multi-slice BPM (module docstring), from an initial guess.

    Parameters
    ----------
    fieldset : FieldSet
        Measured u/u0 (``fields`` (A, Y, X), ``pixel_size_um``, ``geometry``,
        ``illumination_na`` or ``angles`` + ``rotation_axis``, ``valid``, ``wavelength_um``,
        ``medium_index``, ``objective_na``).
    init : Tomogram
        Starting volume (normally the Rytov reconstruction); defines the Z extent.
    iterations : int, optional
        Maximum passes over the frames (default :data:`DEFAULT_BPM_ITERATIONS`).
    weight : float, optional
        Relative TV weight (default :data:`DEFAULT_BPM_WEIGHT`; 0 disables TV).
    batch_size : int, optional
        Illuminations per autograd pass (default from a memory budget: 1 GiB on the CPU, a
        quarter of the free GPU memory on CUDA).
    progress : callable(iteration, n_iterations, residual), optional
        ``residual`` is the relative field misfit √(Σ|BPM − m|² / Σ|m − 1|²).
    frames_per_step : int, optional
        Frames of one stochastic step (default :data:`DEFAULT_BPM_FRAMES_PER_STEP`; the
        number of frames gives the deterministic full-gradient FISTA).
    tol : float
        Stop when the relative change of the epoch's mean data term is below ``tol`` (default
        2 %: the misfit left to a Mie bead is the BPM's model error, ≈ 3 % of the field,
        reached in 4–6 passes).
    max_slice_um : float, optional
        Thickest slab of the model (default λ/n_m); init voxels are subdivided along Z.
    inner_iterations : int
        TV proximal (FGP) iterations per outer iteration.
    device : str, optional
        torch device; default CUDA when available, else CPU.
    dtype : {"float32", "float64"}
    wide_angle : bool
        Wide-angle correction of the scattered field, as in
        :func:`holo.reconstruction.forward.bpm.bpm_fields` (default on there and here).

    Returns
    -------
    Tomogram
        RI ≥ n_m on the field's lateral grid, voxel (dz_init/s, px, px); provenance with
        ``method="bpm"``, ``parameters``, ``iterations_run``, ``converged``,
        ``data_residual`` and ``init_method``.

    Raises
    ------
    ValidationError
        Missing illumination NAs / angles, unknown geometry, no valid frame.
    ValueError
        Bad numeric arguments.
    """
    import torch

    from holo.reconstruction.model_based._torch_bpm import TorchBPM

    t0 = time.perf_counter()
    it_max, w = _check_options(iterations, weight, dtype, init)
    meas, na, angles, used = _fieldset_arrays(fieldset)
    lam = float(fieldset.wavelength_um)
    nm = float(fieldset.medium_index)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tdtype = torch.float64 if dtype == "float64" else torch.float32

    n0, voxel, sub = _model_grid_volume(init, meas.shape[1:], float(fieldset.pixel_size_um), lam, nm, max_slice_um)
    shape = n0.shape
    model = TorchBPM(
        shape, voxel, wavelength_um=lam, medium_index=nm, objective_na=float(fieldset.objective_na), illumination_na=na,
        angles=angles, rotation_axis=getattr(fieldset, "rotation_axis", "y") or "y", device=device, dtype=tdtype,
        wide_angle=wide_angle,
    )
    batch_size = max(1, int(_default_batch_size(model, angles is not None, device) if batch_size is None else batch_size))
    groups = frame_groups(model.n_frames, DEFAULT_BPM_FRAMES_PER_STEP if frames_per_step is None else frames_per_step)
    L = bpm_lipschitz(lam, nm, voxel[0], shape[0], model.kin[:, 2])
    lam_tv = w * max(float(np.percentile(n0 - nm, 99.9)), 1e-4)

    m_t = torch.from_numpy(meas).to(device=device, dtype=model.cdtype)
    m_norm = float(((m_t - 1).abs() ** 2).sum()) / model.n_frames
    project = _constraint_prox(shape, voxel, nm, lam_tv, inner_iterations, device, tdtype)
    n = torch.from_numpy(n0).to(device=device, dtype=tdtype)
    threads = cpu_threads() if torch.device(device).type == "cpu" else 1
    steps = [(_data_gradient(model, m_t, g, batch_size, threads), bpm_lipschitz(lam, nm, voxel[0], shape[0], model.kin[g, 2])) for g in groups]
    n, hist, converged = _fista(n, steps, project, it_max, tol, m_norm, progress)

    ri = n.detach().to("cpu").numpy().astype(np.float32)
    params = dict(
        iterations=it_max, weight=w, lambda_abs=lam_tv, tol=float(tol), batch_size=batch_size,
        inner_iterations=int(inner_iterations), z_subdivision=sub, slab_um=voxel[0], lipschitz=L,
        frames_per_step=len(groups[0]), steps_per_iteration=len(groups), nonnegativity="n >= medium_index",
        device=str(device), dtype=dtype, wide_angle=bool(wide_angle),
        geometry="sample-rotation" if angles is not None else "illumination-scan",
    )
    prov = _provenance(fieldset, init, used, params, hist, converged, m_norm, t0)
    return Tomogram(ri=ri, voxel_size_um=voxel, medium_index=nm, wavelength_um=lam, provenance=prov, source=getattr(fieldset, "source", None))


def _provenance(fieldset, init: Tomogram, used, params: dict, hist: list, converged: bool, m_norm: float, t0: float) -> dict:
    """Provenance of the BPM tomogram (``reconstruct_bpm`` Returns)."""
    return {
        "method": METHODS[0],
        "init_method": init.provenance.get("method"),
        "parameters": params,
        "iterations_run": len(hist),
        "converged": converged,
        "data_residual": math.sqrt(hist[-1] / m_norm) if hist and m_norm > 0 else None,
        "excluded_frames": [int(i) for i in np.setdiff1d(np.arange(len(getattr(fieldset, "fields"))), used)],
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }


def _check_options(iterations, weight, dtype: str, init) -> tuple[int, float]:
    """Validated (maximum iterations, relative TV weight) of :func:`reconstruct_bpm`."""
    it_max = DEFAULT_BPM_ITERATIONS if iterations is None else int(iterations)
    if it_max < 0:
        raise ValueError(f"iterations must be ≥ 0, got {iterations}")
    w = DEFAULT_BPM_WEIGHT if weight is None else float(weight)
    if not (w >= 0 and np.isfinite(w)):
        raise ValueError(f"weight must be a finite number ≥ 0, got {weight}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if not isinstance(init, Tomogram):
        raise ValueError("init must be a Tomogram (e.g. the Rytov reconstruction)")
    return it_max, w


def _model_grid_volume(init: Tomogram, shape_yx, pixel_size_um: float, wavelength_um: float, medium_index: float, max_slice_um):
    """The initial volume on the model grid: (n0 ≥ n_m float32 (Z, Y, X), voxel (dz, px, px), s).

    The grid is the fields' lateral grid and ``init``'s Z extent in slabs of at most
    ``max_slice_um`` (default λ/n_m): each init voxel is cut into s slabs of dz = dz_init/s.
    """
    dz0 = float(init.voxel_size_um[0])
    max_slice = wavelength_um / medium_index if max_slice_um is None else float(max_slice_um)
    if not max_slice > 0:
        raise ValueError(f"max_slice_um must be positive, got {max_slice_um}")
    sub = max(1, int(math.ceil(dz0 / max_slice - 1e-9)))
    dz = dz0 / sub
    shape = (int(init.shape_zyx[0]) * sub,) + tuple(int(s) for s in shape_yx)
    voxel = (dz, pixel_size_um, pixel_size_um)
    n0 = resample_volume(init.frame(), init.voxel_size_um, shape, voxel, cval=medium_index)
    np.maximum(n0, np.float32(medium_index), out=n0)
    return n0, voxel, sub


def _default_batch_size(model, rotation: bool, device: str) -> int:
    """Frames per autograd pass: autograd keeps ≈ 6 complex (Yp, Xp) arrays per slab and
    frame (sample rotation adds the rotated volume, its sampling grid and gradient); the
    budget is 1 GiB on the CPU, a quarter of the free memory on a GPU."""
    import torch

    double = model.dtype == torch.float64
    nz = int(model.shape[0])
    ny, nx = model.setup.padded_shape_yx
    per_frame = nz * ny * nx * (16 if double else 8) * 6
    if rotation:
        per_frame += nz * ny * nx * (8 if double else 4) * 6
    budget = 1 << 30
    if torch.device(device).type == "cuda":
        budget = max(budget, torch.cuda.mem_get_info(torch.device(device))[0] // 4)
    return int(max(1, min(model.n_frames, budget // max(per_frame, 1))))


def _constraint_prox(shape, voxel, medium_index: float, lam_tv: float, inner_iterations: int, device, tdtype):
    """prox of λ TV_h + ι{n ≥ n_m} as a function of the torch volume n (acts on x = n_m − n ≤ 0)."""
    import torch

    from holo.reconstruction.regularization.gp import _TorchBackend
    from holo.reconstruction.regularization.tv import TVProx

    nm = medium_index
    on_cuda = torch.device(device).type == "cuda"
    prox = None
    if lam_tv > 0:
        backend = _TorchBackend(shape, device) if on_cuda else None
        prox = TVProx(shape, voxel, lam_tv, iterations=inner_iterations, nonpositive=True, backend=backend)

    def project(n_t):
        if prox is None:
            return n_t.clamp_(min=nm)
        x = (nm - n_t).contiguous()
        if on_cuda:
            x = prox(x)
        else:
            x = torch.from_numpy(prox(x.detach().numpy().astype(np.float32)))
        return (nm - x.to(dtype=tdtype, device=device)).contiguous()

    return project


def _data_gradient(model, m_t, frames, batch_size: int, n_threads: int = 1):
    """y ↦ (data term, its gradient) of the frames ``frames`` (B of them):
    (1/B) Σ_{a ∈ frames} Σ |BPM_a(y) − m_a|², accumulated exactly over autograd passes of
    ``batch_size`` frames.

    With ``n_threads`` > 1 (the CPU) each batch is cut into ``n_threads`` chunks that run in
    parallel Python threads, each with its own graph and leaf (torch releases the GIL inside
    its kernels), and their gradients are summed in chunk order. The kernels themselves then
    run single-threaded: on arrays of a few (Y, X) planes OpenMP's per-operation fork/join
    costs more than it gains, and under load a spinning OpenMP team waits a scheduler tick
    per operation (measured: 9× slower with 2 OpenMP threads at load 5 on 2 cores).
    """
    import torch

    frames = np.asarray(frames, dtype=np.int64)
    A = len(frames)
    chunk = max(1, -(-min(batch_size, A) // max(1, n_threads)))
    chunks = [frames[s : s + chunk] for s in range(0, A, chunk)]
    for idx in chunks:
        model._kernels(idx)  # built once, here, not concurrently in the threads

    def chunk_loss(y, idx):
        leaf = y.detach().requires_grad_(True)
        r = model.fields(leaf, idx) - m_t[idx]
        lb = (r.real.square() + r.imag.square()).sum() / A
        (g,) = torch.autograd.grad(lb, leaf)
        return float(lb.detach()), g

    if n_threads <= 1:

        def loss_and_grad(y):
            parts = [chunk_loss(y, idx) for idx in chunks]
            return _sum_parts(parts)

        return loss_and_grad

    def loss_and_grad(y):
        with _single_threaded_kernels(), ThreadPoolExecutor(n_threads, initializer=_one_kernel_thread) as pool:
            return _sum_parts(list(pool.map(lambda idx: chunk_loss(y, idx), chunks)))

    return loss_and_grad


def _sum_parts(parts):
    """(Σ losses, Σ gradients) of [(loss, gradient), …], summed in order."""
    total, grad = 0.0, None
    for loss, g in parts:
        total += loss
        grad = g if grad is None else grad.add_(g)
    return total, grad


def _one_kernel_thread():
    """Initializer of the gradient threads: one intra-op thread each."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def _single_threaded_kernels():
    """torch's intra-op threads set to 1 for the duration (restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def frame_groups(n_frames: int, frames_per_step: int, seed: int = 0) -> list[np.ndarray]:
    """The frames cut into ⌈A/B⌉ groups of ≤ B that each sample the whole scan: a fixed random
    permutation taken with stride ⌈A/B⌉ (group g = perm[g::G], sorted)."""
    if int(frames_per_step) < 1:
        raise ValueError(f"frames_per_step must be ≥ 1, got {frames_per_step}")
    A = int(n_frames)
    G = -(-A // min(int(frames_per_step), A))
    perm = np.random.default_rng(seed).permutation(A)
    return [np.sort(perm[g::G]) for g in range(G)]


def _fista(n, steps, project, it_max: int, tol: float, m_norm: float, progress):
    """FISTA with gradient restart from ``n`` (module docstring): (n, data-term history, converged).

    ``steps`` is a list of (loss_and_grad, L) over the frame groups; one iteration (epoch)
    takes one proximal-gradient step per group, with step 1/L of that group's bound, and
    the history holds the epoch's mean data term.
    """
    from holo.reconstruction.regularization.gp import fista_momentum

    n_prev = None
    t = 1.0
    hist, converged = [], False
    for k in range(it_max):
        epoch = 0.0
        for loss_and_grad, lipschitz in steps:
            beta = 0.0
            if n_prev is not None:
                t, beta = fista_momentum(t)
                y = n + beta * (n - n_prev)
            else:
                y = n
            loss, grad = loss_and_grad(y)
            n_new = project(y - grad / lipschitz)
            delta = n_new - n
            if beta > 0 and float((beta * (n - n_prev) * delta).sum()) > float((delta * delta).sum()):
                t = 1.0  # gradient restart (see holo.reconstruction.regularization.gp.solve_fista)
            n_prev, n = n, n_new
            epoch += loss / len(steps)
        hist.append(epoch)
        if progress is not None:
            progress(k + 1, it_max, math.sqrt(epoch / m_norm) if m_norm > 0 else 0.0)
        if k >= 2 and abs(hist[-2] - hist[-1]) <= tol * hist[-2]:
            converged = True
            break
    return n, hist, converged
