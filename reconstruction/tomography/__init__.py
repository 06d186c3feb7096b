"""Diffraction tomography: Rytov / first-Born Fourier mapping of fields onto the 3D spectrum.

Public API: :func:`fourier_map`, :func:`reconstruct_fdt`, :class:`FourierData`,
:func:`default_grid`, :class:`Grid`. Physics and signs: :mod:`.fdt`; grid choice: :mod:`.grid`;
Numba kernels: :mod:`._gridding`.
"""

from .fdt import FourierData, fourier_map, reconstruct_fdt, spectrum_to_ri, tomogram_from_fourier
from .grid import Grid, default_grid

__all__ = ["FourierData", "fourier_map", "reconstruct_fdt", "spectrum_to_ri", "tomogram_from_fourier", "Grid", "default_grid"]
