"""CLI: holo segment / classify / measure / report / train on small synthetic tomograms."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from holo.cli.main import main
from holo.model import Tomogram

N_M = 1.337
VS = (0.4, 0.15, 0.15)


def _tomogram(path):
    """Two cells of RI 1.365 with a nucleus (1.36) and a lipid droplet (1.42), in OME-TIFF."""
    from holo.io import save_tomogram

    shape = (20, 80, 100)
    ax = [np.arange(n) * v for n, v in zip(shape, VS)]
    z, y, x = np.meshgrid(*ax, indexing="ij")
    ri = np.full(shape, N_M, np.float32)
    for cy, cx in ((6.0, 4.5), (6.0, 10.5)):
        r2 = (z - 4.0) ** 2 + (y - cy) ** 2 + (x - cx) ** 2
        ri[r2 <= 2.8**2] = 1.365
        ri[r2 <= 1.2**2] = 1.36
        ri[(z - 4.0) ** 2 + (y - cy - 1.8) ** 2 + (x - cx) ** 2 <= 0.5**2] = 1.42
    ri += np.random.default_rng(0).normal(0, 0.0008, shape).astype(np.float32)
    tomo = Tomogram(ri=ri, voxel_size_um=VS, medium_index=N_M, wavelength_um=0.532)
    save_tomogram(tomo, path)
    return tomo


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_seg")
    _tomogram(d / "tomo.ome.tif")
    return d


def test_segment_measure_report_classic(workdir, capsys):
    d = workdir
    assert main(["segment", str(d / "tomo.ome.tif"), "-o", str(d / "labels.ome.tif"), "--method", "classic", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["cells"] == 2
    assert (d / "labels.ome.tif").is_file() and (d / "labels_instances.ome.tif").is_file()

    assert main(["measure", str(d / "tomo.ome.tif"), "--labels", str(d / "labels.ome.tif"), "-o", str(d / "cells.csv")]) == 0
    cells = pd.read_csv(d / "cells.csv")
    assert len(cells) == 2
    # ball of radius 2.8 µm: V = 92 µm³ (smoothing of the threshold shifts the edge by ≲ one
    # voxel, 0.15 µm, i.e. ≲ 16 % in volume)
    assert cells.volume_um3.to_numpy() == pytest.approx(4 / 3 * np.pi * 2.8**3, rel=0.2)
    # dry mass is the integral of n − n_m, insensitive to the exact mask edge as long as the
    # mask contains the cell: (1.365 − 1.337)·V/0.19 minus the nucleus deficit (≈ 13 pg)
    expected = ((1.365 - N_M) * 4 / 3 * np.pi * 2.8**3 - 0.005 * 4 / 3 * np.pi * 1.2**3
                + 0.055 * 4 / 3 * np.pi * 0.5**3) / 0.19
    assert cells.dry_mass_pg.to_numpy() == pytest.approx(expected, rel=0.1)

    assert main(["report", str(d / "tomo.ome.tif"), "--labels", str(d / "labels.ome.tif"),
                 "--cells", str(d / "cells.csv"), "-o", str(d / "report")]) == 0
    html = (d / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html
    doc = json.loads((d / "report" / "report.json").read_text())
    assert doc["summary"]["n_cells"] == 2 and len(doc["cells"]) == 2


def test_classify_with_shipped_weights(workdir):
    d = workdir
    if not (d / "labels_instances.ome.tif").exists():
        assert main(["segment", str(d / "tomo.ome.tif"), "-o", str(d / "labels.ome.tif"), "--method", "classic"]) == 0
    assert main(["classify", str(d / "tomo.ome.tif"), "--labels", str(d / "labels.ome.tif"), "-o", str(d / "cls.csv")]) == 0
    cls = pd.read_csv(d / "cls.csv")
    assert list(cls.cell_id) == [1, 2]
    p = cls.filter(like="p_").to_numpy()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert np.allclose(cls.confidence, p.max(axis=1))
    assert main(["measure", str(d / "tomo.ome.tif"), "--labels", str(d / "labels.ome.tif"),
                 "--classes", str(d / "cls.csv"), "-o", str(d / "cells2.csv")]) == 0
    merged = pd.read_csv(d / "cells2.csv")
    assert {"class", "confidence", "volume_um3"} <= set(merged.columns)


def test_segment_unet_into_ome_zarr(workdir):
    d = workdir
    assert main(["segment", str(d / "tomo.ome.tif"), "-o", str(d / "seg.ome.zarr")]) == 0
    from holo.io.omezarr import read_ome_zarr_labels

    labs = read_ome_zarr_labels(d / "seg.ome.zarr")
    assert set(labs) >= {"semantic", "instances"}
    assert labs["semantic"].shape == (20, 80, 100)
    assert main(["segment", str(d / "tomo.ome.tif"), "-o", str(d / "fine.ome.tif"), "--model", "unet_fine"]) == 0
    assert main(["segment", str(d / "tomo.ome.tif"), "-o", str(d / "x.ome.tif"), "--model", "unet_huge"]) == 2
    assert not (d / "x.ome.tif").exists()


def test_fast_mode_from_the_command_line(workdir, capsys):
    """``--fast`` (no test-time flips) reaches the U-Net from ``holo segment`` and ``holo run``:
    the two balls of radius 2.8 µm are found, each ≈ its volume (92 µm³; the mask edge within
    about a voxel, 0.15 µm: ± 20 %); with the classic method it is a usage error that writes
    nothing."""
    from holo.io.ometiff import read_labels_tiff

    d = workdir
    assert main(["segment", str(d / "tomo.ome.tif"), "-o", str(d / "fast.ome.tif"), "--fast", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["fast"] is True and out["cells"] == 2
    inst = read_labels_tiff(d / "fast_instances.ome.tif")[0]
    volumes = np.bincount(inst.ravel())[1:] * np.prod(VS)
    assert volumes == pytest.approx([4 / 3 * np.pi * 2.8**3] * 2, rel=0.2)
    assert main(["segment", str(d / "tomo.ome.tif"), "-o", str(d / "y.ome.tif"), "--fast", "--method", "classic"]) == 2
    assert not (d / "y.ome.tif").exists()
    assert main(["run", str(d / "tomo.ome.tif"), "-o", str(d / "runfast"), "--fast", "--seg-method", "classic"]) == 2
    assert not (d / "runfast").exists()


def test_bad_inputs_exit_1(workdir, capsys):
    d = workdir
    assert main(["segment", str(d / "missing.ome.tif"), "-o", str(d / "x.ome.tif")]) == 1
    assert main(["measure", str(d / "tomo.ome.tif"), "--labels", str(d / "nolabels.ome.tif"), "-o", str(d / "c.csv")]) == 1
    assert main(["segment", str(d / "tomo.ome.tif"), "-o", str(d / "x.ome.tif"), "--method", "magic"]) == 2
    assert not (d / "x.ome.tif").exists()
    # holo run checks the weights set before touching any input
    assert main(["run", str(d / "tomo.ome.tif"), "-o", str(d / "runout"), "--model", "unet_huge"]) == 2
    assert "unet_huge" in capsys.readouterr().err and not (d / "runout").exists()


@pytest.mark.slow
def test_train_from_scratch_on_a_user_folder(tmp_path):
    """The documented folder layout, two volumes, one epoch: weights are written and load."""
    import torch

    from holo.io import save_labels

    data = tmp_path / "data"
    data.mkdir()
    for k in range(2):
        tomo = _tomogram(data / f"vol{k}.ome.tif")
        inst = np.zeros(tomo.ri.shape, np.int32)
        inst[tomo.ri > N_M + 0.01] = 1
        from scipy import ndimage as ndi

        inst = ndi.label(inst)[0].astype(np.int32)
        save_labels(inst, data / f"vol{k}_instance.ome.tif", VS)
        pd.DataFrame({"cell_id": [1, 2], "class": ["lymphocyte", "monocyte"]}).to_csv(data / f"vol{k}_cells.csv", index=False)
    out = tmp_path / "w"
    assert main(["train", "--data", str(data), "-o", str(out), "--init", "scratch", "--epochs", "1", "--steps", "2"]) == 0
    for name in ("unet", "classifier"):
        torch.load(out / f"{name}.pt", weights_only=True)
        assert json.loads((out / f"{name}.json").read_text())["voxel_size_um"]
    cfg = json.loads((out / "classifier.json").read_text())
    assert cfg["classes"] == ["lymphocyte", "monocyte"]
