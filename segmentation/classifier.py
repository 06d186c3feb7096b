"""Per-cell 3D CNN classifier with temperature-calibrated probabilities.

Input: a fixed-size crop (B, 2, Z, Y, X) centred on the cell's centroid, on the
classifier's voxel grid (see the weights' JSON): channel 0 the normalised RI
x = (n − n_m)·s, channel 1 the cell's mask (1 inside the cell, 0 elsewhere, including
neighbouring cells). Output: logits z over the cell classes of the digital twin.

Calibration: p = softmax(z / T) with one temperature T > 0 fitted on a validation split by
minimising the negative log-likelihood (Guo et al. 2017, "On calibration of modern neural
networks"); T does not change the arg-max, only the confidence.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from holo.segmentation.unet import ConvBlock

__all__ = ["CellClassifier", "classifier_from_config", "fit_temperature", "calibrated_probabilities",
           "reliability_bins", "expected_calibration_error"]


class CellClassifier(nn.Module):
    """Small VGG-like 3D CNN: conv blocks with max-pooling, global average + max pooling, linear.

    Parameters
    ----------
    n_classes : int
    channels : sequence of int
        Channels of the successive blocks; each block but the last is followed by 2× pooling.
    in_channels : int
        2 (normalised RI + mask).
    """

    def __init__(self, n_classes: int, channels=(16, 32, 64, 96), in_channels: int = 2):
        super().__init__()
        layers = []
        cin = in_channels
        for i, c in enumerate(channels):
            layers.append(ConvBlock(cin, c, (3, 3, 3)))
            if i < len(channels) - 1:
                layers.append(nn.MaxPool3d(2))
            cin = c
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(2 * cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = torch.cat([h.mean(dim=(2, 3, 4)), h.amax(dim=(2, 3, 4))], dim=1)
        return self.fc(self.dropout(h))


def classifier_from_config(cfg: dict) -> CellClassifier:
    """Build the classifier described by a weights JSON (``classes``, ``channels``)."""
    return CellClassifier(n_classes=len(cfg["classes"]), channels=tuple(cfg["channels"]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) on a validation set.

    A 1D search over log T ∈ [log 0.05, log 20] (golden section on a convex-in-practice
    objective, refined on a grid first); T ≥ 1 when every validation cell is already
    classified correctly.
    """
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if z.ndim != 2 or y.shape[0] != z.shape[0] or z.shape[0] == 0:
        raise ValueError(f"logits must be (N, C) and labels (N,), got {tuple(z.shape)} and {tuple(y.shape)}")

    def nll(log_t: float) -> float:
        return float(nn.functional.cross_entropy(z / np.exp(log_t), y))

    # Perfectly separated validation data carries no calibration information (the NLL falls
    # monotonically as T → 0): then never sharpen beyond the trained model, T ≥ 1.
    t_min = 1.0 if bool((z.argmax(dim=1) == y).all()) else 0.05
    grid = np.linspace(np.log(t_min), np.log(20.0), 61)
    vals = [nll(g) for g in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    gr = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a = hi - gr * (hi - lo)
        b = lo + gr * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp(0.5 * (lo + hi)))


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) along the last axis, float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15):
    """Per-bin (mean confidence, accuracy, count) over ``n_bins`` equal-width bins of the
    top probability c = max_k p_k in (0, 1] (bin b holds (b/B, (b+1)/B]); empty bins give
    NaN confidence and accuracy and count 0."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"probs must be (N, K) and labels (N,), got {probs.shape} and {labels.shape}")
    conf = probs.max(axis=1)
    hit = (probs.argmax(axis=1) == labels).astype(np.float64)
    b = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, conf, minlength=n_bins) / count
        acc = np.bincount(b, hit, minlength=n_bins) / count
    return mean_conf, acc, count.astype(int)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """ECE = Σ_b (|B_b| / N) |accuracy(B_b) − mean confidence(B_b)| over the equal-width
    confidence bins of :func:`reliability_bins` (0 for an empty set)."""
    conf, acc, count = reliability_bins(probs, labels, n_bins)
    n = count.sum()
    if n == 0:
        return 0.0
    m = count > 0
    return float(np.sum(count[m] / n * np.abs(acc[m] - conf[m])))
