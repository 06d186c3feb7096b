"""Differentiable multi-slice BPM in torch, the same physics as :mod:`holo.reconstruction.forward.bpm`.

The grids, illumination wave vectors, envelope propagators, pupils and wide-angle kernels are
built by the NumPy model's :func:`holo.reconstruction.forward.propagation.slab_kernels` and
converted to torch tensors; only the split-step loop is written here, so that autograd gives
the gradient of a loss with respect to the RI volume. Per frame (illumination k_in), with v
the envelope u/u0 (v = 1 before the sample), z_j the slab centres, dz the slab thickness and
s_j = k0²(n_j² − n_m²):

    v ← P(z_j − z_{j−1}) v,    v ← v · exp(i [√((k0 n_j)² − |k_in⊥|²) − k_in,z] dz),
    V ← V + H1 · F[s_j v] + H2 · F[s_j² v],

(the last line the wide-angle correction of the scattered field, H1 and H2 of
:func:`holo.reconstruction.forward.propagation.wide_angle_kernels`, left out with
``wide_angle=False``), then v ← pupil · P(−z_last) v (back to the focal plane z = 0). P(d)
multiplies the 2D spectrum by exp(i [k_z(q + k_in⊥) − k_in,z] d) (evanescent components
dropped). A lateral guard band of medium (``pad_px``) is added around the volume and cropped
from the result, exactly as in the NumPy model. For sample rotation each frame sees the volume turned by its
angle about the rotation axis (same matrix and grid origin as
:func:`holo.reconstruction.forward.propagation.rotate_volume`, trilinear interpolation through
``torch.nn.functional.grid_sample``, so the rotation is differentiable too) and normal
incidence.
"""

from __future__ import annotations

from typing import Unpack

import numpy as np
import torch

from holo.conventions import vacuum_wavenumber
from holo.reconstruction.forward.propagation import (
    ForwardOptions,
    grid_coordinates,
    prepare_forward,
    rotation_matrix_zyx,
    slab_kernels,
)

__all__ = ["TorchBPM"]


class TorchBPM:
    """Multi-slice BPM for a fixed illumination set, differentiable in the RI volume.

    Parameters
    ----------
    shape_zyx : (Z, Y, X)
        Volume shape (the lateral grid is the field grid).
    voxel_size_um : float or (dz, dy, dx)
    device : str or torch.device
    dtype : torch.float32 or torch.float64
        Real precision (complex64 / complex128 fields).
    wide_angle : bool
        Apply the NumPy model's wide-angle correction of each slab's scattered field
        (:func:`holo.reconstruction.forward.bpm.bpm_fields`), on by default as there.
    **options : :class:`~holo.reconstruction.forward.propagation.ForwardOptions`
        The forward-model keywords, as for :func:`holo.reconstruction.forward.bpm.bpm_fields`:
        ``wavelength_um``, ``medium_index``, ``objective_na`` (required),
        ``illumination_na`` (illumination scan) or ``angles`` (sample rotation, normal
        incidence) with ``rotation_axis``, ``pad_px`` (default as the NumPy model). ``snap``
        defaults to False here: the illumination NAs are used as given (the envelope
        propagator needs no periodicity of the illumination on the grid).
    """

    def __init__(
        self,
        shape_zyx,
        voxel_size_um,
        *,
        device="cpu",
        dtype=torch.float32,
        wide_angle: bool = True,
        **options: Unpack[ForwardOptions],
    ):
        shape = tuple(int(s) for s in shape_zyx)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape_zyx must be a (Z, Y, X) shape, got {shape_zyx!r}")
        # one slab of a valid index: prepare_forward only needs the lateral grid of the volume
        probe = np.ones((1,) + shape[1:], np.float32)
        self.setup = prepare_forward(probe, voxel_size_um, **{"snap": False, **options})
        self.angles = self.setup.angles
        self.rotation_axis = self.setup.rotation_axis
        self._cache = {}
        self.shape = shape
        self.voxel_size_um = self.setup.voxel_size_um
        self.wide_angle = bool(wide_angle)
        self.device = torch.device(device)
        self.dtype = dtype
        self.cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.k0 = vacuum_wavenumber(self.setup.wavelength_um)
        self.medium_index = self.setup.medium_index
        self.kin = self.setup.kin  # (A, 3) (k_x, k_y, k_z)
        self.z_um = grid_coordinates(shape[0], self.voxel_size_um[0])

    @property
    def n_frames(self) -> int:
        return self.setup.n_frames

    def _kernels(self, idx):
        """Kernels of the frames ``idx`` (cached: the same batches come back every iteration)."""
        key = tuple(int(i) for i in idx)
        if key not in self._cache:
            self._cache[key] = self._make_kernels(np.asarray(key, dtype=np.int64))
        return self._cache[key]

    def _make_kernels(self, idx):
        """Slab-to-slab propagator, final back-propagator × pupil, screen terms and the
        wide-angle kernels (H1, H2) or None: the NumPy model's
        :func:`holo.reconstruction.forward.propagation.slab_kernels` as tensors."""
        # H1, H2 are computed in float64 and cast once, to the model's complex dtype
        ker = slab_kernels(self.setup, self.kin[idx], wide_angle=self.wide_angle, wide_dtype=np.complex128)
        final = ker.propagator(-float(self.z_um[-1])) * ker.pupil

        def c(a):
            return torch.as_tensor(np.ascontiguousarray(a, dtype=np.complex128)).to(dtype=self.cdtype, device=self.device)

        def r(a):
            return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(dtype=self.dtype, device=self.device)

        wide = None if ker.wide is None else tuple(c(h) for h in ker.wide)
        return c(ker.step), c(final), r(ker.kin_perp2), r(ker.kin_z), wide

    def _pad(self, ri):
        py, px = self.setup.pad_px
        if py == 0 and px == 0:
            return ri
        return torch.nn.functional.pad(ri, (px, px, py, py), mode="constant", value=self.medium_index)

    def _crop(self, v):
        py, px = self.setup.pad_px
        ny, nx = self.shape[1:]
        return v[..., py : py + ny, px : px + nx]

    def rotated(self, ri: torch.Tensor, idx) -> torch.Tensor:
        """The volume as seen by frames ``idx`` of a sample rotation, (B, Z, Y, X).

        out(r) = in(R⁻¹ r) in physical coordinates about the grid origin (index N//2),
        trilinear, medium outside: index_in = D⁻¹ Rᵀ D (index_out − c) + c as in
        :func:`holo.reconstruction.forward.propagation.rotate_volume`.
        """
        shape = np.asarray(self.shape, dtype=np.float64)
        d = np.asarray(self.voxel_size_um, dtype=np.float64)
        centre = np.floor(shape / 2)
        grids = []
        axes = [torch.arange(n, dtype=self.dtype, device=self.device) for n in self.shape]
        zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
        rel = torch.stack([zz - centre[0], yy - centre[1], xx - centre[2]], dim=-1)  # (Z, Y, X, 3)
        for i in np.atleast_1d(idx):
            rot = rotation_matrix_zyx(float(self.angles[int(i)]), self.rotation_axis)
            m = torch.from_numpy((rot.T * d[np.newaxis, :]) / d[:, np.newaxis]).to(dtype=self.dtype, device=self.device)
            src = rel @ m.T + torch.from_numpy(centre).to(dtype=self.dtype, device=self.device)
            # grid_sample wants (x, y, z) normalised to [−1, 1] over index 0 … N−1
            norm = src / torch.from_numpy(np.maximum(shape - 1, 1)).to(dtype=self.dtype, device=self.device) * 2 - 1
            grids.append(norm.flip(-1))
        grid = torch.stack(grids)  # (B, Z, Y, X, 3)
        dn = (ri - self.medium_index).expand(len(grids), 1, *self.shape)
        out = torch.nn.functional.grid_sample(dn, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out[:, 0] + self.medium_index

    def fields(self, ri: torch.Tensor, idx) -> torch.Tensor:
        """u/u0 at z = 0 (B, Y, X) of frames ``idx`` for the RI volume ``ri`` (Z, Y, X).

        Differentiable in ``ri`` (a real tensor of ``dtype`` on ``device``). For a sample
        rotation each frame propagates through :meth:`rotated`.
        """
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        step, final, kperp2, kzin, wide = self._kernels(idx)
        dz = float(self.voxel_size_um[0])
        k0 = float(self.k0)
        if self.angles is not None:
            # (B, Z, Yp, Xp) → slab-major (Z, B, Yp, Xp)
            kn2 = (k0 * self._pad(self.rotated(ri, idx))).square().transpose(0, 1)
        else:
            kn2 = (k0 * self._pad(ri)).square().unsqueeze(1)
        n_slabs = kn2.shape[0]
        # screens of all slabs at once: (Z, B, Yp, Xp); √ clamped away from 0 (finite gradient)
        kz = torch.sqrt(torch.clamp(kn2 - kperp2, min=1e-6))
        screens = torch.polar(torch.ones_like(kz), (kz - kzin) * dz)
        del kz
        # unbind, not screens[j]: the backward of one indexing op fills a zero tensor of the
        # whole stack (quadratic in Z), that of unbind stacks the slab gradients once
        screens = screens.unbind(0)
        src_w = (kn2 - (k0 * self.medium_index) ** 2).unbind(0)  # k0²(n² − n_m²), (1 or B, Yp, Xp)
        spec = None
        for j in range(n_slabs):
            v = screens[j] if spec is None else torch.fft.ifft2(spec * step) * screens[j]
            spec = torch.fft.fft2(v)
            if wide is not None:
                h1, h2 = wide
                src = v * src_w[j]
                spec = spec + h1 * torch.fft.fft2(src)
                spec = spec + h2 * torch.fft.fft2(src * src_w[j])
        v = torch.fft.ifft2(spec * final)
        return self._crop(v)
