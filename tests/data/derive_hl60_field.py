"""Derive ``hl60_field.npz`` from nrefocus's measured HL60 field (tests/data/README.md).

Input: ``HL60_real.txt`` and ``HL60_imag.txt`` of ``examples/data/HL60_field.zip`` in the
nrefocus source distribution (``pip download --no-deps --no-binary :all: nrefocus==0.8.0``).
Run: ``python tests/data/derive_hl60_field.py DIR`` with DIR holding the two files.

The text files hold Re and Im of u/u0 (112 × 112) with three decimals; they are stored
losslessly as int16 thousandths (``field_milli``: real, imaginary), so that
u/u0 = (re + i im) / 1000 exactly as in the source.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(src: Path, dst: Path) -> None:
    re = np.loadtxt(src / "HL60_real.txt")
    im = np.loadtxt(src / "HL60_imag.txt")
    milli = np.rint(np.stack([re, im]) * 1000)
    assert np.array_equal(milli / 1000, np.round(np.stack([re, im]), 3)) and np.abs(milli).max() < 2**15
    np.savez_compressed(
        dst,
        field_milli=milli.astype(np.int16),
        wavelength_um=0.647,
        pixel_size_um=0.139,
        medium_index=1.3333,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).with_name("hl60_field.npz"))
