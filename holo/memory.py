"""Memory estimated before allocation: refuse what cannot fit instead of running until killed.

Every reader and the reconstruction estimate their peak from declared shapes (nothing read)
and call :func:`check_memory`, which raises :class:`~holo.errors.ResourceError` — one line
with the file, the item, the estimate and the available memory — when the estimate exceeds
the memory available now (``psutil.virtual_memory().available``: free plus reclaimable page
cache, the figure the kernel's own overcommit heuristic uses). The user overrides with the
environment variable ``HOLO_IGNORE_MEMORY=1`` (e.g. with a large swap).

Reconstruction model, measured (peak RSS of a fresh process above its RSS after loading
the frames and compiling the kernels, 12 frames of 278², grids of 0.5 to 8.4 million voxels):

    peak ≈ c_method · N + 24 B · P + 32 MiB

with N the grid voxels, P the field pixels (A frames of Y·X: complex64 fields, the float32
hologram being read, one frame's complex64 spectrum) and c = :data:`RECON_BYTES_PER_VOXEL`
(measured without padding; the table below). The reconstruction works on frames and a grid
padded by p = :func:`fft_padding` (geometry, method) per axis, so :func:`reconstruction_bytes` takes
N = p³ · N_output and (1 + p²) · P field pixels; measured with p = 1.5
(same 12 frames, pipeline with the data-consistency check): rytov 160 / 406, gp 140 / 496,
tv 262 / 964 MiB at 1 / 4.2 M output voxels, slopes 78 / 113 / 223 MiB per M against
c·p³ = 81 / 142 / 270.

======  =======================================  ==================
method  measured increment (MiB) at 1 / 4.2 / 8.4 M  c (MiB per M voxels)
======  =======================================  ==================
rytov   39 / 94 / 182                                 24 (born: same map)
gp      51 / 186 / 332                                42
tv      80 / 330 / —                                  80
bpm     not measured                                  2 × tv, assumed
======  =======================================  ==================

U-Net segmentation (:func:`segmentation_bytes`), the increment above the input volume:

    peak ≈ b_tile · V + b_train · N_train + 5 B · N_in + 64 MiB

V the voxels of one tile (a forward pass of the fused network holds ≈ 300–390 B per tile
voxel, measured at 48 × 96² and 96 × 192², batch 1: b_tile = 400 B), N_train the voxels of
the volume resampled to the training grid (the normalised RI, the above-noise mask, the
(C + 1)-channel blended probabilities and the window sum, then the watershed's distance map
and labels: b_train = (C + 2) · 4 + 36 B), N_in the input voxels (the uint8 semantic and int32
instance labels brought back to the input grid).

The slopes between 4.2 and 8.4 M voxels are 21 (rytov) and 35 (gp) MiB per million; c is
rounded up so that the estimate bounds every measurement (the small-grid points carry the
per-frame buffers, covered by the P and constant terms).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from holo.errors import ResourceError

__all__ = [
    "FFT_PADDING",
    "GRID_BYTES_PER_VOXEL",
    "PLANE_OVERSAMPLING",
    "UNPADDED_METHODS",
    "UNREFINED_METHODS",
    "fft_padding",
    "plane_oversampling",
    "IGNORE_ENV",
    "RECON_BYTES_PER_VOXEL",
    "available_bytes",
    "check_memory",
    "format_bytes",
    "reconstruction_bytes",
    "segmentation_bytes",
    "unet_tile_voxels",
]

#: Environment variable that turns the refusal off (set it to 1).
IGNORE_ENV = "HOLO_IGNORE_MEMORY"
MIB = 2**20
#: Peak bytes per voxel of the reconstruction grid, by method (module docstring).
RECON_BYTES_PER_VOXEL = {"rytov": 24 * MIB / 1e6, "born": 24 * MIB / 1e6, "gp": 42 * MIB / 1e6,
                         "tv": 80 * MIB / 1e6, "bpm": 160 * MIB / 1e6}
#: Peak bytes per pixel of the field frames (A · Y · X) during retrieval and mapping.
FIELD_BYTES_PER_PIXEL = 24
#: Linear padding factor of the reconstruction per geometry: the Fourier mapping and the
#: regularisers work on a volume (and frames) this many times larger per axis and crop back,
#: so that no FFT wraps the field or the object around
#: (:func:`holo.reconstruction.tomography.grid.padded_grid`; docs/tomography.md). 1 is off.
#: An illumination scan is off by default for its cost: padded 1.5, the regularised chain
#: holds every exact-Mie pattern target and its background p99 falls by ~35 %, but it works
#: on 3.4× the voxels (gp 0.8 → 3.0 CPU-s on the 64² test patterns; measured, issue 18).
FFT_PADDING = {"sample-rotation": 1.5, "illumination-scan": 1.0}
#: (geometry, method) pairs reconstructed without padding: the direct inverse of an
#: illumination scan. Its volume is never transformed again, and a longer period only
#: changes how the unmeasured missing cone around K = 0 is filled: along Z the lateral mean of
#: each slice (the K⊥ = 0 column, measured at K_z = 0 alone) spreads over the padded depth and
#: out of the crop (Mie spiral: 81 % of the mass kept at 1.5×), laterally the few columns at
#: the cone's edge are quantised differently (Mie ring: mean RI +2.1e-3). Measured in
#: docs/tomography.md (issue 18); the regularised chain fills the cone and follows FFT_PADDING.
UNPADDED_METHODS = frozenset({("illumination-scan", "rytov"), ("illumination-scan", "born")})
#: K-grid refinement across the rotation axis per geometry: sample rotation grids its caps
#: on a grid this many times larger along the two rotation-plane axes and cuts the working
#: grid out of its periodic volume (:func:`holo.reconstruction.tomography.grid.plane_oversampled_grid`;
#: docs/tomography.md). Trilinear gridding on the working grid (extent L) keeps only
#: ≈ sinc²(π r/L) of a mass at distance r from the axis in place and spreads the rest in arcs,
#: partly into the cropped padding (measured HL60 cell: gp's whole volume 0.975 of the 2D dry
#: mass at padding 1.5, 0.984 at 2, 0.9995 unpadded where the arcs wrap back in; refined:
#: 0.993 at all three). An illumination scan's lateral samples lie on grid planes: 1.
PLANE_OVERSAMPLING = {"sample-rotation": 2, "illumination-scan": 1}
#: (geometry, method) pairs whose direct inverse skips that refinement: the direct Rytov/Born
#: inverse of a sample rotation is the fast path (the refinement costs it 2.5× the wall time
#: and 2.5× the peak memory: 188³ from 60 angles 0.62 → 1.53 s, 0.65 → 1.6 GB), with an
#: object r off the axis keeping ≈ sinc²(π r/L) of its mass in place (HL60 0.984 of the 2D
#: mass against 0.994 refined); the regularised chain (gp, the default) is refined.
UNREFINED_METHODS = frozenset({("sample-rotation", "rytov"), ("sample-rotation", "born")})
#: Bytes per voxel of the gridding accumulators (complex64 sum and float32 weight).
GRID_BYTES_PER_VOXEL = 12


def fft_padding(geometry: str | None, method: str | None = None) -> float:
    """Padding factor of ``method`` on ``geometry`` (:data:`FFT_PADDING`,
    :data:`UNPADDED_METHODS`); geometry None: the largest, an upper bound."""
    if geometry is None:
        return max(FFT_PADDING.values())
    return 1.0 if (geometry, method) in UNPADDED_METHODS else FFT_PADDING[geometry]


def available_bytes() -> int:
    """Memory available to a new allocation now, in bytes (psutil, else /proc/meminfo)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    raise RuntimeError("cannot tell the available memory")  # pragma: no cover


def format_bytes(n: float) -> str:
    """``1536 → "1.5 KiB"``, binary units."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_memory(estimate_bytes: float, *, path: str | Path | None = None, item: str | None = None,
                 what: str = "reading it") -> None:
    """Raise :class:`ResourceError` when ``estimate_bytes`` exceeds :func:`available_bytes`.

    Skipped when the environment variable :data:`IGNORE_ENV` is ``1``/``true``/``yes``.
    """
    if os.environ.get(IGNORE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return
    avail = available_bytes()
    if estimate_bytes > avail:
        raise ResourceError(
            f"{what} needs about {format_bytes(estimate_bytes)} of memory, {format_bytes(avail)} available "
            f"(set {IGNORE_ENV}=1 to try anyway)",
            path=path, item=item,
        )


def plane_oversampling(geometry: str | None, method: str | None = None) -> int:
    """K-grid refinement across the rotation axis of ``method`` on ``geometry``
    (:data:`PLANE_OVERSAMPLING`, :data:`UNREFINED_METHODS`); geometry None: the largest."""
    if geometry is None:
        return max(PLANE_OVERSAMPLING.values())
    return 1 if (geometry, method) in UNREFINED_METHODS else PLANE_OVERSAMPLING[geometry]


def reconstruction_bytes(shape_zyx, method: str, n_field_pixels: int = 0, geometry: str | None = None) -> float:
    """Peak bytes of reconstructing a grid ``shape_zyx`` by ``method`` from fields of
    ``n_field_pixels`` pixels in all (module docstring), with the padding and the plane
    oversampling s of ``geometry`` (None: the largest, an upper bound).

    With s > 1 the gridding holds accumulators on s² times the working voxels and, while
    the working spectrum is cut out of them, that spectrum and its weight as well:
    (s² + 1)·:data:`GRID_BYTES_PER_VOXEL` per working voxel, freed before the solver runs,
    so the peak is the larger of the two stages (measured with s = 2, 12 frames of 278²,
    102³ / 161³ output voxels, the pipeline with its data-consistency check: rytov and gp
    240 / 898 MiB, both set by the gridding; 77 / 223 and 159 / 560 MiB with s = 1, rytov's
    default since it is in :data:`UNREFINED_METHODS`).
    """
    geometry = geometry if geometry in FFT_PADDING else None
    p = fft_padding(geometry, method)
    s = plane_oversampling(geometry, method)
    n = float(np.prod([float(v) for v in shape_zyx])) * p**3
    c = RECON_BYTES_PER_VOXEL.get(method, max(RECON_BYTES_PER_VOXEL.values()))
    grid = GRID_BYTES_PER_VOXEL * (s * s + 1) * n if s > 1 else 0.0
    field = FIELD_BYTES_PER_PIXEL * (1.0 + s * p**2)
    return max(c * n, grid) + field * float(n_field_pixels) + 32 * MIB


#: Peak bytes per voxel of one U-Net tile during a forward pass (fused network, batch 1).
UNET_TILE_BYTES_PER_VOXEL = 400


def segmentation_bytes(input_shape_zyx, train_shape_zyx, tile_zyx, *, n_classes: int = 5) -> float:
    """Peak bytes of the U-Net segmentation of a volume ``input_shape_zyx`` resampled to
    ``train_shape_zyx`` and predicted in tiles of at most ``tile_zyx`` (module docstring)."""
    n_in = float(np.prod([float(s) for s in input_shape_zyx]))
    n_train = float(np.prod([float(s) for s in train_shape_zyx]))
    v = float(np.prod([min(float(t), float(s)) for t, s in zip(tile_zyx, train_shape_zyx)]))
    b_train = (n_classes + 2) * 4 + 36
    return UNET_TILE_BYTES_PER_VOXEL * v + b_train * n_train + 5 * n_in + 64 * MIB


#: Most bytes (as :func:`segmentation_bytes` counts them) one U-Net tile may take: 3 GiB ≈ 8 M
#: voxels at 400 B, e.g. 72 × 312² (≈ 1.7 GB measured on the CPU, channels-last, where the
#: estimate is an upper bound); larger tiles recompute less of the halo their neighbours share.
UNET_TILE_BUDGET_BYTES = 3 * 2**30


def unet_tile_voxels(input_shape_zyx, train_shape_zyx, *, n_classes: int = 5, available: float | None = None,
                     cap_bytes: float = UNET_TILE_BUDGET_BYTES) -> int:
    """Most voxels one U-Net tile may hold: (min(``cap_bytes``, A − R)) / b_tile, with A the
    available memory (:func:`available_bytes` unless given), R the rest of the segmentation's
    peak (:func:`segmentation_bytes` without the tile) and b_tile
    :data:`UNET_TILE_BYTES_PER_VOXEL`; 0 when nothing is left."""
    rest = segmentation_bytes(input_shape_zyx, train_shape_zyx, (0, 0, 0), n_classes=n_classes)
    avail = available_bytes() if available is None else float(available)
    return max(int(min(float(cap_bytes), avail - rest) // UNET_TILE_BYTES_PER_VOXEL), 0)
