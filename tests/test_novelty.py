"""Out-of-distribution abstention: per-class Gaussians of measured features, χ² threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from holo.labels import UNCERTAIN, UNKNOWN
from holo.segmentation.novelty import FEATURES, abstain, cell_features, fit_class_gaussians


def _table(rng, n, volume, conc, sph, nuc, tex, cls, outside=0.3):
    """Cells table; ``outside`` the fraction of the share's dry mass outside the tight mask."""
    vol = volume * np.exp(rng.normal(0, 0.1, n))
    c = rng.normal(conc, 0.01, n)
    out = np.clip(rng.normal(outside, 0.02, n), 0, 0.95)
    return pd.DataFrame({
        "cell_id": np.arange(1, n + 1), "volume_um3": vol,
        "concentration_pg_per_um3": c, "sphericity": rng.normal(sph, 0.02, n),
        "nucleus_volume_um3": vol * rng.normal(nuc, 0.03, n), "ri_std": rng.normal(tex, 0.0005, n),
        "dry_mass_pg": c * vol, "dry_mass_mask_pg": (1 - out) * c * vol,
        "class": cls, "confidence": 0.95,
    })


def _from_features(f, cls):
    """Cells table whose :func:`cell_features` are the rows of ``f`` (all of FEATURES)."""
    vol = 10 ** f[:, 0]
    return pd.DataFrame({"cell_id": np.arange(len(f)), "volume_um3": vol, "concentration_pg_per_um3": f[:, 1],
                         "sphericity": f[:, 2], "nucleus_volume_um3": f[:, 3] * vol, "ri_std": f[:, 4],
                         "dry_mass_mask_pg": f[:, 5] * vol, "dry_mass_pg": f[:, 5] * vol / (1 - f[:, 6]),
                         "class": cls, "confidence": 0.9})


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
    cells = _from_features(f, "lymphocyte")
    np.testing.assert_allclose(cell_features(cells), f, rtol=1e-9, atol=1e-12)
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
                          "nucleus_volume_um3": [0, 0], "ri_std": [0, 0], "dry_mass_pg": [0.1, 0.1],
                          "dry_mass_mask_pg": [0.07, 0.07]})
    out = abstain(cells, None)
    assert list(out["class"]) == ["lymphocyte", UNCERTAIN]
    assert out["reason"].iloc[0] == "" and "probability" in out["reason"].iloc[1]
    with pytest.raises(ValueError, match="quantile"):
        abstain(cells, None, quantile=1.5)


def test_a_piece_of_a_larger_body_is_unknown_though_size_and_shape_match(model):
    # the thick part of a spread cell segmented alone: red-cell volume, shape and (share)
    # concentration, but cytoplasm RI inside the mask and half its share's mass outside it
    rng = np.random.default_rng(3)
    whole = _table(rng, 5, 90.0, 0.30, 0.7, 0.0, 0.002, "rbc_discocyte", outside=0.3)
    piece = _table(rng, 3, 90.0, 0.30, 0.7, 0.0, 0.002, "rbc_discocyte", outside=0.55)
    out = abstain(pd.concat([whole, piece], ignore_index=True), model)
    assert (out["class"].iloc[:5] == "rbc_discocyte").all()
    assert (out["class"].iloc[5:] == UNKNOWN).all()
    assert out["reason"].iloc[5:].str.contains("outside the mask|inside the mask").all()


def test_a_model_fitted_on_fewer_features_keeps_working(model):
    # an older novelty.json (five features) is read with its own feature list
    names = list(FEATURES[:5])
    rng = np.random.default_rng(4)
    cells = pd.concat([_table(rng, 60, 200.0, 0.12, 0.9, 0.6, 0.004, "lymphocyte"),
                       _table(rng, 60, 90.0, 0.30, 0.7, 0.0, 0.002, "rbc_discocyte")], ignore_index=True)
    old = fit_class_gaussians(cell_features(cells, names), cells["class"].to_numpy(), features_names=names)
    assert old["features"] == names and len(old["classes"]["lymphocyte"]["mean"]) == 5
    piece = _table(rng, 2, 90.0, 0.30, 0.7, 0.0, 0.002, "rbc_discocyte", outside=0.55)
    out = abstain(piece, old)  # the five features cannot see it: the reason for the two new ones
    assert out["novelty_d2"].notna().all() and (out["class"] == "rbc_discocyte").all()
    with pytest.raises(ValueError, match="unknown novelty features"):
        cell_features(piece, ["volume"])


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


def test_edge_cut_ratio_follows_the_section_of_a_cut_sphere():
    # sphere of radius R whose centre lies h inside the face x = 0: the face section is the
    # disc of radius √(R² − h²), the widest section the equator, ρ = 1 − h²/R²; centre
    # outside the field: the face is the widest section, ρ = 1; a cell inside: absent
    from holo.segmentation.novelty import edge_cut_ratio

    r = 10.0
    z, y, x = np.meshgrid(np.arange(24) - 12.0, np.arange(24) - 12.0, np.arange(60), indexing="ij")

    def field(cx):
        inst = np.zeros(z.shape, np.int32)
        inst[z**2 + y**2 + (x - cx) ** 2 <= r**2] = 1
        inst[z**2 + y**2 + (x - 45.0) ** 2 <= 4.0**2] = 2  # inside the field
        return inst

    rho = edge_cut_ratio(field(5.0))
    assert set(rho) == {1} and rho[1] == pytest.approx(1 - 5.0**2 / r**2, abs=0.05)
    assert edge_cut_ratio(field(-4.0)) == {1: pytest.approx(1.0)}


def test_cells_cut_by_the_field_edge_are_unknown_above_the_limit(model):
    from holo.segmentation.novelty import REASONS

    rng = np.random.default_rng(5)
    cells = _table(rng, 3, 200.0, 0.12, 0.9, 0.6, 0.004, "lymphocyte")
    out = abstain(cells, model, edge_cut={1: 0.2, 2: 0.9}, max_edge_cut=0.5)
    assert list(out["class"]) == ["lymphocyte", UNKNOWN, "lymphocyte"]
    assert out["reason"].iloc[1].startswith(REASONS["edge"]) and out["reason"].iloc[0] == ""
    assert (abstain(cells, model, edge_cut={2: 0.9}, max_edge_cut=None)["class"] == "lymphocyte").all()
    # the report counts each reason of the vocabulary (report.json summary, report page)
    from holo.segmentation.report import reason_counts

    assert reason_counts(out) == {REASONS["edge"]: 1}
    with pytest.raises(ValueError, match="max_edge_cut"):
        abstain(cells, None, edge_cut={2: 0.9}, max_edge_cut=2.0)


def test_shipped_model_was_fitted_on_training_seeds_at_several_samplings():
    # issue 20, "any sampling": cells seen on anisotropic Tomocube-like grids are part of the
    # fitted distribution, and no held-out seed (make_data val/test ranges, ≥ 5000) was used
    from holo.segmentation.novelty import load_novelty
    from holo.training.make_data import SPLIT_SEED0

    prov = load_novelty()["provenance"]
    held_out = min(v for (split, _), v in SPLIT_SEED0.items() if split != "train")
    assert all(hi <= held_out for _, hi in prov["seeds"].values())
    grids = [tuple(float(v) for v in k.split()[1].split("x")) for k in prov["n_cells_per_source_and_grid"]]
    assert max(dz / dx for dz, _, dx in grids) > 4 and len(grids) >= 3
    assert sum(prov["n_cells_per_source_and_grid"].values()) == prov["n_cells"]
    assert "--reuse-table" not in prov["command"]
