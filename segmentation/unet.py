"""A compact 3D U-Net for RI tomograms with anisotropic voxels.

Input: one channel, the normalised RI x = (n − n_m)·s (s = ``ri_scale``, see the weights'
JSON), shape (B, 1, Z, Y, X) on the training voxel grid. Output: (B, C + 1, Z, Y, X):
C semantic logits (background, cytoplasm, nucleus, nucleolus, lipid droplet) and one
channel whose sigmoid is the normalised distance map d ∈ [0, 1] (distance to the cell
boundary divided by its maximum within the cell), from which instances are seeded.

Anisotropy: the pooling factors per level are chosen from the voxel size so that pooling
only halves axes whose voxel is not already coarser than the others (with dz ≈ 2 dx the
first level pools (1, 2, 2), the next ones (2, 2, 2)); the convolution kernels of a level
are 1 wide along Z while the effective voxel is ≥ 2× coarser along Z than in Y/X.
"""

from __future__ import annotations

import torch
from torch import nn

from holo.labels import SEMANTIC_NAMES

__all__ = ["UNet3D", "pool_factors", "unet_from_config", "fused_for_inference"]


def pool_factors(voxel_size_um, n_levels: int) -> list[tuple[int, int, int]]:
    """Pooling factor per level: halve an axis when its effective voxel is < 1.5× the finest.

    Parameters
    ----------
    voxel_size_um : (dz, dy, dx)
    n_levels : int
        Number of down-sampling steps.
    """
    eff = [float(v) for v in voxel_size_um]
    out = []
    for _ in range(n_levels):
        finest = min(eff)
        f = tuple(2 if e < 1.5 * finest else 1 for e in eff)
        out.append(f)
        eff = [e * k for e, k in zip(eff, f)]
    return out


def kernel_sizes(voxel_size_um, factors) -> list[tuple[int, int, int]]:
    """Kernel per level (levels + bottom): 1 along axes ≥ 2× coarser than the finest."""
    eff = [float(v) for v in voxel_size_um]
    ks = []
    for f in list(factors) + [None]:
        finest = min(eff)
        ks.append(tuple(1 if e >= 2.0 * finest else 3 for e in eff))
        if f is not None:
            eff = [e * k for e, k in zip(eff, f)]
    return ks


class ConvBlock(nn.Sequential):
    """Two (conv → batch norm → ReLU) layers with kernel ``k`` and 'same' padding."""

    def __init__(self, cin: int, cout: int, k: tuple[int, int, int]):
        pad = tuple(s // 2 for s in k)
        super().__init__(
            nn.Conv3d(cin, cout, k, padding=pad, bias=False),
            nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, k, padding=pad, bias=False),
            nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True),
        )


class UNet3D(nn.Module):
    """Compact 3D U-Net (encoder–decoder with skip connections).

    Parameters
    ----------
    n_classes : int
        Number of semantic classes C (output has C + 1 channels).
    channels : sequence of int
        Feature channels per level, e.g. (8, 16, 32, 64): len − 1 down-sampling steps.
    voxel_size_um : (dz, dy, dx)
        Training voxel size; sets the anisotropic pooling and kernels.
    """

    def __init__(self, n_classes: int = len(SEMANTIC_NAMES), channels=(8, 16, 32, 64), voxel_size_um=(0.4, 0.2, 0.2)):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {channels}")
        self.factors = pool_factors(voxel_size_um, len(channels) - 1)
        ks = kernel_sizes(voxel_size_um, self.factors)
        self.enc = nn.ModuleList()
        self.pools = nn.ModuleList()
        cin = 1
        for i, c in enumerate(channels):
            self.enc.append(ConvBlock(cin, c, ks[i]))
            if i < len(channels) - 1:
                self.pools.append(nn.MaxPool3d(self.factors[i], self.factors[i]))
            cin = c
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(channels) - 2, -1, -1):
            f = self.factors[i]
            self.ups.append(nn.ConvTranspose3d(channels[i + 1], channels[i], f, stride=f))
            self.dec.append(ConvBlock(2 * channels[i], channels[i], ks[i]))
        self.head = nn.Conv3d(channels[0], n_classes + 1, 1)
        self.n_classes = n_classes

    @property
    def divisor(self) -> tuple[int, int, int]:
        """Each input axis must be a multiple of this."""
        d = [1, 1, 1]
        for f in self.factors:
            d = [a * b for a, b in zip(d, f)]
        return tuple(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the layers of each block are called one by one and every activation is held by ``x``
        # alone, so that (without autograd) each is freed as soon as the next layer has read
        # it: the up-sampled tensor before its block runs, the concatenation after the
        # block's first convolution (the same operations as calling the blocks)
        skips = []
        for i, block in enumerate(self.enc):
            for layer in block:
                x = layer(x)
            if i < len(self.pools):
                skips.append(x)
                x = self.pools[i](x)
        for up, block in zip(self.ups, self.dec):
            x = up(x)
            x = torch.cat([x, skips.pop()], dim=1)
            for layer in block:
                x = layer(x)
        return self.head(x)


def unet_from_config(cfg: dict) -> UNet3D:
    """Build the network described by a weights JSON (``n_classes``, ``channels``, ``voxel_size_um``)."""
    return UNet3D(n_classes=int(cfg["n_classes"]), channels=tuple(cfg["channels"]),
                  voxel_size_um=tuple(cfg["voxel_size_um"]))


def fused_for_inference(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode network (the U-Net, the cell classifier) with the batch norm of
    each :class:`ConvBlock` folded into the convolution before it.

    In eval mode BN(y) = γ (y − μ) / √(σ² + ε) + β is affine, so conv → BN is the convolution
    with weights W γ / √(σ² + ε) and bias β − μ γ / √(σ² + ε): the same outputs (to float32
    rounding, ≈ 1e-5 on the logits) without a pass over every activation. Not for training
    (the statistics are frozen into the weights).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for block in [m for m in fused.modules() if isinstance(m, ConvBlock)]:
        for i in range(len(block) - 1):
            if isinstance(block[i], nn.Conv3d) and isinstance(block[i + 1], nn.BatchNorm3d):
                block[i] = fuse_conv_bn_eval(block[i], block[i + 1])
                block[i + 1] = nn.Identity()
    return fused
