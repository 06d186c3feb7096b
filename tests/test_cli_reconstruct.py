"""``holo reconstruct`` and ``holo.pipeline.reconstruct``: file in, RI volume file out.

The acquisition holds fields of a weak sphere computed from the analytic first-Born model
(see tests/test_tomography.py), written in the acquisition format; the physics of the
reconstruction itself is tested there, here the command's behaviour and outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import holo
from holo.cli.main import main
from holo.io.acquisition import write_acquisition
from holo.model import Acquisition
from holo.pipeline import reconstruct

from test_tomography import NM, born_sphere_fields, ring_illuminations

DN = 0.01


@pytest.fixture(scope="module")
def acq_path(tmp_path_factory):
    nas, kins = ring_illuminations(rings=(0.5, 1.0), per_ring=(8, 16))
    ub = born_sphere_fields(48, [(1.2, NM + DN, (0.0, 0.0, 0.0))], kins)
    acq = Acquisition(
        geometry="illumination-scan", wavelength_um=0.532, pixel_size_um=0.1, medium_index=NM, objective_na=1.2,
        fields=np.exp(ub).astype(np.complex64), illumination_na=nas,
    )
    path = tmp_path_factory.mktemp("acq") / "sphere.h5"
    write_acquisition(path, acq)
    return path


def _excluded_by_qc(path):
    """Frames the field retrieval's QC rejects (none when it is absent)."""
    from holo.pipeline import retrieve

    fs = retrieve(holo.open(path))
    valid = getattr(fs, "valid", None)
    return [] if valid is None else [int(i) for i in np.flatnonzero(~np.asarray(valid, bool))]


def test_cli_writes_tomogram_and_json_summary(acq_path, tmp_path, capsys):
    out = tmp_path / "ri.ome.tif"
    rc = main(["reconstruct", str(acq_path), "-o", str(out), "--json", "--shape", "24", "48", "48", "--voxel", "0.2,0.1,0.1",
               "--method", "rytov"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output"] == str(out) and out.exists()
    assert info["shape_zyx"] == [24, 48, 48] and info["voxel_size_um"] == pytest.approx([0.2, 0.1, 0.1])
    assert info["method"] == "rytov" and info["time_s"] > 0
    excluded = _excluded_by_qc(acq_path)
    assert info["excluded_frames"] == excluded
    tomo = holo.open(out)
    ri = tomo.frame(0)
    assert ri.shape == (24, 48, 48) and tomo.voxel_size_um == pytest.approx((0.2, 0.1, 0.1))
    # the denser sphere is at the centre: Δn there within the ±20 % missing-cone band
    # derived in test_tomography.py
    assert 0.8 * DN < float(ri[12, 24, 24] - NM) < 1.25 * DN
    assert info["mean_ri"] == pytest.approx(float(ri.mean()), abs=1e-6)
    prov = tomo.provenance
    assert prov["method"] == "rytov" and prov["source_file"].endswith("sphere.h5")
    assert prov["parameters"]["frames_used"] == 25 - len(excluded)


def test_pipeline_born_and_default_grid(acq_path):
    tomo = reconstruct(acq_path, method="born")
    # default grid from the optics: 0.1 µm pixels are finer than λ/(4 NA) = 0.111 µm and
    # are kept; dz is the axial Nyquist step clipped to 2·dx = 0.2 µm; Z spans the FOV
    assert tomo.voxel_size_um == pytest.approx((0.2, 0.1, 0.1))
    assert tomo.ri.shape == (24, 48, 48) and tomo.ri.dtype == np.float32
    assert tomo.provenance["method"] == "born" and tomo.provenance["elapsed_s"] > 0
    assert float(tomo.ri[12, 24, 24]) > NM


def test_progress_is_reported(acq_path):
    calls = []
    reconstruct(acq_path, method="born", shape_zyx=(8, 48, 48), progress=lambda done, total=None, note="": calls.append((done, total, note)))
    used = 25 - len(_excluded_by_qc(acq_path))
    assert calls[-1][:2] == (used, used) and "fourier map" in calls[-1][2]


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--method", "radon"], 2, "unknown method"),
        (["--voxel", "0.1,0.2"], 2, "--voxel"),
        (["--shape", "8", "8"], 2, "--shape"),
        (["--method", "rytov", "--sparse-background"], 2, "--sparse-background"),
        (["--method", "rytov", "--classic-background"], 2, "--classic-background"),
        (["--method", "gp", "--sparse-background", "--classic-background"], 2, "--classic-background"),
    ],
)
def test_cli_usage_errors(acq_path, tmp_path, args, code, fragment):
    # through typer's own standalone handling (usage error → exit code 2, message on stderr)
    from typer.testing import CliRunner

    from holo.cli.main import app

    res = CliRunner().invoke(app, ["reconstruct", str(acq_path), "-o", str(tmp_path / "x.ome.tif"), *args])
    assert res.exit_code == code
    assert fragment in res.output
    assert not (tmp_path / "x.ome.tif").exists()


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "missing.h5"
    rc = main(["reconstruct", str(bad), "-o", str(tmp_path / "x.ome.tif")])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "missing.h5" in err[-1]
    assert not any(p.name.startswith(".x.ome.tif") for p in tmp_path.iterdir())


def test_pipeline_rejects_unknown_method(acq_path):
    with pytest.raises(ValueError, match="method"):
        reconstruct(acq_path, method="fbp")


def test_regularised_method_dispatch(acq_path):
    pytest.importorskip("holo.reconstruction.regularization")
    tomo = reconstruct(acq_path, method="gp", iterations=5, shape_zyx=(24, 48, 48))
    assert tomo.provenance["method"] == "gp"
    ri = tomo.frame(0)
    # Gerchberg–Papoulis keeps n ≥ n_m and the measured data: the sphere stays denser
    assert float(ri.min()) >= NM - 1e-6 and float(ri[12, 24, 24] - NM) > 0.5 * DN


def test_gp_l1_mode_is_reachable_and_recorded(acq_path):
    # gp's l1 mode keeps the background at n_m outside the detected sphere; shrink_sigmas=0
    # is classic gp (the way back), None (the default) gp's default κ
    from holo.reconstruction.regularization import DEFAULT_GP_SHRINK_SIGMAS

    with pytest.raises(ValueError, match="gp"):
        reconstruct(acq_path, method="rytov", shrink_sigmas=3.0)
    kw = dict(method="gp", iterations=8, shape_zyx=(24, 48, 48))
    tomo = reconstruct(acq_path, shrink_sigmas=3.0, **kw)
    assert tomo.provenance["parameters"]["shrink_sigmas"] == 3.0
    assert tomo.provenance["parameters"]["min_component_cells"] > 0
    ri = tomo.frame(0)
    assert float(ri.min()) >= NM - 1e-6 and float(ri[12, 24, 24] - NM) > 0.5 * DN
    assert float(np.mean(ri == np.float32(NM))) > 0.85  # medium, exactly, outside the support
    classic = reconstruct(acq_path, shrink_sigmas=0, **kw)
    assert classic.provenance["parameters"]["shrink_sigmas"] == 0.0
    assert float(np.mean(classic.frame(0) == np.float32(NM))) < 0.8  # the clamp's specks (measured 0.74)
    default = reconstruct(acq_path, **kw)
    assert default.provenance["parameters"]["shrink_sigmas"] == DEFAULT_GP_SHRINK_SIGMAS


def test_cli_compress_option_writes_the_same_volume(acq_path, tmp_path):
    a, b = tmp_path / "a.ome.tif", tmp_path / "b.ome.tif"
    common = ["--method", "born", "--shape", "8", "48", "48"]
    assert main(["reconstruct", str(acq_path), "-o", str(a), *common]) == 0
    assert main(["reconstruct", str(acq_path), "-o", str(b), "--compress", *common]) == 0
    # lossless zlib: identical RI, smaller file
    np.testing.assert_array_equal(holo.open(a).frame(0), holo.open(b).frame(0))
    assert b.stat().st_size < a.stat().st_size
