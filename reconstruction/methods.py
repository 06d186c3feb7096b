"""Names of the reconstruction methods, defined once (a light module: no NumPy, no Numba).

``DIRECT_METHODS``
    Fourier diffraction tomography with the first Born or Rytov approximation
    (:mod:`holo.reconstruction.tomography.fdt`).
``REGULARIZED_METHODS``
    The Rytov Fourier data completed in the missing cone by Gerchberg–Papoulis
    non-negativity or total variation (:mod:`holo.reconstruction.regularization`).
``MODEL_BASED_METHODS``
    Multiple-scattering inversion through the beam-propagation model, started from the
    Rytov volume (:mod:`holo.reconstruction.model_based`).
``METHODS``
    All of them, in that order: what ``holo reconstruct --method``, ``holo run --method`` and
    the napari widget offer.
"""

DIRECT_METHODS = ("rytov", "born")
REGULARIZED_METHODS = ("gp", "tv")
MODEL_BASED_METHODS = ("bpm",)
METHODS = DIRECT_METHODS + REGULARIZED_METHODS + MODEL_BASED_METHODS
#: The default of every face (holo reconstruct/run/demo, the napari widget): Rytov +
#: Gerchberg–Papoulis non-negativity, what the shipped U-Net is trained on.
DEFAULT_METHOD = "gp"
