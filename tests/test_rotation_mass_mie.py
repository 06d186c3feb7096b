"""Sample rotation keeps a cell's mass where the cell is, at any padding: exact Mie fields.

An exact Mie sphere (holo.twin.mie, miepython; d 4 µm, n 1.37 in 1.335, λ 0.647 µm, NA 1.0,
60² frames of 0.324 µm: the optics of the measured HL60 sinogram) sits 5 µm from the
rotation axis (Y) and is seen at 47 angles over a full turn. Each frame is the exact imaged
field of the sphere centred in the frame, moved to the sphere's position at that angle:
laterally by a Fourier shift and axially by angular-spectrum propagation in the medium
(both exact for a field band-limited to the pupil in a homogeneous medium).

Truth: ∭(n − n_m) dV = Δn·4πa³/3 (the Rytov phase integral of this sphere is itself
+3 % above it). Trilinear gridding on the working grid (extent L) keeps ≈ sinc²(π r/L) of
a mass at distance r from the axis in place and spreads the rest in arcs, partly into the
cropped padding: the non-monotonic loss seen on the measured HL60 cell. Measured mass
within 2.5 a of the sphere / truth at padding 1 / 1.5 / 2: 0.886 / 0.947 / 0.975 gridded
on the working grid, 0.975 / 0.998 / 1.006 on the K grid refined twice across the axis
(sinc²(π r/2L) left: the default of the regularised chain; the direct inverse asks for it
with ``plane_oversampling=2``, holo.memory.UNREFINED_METHODS); mean interior Δn error
−2.7e-3 → −1.0e-3 at the default padding (Rytov target 2e-3).
"""

from __future__ import annotations

import functools
import types

import numpy as np
import pytest

pytest.importorskip("miepython")

LAM, NM, NA, PX, N = 0.647, 1.335, 1.0, 0.324, 60
RADIUS, N_IN, R0, ANGLES = 2.0, 1.37, 5.0, 47


@functools.lru_cache(maxsize=1)
def off_axis_fields():
    from holo.twin.mie import mie_sphere_field

    big = 2 * N
    scattered = np.fft.fft2(mie_sphere_field(RADIUS, N_IN, NM, LAM, (big, big), PX, objective_na=NA) - 1)
    k = 2 * np.pi * np.fft.fftfreq(big, PX)
    ky, kx = k[:, None], k[None, :]
    km = 2 * np.pi * NM / LAM
    pupil = kx**2 + ky**2 <= (2 * np.pi * NA / LAM) ** 2
    kz = np.sqrt(np.maximum(km**2 - kx**2 - ky**2, 0.0))
    angles = np.linspace(0.0, 2 * np.pi, ANGLES, endpoint=False)
    lo = big // 2 - N // 2
    frames = []
    for a in angles:
        # the sphere at object (x, z) = (R0, 0) turned by +a about Y (+Z towards +X)
        xa, za = R0 * np.cos(a), -R0 * np.sin(a)
        # moved by xa along X; the focal plane lies −za from its centre
        u = 1 + np.fft.ifft2(scattered * pupil * np.exp(-1j * kx * xa - 1j * (kz - km) * za))
        frames.append(u[lo:lo + N, lo:lo + N])
    return types.SimpleNamespace(
        fields=np.stack(frames).astype(np.complex64), geometry="sample-rotation", wavelength_um=LAM, pixel_size_um=PX,
        medium_index=NM, objective_na=NA, angles=angles, rotation_axis="y", valid=np.ones(ANGLES, bool), source=None,
    )


def mass_in_place(padding, plane_oversampling=2):
    """(∭Δn dV within 2.5 a of the sphere / truth, mean Δn error inside 0.6 a) of the direct Rytov
    volume at angle 0's object position (x = R0, y = z = 0)."""
    from holo.reconstruction.tomography import reconstruct_fdt

    tomo = reconstruct_fdt(off_axis_fields(), method="rytov", shape_zyx=(N, N, N), voxel_size_um=PX, padding=padding,
                           plane_oversampling=plane_oversampling)
    d = tomo.ri.astype(np.float64) - NM
    z, y, x = ((np.arange(n) - n // 2) * PX for n in d.shape)
    r = np.sqrt(z[:, None, None] ** 2 + y[None, :, None] ** 2 + (x[None, None, :] - R0) ** 2)
    truth = (N_IN - NM) * 4 / 3 * np.pi * RADIUS**3
    return float(d[r < 2.5 * RADIUS].sum() * PX**3 / truth), float(d[r < 0.6 * RADIUS].mean() - (N_IN - NM))


def test_mass_stays_in_place_at_any_padding():
    kept = {p: mass_in_place(p) for p in (1.0, 1.5, 2.0)}
    mass, mean_err = kept[1.5]  # the default padding of sample rotation
    assert mass == pytest.approx(1.0, abs=0.05), kept
    assert abs(mean_err) < 2e-3, kept
    # what is left of the apodisation, sinc²(π r/2L), falls with the padding: no loss that
    # comes and goes with it
    assert kept[1.0][0] <= kept[1.5][0] + 0.01 <= kept[2.0][0] + 0.02, kept
    # the defect, reproduced: gridding on the working grid itself keeps sinc²(π r/L) /
    # sinc²(π r/2L) ≈ 0.93 of that in place (measured 0.95)
    assert mass_in_place(1.5, plane_oversampling=1)[0] < 0.97 * mass


def test_direct_rotation_inverse_is_the_unrefined_fast_path_and_gp_is_refined():
    from holo.reconstruction.tomography import fourier_map, reconstruct_fdt

    fs = off_axis_fields()
    assert reconstruct_fdt(fs, method="rytov", shape_zyx=(N, N, N), voxel_size_um=PX).provenance["parameters"]["plane_oversampling"] == 1
    assert fourier_map(fs, method="rytov", shape_zyx=(N, N, N), voxel_size_um=PX).provenance["plane_oversampling"] == 2
