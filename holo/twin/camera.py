"""Camera model of the digital twin: photons → electrons → ADU, with the noises of a real sensor.

Chain per pixel, for a relative intensity I (1 = the mean of a sample-free hologram):

1. photons: mean N = I · ``photons_per_pixel`` (the photon budget of one exposure);
2. photo-electrons: Poisson(QE · N) (shot noise; the Poisson law survives the binomial
   loss of a quantum efficiency QE), clipped at the full well (saturation);
3. read noise: + Normal(0, σ_read) electrons;
4. ADU: round(e / gain + offset), clipped to [0, 2^bits − 1] and stored in the smallest
   unsigned type (uint8 for 8 bits, uint16 for 10–16 bits).

So a flat exposure has mean QE·N/g + offset and variance (QE·N + σ_read²)/g² + 1/12 ADU²
(the last term from rounding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["CameraModel", "expose"]

_BIT_DEPTHS = (8, 10, 12, 14, 16)


@dataclass(frozen=True)
class CameraModel:
    """Sensor parameters.

    Parameters
    ----------
    photons_per_pixel : float
        Photon budget: mean photons per pixel for relative intensity 1 (the mean level of a
        sample-free hologram). The default fills about a third of the well on average and
        two thirds on the bright fringes of a unit-ratio hologram.
    quantum_efficiency : float
        Fraction of photons converted to electrons, (0, 1].
    full_well_e : float
        Electrons at which a pixel saturates.
    read_noise_e : float
        Standard deviation of the Gaussian read noise, electrons.
    bit_depth : int
        ADC depth: 8 (uint8), 10/12/14 (stored in uint16) or 16 (uint16).
    gain_e_per_adu : float or None
        Electrons per ADU; ``None`` maps the full well to the largest ADU value.
    offset_adu : float
        Dark offset (bias) added to every pixel, ADU.
    noise : bool
        ``False`` gives the noiseless expected signal (still quantised and clipped).
    """

    photons_per_pixel: float = 10000.0
    quantum_efficiency: float = 0.7
    full_well_e: float = 20000.0
    read_noise_e: float = 3.0
    bit_depth: int = 12
    gain_e_per_adu: float | None = None
    offset_adu: float = 0.0
    noise: bool = True

    def __post_init__(self) -> None:
        def positive(name, hi=np.inf):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and 0.0 < v <= hi):
                raise ValueError(f"camera {name} must be in (0, {hi}], got {v}")

        positive("photons_per_pixel")
        positive("quantum_efficiency", hi=1.0)
        positive("full_well_e")
        if not (np.isfinite(self.read_noise_e) and self.read_noise_e >= 0):
            raise ValueError(f"camera read_noise_e must be ≥ 0, got {self.read_noise_e}")
        if int(self.bit_depth) not in _BIT_DEPTHS or int(self.bit_depth) != self.bit_depth:
            raise ValueError(f"camera bit_depth must be one of {_BIT_DEPTHS}, got {self.bit_depth}")
        if self.gain_e_per_adu is not None:
            positive("gain_e_per_adu")
        if not (np.isfinite(self.offset_adu) and 0 <= self.offset_adu < self.max_adu):
            raise ValueError(f"camera offset_adu must be in [0, {self.max_adu}), got {self.offset_adu}")

    @property
    def max_adu(self) -> int:
        """Largest ADU value, 2^bits − 1."""
        return (1 << int(self.bit_depth)) - 1

    @property
    def dtype(self) -> np.dtype:
        """Storage type of the frames: uint8 for 8 bits, uint16 otherwise."""
        return np.dtype(np.uint8 if int(self.bit_depth) <= 8 else np.uint16)

    @property
    def gain(self) -> float:
        """Electrons per ADU actually used."""
        if self.gain_e_per_adu is not None:
            return float(self.gain_e_per_adu)
        return float(self.full_well_e) / self.max_adu

    def to_dict(self) -> dict:
        """Plain-dict form (for metadata)."""
        return asdict(self)


def expose(intensity, camera: CameraModel | None = None, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Record a relative intensity with a camera, see the module docstring for the chain.

    Parameters
    ----------
    intensity : array_like of float, ≥ 0
        Relative intensity (1 = mean of a sample-free hologram), any shape.
    camera : CameraModel, optional
        Defaults to ``CameraModel()``.
    rng : numpy Generator or int seed, optional
        Source of the shot and read noise.

    Returns
    -------
    ndarray of ``camera.dtype``, same shape as ``intensity``
        Digital numbers (ADU).

    Raises
    ------
    ValueError
        Negative or non-finite intensity.
    """
    camera = CameraModel() if camera is None else camera
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    intensity = np.asarray(intensity)
    if intensity.size and not (np.isfinite(intensity).all() and intensity.min() >= 0):
        raise ValueError("intensity must be finite and non-negative")
    mean_e = intensity.astype(np.float64) * (camera.photons_per_pixel * camera.quantum_efficiency)
    if camera.noise:
        electrons = rng.poisson(mean_e).astype(np.float32)
    else:
        electrons = mean_e.astype(np.float32)
    np.minimum(electrons, np.float32(camera.full_well_e), out=electrons)
    if camera.noise and camera.read_noise_e > 0:
        electrons += rng.standard_normal(electrons.shape, dtype=np.float32) * np.float32(camera.read_noise_e)
    adu = electrons * np.float32(1.0 / camera.gain) + np.float32(camera.offset_adu)
    np.rint(adu, out=adu)
    np.clip(adu, 0, camera.max_adu, out=adu)
    return adu.astype(camera.dtype)
