"""Derive ``hl60_sinogram.npz`` from ODTbrain's measured HL60 sinogram (tests/data/README.md).

Input: ``series.h5`` and ``angles.txt`` of ``examples/data/qlsi_3d_hl60-cell_A140.tar.lzma``
in the ODTbrain source distribution (``pip download --no-deps --no-binary :all: odtbrain``).
Run: ``python tests/data/derive_hl60_sinogram.py DIR`` with DIR holding the two files.

Steps: every third of the 140 rotational positions; each frame's Rytov field
ln|u| + iφ (φ: the stored, unwrapped phase) band-limited to NA 1.0 by a centred Fourier
crop 140 → 60 pixels (pitch 0.139 → 0.3243 µm, Nyquist NA = λ/(2·pitch) = 0.998); stored as
float16 phase (rad) and log-amplitude.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

STEP, N_OUT = 3, 60


def fourier_crop(a: np.ndarray, n_out: int) -> np.ndarray:
    """Real frames (A, N, N) → (A, n_out, n_out) over the same field of view (centred
    Fourier crop, values kept: the mean of each frame is unchanged)."""
    n = a.shape[-1]
    spec = np.fft.fftshift(np.fft.fft2(a), axes=(-2, -1))
    lo = n // 2 - n_out // 2
    crop = spec[:, lo:lo + n_out, lo:lo + n_out]
    return np.fft.ifft2(np.fft.ifftshift(crop, axes=(-2, -1))).real * (n_out / n) ** 2


def main(src: Path, dst: Path) -> None:
    angles = np.loadtxt(src / "angles.txt")
    with h5py.File(src / "series.h5", "r") as f:
        meta = dict(f["qpi_0"].attrs)
        idx = np.arange(0, len(angles), STEP)
        phase = np.stack([f[f"qpi_{i}/phase/raw"][()] for i in idx]).astype(np.float64)
        amp = np.stack([f[f"qpi_{i}/amplitude/raw"][()] for i in idx]).astype(np.float64)
    n = phase.shape[-1]
    pixel_um = float(meta["pixel size"]) * 1e6 * n / N_OUT
    np.savez_compressed(
        dst,
        phase_rad=fourier_crop(phase, N_OUT).astype(np.float16),
        log_amplitude=fourier_crop(np.log(amp), N_OUT).astype(np.float16),
        angles_rad=angles[idx],
        wavelength_um=float(meta["wavelength"]) * 1e6,
        pixel_size_um=pixel_um,
        medium_index=float(meta["medium index"]),
        objective_na=1.0,
        rotation_axis="y",
        source_frames=idx,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).with_name("hl60_sinogram.npz"))
