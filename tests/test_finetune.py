"""Fine-tuning on corrected labels (holo.segmentation.train.finetune_volumes, ``holo train``):
weights land in the user's folder, never the shipped one, with the held-out scores before and
after; a cancelled run leaves nothing; bad input is one line. Tiny volumes, a few steps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from holo.errors import HoloError
from holo.segmentation.data import TrainingVolume
from holo.segmentation.infer import WEIGHTS_DIR, load_unet, user_weight_sets
from holo.segmentation.train import GAIN_KEYS, consistent_labels, finetune_volumes

VS = (0.4, 0.2, 0.2)  # the shipped U-Net's training voxel: no resampling
N_M = 1.337


def _volume(seed: int) -> TrainingVolume:
    """16 × 32 × 32 voxels: one sphere (r 1.6 µm, Δn 0.03) with a nucleus (r 0.8 µm, Δn 0.05)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((16, 32, 32)).astype(np.float32)
    r = np.sqrt(((z - 8) * VS[0]) ** 2 + ((y - 16 + seed % 3) * VS[1]) ** 2 + ((x - 16) * VS[2]) ** 2)
    ri = np.full(z.shape, N_M, np.float32) + rng.normal(0, 0.001, z.shape).astype(np.float32)
    ri[r < 1.6] += 0.03
    ri[r < 0.8] += 0.02
    sem = np.where(r < 1.6, 1, 0).astype(np.uint8)
    sem[r < 0.8] = 2
    return TrainingVolume(ri, sem, (r < 1.6).astype(np.int32), VS, N_M, {}, f"sphere{seed}")


@pytest.fixture(scope="module")
def start_weights(tmp_path_factory):
    """A starting weights folder like the shipped one with a two-level U-Net (4, 8 channels)
    and no test-time augmentation, so that the tests stay cheap."""
    import shutil

    from holo.segmentation.train import inherited_config, save_weights
    from holo.segmentation.unet import unet_from_config

    d = tmp_path_factory.mktemp("start")
    cfg = {**inherited_config(json.loads((WEIGHTS_DIR / "unet.json").read_text())), "channels": [4, 8], "tta": 0}
    save_weights(unet_from_config(cfg).eval(), cfg, d, "unet")
    for name in ("classifier.pt", "classifier.json"):
        shutil.copyfile(WEIGHTS_DIR / name, d / name)
    return d


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, start_weights):
    """One fine-tuning run (2 volumes: 1 trained on, 1 held out; one epoch of 2 steps)."""
    root = tmp_path_factory.mktemp("weights_home")
    steps = []
    out = finetune_volumes([_volume(0), _volume(1)], root / "spheres", epochs=1, steps_per_epoch=2, batch_size=1,
                           weights_dir=start_weights, log=lambda s: None,
                           progress=lambda d, t, note="": steps.append((d, t)))
    return root, out, steps


def test_finetune_writes_a_user_weight_set_with_its_gain(tuned, monkeypatch):
    root, out, steps = tuned
    assert steps[-1] == (2, 2)  # progress after every optimiser step
    d = root / "spheres"
    for name in ("unet.pt", "unet.json", "classifier.pt", "classifier.json", "finetune.json"):
        assert (d / name).is_file(), name
    model, cfg = load_unet(d)  # loads with weights_only=True
    assert cfg["voxel_size_um"] == list(VS) and "organelle_model" not in cfg
    m = out["metrics"]
    assert m["n_train_volumes"] == 1 and m["n_heldout_volumes"] == 1
    for k in GAIN_KEYS:
        assert m["gain"][k] == pytest.approx(m["unet"][k] - m["unet_before"][k])
        assert 0.0 <= m["unet"][k] <= 1.0
    assert json.loads((d / "finetune.json").read_text())["metrics"]["gain"] == m["gain"]
    monkeypatch.setenv("HOLO_WEIGHTS_HOME", str(root))
    assert list(user_weight_sets()) == ["spheres"]


def test_finetune_never_writes_the_shipped_weights(tmp_path):
    before = sorted(p.name for p in WEIGHTS_DIR.iterdir())
    for out in (WEIGHTS_DIR, WEIGHTS_DIR / "mine"):
        with pytest.raises(HoloError, match="overwrite"):
            finetune_volumes([_volume(0)], out, epochs=1, steps_per_epoch=1, log=lambda s: None)
    assert sorted(p.name for p in WEIGHTS_DIR.iterdir()) == before


def test_cancelled_finetune_leaves_nothing(tmp_path, start_weights):
    class Stop(Exception):
        pass

    def cancel(done, total, note=""):
        raise Stop()

    with pytest.raises(Stop):
        finetune_volumes([_volume(0), _volume(1)], tmp_path / "w", epochs=1, steps_per_epoch=2, batch_size=1,
                         weights_dir=start_weights, log=lambda s: None, progress=cancel)
    assert list(tmp_path.iterdir()) == []


def test_consistent_labels_follow_the_corrected_instances():
    sem = np.array([[[0, 1, 2, 1]]], np.uint8)
    inst = np.array([[[3, 0, 1, 1]]], np.int32)  # a cell painted over background, one erased
    assert consistent_labels(sem, inst).tolist() == [[[1, 0, 2, 1]]]


def test_holo_train_bad_data_is_one_line(tmp_path, capsys):
    from holo.cli.main import main

    assert main(["train", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    assert main(["train", "--data", str(tmp_path), "-o", str(WEIGHTS_DIR)]) == 1
    assert not (tmp_path / "w").exists()
