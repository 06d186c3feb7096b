"""Shared helpers of the forward models: grids, illumination, angular-spectrum propagation,
objective pupil, the kernels of the multi-slice BPM, sample rotation and frame batching.

Conventions are those of :mod:`holo.conventions` (µm, (Z, Y, X), e^{-iωt}, plane wave
e^{+ikz}, u/u0 in the focal plane z = 0).

Grids
-----
Along an axis of ``n`` samples with spacing ``d`` the coordinate of index ``i`` is
``(i - n // 2) * d`` (:func:`grid_coordinates`): the origin is the sample ``n // 2``, the
centre of a discrete Fourier grid. For a volume this puts the focal plane z = 0 on slice
``Z // 2`` and the optical axis on pixel ``(Y // 2, X // 2)``; for odd ``Z`` it is exactly
the geometric centre of the volume. Each slice ``j`` of a volume is a slab of thickness
``dz`` centred on ``z_j``.

Envelope representation
-----------------------
A tilted illumination u0(r) = exp(i k_in·r) with k_in = (k_in⊥, k_in,z),
|k_in⊥| = 2π NA_ill/λ, k_in,z = √(k_m² − |k_in⊥|²), is factored out of every field:
u = u0 · v. The envelope v is what the models return (u/u0). A plane-wave component of u
with transverse wave vector k⊥ = q + k_in⊥ propagates over a distance d as
e^{i k_z(k⊥) d}, so the envelope spectrum V(q) propagates as

    V(q; z + d) = V(q; z) · exp(i [k_z(q + k_in⊥) − k_in,z] d),    (1)

which is exact in the homogeneous medium and needs no periodicity of u0 on the grid.
Evanescent components (|q + k_in⊥| ≥ k_m) are dropped. The objective pupil acts on the
total field: it keeps |q + k_in⊥| ≤ 2π NA/λ of the envelope spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Required, TypedDict

import numpy as np
import scipy.fft as sfft

from holo.conventions import medium_wavenumber, vacuum_wavenumber
from holo.threads import fft_workers

__all__ = [
    "grid_coordinates",
    "frequency_grid",
    "snap_illumination_na",
    "illumination_wavevectors",
    "envelope_kz",
    "envelope_propagator",
    "angular_spectrum_propagate",
    "pupil_mask",
    "filter_pupil",
    "WIDE_ANGLE_KZ_FLOOR",
    "wide_angle_kernels",
    "SlabKernels",
    "slab_kernels",
    "rotate_volume",
    "ForwardSetup",
    "ForwardOptions",
    "prepare_forward",
]


# -- grids ---------------------------------------------------------------------------------
def grid_coordinates(n: int, spacing_um: float) -> np.ndarray:
    """Coordinates (µm) of the ``n`` samples of an axis: ``(i − n//2)·spacing_um``."""
    return (np.arange(int(n)) - int(n) // 2) * float(spacing_um)


def _sizes(value, axes: str, name: str) -> tuple[float, ...]:
    """Sample spacings (µm) along ``axes`` (e.g. "yx", "zyx"): one positive number for all
    axes or one per axis."""
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64)).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, len(axes))
    if arr.size != len(axes) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        per_axis = ", ".join(f"d{a}" for a in axes)
        raise ValueError(f"{name} must be one positive number or ({per_axis}), got {value!r}")
    return tuple(float(v) for v in arr)


def _pixel_pair(pixel_size_um) -> tuple[float, float]:
    return _sizes(pixel_size_um, "yx", "pixel_size_um")


def _voxel_triple(voxel_size_um) -> tuple[float, float, float]:
    return _sizes(voxel_size_um, "zyx", "voxel_size_um")


def frequency_grid(shape_yx, pixel_size_um) -> tuple[np.ndarray, np.ndarray]:
    """Angular spatial frequencies (rad/µm) of a (Y, X) grid in scipy.fft (unshifted) layout.

    Returns ``qy`` of shape (Y, 1) and ``qx`` of shape (1, X): q = 2π·fftfreq(n, d).
    """
    ny, nx = (int(s) for s in shape_yx)
    dy, dx = _pixel_pair(pixel_size_um)
    qy = (2.0 * np.pi * sfft.fftfreq(ny, dy)).reshape(ny, 1)
    qx = (2.0 * np.pi * sfft.fftfreq(nx, dx)).reshape(1, nx)
    return qy, qx


# -- illumination ----------------------------------------------------------------------------
def _as_na_array(illumination_na) -> np.ndarray:
    na = np.asarray(illumination_na, dtype=np.float64)
    if na.ndim == 1 and na.shape == (2,):
        na = na.reshape(1, 2)
    if na.ndim != 2 or na.shape[1] != 2:
        raise ValueError(f"illumination_na must have shape (A, 2) as (NA_x, NA_y), got {na.shape}")
    if not np.all(np.isfinite(na)):
        raise ValueError("illumination_na contains non-finite values")
    return na


def snap_illumination_na(illumination_na, shape_yx, pixel_size_um, wavelength_um) -> np.ndarray:
    """Snap illumination NAs to the nearest tilt that is periodic on a (Y, X) grid.

    A tilted plane wave exp(i k_in⊥·r⊥) is periodic on a grid of ``N`` pixels of pitch ``d``
    when k_in,x = 2π m_x/(N_x d_x) with integer m_x (same for y). With k_in⊥ = 2π NA/λ this
    gives NA_x = m_x λ/(N_x d_x), m_x = round(NA_x N_x d_x/λ). The step is λ/(N d) in NA
    (0.0104 for 256 pixels of 0.2 µm at λ = 0.532 µm).

    Parameters
    ----------
    illumination_na : (A, 2) or (2,) array
        (NA_x, NA_y) per frame (:mod:`holo.conventions`).
    shape_yx : (int, int)
        Frame shape (Y, X).
    pixel_size_um : float or (dy, dx)
        Pixel pitch in the sample plane, µm.
    wavelength_um : float
        Vacuum wavelength λ, µm.

    Returns
    -------
    ndarray, float64, same shape as ``illumination_na``
        The snapped (NA_x, NA_y). Snapping is idempotent.
    """
    arr = np.asarray(illumination_na, dtype=np.float64)
    na = _as_na_array(arr)
    ny, nx = (int(s) for s in shape_yx)
    dy, dx = _pixel_pair(pixel_size_um)
    lam = float(wavelength_um)
    if not lam > 0:
        raise ValueError(f"wavelength_um must be positive, got {wavelength_um!r}")
    step_x = lam / (nx * dx)
    step_y = lam / (ny * dy)
    out = np.empty_like(na)
    out[:, 0] = np.round(na[:, 0] / step_x) * step_x
    out[:, 1] = np.round(na[:, 1] / step_y) * step_y
    return out.reshape(arr.shape)


def illumination_wavevectors(illumination_na, wavelength_um: float, medium_index: float) -> np.ndarray:
    """Wave vectors (k_x, k_y, k_z) in rad/µm, shape (A, 3), of illuminations given as NAs.

    k⊥ = 2π (NA_x, NA_y)/λ and k_z = √(k_m² − |k⊥|²) with k_m = 2π n_m/λ.
    """
    na = _as_na_array(illumination_na)
    nm = float(medium_index)
    if np.any(np.hypot(na[:, 0], na[:, 1]) >= nm):
        raise ValueError(f"illumination_na: an illumination NA reaches the medium index {nm}")
    k0 = vacuum_wavenumber(wavelength_um)
    km = medium_wavenumber(wavelength_um, nm)
    kx = k0 * na[:, 0]
    ky = k0 * na[:, 1]
    kz = np.sqrt(km * km - kx * kx - ky * ky)
    return np.stack([kx, ky, kz], axis=1)


# -- propagation -----------------------------------------------------------------------------
def envelope_kz(qy, qx, kin_x, kin_y, medium_k: float):
    """k_z(q + k_in⊥) − k_in,z and the propagating mask, for the envelope propagator (1).

    ``qy`` (Y, 1), ``qx`` (1, X); ``kin_x``, ``kin_y`` scalars or (B, 1, 1) arrays in rad/µm.
    Returns ``(delta_kz, propagating)``: float64 arrays broadcast to (…, Y, X), with
    ``delta_kz = 0`` where the component is evanescent (|q + k_in⊥| ≥ k_m).
    """
    kin_x = np.asarray(kin_x, dtype=np.float64)
    kin_y = np.asarray(kin_y, dtype=np.float64)
    kx = qx + kin_x
    ky = qy + kin_y
    kperp2 = kx * kx + ky * ky
    km2 = float(medium_k) ** 2
    propagating = kperp2 < km2
    kz = np.sqrt(np.where(propagating, km2 - kperp2, 0.0))
    kz_in = np.sqrt(km2 - kin_x * kin_x - kin_y * kin_y)
    delta = np.where(propagating, kz - kz_in, 0.0)
    return delta, propagating


def envelope_propagator(delta_kz, propagating, distance_um: float) -> np.ndarray:
    """exp(i Δk_z d) on propagating components, 0 on evanescent ones (complex64)."""
    p = np.exp(1j * (delta_kz * float(distance_um)))
    return np.where(propagating, p, 0.0).astype(np.complex64)


def angular_spectrum_propagate(field, distance_um: float, pixel_size_um, wavelength_um: float, medium_index: float) -> np.ndarray:
    """Angular-spectrum propagation of a total field (…, Y, X) by ``distance_um`` along +z.

    U(f, z + Δz) = U(f, z)·exp(i k_z Δz) with k_z = √(k_m² − (2π f)²) (e^{+ikz} for a wave
    travelling along +z, see :mod:`holo.conventions`); evanescent components are dropped.
    This is the envelope propagator (1) at normal incidence, exp(i (k_z − k_m) Δz), times the
    common phase exp(i k_m Δz). The field is periodic on its grid: pad it first where
    content must not wrap around.
    """
    field = np.asarray(field, dtype=np.complex64)
    km = medium_wavenumber(wavelength_um, medium_index)
    qy, qx = frequency_grid(field.shape[-2:], pixel_size_um)
    delta, prop = envelope_kz(qy, qx, 0.0, 0.0, km)
    h = envelope_propagator(delta, prop, distance_um) * np.complex64(np.exp(1j * km * float(distance_um)))
    return sfft.ifft2(sfft.fft2(field, workers=fft_workers()) * h, workers=fft_workers()).astype(np.complex64, copy=False)


def pupil_mask(qy, qx, kin_x, kin_y, wavelength_um: float, objective_na: float) -> np.ndarray:
    """Objective pupil on the envelope spectrum: |q + k_in⊥| ≤ 2π NA/λ (bool, (…, Y, X))."""
    kc = vacuum_wavenumber(wavelength_um) * float(objective_na)
    kx = qx + np.asarray(kin_x, dtype=np.float64)
    ky = qy + np.asarray(kin_y, dtype=np.float64)
    # a relative epsilon keeps grid frequencies that sit exactly on the cut-off
    return kx * kx + ky * ky <= kc * kc * (1.0 + 1e-9)


def filter_pupil(v: np.ndarray, pupil: np.ndarray) -> np.ndarray:
    """Low-pass the envelope ``v`` (…, Y, X) by a pupil mask in its Fourier space."""
    spec = sfft.fft2(v, axes=(-2, -1), workers=fft_workers())
    spec *= pupil
    return sfft.ifft2(spec, axes=(-2, -1), workers=fft_workers())


# -- multi-slice kernels ---------------------------------------------------------------------
#: floor of k_z/k_m in :func:`wide_angle_kernels` (cos 78.5°): grazing waves get at most 5×
#: the weight of the illumination direction
WIDE_ANGLE_KZ_FLOOR = 0.2


def wide_angle_kernels(delta_kz, propagating, kin_z, medium_k: float, dz_um: float, *, dtype=np.complex64) -> tuple[np.ndarray, np.ndarray]:
    """Kernels (H1, H2) of the wide-angle correction of one slab of the multi-slice BPM.

    After the phase screen of a slab of thickness dz and source s = k0²(n² − n_m²) = −f
    (:mod:`holo.conventions`), the envelope spectrum gets

        V ← V + H1 · F[s v] + H2 · F[s² v],
        H1(q) =  (i dz/2) (1/k_z − 1/k_in,z),
        H2(q) = −(i dz/8) (1/k_z³ − 1/k_in,z³),

    the first two orders of √(k_z² + s) − k_z = s/(2k_z) − s²/(8k_z³) + …, the phase a plane
    wave of transverse wave vector q + k_in⊥ gains across the slab, less what the screen
    already gives the illumination direction (derivation: :mod:`holo.reconstruction.forward.bpm`,
    equation (W)). Here k_z = k_z(q + k_in⊥) = Δk_z + k_in,z, floored at
    :data:`WIDE_ANGLE_KZ_FLOOR` · k_m; both kernels are 0 on evanescent components.

    Parameters
    ----------
    delta_kz, propagating : (…, Y, X) arrays
        Δk_z = k_z(q + k_in⊥) − k_in,z and the propagating mask, from :func:`envelope_kz`.
    kin_z : float or (B, 1, 1) array
        k_in,z of the illumination(s), rad/µm.
    medium_k : float
        k_m = 2π n_m/λ, rad/µm.
    dz_um : float
        Slab thickness, µm.
    dtype : complex dtype
        Of the returned kernels (computed in float64, then cast).

    Returns
    -------
    (H1, H2) : (…, Y, X) arrays of ``dtype``
        H1 in µm² and H2 in µm⁴ (s is in 1/µm², so H1·s and H2·s² are dimensionless).
    """
    kin_z = np.asarray(kin_z, dtype=np.float64)
    if not np.all(kin_z > 0):
        raise ValueError("kin_z must be positive (a propagating illumination)")
    dz = float(dz_um)
    kz = np.maximum(delta_kz + kin_z, WIDE_ANGLE_KZ_FLOOR * float(medium_k))
    h1 = np.where(propagating, 0.5j * dz * (1.0 / kz - 1.0 / kin_z), 0.0).astype(dtype)
    h2 = np.where(propagating, -0.125j * dz * (1.0 / kz**3 - 1.0 / kin_z**3), 0.0).astype(dtype)
    return h1, h2


@dataclass(frozen=True)
class SlabKernels:
    """Constants of the multi-slice BPM for one batch of B illuminations (:func:`slab_kernels`)."""

    kin_perp2: np.ndarray  # |k_in⊥|², (B, 1, 1) float64, rad²/µm²
    kin_z: np.ndarray  # k_in,z, (B, 1, 1) float64, rad/µm
    delta_kz: np.ndarray  # k_z(q + k_in⊥) − k_in,z, (B, Y, X) float64 (0 where evanescent)
    propagating: np.ndarray  # (B, Y, X) bool
    step: np.ndarray  # envelope propagator over one slab dz, (B, Y, X) complex64
    pupil: np.ndarray  # objective pupil on the envelope spectrum, (B, Y, X) bool
    wide: tuple[np.ndarray, np.ndarray] | None  # (H1, H2) of wide_angle_kernels, or None

    def propagator(self, distance_um: float) -> np.ndarray:
        """Envelope propagator over ``distance_um`` (:func:`envelope_propagator`), complex64."""
        return envelope_propagator(self.delta_kz, self.propagating, distance_um)


def slab_kernels(setup: ForwardSetup, kin, *, wide_angle: bool = True, wide_dtype=np.complex64) -> SlabKernels:
    """Kernels of the multi-slice BPM on the padded lateral grid of ``setup`` for the
    illuminations ``kin`` ((B, 3) wave vectors (k_x, k_y, k_z), rad/µm).

    The propagator (1) over the slab thickness dz = ``setup.voxel_size_um[0]``, the pupil
    (:func:`pupil_mask`) and, with ``wide_angle``, the kernels of :func:`wide_angle_kernels`
    (cast to ``wide_dtype``), all in the spectrum layout of :func:`frequency_grid` on
    ``setup.padded_shape_yx``.
    """
    kin = np.asarray(kin, dtype=np.float64)
    if kin.ndim != 2 or kin.shape[1] != 3:
        raise ValueError(f"kin must have shape (B, 3) as (k_x, k_y, k_z), got {kin.shape}")
    nb = kin.shape[0]
    kx = kin[:, 0].reshape(nb, 1, 1)
    ky = kin[:, 1].reshape(nb, 1, 1)
    kzin = kin[:, 2].reshape(nb, 1, 1)
    dz = setup.voxel_size_um[0]
    km = medium_wavenumber(setup.wavelength_um, setup.medium_index)
    qy, qx = frequency_grid(setup.padded_shape_yx, setup.voxel_size_um[1:])
    delta, prop = envelope_kz(qy, qx, kx, ky, km)
    return SlabKernels(
        kin_perp2=kx * kx + ky * ky,
        kin_z=kzin,
        delta_kz=delta,
        propagating=prop,
        step=envelope_propagator(delta, prop, dz),
        pupil=pupil_mask(qy, qx, kx, ky, setup.wavelength_um, setup.objective_na),
        wide=wide_angle_kernels(delta, prop, kzin, km, dz, dtype=wide_dtype) if wide_angle else None,
    )


# -- sample rotation -------------------------------------------------------------------------
def rotation_matrix_zyx(angle_rad: float, axis: str) -> np.ndarray:
    """Matrix R (acting on (z, y, x) vectors) of a right-handed rotation about +Y or +X.

    About +Y: x' = x cos a + z sin a, z' = −x sin a + z cos a.
    About +X: y' = y cos a − z sin a, z' = y sin a + z cos a.
    """
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    if axis == "y":
        return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    if axis == "x":
        return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    raise ValueError(f"rotation_axis must be 'y' or 'x', got {axis!r}")


def rotate_volume(volume: np.ndarray, voxel_size_um, angle_rad: float, axis: str = "y", *, cval: float = 0.0) -> np.ndarray:
    """Rotate a volume (Z, Y, X) by ``angle_rad`` about the Y (or X) axis through the grid origin.

    The sample is turned right-handedly about the axis (:func:`rotation_matrix_zyx`):
    out(r) = in(R⁻¹ r) in physical coordinates, so anisotropic voxels are handled.
    Trilinear interpolation (order 1) in float32; points coming from outside the volume take
    ``cval``. Parts of the sample that leave the box are lost, so keep the sample inside the
    cylinder inscribed in the volume.
    """
    from scipy import ndimage  # sample rotation only: an illumination scan never imports it

    d = np.asarray(_voxel_triple(voxel_size_um))
    rot = rotation_matrix_zyx(float(angle_rad), axis)
    centre = np.array([s // 2 for s in volume.shape], dtype=np.float64)
    # index_in = D⁻¹ Rᵀ D (index_out − c) + c
    matrix = (rot.T * d[np.newaxis, :]) / d[:, np.newaxis]
    offset = centre - matrix @ centre
    src = np.asarray(volume, dtype=np.float32)
    return ndimage.affine_transform(src, matrix, offset=offset, order=1, mode="constant", cval=float(cval), prefilter=False)


# -- common validation and frame batching ----------------------------------------------------
@dataclass
class ForwardSetup:
    """Validated inputs of a forward model (see :func:`prepare_forward`)."""

    ri: np.ndarray  # (Z, Y, X) float32 (complex64 when absorbing)
    voxel_size_um: tuple[float, float, float]
    wavelength_um: float
    medium_index: float
    objective_na: float
    kin: np.ndarray  # (A, 3) (k_x, k_y, k_z) rad/µm in the volume frame of each frame
    angles: np.ndarray | None
    rotation_axis: str
    illumination_na: np.ndarray | None  # the NAs actually used (snapped if asked)
    pad_px: tuple[int, int]

    @property
    def n_frames(self) -> int:
        return int(self.kin.shape[0])

    @property
    def z_um(self) -> np.ndarray:
        return grid_coordinates(self.ri.shape[0], self.voxel_size_um[0])

    @property
    def padded_shape_yx(self) -> tuple[int, int]:
        return (self.ri.shape[1] + 2 * self.pad_px[0], self.ri.shape[2] + 2 * self.pad_px[1])

    def pad(self, vol: np.ndarray, value: float) -> np.ndarray:
        """Pad the lateral axes of (…, Y, X) by ``pad_px`` on each side with ``value``."""
        py, px = self.pad_px
        if py == 0 and px == 0:
            return vol
        widths = [(0, 0)] * (vol.ndim - 2) + [(py, py), (px, px)]
        return np.pad(vol, widths, mode="constant", constant_values=value)

    def crop(self, frames: np.ndarray) -> np.ndarray:
        py, px = self.pad_px
        ny, nx = self.ri.shape[1:]
        return frames[..., py : py + ny, px : px + nx]

    def volumes(self, indices) -> np.ndarray:
        """RI of the frames ``indices``: (Z, Y, X) shared (illumination scan) or (B, Z, Y, X)."""
        if self.angles is None:
            return self.ri
        nm = self.medium_index
        return np.stack([rotate_volume(self.ri, self.voxel_size_um, self.angles[i], self.rotation_axis, cval=nm) for i in indices])


class ForwardOptions(TypedDict, total=False):
    """Keyword arguments shared by the forward models, passed on to :func:`prepare_forward`
    (which holds their defaults and validation; ``bpm_fields`` documents them)."""

    wavelength_um: Required[float]
    medium_index: Required[float]
    objective_na: Required[float]
    illumination_na: np.ndarray | None
    angles: np.ndarray | None
    rotation_axis: Literal["y", "x"]
    snap: bool
    pad_px: int | tuple[int, int] | None


def _auto_pad(n: int) -> int:
    """Guard band per side: at least n/8, rounded so that n + 2·pad is a fast FFT size."""
    target = sfft.next_fast_len(n + 2 * max(4, int(np.ceil(n / 8))))
    return (target - n + 1) // 2


def prepare_forward(
    ri,
    voxel_size_um,
    *,
    wavelength_um,
    medium_index,
    objective_na,
    illumination_na=None,
    angles=None,
    rotation_axis="y",
    snap=True,
    pad_px=None,
) -> ForwardSetup:
    """Validate the common arguments of the forward models and derive the illumination.

    Without ``illumination_na`` and ``angles`` a single normal-incidence frame is computed.
    With ``snap`` the illumination NAs are snapped with :func:`snap_illumination_na` on the
    volume's lateral grid. ``pad_px`` (int or (py, px)) is the guard band of medium added on
    each lateral side; ``None`` chooses ≈ n/8 per side (:func:`_auto_pad`).
    """
    arr = np.asarray(ri)
    if arr.ndim != 3:
        raise ValueError(f"ri must be a 3D (Z, Y, X) array of absolute refractive index, got shape {arr.shape}")
    if min(arr.shape) < 1 or arr.shape[1] < 2 or arr.shape[2] < 2:
        raise ValueError(f"ri has an empty or degenerate shape {arr.shape}")
    if np.iscomplexobj(arr):
        arr = arr.astype(np.complex64, copy=False)
    else:
        arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError("ri contains non-finite values")
    voxel = _voxel_triple(voxel_size_um)
    lam = float(wavelength_um)
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"wavelength_um must be a positive number, got {wavelength_um!r}")
    nm = float(medium_index)
    if not (np.isfinite(nm) and nm > 0):
        raise ValueError(f"medium_index must be a positive number, got {medium_index!r}")
    na_obj = float(objective_na)
    if not (0 < na_obj <= nm):
        raise ValueError(f"objective_na must be in (0, medium_index={nm}], got {objective_na!r}")
    if np.real(arr).min() < 0.5:
        raise ValueError("ri looks like an index difference; pass the absolute refractive index (holo.conventions)")
    if rotation_axis not in ("y", "x"):
        raise ValueError(f"rotation_axis must be 'y' or 'x', got {rotation_axis!r}")
    if illumination_na is not None and angles is not None:
        raise ValueError("give either illumination_na (illumination scan) or angles (sample rotation), not both")
    if angles is not None:
        ang = _check_angles(angles)
        na_used = None
        kin = np.tile(illumination_wavevectors(np.zeros((1, 2)), lam, nm), (ang.size, 1))
    else:
        ang = None
        na_used = _illumination_used(illumination_na, arr.shape[1:], voxel[1:], lam, nm, snap)
        kin = illumination_wavevectors(na_used, lam, nm)
    pads = (_auto_pad(arr.shape[1]), _auto_pad(arr.shape[2])) if pad_px is None else _check_pads(pad_px)
    return ForwardSetup(arr, voxel, lam, nm, na_obj, kin, ang, rotation_axis, na_used, pads)


def _check_angles(angles) -> np.ndarray:
    """Rotation angles as a float64 (A,) array of radians."""
    ang = np.asarray(angles, dtype=np.float64).reshape(-1)
    if ang.size == 0 or not np.all(np.isfinite(ang)):
        raise ValueError("angles must be a non-empty array of finite rotation angles in radians")
    if np.max(np.abs(ang)) > 8 * np.pi:
        raise ValueError("angles look like degrees; pass radians")
    return ang


def _illumination_used(illumination_na, shape_yx, pixel_size_um, wavelength_um: float, medium_index: float, snap: bool) -> np.ndarray:
    """The (A, 2) NAs the models use: normal incidence when None, snapped when ``snap``."""
    na = np.zeros((1, 2)) if illumination_na is None else _as_na_array(illumination_na)
    illumination_wavevectors(na, wavelength_um, medium_index)  # validates |NA| < n_m before snapping
    if snap:
        na = snap_illumination_na(na, shape_yx, pixel_size_um, wavelength_um)
        if np.any(np.hypot(na[:, 0], na[:, 1]) >= medium_index):
            raise ValueError(
                f"illumination_na: snapped to the grid an illumination NA reaches the medium index {medium_index}; "
                "use a larger lateral grid or a smaller NA"
            )
    return na


def _check_pads(pad_px) -> tuple[int, int]:
    p = np.atleast_1d(np.asarray(pad_px, dtype=np.int64)).reshape(-1)
    if p.size == 1:
        p = np.repeat(p, 2)
    if p.size != 2 or np.any(p < 0):
        raise ValueError(f"pad_px must be a non-negative int or (py, px), got {pad_px!r}")
    return (int(p[0]), int(p[1]))


def frame_batches(setup: ForwardSetup, batch_size: int) -> Iterator[np.ndarray]:
    """Indices of the frames in batches of at most ``batch_size``."""
    n = setup.n_frames
    for start in range(0, n, batch_size):
        yield np.arange(start, min(n, start + batch_size))


def default_batch_size(setup: ForwardSetup, bytes_per_frame_voxel: int = 8, budget_bytes: int = 256 * 2**20) -> int:
    """Frames per batch so that the (B, Y, X) work arrays (sample rotation: (B, Z, Y, X)
    rotated volumes) stay within ``budget_bytes``."""
    ny, nx = setup.padded_shape_yx
    per_frame = 6 * ny * nx * bytes_per_frame_voxel
    if setup.angles is not None:
        # the rotated volume and its padded copy
        per_frame += setup.ri.shape[0] * (setup.ri.shape[1] * setup.ri.shape[2] + ny * nx) * 4
    return int(max(1, min(16, budget_bytes // max(per_frame, 1))))


def report_progress(progress: Callable[[int, int], object] | None, done: int, total: int) -> None:
    if progress is not None:
        progress(int(done), int(total))
