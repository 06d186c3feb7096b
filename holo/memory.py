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
padded by p = :data:`FFT_PADDING` [geometry] per axis, so :func:`reconstruction_bytes` takes
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
    "IGNORE_ENV",
    "RECON_BYTES_PER_VOXEL",
    "available_bytes",
    "check_memory",
    "format_bytes",
    "reconstruction_bytes",
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
#: (:func:`holo.reconstruction.tomography.grid.padded_grid`; docs/tomography.md). 1 is off:
#: on illumination scans padding shifts the direct Rytov mean RI of Mie spheres by +1–2e-3
#: (finer K grid, sparse caps), which is not understood yet (issue 18).
FFT_PADDING = {"sample-rotation": 1.5, "illumination-scan": 1.0}


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


def reconstruction_bytes(shape_zyx, method: str, n_field_pixels: int = 0, geometry: str | None = None) -> float:
    """Peak bytes of reconstructing a grid ``shape_zyx`` by ``method`` from fields of
    ``n_field_pixels`` pixels in all (module docstring), with the padding of ``geometry``
    (None: the largest, an upper bound)."""
    p = FFT_PADDING.get(geometry, max(FFT_PADDING.values()))
    n = float(np.prod([float(s) for s in shape_zyx])) * p**3
    c = RECON_BYTES_PER_VOXEL.get(method, max(RECON_BYTES_PER_VOXEL.values()))
    field = FIELD_BYTES_PER_PIXEL * (1.0 + p**2)
    return c * n + field * float(n_field_pixels) + 32 * MIB
