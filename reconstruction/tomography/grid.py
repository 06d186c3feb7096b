"""Default reconstruction grid chosen from the optics (conventions: :mod:`holo.conventions`).

Band of the measured object spectrum
------------------------------------
A frame records the scattered waves with wave vectors k_out inside the detection pupil,
|k_out,⊥| ≤ k0·NA (k0 = 2π/λ, NA = objective NA), on the Ewald sphere |k_out| = k_m = k0 n_m.
The object spectrum is sampled at K = k_out − k_in with |k_in,⊥| ≤ k0·NA_ill ≤ k0·NA.

* Lateral: |K_⊥| ≤ k0 (NA + NA_ill) ≤ 2 k0 NA, i.e. spatial frequencies up to 2·NA/λ
  cycles/µm. Nyquist sampling of that band needs ``dx ≤ λ / (4 NA)``.
* Axial (illumination scan): K_z = k_z,out − k_z,in with both k_z in
  [k0 √(n_m² − NA²), k_m], so |K_z| ≤ k0 (n_m − √(n_m² − NA²)), i.e. frequencies up to
  (n_m − √(n_m² − NA²))/λ cycles/µm and Nyquist needs
  ``dz ≤ λ / (2 (n_m − √(n_m² − NA²)))``.
* Sample rotation: rotating the caps about Y (or X) turns the lateral band into the axial
  one, so the band is isotropic in the rotation plane and ``dz = dx`` with as many Z
  slices as there are pixels across the rotation axis.

The lateral field of view is that of the frames (same extent, ``N·pixel = N_vol·dx``), so
the lateral K samples of every frame fall exactly on grid planes and only K_z (and, for
sample rotation, the rotated coordinates) needs interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from holo.conventions import GEOMETRIES

__all__ = ["Grid", "PaddedGrid", "default_grid", "padded_grid", "plane_oversampled_grid", "lateral_voxel_limit_um", "axial_voxel_limit_um", "illumination_scan_support"]


@dataclass(frozen=True)
class Grid:
    """A reconstruction grid: ``shape_zyx`` voxels of ``voxel_size_um`` = (dz, dy, dx) µm.

    The volume centre (index ``N//2`` on each axis) is the focal plane / optical axis,
    where the fields u/u0 are given (see :mod:`holo.conventions`).
    """

    shape_zyx: tuple[int, int, int]
    voxel_size_um: tuple[float, float, float]

    def k_spacing(self) -> tuple[float, float, float]:
        """Spacing of the unshifted FFT grid in rad/µm: 2π / (N·d) per axis (Z, Y, X)."""
        return tuple(2.0 * np.pi / (n * d) for n, d in zip(self.shape_zyx, self.voxel_size_um))

    def centre_um(self) -> tuple[float, float, float]:
        """Offset (µm) of the volume centre from the first voxel: (N//2)·d per axis."""
        return tuple((n // 2) * d for n, d in zip(self.shape_zyx, self.voxel_size_um))


def lateral_voxel_limit_um(wavelength_um: float, objective_na: float) -> float:
    """Largest lateral voxel that samples the object band 2·NA/λ at Nyquist: λ/(4 NA)."""
    return float(wavelength_um) / (4.0 * float(objective_na))


def axial_voxel_limit_um(wavelength_um: float, medium_index: float, objective_na: float) -> float:
    """Largest axial voxel for an illumination scan: λ / (2 (n_m − √(n_m² − NA²)))."""
    nm, na = float(medium_index), float(objective_na)
    return float(wavelength_um) / (2.0 * (nm - math.sqrt(max(nm * nm - na * na, 0.0))))


def _fast_even(n: float) -> int:
    """Smallest FFT-friendly even length ≥ n."""
    m = max(2, int(math.ceil(n - 1e-9)))
    m = scipy.fft.next_fast_len(m)
    while m % 2:
        m = scipy.fft.next_fast_len(m + 1)
    return int(m)


def default_grid(
    frame_shape_yx,
    pixel_size_um: float,
    *,
    wavelength_um: float,
    medium_index: float,
    objective_na: float,
    geometry: str = "illumination-scan",
    rotation_axis: str = "y",
    shape_zyx=None,
    voxel_size_um=None,
) -> Grid:
    """Choose the reconstruction grid from the optics, or validate the one asked for.

    Parameters
    ----------
    frame_shape_yx : (Ny, Nx)
        Shape of the field frames.
    pixel_size_um : float
        Pixel pitch of the field frames in the sample plane, µm.
    wavelength_um, medium_index, objective_na : float
        Vacuum wavelength λ (µm), medium RI n_m, detection NA.
    geometry : {"illumination-scan", "sample-rotation"}
    rotation_axis : {"y", "x"}
        Sample-rotation axis (decides which lateral extent the Z axis copies).
    shape_zyx : (Z, Y, X), optional
        Override of the shape. Without ``voxel_size_um`` the lateral field of view of the
        frames is kept (dy, dx = FOV / N) and dz follows the default rule.
    voxel_size_um : float or (dz, dy, dx), optional
        Override of the voxel size (a single number means isotropic voxels).

    Returns
    -------
    Grid

    Notes
    -----
    Defaults (see module docstring): dx = dy = min(pixel, λ/(4 NA)), adjusted so that
    N_vol·dx equals the frame field of view. Illumination scan: dz is the axial Nyquist
    limit λ/(2(n_m − √(n_m² − NA²))) kept within [dx, 2·dx] (finer than needed for the
    band, but an object is rarely much thinner than a few lateral voxels), and Z spans the
    lateral field of view (an object that fits laterally fits axially). Sample rotation:
    dz = dx and Z spans the extent across the rotation axis.
    """
    ny, nx = (int(s) for s in frame_shape_yx)
    if ny < 2 or nx < 2:
        raise ValueError(f"frame_shape_yx must be at least 2×2, got {(ny, nx)}")
    px = float(pixel_size_um)
    if not (px > 0 and np.isfinite(px)):
        raise ValueError(f"pixel_size_um must be a positive number, got {pixel_size_um!r}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    if rotation_axis not in ("y", "x"):
        raise ValueError(f"rotation_axis must be 'y' or 'x', got {rotation_axis!r}")
    fov_yx = (ny * px, nx * px)
    if shape_zyx is not None:
        shp = tuple(int(v) for v in np.asarray(shape_zyx).reshape(-1))
        if len(shp) != 3 or min(shp) < 2:
            raise ValueError(f"shape_zyx must be three sizes ≥ 2, got {shape_zyx!r}")
        shape_zyx = shp
    if voxel_size_um is not None:
        vs = np.asarray(voxel_size_um, dtype=float).reshape(-1)
        if vs.size == 1:
            vs = np.repeat(vs, 3)
        if vs.size != 3 or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
            raise ValueError(f"voxel_size_um must be a positive number or (dz, dy, dx), got {voxel_size_um!r}")
        dz, dy, dx = (float(v) for v in vs)
    else:
        dz, dy, dx = _default_voxel(fov_yx, px, shape_zyx, wavelength_um, medium_index, objective_na, geometry, rotation_axis)
    shape = shape_zyx if shape_zyx is not None else _default_shape(fov_yx, (dz, dy, dx), geometry, rotation_axis)
    return Grid(shape_zyx=shape, voxel_size_um=(float(dz), float(dy), float(dx)))


def _default_voxel(fov_yx, pixel_size_um, shape_zyx, wavelength_um, medium_index, objective_na, geometry, rotation_axis):
    """(dz, dy, dx) of the default rule (:func:`default_grid` Notes) for a field of view
    (µm) and, when given, the shape whose lateral sizes fix dy, dx."""
    fov_y, fov_x = fov_yx
    dx_lim = lateral_voxel_limit_um(wavelength_um, objective_na)
    if shape_zyx is not None:
        dy, dx = fov_y / int(shape_zyx[1]), fov_x / int(shape_zyx[2])
    else:
        d = min(pixel_size_um, dx_lim)
        dy, dx = fov_y / _fast_even(fov_y / d), fov_x / _fast_even(fov_x / d)
    if geometry == "sample-rotation":
        dz = dx if rotation_axis == "y" else dy
    else:
        dz = min(axial_voxel_limit_um(wavelength_um, medium_index, objective_na), 2.0 * max(dy, dx))
        dz = max(dz, min(dy, dx))
    return dz, dy, dx


def _default_shape(fov_yx, voxel_zyx, geometry: str, rotation_axis: str) -> tuple[int, int, int]:
    """(Z, Y, X) covering the field of view (µm) laterally and, along Z, the lateral field of
    view (illumination scan) or the extent across the rotation axis (sample rotation)."""
    fov_y, fov_x = fov_yx
    dz, dy, dx = voxel_zyx
    nyv = _fast_even(fov_y / dy - 1e-6)
    nxv = _fast_even(fov_x / dx - 1e-6)
    if geometry == "sample-rotation":
        nzv = _fast_even((fov_x if rotation_axis == "y" else fov_y) / dz - 1e-6)
    else:
        nzv = _fast_even(max(fov_y, fov_x) / dz - 1e-6)
    return (nzv, nyv, nxv)


@dataclass(frozen=True)
class PaddedGrid:
    """A working grid ``grid`` enclosing the output grid, and frames padded to match.

    ``crop`` (one ``slice`` per axis Z, Y, X) takes the output volume out of a working
    volume; ``frame_pad_yx`` ((before, after) pixels per frame axis) pads the frames. Both
    pads are centred so that the volume centre (index N//2) and the frame centre stay on the
    optical axis.
    """

    grid: Grid
    crop: tuple
    frame_pad_yx: tuple


def _pad_pair(n_frame: int, n_vol: int, ratio: float, factor: float) -> tuple[int, int]:
    """Even paddings (pixels, voxels) of one lateral axis: p_v voxels ≈ p_f pixels, with
    p_f ≥ (factor − 1)·n_frame and p_f·pixel = p_v·voxel exactly where a short search finds
    it (then the padded frame and volume have the same extent, as unpadded ones by default)."""
    p0 = max(0, int(math.ceil((factor - 1.0) * n_frame - 1e-9)))
    p0 += p0 % 2
    for fast in (True, False):
        for p_f in range(p0, p0 + 128, 2):
            p_v = p_f * ratio
            if abs(p_v - round(p_v)) < 1e-6 and round(p_v) % 2 == 0 and (not fast or n_frame + p_f == scipy.fft.next_fast_len(n_frame + p_f)):
                return p_f, int(round(p_v))
    p_v = int(round(p0 * ratio))
    return p0, p_v + p_v % 2


def padded_grid(grid: Grid, frame_shape_yx, pixel_size_um: float, factor: float, geometry: str, rotation_axis: str = "y") -> PaddedGrid:
    """Working grid about ``factor`` times larger per axis than ``grid``, and the frame padding.

    Why: the DFT of a frame and of the volume make them periodic. A field whose diffraction
    tails or Rytov background reach the frame edge, or a regularised object elongated along
    the missing cone, then leaks across the border into the opposite side (in sample
    rotation the square frame turns into a square halo in the rotation plane). With
    ``factor`` ≥ 1.5 the period is at least 1.5× the field of view, so what spills out of the
    output volume lands in the padding, which is cropped away.

    Lateral axes pad the frames by p_f pixels and the volume by p_v = p_f·pixel/voxel
    voxels (the same extent, so the lateral cap samples still fall on grid planes). Z pads
    like the axis it copies in sample rotation (X about Y, Y about X), and by
    ⌈(factor − 1)·Z⌉ (even) voxels in an illumination scan. ``factor`` 1 is no padding.
    """
    if not (factor >= 1.0 and np.isfinite(factor)):
        raise ValueError(f"padding must be a number ≥ 1, got {factor!r}")
    nz, nyv, nxv = grid.shape_zyx
    dz, dy, dx = grid.voxel_size_um
    ny, nx = (int(s) for s in frame_shape_yx)
    pf_y, pv_y = _pad_pair(ny, nyv, pixel_size_um / dy, factor) if factor > 1 else (0, 0)
    pf_x, pv_x = _pad_pair(nx, nxv, pixel_size_um / dx, factor) if factor > 1 else (0, 0)
    if factor == 1:
        pv_z = 0
    elif geometry == "sample-rotation":
        pv_z = int(round((pv_x * dx if rotation_axis == "y" else pv_y * dy) / dz))
        pv_z += pv_z % 2
    else:
        pv_z = int(math.ceil((factor - 1.0) * nz - 1e-9))
        pv_z += pv_z % 2
    shape = (nz + pv_z, nyv + pv_y, nxv + pv_x)
    crop = tuple(slice(p // 2, p // 2 + n) for p, n in zip((pv_z, pv_y, pv_x), grid.shape_zyx))
    pads = ((pf_y // 2, pf_y - pf_y // 2), (pf_x // 2, pf_x - pf_x // 2))
    return PaddedGrid(grid=Grid(shape_zyx=shape, voxel_size_um=grid.voxel_size_um), crop=crop, frame_pad_yx=pads)


def illumination_scan_support(
    shape_zyx,
    voxel_size_um,
    illumination_na,
    *,
    wavelength_um: float,
    medium_index: float,
    objective_na: float,
) -> np.ndarray:
    """Fourier support of an illumination scan under the first-order diffraction theorem.

    For every illumination k_in (snapped to the lateral frequency grid, as the forward models
    do) and every detected direction k_out with |k_out,⊥| ≤ k0·NA on the lateral grid, the
    voxel nearest to K = k_out − k_in is marked, with k_z = √(k_m² − |k_⊥|²). Samples outside
    the grid's Nyquist box are dropped (no wrap-around).

    Parameters
    ----------
    shape_zyx : (Z, Y, X)
    voxel_size_um : (dz, dy, dx)
    illumination_na : (A, 2) array
        (NA_x, NA_y) of each illumination (:mod:`holo.conventions`).
    wavelength_um, medium_index, objective_na : float

    Returns
    -------
    (Z, Y, X) bool in the unshifted ``scipy.fft`` layout.
    """
    nz, ny, nx = (int(s) for s in shape_zyx)
    dz, dy, dx = (float(v) for v in voxel_size_um)
    k0 = 2 * np.pi / wavelength_um
    km = k0 * medium_index
    ky, kx = np.meshgrid(2 * np.pi * np.fft.fftfreq(ny, dy), 2 * np.pi * np.fft.fftfreq(nx, dx), indexing="ij")
    iy0, ix0 = np.nonzero(kx**2 + ky**2 <= (k0 * objective_na) ** 2)
    kx, ky = kx[iy0, ix0], ky[iy0, ix0]
    kz = np.sqrt(km**2 - kx**2 - ky**2)
    support = np.zeros((nz, ny, nx), bool)
    for na_x, na_y in np.asarray(illumination_na, float).reshape(-1, 2):
        jx = int(np.round(k0 * na_x * nx * dx / (2 * np.pi)))
        jy = int(np.round(k0 * na_y * ny * dy / (2 * np.pi)))
        kx_in, ky_in = jx * 2 * np.pi / (nx * dx), jy * 2 * np.pi / (ny * dy)
        k_z = kz - np.sqrt(km**2 - kx_in**2 - ky_in**2)
        ok = (np.abs(k_z) < np.pi / dz) & (np.abs(kx - kx_in) < np.pi / dx) & (np.abs(ky - ky_in) < np.pi / dy)
        iz = np.round(k_z * nz * dz / (2 * np.pi)).astype(int) % nz
        support[iz[ok], ((iy0 - jy) % ny)[ok], ((ix0 - jx) % nx)[ok]] = True
    return support


def plane_oversampled_grid(padded: PaddedGrid, frame_shape_yx, factor: int, rotation_axis: str = "y") -> PaddedGrid:
    """The working grid of a sample rotation refined ``factor`` times in K across the axis.

    The caps of a sample rotation cross the K grid at every angle in the rotation plane
    (K_z and K_x about Y; K_z and K_y about X), where trilinear gridding replaces F(K) by a
    local average over one grid step ΔK = 2π/L (L the working grid's extent). For an object
    at distance r from the rotation axis, F(K) ∝ e^{−iK·r} turns by up to ΔK·r within that
    step, so the average keeps about sinc²(π r/L) of its mass there (measured on exact Mie
    spheres off the axis: 0.89 at r = 6 µm, L = 29 µm) and spreads the rest into arcs
    across the volume, partly outside the crop (the mass lost with padding). Gridding on a
    grid ``factor`` times larger along those two axes (ΔK/factor) and cutting the working
    grid out of its periodic volume (:func:`holo.reconstruction.tomography.fdt.fourier_map`)
    removes most of it: sinc²(π r/(factor·L)).

    The axis along the rotation axis is not refined: its frequencies fall on grid planes at
    every angle (frame and grid have the same extent). Returns a :class:`PaddedGrid` whose
    ``crop`` takes the working grid out of the fine one (centred: index N//2 stays the
    centre) and whose ``frame_pad_yx`` pads the frames to the fine grid's lateral extent.
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"plane oversampling must be an integer ≥ 1, got {factor!r}")
    nz, ny_v, nx_v = padded.grid.shape_zyx
    ny, nx = (int(s) for s in frame_shape_yx)
    (y0, y1), (x0, x1) = padded.frame_pad_yx
    fy = factor if rotation_axis == "x" else 1
    fx = factor if rotation_axis == "y" else 1
    shape = (nz * factor, ny_v * fy, nx_v * fx)
    crop = tuple(slice(n // 2 - m // 2, n // 2 - m // 2 + m) for n, m in zip(shape, padded.grid.shape_zyx))
    # the padded frame (ny + y0 + y1 pixels) spans the working grid; its fine extent is fy× that
    extra_y = (fy - 1) * (ny + y0 + y1)
    extra_x = (fx - 1) * (nx + x0 + x1)
    # the frame centre (index N//2) stays on the optical axis: the odd pixel goes before
    pads = ((y0 + (extra_y + 1) // 2, y1 + extra_y // 2), (x0 + (extra_x + 1) // 2, x1 + extra_x // 2))
    return PaddedGrid(grid=Grid(shape_zyx=shape, voxel_size_um=padded.grid.voxel_size_um), crop=crop, frame_pad_yx=pads)
