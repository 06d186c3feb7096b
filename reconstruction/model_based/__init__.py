"""Model-based multiple-scattering reconstruction (inverse of the multi-slice BPM).

Entry point :func:`reconstruct_bpm` (:mod:`.bpm_inverse`); the differentiable forward model
is :class:`._torch_bpm.TorchBPM`. torch runs on CUDA when available, else on the CPU.
"""

from __future__ import annotations

from .bpm_inverse import DEFAULT_BPM_ITERATIONS, DEFAULT_BPM_WEIGHT, METHODS, bpm_lipschitz, reconstruct_bpm, resample_volume

__all__ = ["METHODS", "reconstruct_bpm", "resample_volume", "bpm_lipschitz", "DEFAULT_BPM_ITERATIONS", "DEFAULT_BPM_WEIGHT"]
