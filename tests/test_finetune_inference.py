"""Fast inference (the large-field mode): folded batch norms, tiles without contrast skipped,
labels resized by index. Tiny random networks; what is checked is that the shortcuts give
the predictions of the plain computation where they apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from holo.segmentation.infer import _zoom_to, contrast_mask, predict_tiled, resize_labels
from holo.segmentation.unet import UNet3D, fused_for_inference


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = UNet3D(channels=(4, 8), voxel_size_um=(0.4, 0.2, 0.2))
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_folded_batch_norm_gives_the_same_outputs(net):
    x = torch.randn(1, 1, 8, 16, 16)
    fused = fused_for_inference(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())  # the original is untouched
    with torch.inference_mode():
        np.testing.assert_allclose(fused(x).numpy(), net(x).numpy(), atol=1e-4)


def test_tiles_without_contrast_are_background_and_the_rest_unchanged(net):
    rng = np.random.default_rng(1)
    dn = rng.normal(0, 0.002, (8, 64, 64)).astype(np.float32)  # noise only, but for one cell
    dn[2:6, 4:12, 4:12] += 0.03
    mask = contrast_mask(dn, cap_ri=0.008)
    assert mask[3, 8, 8] and mask.mean() < 0.05
    stats = {}
    kw = dict(tile_zyx=(8, 32, 32), overlap=0.25, device=torch.device("cpu"))
    p_all, d_all = predict_tiled(net, dn * 25, **kw)
    p_skip, d_skip = predict_tiled(net, dn * 25, mask=mask, margin_vox=(1, 2, 2), stats=stats, **kw)
    assert stats["tiles"] == 9 and stats["tiles_run"] < stats["tiles"]
    near = (slice(None), slice(0, 16), slice(0, 16))  # covered only by the tile that ran (starts 0, 16, 32)
    np.testing.assert_array_equal(p_skip[(slice(None),) + near], p_all[(slice(None),) + near])
    far = (slice(None), slice(48, 64), slice(48, 64))  # covered only by skipped tiles
    assert np.all(p_skip[(0,) + far] == 1.0) and np.all(d_skip[far] == 0.0)


def test_label_resize_is_the_nearest_neighbour_of_zoom():
    rng = np.random.default_rng(2)
    for _ in range(20):
        lab = rng.integers(0, 6, rng.integers(3, 30, 3)).astype(np.int32)
        shape = tuple(int(s) for s in rng.integers(3, 50, 3))
        np.testing.assert_array_equal(resize_labels(lab, shape), _zoom_to(lab, shape, 0))
