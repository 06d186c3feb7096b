"""Out-of-distribution abstention: per-class Gaussians of measured features, χ² threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from holo.labels import UNCERTAIN, UNKNOWN
from holo.segmentation.novelty import FEATURES, abstain, cell_features, fit_class_gaussians


def _table(rng, n, volume, conc, sph, nuc, tex, cls):
    vol = volume * np.exp(rng.normal(0, 0.1, n))
    return pd.DataFrame({
        "cell_id": np.arange(1, n + 1), "volume_um3": vol,
        "concentration_pg_per_um3": rng.normal(conc, 0.01, n), "sphericity": rng.normal(sph, 0.02, n),
        "nucleus_volume_um3": vol * rng.normal(nuc, 0.03, n), "ri_std": rng.normal(tex, 0.0005, n),
        "class": cls, "confidence": 0.95,
    })


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    lym = _table(rng, 60, 200.0, 0.12, 0.9, 0.6, 0.004, "lymphocyte")
    rbc = _table(rng, 60, 90.0, 0.30, 0.7, 0.0, 0.002, "rbc_discocyte")
    both = pd.concat([lym, rbc], ignore_index=True)
    return fit_class_gaussians(cell_features(both), both["class"].to_numpy())


def test_abstention_rate_matches_the_chi2_quantile(model):
    # cells drawn from the fitted Gaussian itself: D² ~ χ²(5), so a fraction 1 − q abstains
    rng = np.random.default_rng(1)
    g = model["classes"]["lymphocyte"]
    f = rng.multivariate_normal(g["mean"], g["cov"], 4000)
    cells = pd.DataFrame({"cell_id": np.arange(4000), "volume_um3": 10 ** f[:, 0], "concentration_pg_per_um3": f[:, 1],
                          "sphericity": f[:, 2], "nucleus_volume_um3": f[:, 3] * 10 ** f[:, 0], "ri_std": f[:, 4],
                          "class": "lymphocyte", "confidence": 0.9})
    out = abstain(cells, model, quantile=0.99)
    # binomial: 40 ± 6 of 4000
    assert (out["class"] == UNKNOWN).mean() == pytest.approx(0.01, abs=0.005)
    assert out["novelty_d2"].mean() == pytest.approx(len(FEATURES), rel=0.05)


def test_wrong_pixel_size_and_a_homogeneous_sphere_are_unknown_with_a_reason(model):
    rng = np.random.default_rng(2)
    ok = _table(rng, 5, 200.0, 0.12, 0.9, 0.6, 0.004, "lymphocyte")
    wrong_pixel = ok.copy()
    wrong_pixel["volume_um3"] *= 1.39**3  # voxel size off by 1.39×: volume × 2.7
    wrong_pixel["nucleus_volume_um3"] *= 1.39**3
    sphere = _table(rng, 1, 268.0, 0.12, 0.99, 0.0, 0.0005, "lymphocyte")  # 8 µm ball, no nucleus, no texture
    out = abstain(pd.concat([ok, wrong_pixel, sphere], ignore_index=True), model)
    assert (out["class"].iloc[:5] == "lymphocyte").all() and (out["reason"].iloc[:5] == "").all()
    assert (out["class"].iloc[5:] == UNKNOWN).all()
    assert out["reason"].iloc[5].startswith("unlike the training cells: volume")


def test_uncertain_cells_get_a_reason_and_no_model_only_adds_columns():
    cells = pd.DataFrame({"cell_id": [1, 2], "class": ["lymphocyte", UNCERTAIN], "confidence": [0.9, 0.4],
                          "volume_um3": [1.0, 1.0], "concentration_pg_per_um3": [0.1, 0.1], "sphericity": [1, 1],
                          "nucleus_volume_um3": [0, 0], "ri_std": [0, 0]})
    out = abstain(cells, None)
    assert list(out["class"]) == ["lymphocyte", UNCERTAIN]
    assert out["reason"].iloc[0] == "" and "probability" in out["reason"].iloc[1]
    with pytest.raises(ValueError, match="quantile"):
        abstain(cells, None, quantile=1.5)


def test_shipped_model_covers_every_class_and_rejects_a_plain_sphere():
    # the case: a homogeneous 8 µm ball (n 1.36) was called "lymphocyte, 0.97"
    from holo.labels import CELL_CLASSES
    from holo.segmentation.morphometrics import measure_cells
    from holo.segmentation.novelty import load_novelty

    model = load_novelty()
    assert model["features"] == list(FEATURES) and set(model["classes"]) == set(CELL_CLASSES)
    vs = (0.4, 0.2, 0.2)
    z, y, x = np.meshgrid(*[(np.arange(n) - n // 2) * v for n, v in zip((30, 56, 56), vs)], indexing="ij")
    ball = z**2 + y**2 + x**2 < 4.0**2
    cells = measure_cells(np.where(ball, 1.36, 1.337).astype(np.float32), None, ball.astype(np.int32), vs, 1.337)
    cells["class"], cells["confidence"] = "lymphocyte", 0.97
    out = abstain(cells, model)
    assert out["class"].iloc[0] == UNKNOWN and out["reason"].iloc[0].startswith("unlike the training cells")
