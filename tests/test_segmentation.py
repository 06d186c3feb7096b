"""Segmentation stage: instrument transfer function, networks, tiling, training, calibration,
classical baseline and the shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from holo.segmentation.classic import classic_segment
from holo.segmentation.classifier import calibrated_probabilities, fit_temperature
from holo.segmentation.data import TrainingVolume, apply_otf, normalised_distance, otf_support
from holo.segmentation.infer import WEIGHTS_DIR, predict_tiled, resample_volume, resize_labels, unet_names
from holo.segmentation.train import dice, instance_ap, train_unet
from holo.segmentation.unet import UNet3D, pool_factors

N_M = 1.337
LAMBDA = 0.532


def _balls(shape, vs, specs, n_in=1.365):
    """RI volume + instance labels of balls given as (cz, cy, cx, r) in µm."""
    ax = [np.arange(n) * v for n, v in zip(shape, vs)]
    z, y, x = np.meshgrid(*ax, indexing="ij")
    ri = np.full(shape, N_M, np.float32)
    inst = np.zeros(shape, np.int32)
    for k, (cz, cy, cx, r) in enumerate(specs, start=1):
        m = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r
        ri[m] = n_in
        inst[m] = k
    return ri, inst


def test_otf_support_has_a_missing_cone_and_lateral_cutoff():
    shape, vs = (64, 64, 64), (0.2, 0.2, 0.2)
    sup = otf_support(shape, vs, wavelength_um=LAMBDA, medium_index=N_M, objective_na=1.2, illumination_na=1.1)
    fz, fy, fx = np.meshgrid(*[np.fft.fftfreq(n, v) for n, v in zip(shape, vs)], indexing="ij")
    fperp = np.hypot(fy, fx)
    assert sup[0, 0, 0]
    # lateral reach of K = k_s − k_in: |K⊥| ≤ (NA_obj + NA_ill)/λ (+ one voxel of closing)
    df = 1.0 / (64 * 0.2)
    assert not sup[fperp > (1.2 + 1.1) / LAMBDA + 2 * df].any()
    # missing cone: near the K_z axis |K_z| ≲ |K⊥| tan θ_max (θ_max = asin(NA_ill/n_m) = 55°,
    # tan = 1.43): for |K⊥| < 0.2 /µm that is < 0.29 /µm, plus ≈ 2 voxels (0.16 /µm) of
    # gridding and closing; nothing may lie beyond 0.6 /µm there.
    assert not sup[(fperp < 0.2) & (np.abs(fz) > 0.6)].any()
    # but at |K⊥| = NA_obj/λ the support reaches a finite |K_z|
    assert sup[(np.abs(fperp - 1.2 / LAMBDA) < df) & (np.abs(fz) > 0.3)].any()


def test_apply_otf_elongates_a_sphere_along_z():
    # The missing cone blurs the object along Z more than laterally (equal voxels, equal radius).
    vs = (0.2, 0.2, 0.2)
    ri, _ = _balls((64, 64, 64), vs, [(6.4, 6.4, 6.4, 1.5)], n_in=1.37)
    rec = apply_otf(ri, vs, N_M, noise_ri=0.0)
    dn = rec - N_M
    c = 32
    prof_z, prof_x = dn[:, c, c], dn[c, c, :]
    half = dn[c, c, c] / 2
    width_z = (prof_z > half).sum()
    width_x = (prof_x > half).sum()
    assert width_z > width_x
    # the measured band keeps K = 0, so the integral of Δn (the dry mass) is preserved
    assert dn.sum() == pytest.approx((ri - N_M).sum(), rel=1e-3)


def test_sample_rotation_otf_moves_the_missing_cone_to_the_rotation_axis():
    # Views about Y with normal incidence: K = k_s − k_in turned by θ ∈ [0, π) fills the cone
    # about K_z that an illumination scan misses, and misses one about K_y: near K_y the
    # cap reaches only |K_zx| ≤ n_m/λ − √((n_m/λ)² − K_y²) (0.76 /µm at |K_y| = 1.8 /µm).
    shape, vs = (64, 64, 64), (0.2, 0.2, 0.2)
    fz, fy, fx = np.meshgrid(*[np.fft.fftfreq(n, v) for n, v in zip(shape, vs)], indexing="ij")
    near_y = (np.hypot(fz, fx) < 0.3) & (np.abs(fy) > 1.8) & (np.abs(fy) < 2.2)
    near_z = (np.hypot(fy, fx) < 0.3) & (np.abs(fz) > 1.0)
    scan = otf_support(shape, vs, wavelength_um=LAMBDA, medium_index=N_M)
    rot = otf_support(shape, vs, wavelength_um=LAMBDA, medium_index=N_M, geometry="sample-rotation")
    assert not scan[near_z].any() and scan[near_y].all()
    assert not rot[near_y].any() and rot[near_z].mean() > 0.95
    assert rot[0, 0, 0]
    # a ball seen by sample rotation is not stretched along Z as by the illumination scan:
    # the spread σ_a = √(Σ|Δn|(a − a₀)² / Σ|Δn|) along Z equals that along X (the views turn
    # Z into X), and the dry mass (K = 0) is kept
    ri, _ = _balls(shape, vs, [(6.4, 6.4, 6.4, 1.5)], n_in=1.37)
    z, _, x = np.meshgrid(*[np.arange(n) * v - 6.4 for n, v in zip(shape, vs)], indexing="ij")

    def spreads(geometry):
        w = np.abs(apply_otf(ri, vs, N_M, noise_ri=0.0, geometry=geometry) - N_M)
        return [float(np.sqrt((w * a**2).sum() / w.sum())) for a in (z, x)]

    (sz_scan, sx_scan), (sz_rot, sx_rot) = spreads("illumination-scan"), spreads("sample-rotation")
    assert sz_scan > 1.05 * sx_scan
    assert sz_rot == pytest.approx(sx_rot, rel=0.02) and sz_rot < sz_scan
    dn = apply_otf(ri, vs, N_M, noise_ri=0.0, geometry="sample-rotation") - N_M
    assert dn.sum() == pytest.approx((ri - N_M).sum(), rel=1e-3)
    with pytest.raises(ValueError, match="geometry"):
        otf_support(shape, vs, geometry="tilt")


def test_apply_otf_noise_level():
    vs = (0.4, 0.2, 0.2)
    rec = apply_otf(np.full((32, 64, 64), N_M, np.float32), vs, N_M, noise_ri=0.002, rng=0)
    # band-limited white noise scaled to the requested standard deviation (sampling error of
    # 131k correlated voxels: a few %)
    assert np.std(rec) == pytest.approx(0.002, rel=0.1)


def test_normalised_distance():
    vs = (0.4, 0.2, 0.2)
    _, inst = _balls((24, 48, 96), vs, [(4.8, 4.8, 4.8, 3.0), (4.8, 4.8, 10.8, 3.0)])
    d = normalised_distance(inst, vs)
    assert d.min() == 0 and d.max() == pytest.approx(1.0)
    assert np.all(d[inst == 0] == 0)
    for k in (1, 2):
        assert d[inst == k].max() == pytest.approx(1.0)
    # touching faces of the two balls lie at a valley of d
    assert d[12, 24, 39] < 0.2


def test_metrics():
    a = np.zeros((4, 10, 10), int)
    b = np.zeros_like(a)
    a[:, :5] = 1
    a[:, 5:] = 2
    b[:, :5] = 7
    b[:, 5:9] = 3  # IoU 0.8 with a's cell 2
    assert instance_ap(b, a) == 1.0
    b[:, 5:7] = 3
    b[:, 7:] = 4  # cell 2 split into two halves (IoU 0.4 and 0.6)
    # TP: 1 (cell 1) + 1 (IoU 0.6); FP: 1; FN: 0 -> 2/3
    assert instance_ap(b, a) == pytest.approx(2 / 3)
    assert dice(a > 0, a > 0) == 1.0
    assert dice(a == 1, a == 2) == 0.0


def test_classic_separates_touching_cells():
    vs = (0.4, 0.15, 0.15)
    specs = [(4.0, 4.5, 4.5, 3.0), (4.0, 4.5, 10.0, 3.0), (4.0, 11.0, 7.0, 2.5)]
    ri, inst = _balls((20, 96, 96), vs, specs)
    ri = ri + np.random.default_rng(1).normal(0, 0.001, ri.shape).astype(np.float32)
    sem, lab = classic_segment(ri, vs, N_M)
    assert lab.max() == 3
    assert instance_ap(lab, inst) == 1.0
    assert dice(sem > 0, inst > 0) > 0.95


def test_unet_pools_laterally_first_on_anisotropic_voxels():
    assert pool_factors((0.4, 0.2, 0.2), 3) == [(1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert pool_factors((0.2, 0.2, 0.2), 2) == [(2, 2, 2), (2, 2, 2)]
    net = UNet3D(channels=(4, 8, 16), voxel_size_um=(0.4, 0.2, 0.2)).eval()
    assert net.enc[0][0].kernel_size == (1, 3, 3)  # dz = 2 dx: no mixing along Z at full resolution
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 8, 32, 32))
    assert out.shape == (1, 6, 8, 32, 32)


class _Pointwise(torch.nn.Module):
    """A 'network' whose output at a voxel depends only on that voxel: tiling must be exact."""

    n_classes = 2
    divisor = (1, 1, 1)

    def forward(self, x):
        return torch.cat([x, -x, 2 * x], dim=1)


def test_tiled_blending_is_exact_for_a_local_model():
    x = np.random.default_rng(0).normal(size=(20, 50, 70)).astype(np.float32)
    probs, dist = predict_tiled(_Pointwise(), x, tile_zyx=(8, 16, 24), overlap=0.5, device=torch.device("cpu"))
    p1 = 1 / (1 + np.exp(-2 * x))  # softmax of (x, −x), class 0
    np.testing.assert_allclose(probs[0], p1, atol=1e-5)
    np.testing.assert_allclose(dist, 1 / (1 + np.exp(-2 * x)), atol=1e-5)


def test_memory_budget_tiles_cover_the_volume_with_the_configured_halo():
    from holo.segmentation.infer import tile_plan

    cfg_tile, div = (96, 192, 192), (4, 8, 8)
    # a volume within one configured tile: the same single tile with or without a budget
    for shape in [(48, 128, 128), (40, 150, 190)]:
        a, b = tile_plan(shape, cfg_tile, div, 0.25), tile_plan(shape, cfg_tile, div, 0.25, 8e6)
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all() and (a[1] == 1).all()
    shape = np.array([72, 563, 563])  # the large bench field on the training grid
    t0, k0 = tile_plan(shape, cfg_tile, div, 0.25)
    for budget in (8e6, 3e6, 1e6):
        t, k = tile_plan(shape, cfg_tile, div, 0.25, budget)
        assert np.prod(t) <= budget and (t % div == 0).all()
        assert (k * t - (k - 1) * np.ceil(0.25 * np.minimum(cfg_tile, shape)) >= shape).all()  # covered, halo kept
    t, k = tile_plan(shape, cfg_tile, div, 0.25, 8e6)
    assert np.prod(k) * np.prod(t) < 0.8 * np.prod(k0) * np.prod(t0)  # fewer voxels predicted twice
    # a budget the plan cannot meet: the smallest tile, for the memory check to refuse
    assert np.prod(tile_plan(shape, cfg_tile, div, 0.25, 10)[0]) < np.prod(t0)


def test_semantic_labels_are_the_most_probable_class_first_on_ties():
    from holo.segmentation.infer import semantic_from_probabilities

    p = np.random.default_rng(1).random((5, 4, 6, 8)).astype(np.float32)
    p[3, :2] = p[2, :2]  # ties: the lower class wins, as argmax
    ref = (np.argmax(p[1:], axis=0) + 1).astype(np.uint8)
    ref[1.0 - p[0] <= 0.4] = 0
    assert np.array_equal(semantic_from_probabilities(p, 0.4), ref) and (ref[:2] != 3).all()


def test_budget_tiles_blend_exactly_for_a_local_model():
    x = np.random.default_rng(0).normal(size=(20, 50, 70)).astype(np.float32)
    stats = {}
    probs, dist = predict_tiled(_Pointwise(), x, tile_zyx=(8, 16, 24), overlap=0.5, device=torch.device("cpu"),
                                max_tile_voxels=8 * 30 * 40, stats=stats)
    assert stats["tiles_run"] > 1 and np.prod(stats["tile_zyx"]) <= 8 * 30 * 40
    np.testing.assert_allclose(dist, 1 / (1 + np.exp(-2 * x)), atol=1e-5)


def test_resampling_roundtrip_keeps_shape_and_labels():
    lab = np.zeros((20, 60, 60), np.int32)
    lab[5:15, 10:40, 10:40] = 3
    vol = resample_volume(lab.astype(np.float32), (0.3, 0.11, 0.11), (0.4, 0.2, 0.2), order=1)
    assert vol.shape == (15, 33, 33)
    back = resize_labels((vol > 1.5).astype(np.int32) * 3, lab.shape)
    assert back.shape == lab.shape
    # nearest neighbour on a grid 2× coarser: labels agree except within one coarse voxel of edges
    assert dice(back == 3, lab == 3) > 0.9


@pytest.mark.slow
def test_small_unet_training_loss_falls():
    vs = (0.4, 0.2, 0.2)
    rng = np.random.default_rng(0)
    vols = []
    for k in range(3):
        specs = [(rng.uniform(2.5, 4), rng.uniform(3, 10), rng.uniform(3, 10), rng.uniform(1.5, 2.5)) for _ in range(2)]
        ri, inst = _balls((16, 64, 64), vs, specs)
        sem = (inst > 0).astype(np.uint8)
        vols.append(TrainingVolume(apply_otf(ri, vs, N_M, rng=k, noise_ri=0.001), sem, inst, vs, N_M))
    cfg = {"n_classes": 5, "channels": [4, 8], "voxel_size_um": list(vs), "ri_scale": 25.0}
    torch.manual_seed(0)
    model, hist = train_unet(vols, [], cfg, epochs=5, steps_per_epoch=8, batch_size=2, crop_zyx=(16, 32, 32),
                             lr=1e-2, patience=10, log=lambda s: None)
    losses = [h["loss"] for h in hist]
    assert losses[-1] < 0.7 * losses[0]


def test_temperature_scaling_recovers_the_true_temperature():
    # Labels drawn from softmax(z / 3): the NLL-optimal temperature is 3. With 4000 samples
    # the statistical error of the fit is ≈ 5 %; we allow 15 %.
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, size=(4000, 5))
    p = calibrated_probabilities(z, 3.0)
    y = np.array([rng.choice(5, p=pi) for pi in p])
    assert fit_temperature(z, y) == pytest.approx(3.0, rel=0.15)
    # calibration never changes the predicted class
    assert np.array_equal(calibrated_probabilities(z, 0.5).argmax(1), z.argmax(1))


def test_unet_names_list_complete_weight_sets(tmp_path):
    for name in ("unet", "unet_fine", "unet_half"):
        (tmp_path / f"{name}.json").write_text("{}")
        (tmp_path / f"{name}.pt").write_bytes(b"")
    (tmp_path / "unet_half.pt").unlink()  # a set without its weights file does not count
    (tmp_path / "unetx.json").write_text("{}")
    assert unet_names(tmp_path) == ["unet", "unet_fine"]
    assert {"unet", "unet_fine"} <= set(unet_names())


def test_shipped_weights_load_with_weights_only():
    for name in ("unet", "unet_fine", "classifier"):
        state = torch.load(WEIGHTS_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
        cfg = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        assert cfg["voxel_size_um"] and cfg["ri_scale"] > 0
    size_mb = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.pt")) / 1e6
    assert size_mb < 10


def test_shipped_unet_segments_a_twin_volume():
    """Held-out twin volume (seed outside the training ranges) through the instrument OTF."""
    from holo.model import Tomogram
    from holo.twin.phantoms import make_phantom
    from holo.segmentation import classify, measure, segment
    from holo.segmentation.data import labels_to_grid, ri_to_grid

    ph = make_phantom("cell", shape_zyx=(48, 128, 128), voxel_size_um=(0.2, 0.1, 0.1), medium_index=N_M, seed=424242)
    rec = apply_otf(ph.ri, ph.voxel_size_um, N_M, rng=1, noise_ri=0.0015)
    # the instrument's grid: 0.3 µm axial, 0.12 µm lateral
    vs = (0.3, 0.12, 0.12)
    shape = tuple(int(round(s * p / v)) for s, p, v in zip(ph.ri.shape, ph.voxel_size_um, vs))
    ri = ri_to_grid(rec, ph.voxel_size_um, shape, vs, N_M)
    sem_true = labels_to_grid(np.asarray(ph.semantic), ph.voxel_size_um, shape, vs)
    tomo = Tomogram(ri=ri, voxel_size_um=vs, medium_index=N_M)
    seg = segment(tomo)
    assert seg.semantic.shape == ri.shape
    # test-sized bar (the model card reports the full held-out set): Dice of the cell mask
    assert dice(seg.semantic > 0, sem_true > 0) > 0.85
    cls = classify(tomo, seg.instance)
    assert len(cls) == seg.n_cells
    assert np.allclose(cls.filter(like="p_").sum(axis=1), 1.0, atol=1e-6)
    assert ((cls["class"] == "uncertain") == (cls["confidence"] < 0.6)).all()
    cells = measure(tomo, seg.semantic, seg.instance, classes=cls)
    assert len(cells) == seg.n_cells and (cells["dry_mass_pg"] > 0).all()


def test_shipped_fine_unet_resolves_bacteria_better():
    """unet_fine (0.1 µm lateral) exists for small objects: on a held-out bacteria field at the
    twin's sampling its cell mask must beat the default 0.2 µm U-Net's (held-out mean Dice
    0.89 vs 0.76 through the OTF, model card) and reach 0.8."""
    from holo.model import Tomogram
    from holo.twin.phantoms import make_phantom
    from holo.segmentation import segment

    ph = make_phantom("bacteria", shape_zyx=(48, 128, 128), voxel_size_um=(0.2, 0.1, 0.1), medium_index=N_M, seed=434343)
    ri = apply_otf(ph.ri, ph.voxel_size_um, N_M, rng=2, noise_ri=0.0015)
    tomo = Tomogram(ri=ri, voxel_size_um=ph.voxel_size_um, medium_index=N_M)
    truth = np.asarray(ph.semantic) > 0
    d_fine = dice(segment(tomo, name="unet_fine").semantic > 0, truth)
    d_default = dice(segment(tomo).semantic > 0, truth)
    assert d_fine > 0.8 and d_fine > d_default + 0.03


def _watershed_cut(shape, vs, specs, cut_x_um):
    """Instance labels of balls, with every ball's voxels at x ≥ cut_x_um relabelled as a new
    fragment (a watershed over-split along a plane)."""
    _, inst = _balls(shape, vs, specs)
    x = np.arange(shape[2]) * vs[2]
    frag = (inst > 0) & (x[None, None, :] >= cut_x_um)
    out = inst.copy()
    out[frag] = inst[frag] + inst.max()
    return inst, out


def test_contact_merging_joins_a_cut_cell_but_not_touching_cells():
    from holo.segmentation.instances import contact_areas, merge_by_contact

    vs = (0.4, 0.2, 0.2)
    # one ball of r = 3 µm cut through its centre into two halves: the cut face is π r² (the
    # staircase only adds area), the smaller half has V = 2/3 π r³, i.e. an equal-volume
    # sphere radius r' = r / 2^(1/3), so ρ = π r² / (π r'²) = 2^(2/3) ≈ 1.59 ≥ 0.8.
    true, cut = _watershed_cut((20, 40, 40), vs, [(4.0, 4.0, 4.0, 3.0)], cut_x_um=4.0)
    a, b, area = contact_areas(cut, vs)
    assert len(a) == 1 and area[0] >= 0.9 * np.pi * 3.0 ** 2
    merged = merge_by_contact(cut, vs, 0.8)
    assert merged.max() == 1 and instance_ap(merged, true) == 1.0
    # two balls r = 2.5 µm whose surfaces are 0.2 µm apart along X touch (voxel faces) only on
    # a small rim: A ≪ π r² (ρ well under 0.8), they must stay two cells
    _, two = _balls((20, 40, 64), vs, [(4.0, 4.0, 3.0, 2.5), (4.0, 4.0, 8.2, 2.5)])
    two[(two == 0) & (np.roll(two, 1, axis=2) == 1) & (np.roll(two, -1, axis=2) == 2)] = 1  # close the gap
    a, b, area = contact_areas(two, vs)
    assert len(a) == 1 and area[0] < 0.2 * np.pi * 2.5 ** 2
    assert merge_by_contact(two, vs, 0.8).max() == 2


def test_drop_faint_keeps_cells_and_removes_artefacts():
    from holo.segmentation.instances import drop_faint

    vs = (0.4, 0.2, 0.2)
    ri, inst = _balls((20, 40, 64), vs, [(4.0, 4.0, 3.0, 1.5), (4.0, 4.0, 9.0, 1.5)])
    # ball 2 is an artefact of Δn = 0.008, half the 0.016 threshold; ball 1 a cell of Δn = 0.028
    delta = (ri - N_M) * np.where(inst == 2, 0.008 / 0.028, 1.0).astype(np.float32)
    out = drop_faint(inst, delta, 0.016)
    assert out.max() == 1 and (out[inst == 1] == 1).all() and (out[inst == 2] == 0).all()
    assert drop_faint(inst, delta, 0.0).max() == 2
    with pytest.raises(ValueError, match="delta_ri"):
        drop_faint(inst, delta[:-1], 0.016)


class _MirrorSensitive(torch.nn.Module):
    """A 'network' whose output depends on the x position (not mirror symmetric)."""

    n_classes = 2
    divisor = (1, 1, 1)

    def forward(self, x):
        ramp = torch.linspace(-1.0, 1.0, x.shape[-1]).view(1, 1, 1, 1, -1)
        return torch.cat([x + ramp, -x, x * ramp], dim=1)


def test_test_time_augmentation_averages_mirrored_predictions():
    from holo.segmentation.infer import _flip_averaged

    x = np.random.default_rng(1).normal(size=(6, 12, 16)).astype(np.float32)
    model, dev = _MirrorSensitive(), torch.device("cpu")
    p0, d0 = predict_tiled(model, x, tile_zyx=(6, 12, 16), device=dev)
    p4, d4 = predict_tiled(model, x, tile_zyx=(6, 12, 16), device=dev, tta=4)
    # by definition: the mean of the predictions of the four mirror images, mirrored back
    views = []
    for ax in ((), (-1,), (-2,), (-2, -1)):
        pf, df = predict_tiled(model, np.flip(x, ax).copy() if ax else x, tile_zyx=(6, 12, 16), device=dev)
        views.append((np.flip(pf, tuple(a for a in ax)) if ax else pf, np.flip(df, ax) if ax else df))
    np.testing.assert_allclose(p4, np.mean([v[0] for v in views], axis=0), atol=1e-5)
    np.testing.assert_allclose(d4, np.mean([v[1] for v in views], axis=0), atol=1e-5)
    assert not np.allclose(p0, p4, atol=1e-3)  # the position-dependent model is not mirror invariant
    np.testing.assert_allclose(p4.sum(0), 1.0, atol=1e-5)  # still probabilities
    xb = torch.from_numpy(x[None, None])
    assert torch.allclose(_flip_averaged(model, xb, 2, [()]), _flip_averaged(model, xb, 2, [(), ()]))
    with pytest.raises(ValueError, match="tta"):
        predict_tiled(model, x, tta=3)


def test_aggregate_scores_pooled_and_nucleus_present():
    from holo.segmentation.train import aggregate_scores, segmentation_scores

    shape = (4, 10, 10)
    sem_a = np.zeros(shape, np.uint8)
    sem_a[:, :6] = 1
    sem_a[:, 1:4, 1:4] = 2  # 36 nucleus voxels
    vol_a = TrainingVolume(np.zeros(shape, np.float32), sem_a, (sem_a > 0).astype(np.int32), (1, 1, 1), N_M)
    pred_a = sem_a.copy()
    pred_a[:, 1:4, 3] = 1  # 24 of 36 nucleus voxels found -> Dice 2·24/(24+36) = 0.8
    sem_b = np.zeros(shape, np.uint8)
    sem_b[:, :2] = 1  # no nucleus
    vol_b = TrainingVolume(np.zeros(shape, np.float32), sem_b, (sem_b > 0).astype(np.int32), (1, 1, 1), N_M)
    pred_b = sem_b.copy()
    pred_b[:, 0, 0] = 2  # 4 false nucleus voxels: Dice 0 in a volume without a nucleus
    recs = [segmentation_scores(pred_a, (pred_a > 0).astype(np.int32), vol_a),
            segmentation_scores(pred_b, (pred_b > 0).astype(np.int32), vol_b)]
    agg = aggregate_scores(recs)
    assert recs[0]["dice_nucleus"] == pytest.approx(0.8)
    assert recs[1]["dice_nucleus"] == 0.0
    assert agg["dice_nucleus"] == pytest.approx(0.4)
    assert agg["dice_nucleus_present"] == pytest.approx(0.8) and agg["n_volumes_with_nucleus"] == 1
    assert agg["dice_nucleus_pooled"] == pytest.approx(2 * 24 / (24 + 36 + 4))
    assert agg["dice_cell"] == 1.0 and agg["dice_cell_pooled"] == 1.0 and agg["ap50"] == 1.0


def test_organelle_scores_count_objects_and_enter_model_selection():
    from holo.segmentation.train import aggregate_scores, segmentation_scores, selection_score

    shape = (6, 20, 20)
    sem = np.zeros(shape, np.uint8)
    sem[:, 2:18, 2:18] = 1
    sem[2:4, 4:6, 4:6] = 4  # lipid droplet A, 8 voxels
    sem[2:4, 12:14, 12:14] = 4  # lipid droplet B, 8 voxels
    sem[2:4, 8:10, 14:16] = 3  # nucleolus, 8 voxels
    vol = TrainingVolume(np.zeros(shape, np.float32), sem, (sem > 0).astype(np.int32), (1, 1, 1), N_M)
    pred = (sem > 0).astype(np.uint8)
    pred[2:4, 4:6, 4:6] = 4  # A found exactly
    pred[2:4, 15:17, 4:6] = 4  # a false droplet
    rec = segmentation_scores(pred, (pred > 0).astype(np.int32), vol)
    agg = aggregate_scores([rec])
    assert agg["lipid_recall"] == 0.5 and agg["lipid_precision"] == 0.5 and agg["n_lipid_true"] == 2
    assert agg["dice_lipid_pooled"] == pytest.approx(2 * 8 / (16 + 16))
    assert agg["nucleolus_recall"] == 0.0 and agg["nucleolus_precision"] is None  # nothing predicted
    assert agg["dice_nucleolus_pooled"] == 0.0
    base = {"dice_cell": 0.9, "dice_nucleus": 0.9, "ap50": 0.9}
    assert selection_score(base) == pytest.approx(0.9)
    assert selection_score({**base, "dice_lipid_pooled": 0.5, "dice_nucleolus_pooled": None}) == pytest.approx(0.8)


def test_organelle_centred_crops_contain_the_organelle():
    from holo.segmentation.data import random_crop
    from holo.segmentation.train import _unet_batch

    shape = (16, 48, 48)
    sem = np.zeros(shape, np.uint8)
    sem[:, 4:44, 4:44] = 1
    sem[1, 45, 46] = 4  # one droplet voxel at the volume's edge: the window is clipped, not shifted off it
    sem[8, 20, 20] = 3
    vol = TrainingVolume(np.zeros(shape, np.float32), sem, (sem > 0).astype(np.int32), (0.4, 0.2, 0.2), N_M)
    org = [np.flatnonzero(sem >= 3)]
    rng = np.random.default_rng(0)
    _, ys, _ = _unet_batch([vol], [np.zeros(shape, np.float32)], (8, 16, 16), 32, rng, 25.0, True, 1.0, org)
    assert all((y >= 3).any() for y in ys)
    (w,) = random_crop([sem], (8, 16, 16), rng, centre=(1, 45, 46))
    assert w.shape == (8, 16, 16) and w[1, -3, -2] == 4
    with pytest.raises(ValueError, match="class_weights"):
        train_unet([vol], [], {"n_classes": 5, "channels": [4, 8], "voxel_size_um": [0.4, 0.2, 0.2], "ri_scale": 25.0},
                   epochs=1, steps_per_epoch=1, batch_size=1, crop_zyx=(8, 16, 16), class_weights=[1, 1, 1],
                   log=lambda s: None)


def test_organelles_come_from_the_paired_network_inside_cells_only():
    from holo.segmentation.infer import load_unet, with_organelles
    from holo.segmentation.train import inherited_config

    sem = np.zeros((1, 1, 6), np.uint8)
    sem[0, 0, 1:5] = (1, 2, 1, 2)
    org = np.array([[[4, 4, 3, 1, 0, 3]]], np.uint8)
    # voxel 0 is background for the cell network: stays 0; 1 → droplet, 2 → nucleolus,
    # 3 (organelle net says cytoplasm) and 4 (says background) keep the cell network's label
    assert with_organelles(sem, org).tolist() == [[[0, 4, 3, 1, 2, 0]]]
    cfg = json.loads((WEIGHTS_DIR / "unet.json").read_text())
    assert cfg["organelle_model"] == "organelles"
    _, ocfg = load_unet(WEIGHTS_DIR, cfg["organelle_model"])
    assert ocfg["voxel_size_um"] == cfg["voxel_size_um"] and ocfg["ri_scale"] == cfg["ri_scale"]
    assert "organelle_model" not in inherited_config(cfg)  # a fine-tuned U-Net is not paired by default


def test_validation_round_robin_takes_every_source_in_turn():
    from holo.training.train import _interleave

    gp, rytov, otf = ["g1", "g2", "g3"], ["r1"], ["o1", "o2"]
    assert _interleave([gp, rytov, otf], 5) == ["g1", "r1", "o1", "g2", "o2"]
    assert _interleave([gp, rytov, otf], 99) == ["g1", "r1", "o1", "g2", "o2", "g3"]
    assert _interleave([[], otf], 1) == ["o1"]


def test_diagnose_without_cells_gives_the_columns_of_a_volume_with_cells():
    """segment → classify → measure: classification always runs, so a tomogram without any
    cell gives a 0-row table with exactly the columns of one with cells (U-Net and classic)."""
    from holo.model import Tomogram
    from holo.segmentation import METHODS, diagnose

    vs = (0.4, 0.2, 0.2)
    ri, _ = _balls((20, 64, 64), vs, [(4.0, 6.4, 6.4, 3.0)])
    noise = np.random.default_rng(0).normal(0, 0.0005, ri.shape).astype(np.float32)
    with_cell = Tomogram(ri=ri + noise, voxel_size_um=vs, medium_index=N_M)
    empty = Tomogram(ri=np.full(ri.shape, N_M, np.float32) + noise, voxel_size_um=vs, medium_index=N_M)
    steps = []
    seg, cells, timings = diagnose(with_cell, "classic", progress=lambda done, total, note="": steps.append(note))
    assert seg.n_cells == 1 and len(cells) == 1 and cells["class"].iloc[0] != ""
    assert set(timings) == {"segmentation", "classification", "measurement"}
    assert steps == ["segmenting", "classifying", "measuring", "1 cells"]
    for method in METHODS:
        seg0, cells0, _ = diagnose(empty, method)
        assert seg0.n_cells == 0 and len(cells0) == 0
        assert list(cells0.columns) == list(cells.columns)


def test_fast_mode_runs_one_forward_pass_per_tile_for_both_networks(monkeypatch):
    # fast=True: no test-time augmentation for the U-Net nor its organelle network
    import holo.segmentation.infer as infer

    seen = []
    real = infer.predict_tiled

    def spy(model, x, **kw):
        seen.append(kw["tta"])
        return real(model, x, **kw)

    monkeypatch.setattr(infer, "predict_tiled", spy)
    ri = np.full((12, 40, 40), 1.337, np.float32)
    ri[4:8, 15:25, 15:25] = 1.37
    infer.unet_segment(ri, (0.4, 0.2, 0.2), 1.337, fast=True)
    assert seen == [0, 0]
    seen.clear()
    infer.unet_segment(ri, (0.4, 0.2, 0.2), 1.337)
    assert seen == [4, 4]  # the shipped JSONs ask for four mirror images each


def _postprocess_truth(inst, vs, delta_ri):
    """Shipped post-processing of a perfect network output: P(background) = 0/1 from the
    truth, the distance target of training (:func:`normalised_distance`)."""
    from holo.segmentation.infer import labels_from_prediction

    cfg = json.loads((WEIGHTS_DIR / "unet.json").read_text())
    cfg["voxel_size_um"] = list(vs)
    fg = (inst > 0).astype(np.float32)
    probs = np.stack([1 - fg, fg, np.zeros_like(fg), np.zeros_like(fg), np.zeros_like(fg)])
    return labels_from_prediction(probs, normalised_distance(inst, vs), delta_ri, cfg)[1]


def test_postprocessing_splits_touching_spheres_keeps_an_ellipsoid_and_a_chain_of_rods():
    vs = (0.4, 0.2, 0.2)
    shape = (16, 36, 72)
    z, y, x = np.meshgrid(*[np.arange(n) * v for n, v in zip(shape, vs)], indexing="ij")
    cases = {}
    # two balls r 2.5 µm whose centres are 4.6 µm apart: they overlap by 0.4 µm (one face)
    two = np.zeros(shape, np.int32)
    for k, cx in ((1, 4.0), (2, 8.6)):
        two[((z - 3.2) ** 2 + (y - 3.6) ** 2 + (x - cx) ** 2 <= 2.5 ** 2) & (two == 0)] = k
    cases["touching balls"] = two
    # one convex ellipsoid, semi-axes 2 × 2.5 × 6 µm: one cell however elongated
    cases["ellipsoid"] = (((z - 3.2) / 2.0) ** 2 + ((y - 3.6) / 2.5) ** 2 + ((x - 7.0) / 6.0) ** 2 <= 1).astype(np.int32)
    # a chain of four rods (capsules r 0.5 µm, 2 µm long) end to end, touching: four cells
    rods = np.zeros(shape, np.int32)
    for k in range(4):
        x0 = 1.5 + 2.6 * k
        d2 = (z - 3.2) ** 2 + (y - 3.6) ** 2 + np.clip(np.abs(x - x0 - 1.0) - 0.55, 0, None) ** 2
        rods[(d2 <= 0.5 ** 2) & (rods == 0)] = k + 1
    cases["chain of rods"] = rods
    for name, inst in cases.items():
        delta = ndi.gaussian_filter((inst > 0).astype(np.float32) * 0.03, 0.7)
        out = _postprocess_truth(inst, vs, delta)
        assert out.max() == inst.max() and instance_ap(out, inst) == 1.0, name


def test_half_maximum_redraws_a_small_object_and_leaves_large_cells():
    from holo.segmentation.instances import refine_small_by_half_max

    vs = (0.4, 0.2, 0.2)
    # a 0.8 µm-radius ball (2.1 µm³) and a 3 µm one (113 µm³), blurred by a Gaussian PSF
    _, true = _balls((14, 30, 64), vs, [(2.8, 3.0, 2.5, 0.8), (2.8, 3.0, 8.0, 3.0)])
    delta = ndi.gaussian_filter((true > 0).astype(np.float32) * 0.03, (0.5, 1.0, 1.0))
    narrow = np.where(ndi.binary_erosion(true == 1), 1, np.where(true == 2, 2, 0)).astype(np.int32)
    out = refine_small_by_half_max(narrow, delta, 8.0, vs)
    iou = lambda a, b: np.logical_and(a, b).sum() / np.logical_or(a, b).sum()  # noqa: E731
    assert iou(out == 1, true == 1) > iou(narrow == 1, true == 1) + 0.15
    assert iou(out == 1, true == 1) > 0.7
    assert np.array_equal(out == 2, true == 2)  # the large cell keeps its voxels
    assert np.array_equal(refine_small_by_half_max(narrow, delta, 0.0, vs), narrow)


def test_calibration_error_and_reliability_bins():
    from holo.segmentation.classifier import expected_calibration_error, reliability_bins

    # 10 cells at confidence 0.8 of which 8 right: calibrated (ECE 0); 10 right at 0.6: ECE 0.4
    p = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(p, y, 10) == pytest.approx(0.0, abs=1e-12)
    conf, acc, count = reliability_bins(np.tile([0.6, 0.4], (10, 1)), np.zeros(10, int), 10)
    assert count.sum() == 10 and count[5] == 10 and acc[5] == 1.0 and conf[5] == pytest.approx(0.6)
    assert expected_calibration_error(np.tile([0.6, 0.4], (10, 1)), np.zeros(10, int), 10) == pytest.approx(0.4)


def test_watershed_per_component_equals_the_whole_volume_watershed():
    """Seeds and watershed computed on each foreground component's box give the labels (and
    numbering) of the whole-volume computation: touching balls, balls cut by the volume's
    edge, balls too low for a seed (cells of their own), a noisy network distance."""
    from holo.segmentation.classic import remove_small, watershed_instances
    from holo.segmentation.infer import instances_from_prediction

    vs = (0.3, 0.2, 0.2)
    rng = np.random.default_rng(3)
    shape = (30, 64, 64)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    fg = np.zeros(shape, bool)
    for _ in range(22):
        c, r = rng.uniform(0, 1, 3) * shape, rng.uniform(1, 7)
        fg |= ((z - c[0]) * 1.5) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r
    dist = ndi.gaussian_filter(rng.uniform(0, 1, shape).astype(np.float32), 1.5)
    relief = ndi.distance_transform_edt(fg, sampling=vs).astype(np.float32) * (np.float32(0.5) + dist)
    ref = watershed_instances(fg, vs, h_um=0.3, min_volume_um3=0.0, distance=relief)
    seeded = int(ref.max())
    orphan, n_orphan = ndi.label(fg & (ref == 0), structure=np.ones((3, 3, 3), bool))
    ref = remove_small(np.where(orphan > 0, orphan + seeded, ref).astype(np.int32), vs, 0.05)
    n_comp = ndi.label(fg, structure=np.ones((3, 3, 3), bool))[1]
    assert n_orphan > 0 and seeded > n_comp - n_orphan  # unseeded parts and components with several seeds
    out = instances_from_prediction(fg.astype(np.uint8), dist, vs, h_um=0.3, min_volume_um3=0.05)
    assert out.dtype == np.int32 and np.array_equal(out, ref)


def test_half_maximum_growth_per_reach_part_equals_the_whole_volume_watershed():
    """The small instances' growth, run on the parts of the reach holding a small instance,
    gives the labels of the whole-volume watershed (small cells touching large ones, alone,
    cut by the edge)."""
    from skimage.segmentation import watershed

    from holo.segmentation.instances import refine_small_by_half_max, relabel_sequential

    vs, rng, shape = (0.4, 0.2, 0.2), np.random.default_rng(1), (24, 60, 60)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    lab = np.zeros(shape, np.int32)
    for k in range(1, 20):
        c, r = rng.uniform(0, 1, 3) * shape, rng.choice([rng.uniform(1.5, 4), rng.uniform(6, 11)])
        lab[(((z - c[0]) * 2) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r) & (lab == 0)] = k
    lab = relabel_sequential(lab, np.bincount(lab.ravel(), minlength=20) > 0)
    s = ndi.gaussian_filter((lab > 0).astype(np.float32) * 0.03, 1.5) + rng.normal(0, 0.002, shape).astype(np.float32)
    n = int(lab.max())
    small = np.bincount(lab.ravel(), minlength=n + 1) * np.prod(vs) < 8.0
    small[0] = False
    assert 2 < small.sum() < n
    peak = np.zeros(n + 1, np.float32)
    peak[1:] = ndi.maximum(s, lab, np.arange(1, n + 1))
    g = watershed(-s, lab, mask=ndi.binary_dilation(lab > 0, iterations=2)).astype(np.int32)
    g = np.where(lab > 0, np.where(small[g], g, lab), np.where(small[g], g, 0))
    ref = np.where(small[g] & (s < 0.5 * peak[g]), 0, g).astype(np.int32)
    ref = relabel_sequential(ref, np.bincount(ref.ravel(), minlength=n + 1) > 0)
    out = refine_small_by_half_max(lab, s, 8.0, vs, smooth_voxels=0.0)
    assert not np.array_equal(ref, lab) and np.array_equal(out, ref)


def test_per_label_centroids_and_maxima_equal_the_whole_volume_ones():
    from holo.segmentation.infer import label_centroids
    from holo.segmentation.instances import label_maxima

    rng = np.random.default_rng(5)
    lab = ndi.label(ndi.gaussian_filter(rng.normal(size=(20, 40, 40)), 2) > 0.05)[0].astype(np.int32)
    lab[lab == 3] = 0  # an absent label
    n = int(lab.max())
    vals = rng.normal(size=lab.shape).astype(np.float32)
    ids = np.arange(1, n + 1)
    present = ids != 3
    ref_c = np.asarray(ndi.center_of_mass(np.ones_like(lab, np.uint8), lab, ids[present]))
    assert n > 5 and np.array_equal(np.asarray(label_centroids(lab, ids[present])), ref_c)
    assert np.isnan(label_centroids(lab, [3])[0]).all()
    peak = label_maxima(vals, lab, n, -np.inf)
    assert np.array_equal(peak[1:][present], ndi.maximum(vals, lab, ids[present])) and peak[3] == -np.inf


def test_cpu_inference_in_channels_last_layout_gives_the_plain_networks_outputs():
    # predict_tiled / classify_cells lay the network out channels-last on the CPU: the same
    # arithmetic as the plain (N, C, Z, Y, X) network with its batch norms, to float rounding
    from holo.segmentation.classifier import CellClassifier
    from holo.segmentation.infer import _for_device
    from holo.segmentation.unet import fused_for_inference

    torch.manual_seed(3)
    net = UNet3D(channels=(4, 8), voxel_size_um=(0.4, 0.2, 0.2))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = np.random.default_rng(3).normal(size=(8, 16, 24)).astype(np.float32)
    probs, dist = predict_tiled(net, x, tile_zyx=(8, 16, 24), device=torch.device("cpu"))
    with torch.inference_mode():
        out = net(torch.from_numpy(x[None, None]))
    np.testing.assert_allclose(probs, torch.softmax(out[:, :5], 1)[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(dist, torch.sigmoid(out[0, 5]).numpy(), atol=1e-5)
    assert next(net.parameters()).is_contiguous()  # the caller's network keeps its layout
    clf = CellClassifier(3, channels=(4, 8)).eval()
    cl, layout = _for_device(fused_for_inference(clf), torch.device("cpu"))
    xb = torch.randn(2, 2, 8, 16, 16)
    assert layout == torch.channels_last_3d
    with torch.inference_mode():
        np.testing.assert_allclose(cl(xb.contiguous(memory_format=layout)).numpy(), clf(xb).numpy(), atol=1e-5)


def test_crops_sampled_axis_by_axis_equal_map_coordinates():
    # cell_crops samples its axis-aligned crop grid one axis at a time: the values of
    # scipy's map_coordinates on the full grid of points, zero outside the volume
    from holo.segmentation.infer import _sample_on_grid

    rng = np.random.default_rng(5)
    vol = rng.normal(size=(9, 13, 11)).astype(np.float32)
    lab = rng.integers(0, 4, size=vol.shape).astype(np.int32)
    coords = [np.linspace(-1.5, 9.5, 7), np.array([0.0, 0.49, 3.7, 12.0, 12.2]), np.linspace(-0.3, 10.6, 6)]
    pts = np.stack(np.meshgrid(*coords, indexing="ij"))
    ref1 = ndi.map_coordinates(vol, pts, order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(_sample_on_grid(vol, coords, 1), ref1, atol=1e-6)
    np.testing.assert_array_equal(_sample_on_grid(lab, coords, 0), ndi.map_coordinates(lab, pts, order=0, mode="constant", cval=0))


def test_threaded_steps_give_the_serial_labels_and_table(monkeypatch):
    # holo.threads.thread_map runs the per-component watershed, the tile blending, the label
    # resize, the per-cell shares and rows on several threads: the same numbers as one thread
    from holo.segmentation.drymass import mass_partition
    from holo.segmentation.infer import instances_from_prediction, semantic_from_probabilities
    from holo.segmentation.morphometrics import measure_cells

    vs = (0.3, 0.2, 0.2)
    rng = np.random.default_rng(5)
    shape = (20, 48, 48)
    specs = [tuple(rng.uniform(0.2, 0.8, 3) * np.multiply(shape, vs)) + (rng.uniform(0.8, 2.0),) for _ in range(9)]
    ri, inst = _balls(shape, vs, specs)
    ri = ri + rng.normal(0, 0.001, shape).astype(np.float32)
    sem = (inst > 0).astype(np.uint8)
    sem[inst % 3 == 0] = 2
    dist = ndi.gaussian_filter(rng.uniform(0, 1, shape).astype(np.float32), 1.5)
    x = rng.normal(size=shape).astype(np.float32)
    p4 = rng.dirichlet(np.ones(4), shape).astype(np.float32).transpose(3, 0, 1, 2)

    def run(threads):
        monkeypatch.setenv("HOLO_THREADS", str(threads))
        lab = instances_from_prediction(sem, dist, vs, h_um=0.2, min_volume_um3=0.05)
        probs, d = predict_tiled(_MirrorSensitive(), x, tile_zyx=(8, 16, 24), overlap=0.5, device=torch.device("cpu"))
        margins = {k: (1.0, 0.5, 0.5) for k in range(1, int(lab.max()) + 1)}
        cells = measure_cells(ri, sem, lab, vs, N_M)
        return (lab, probs, d, semantic_from_probabilities(p4, 0.4), resize_labels(lab, (30, 61, 70)),
                mass_partition(lab, vs, margins), cells)

    serial, threaded = run(1), run(3)
    assert serial[0].max() >= 5 and len(serial[-1]) == serial[0].max()  # several cells: several tasks
    for a, b in zip(serial[:-1], threaded[:-1]):
        assert np.array_equal(a, b)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(serial[-1], threaded[-1], check_exact=True)
