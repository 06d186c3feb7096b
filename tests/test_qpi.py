"""Single-hologram QPI: phase retrieval against analytic phases and against the peer tool
(qpretrieve) on a measured HL60 hologram; 2D cells, dry mass; `holo phase`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from holo.conventions import ALPHA_PROTEIN_UM3_PER_PG
from holo.phase import analyse_hologram
from holo.reconstruction.fields import fit_polynomial
from holo.reconstruction.fields.qpi import fourier_upsample, hologram_phase

DATA = Path(__file__).parent / "data"
LAM, PIX, NA = 0.532, 0.1, 0.8


def _deplane(p):
    return p - fit_polynomial(p[None], np.ones((1,) + p.shape, bool), 1)[0]


def _sphere_phase(shape, centres_px, radius_um, dn=0.03):
    """Thin-object phase k0 Δn t(x, y) of homogeneous spheres (t the chord length)."""
    y, x = np.indices(shape) * PIX
    phi = np.zeros(shape)
    for cy, cx in centres_px:
        r2 = (y - cy * PIX) ** 2 + (x - cx * PIX) ** 2
        phi += 2 * np.pi / LAM * dn * 2 * np.sqrt(np.clip(radius_um**2 - r2, 0, None))
    return phi


def _bandlimit(phi):
    """exp(iφ) low-passed to the pupil |f| ≤ NA/λ (what the microscope delivers)."""
    u = np.exp(1j * phi)
    fy = np.fft.fftfreq(phi.shape[0], PIX)[:, None]
    fx = np.fft.fftfreq(phi.shape[1], PIX)[None, :]
    return np.fft.ifft2(np.fft.fft2(u) * (np.hypot(fy, fx) <= NA / LAM))


def _hologram(u, tilt=(0.3, 0.2)):
    """|u + r|² with a reference tilted to the carrier at 3.5 NA/λ along a diagonal, plus a
    slow tilt of the object beam (a misaligned illumination) that the plane fit must remove."""
    ny, nx = u.shape
    y, x = np.indices(u.shape) * PIX
    c = 3.5 * NA / LAM / np.sqrt(2)
    ref = np.exp(-2j * np.pi * c * (x + y))
    beam = np.exp(1j * (tilt[0] * x + tilt[1] * y))
    return (np.abs(u * beam + ref) ** 2 * 1000).astype(np.float32), (np.abs(beam + ref) ** 2 * 1000).astype(np.float32)


@pytest.mark.parametrize("with_background", [True, False])
def test_analytic_phase_and_dry_mass(with_background):
    shape = (128, 160)
    phi = _sphere_phase(shape, [(64, 60)], radius_um=3.0)
    u = _bandlimit(phi)
    holo, bg = _hologram(u)
    pm = hologram_phase(holo, bg if with_background else None, pixel_size_um=PIX, wavelength_um=LAM, objective_na=NA)
    truth = np.unwrap(np.unwrap(np.angle(u), axis=0), axis=1)
    truth -= np.median(truth[:8])
    err = pm.phase - truth
    inner = (slice(12, -12), slice(12, -12))
    assert np.sqrt(np.mean(err[inner] ** 2)) < 0.02  # 0.1 % of the 11-rad peak phase
    # dry mass of the sphere, analytic: (1/α) Δn (4/3)π a³ (the pupil keeps f = 0: ∫φ dA exact)
    res = analyse_hologram(holo, bg if with_background else None, pixel_size_um=PIX, wavelength_um=LAM, objective_na=NA)
    assert len(res.cells) == 1
    m_true = 0.03 * 4 / 3 * np.pi * 3.0**3 / ALPHA_PROTEIN_UM3_PER_PG
    assert res.cells["dry_mass_pg"].iloc[0] == pytest.approx(m_true, rel=0.02)
    assert res.cells["area_um2"].iloc[0] == pytest.approx(np.pi * 3.0**2, rel=0.15)  # edge ± one resolution length


def test_two_cells_separated_and_measured():
    shape = (128, 192)
    phi = _sphere_phase(shape, [(64, 50), (64, 140)], radius_um=2.5)
    holo, bg = _hologram(_bandlimit(phi))
    res = analyse_hologram(holo, bg, pixel_size_um=PIX, wavelength_um=LAM, objective_na=NA, min_area_um2=5)
    assert len(res.cells) == 2
    m_true = 0.03 * 4 / 3 * np.pi * 2.5**3 / ALPHA_PROTEIN_UM3_PER_PG
    np.testing.assert_allclose(res.cells["dry_mass_pg"], m_true, rtol=0.03)
    np.testing.assert_allclose(res.cells["phase_volume_um3"], res.cells["dry_mass_pg"] * ALPHA_PROTEIN_UM3_PER_PG)


def test_fourier_upsample_keeps_coarse_samples():
    rng = np.random.default_rng(0)
    f = (rng.normal(size=(16, 20)) + 1j * rng.normal(size=(16, 20))).astype(np.complex64)
    spec = np.fft.fft2(f)
    spec[8, :] = 0
    spec[:, 10] = 0  # no Nyquist content: exact band-limited interpolation
    f = np.fft.ifft2(spec)
    up = fourier_upsample(f, (48, 60))
    np.testing.assert_allclose(up[::3, ::3], f, atol=1e-5)


def test_measured_hl60_hologram_agrees_with_qpretrieve():
    """Measured off-axis hologram of an HL60 cell (qpretrieve/qpimage example data, MIT):
    the phase agrees with qpretrieve's within 0.03 rad RMS after removing a plane, away from
    the frame edge by one impulse-response width 1/R of the sideband filter."""
    qpretrieve = pytest.importorskip("qpretrieve")
    from skimage.restoration import unwrap_phase

    d = np.load(DATA / "hl60_hologram_cell.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = qpretrieve.OffAxisHologram(data=d["data"])
        h.run_pipeline(filter_name="smooth disk", filter_size=1 / 2)
        b = qpretrieve.OffAxisHologram(data=d["bg_data"])
        b.process_like(h)
    peer = unwrap_phase(h.get_data_with_input_layout(h.phase) - b.get_data_with_input_layout(b.phase))
    # optics not needed for the phase: lengths in pixels, sideband radius half the carrier distance
    pm = hologram_phase(d["data"], d["bg_data"], pixel_size_um=1.0, wavelength_um=1.0, radius_fraction=0.5)
    edge = int(np.ceil(1.0 / pm.radius_cycles_per_um))
    diff = _deplane(pm.phase - peer)[edge:-edge, edge:-edge]
    assert pm.phase.max() > 3.0  # the cell is there, with a positive phase (same sign as the peer)
    assert np.sqrt(np.mean(diff**2)) < 0.03


def test_holo_phase_cli(tmp_path, capsys):
    from holo.cli.main import main

    d = np.load(DATA / "hl60_hologram_cell.npz")
    tifffile.imwrite(tmp_path / "h.tif", d["data"])
    tifffile.imwrite(tmp_path / "bg.tif", d["bg_data"])
    out = tmp_path / "out"
    assert main(["phase", str(tmp_path / "h.tif"), "--background", str(tmp_path / "bg.tif"), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wavelength_um" in err[0] and not out.exists()
    (tmp_path / "h.json").write_text(json.dumps({"wavelength_um": 0.633, "pixel_size_um": 0.14}))
    assert main(["phase", str(tmp_path / "h.tif"), "--background", str(tmp_path / "bg.tif"), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_cells"] == 1
    with tifffile.TiffFile(out / "phase.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].axes == "CYX" and 'PhysicalSizeX="0.14"' in tif.ome_metadata
        phase = tif.asarray()[0]
    with tifffile.TiffFile(out / "labels.ome.tif") as tif:
        labels = tif.asarray()
    import pandas as pd

    from holo.segmentation.cells2d import measure_cells_2d

    cells = pd.read_csv(out / "cells.csv")
    # the share (one filter response width 1/R around the mask) holds the cell's whole phase
    # integral: doubling it changes the dry mass by < 1 % (the tight mask alone misses more)
    margin = int(np.ceil(1.0 / (summary["radius_cycles_per_um"] * 0.14)))
    wider = measure_cells_2d(phase, labels, 0.14, 0.633, margin_px=2 * margin)["dry_mass_pg"].iloc[0]
    tight = measure_cells_2d(phase, labels, 0.14, 0.633, margin_px=0)["dry_mass_pg"].iloc[0]
    assert cells["dry_mass_pg"].iloc[0] == pytest.approx(wider, rel=0.01)
    assert abs(tight - wider) > 2 * abs(cells["dry_mass_pg"].iloc[0] - wider)
    assert sorted(p.name for p in out.iterdir()) == ["cells.csv", "labels.ome.tif", "phase.json", "phase.ome.tif"]
