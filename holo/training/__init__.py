"""Training harness of the shipped segmentation weights (top floor: chains the twin, the
reconstruction pipeline and the segmentation stage).

``python -m holo.training.make_data``
    Digital-twin data sets: phantom → instrument (transfer function, or simulated holograms
    and reconstruction) → training volumes (:mod:`holo.training.make_data`).
``python -m holo.training.train``
    Training, post-processing tuning and held-out evaluation of the U-Net and the cell
    classifier on such a data set, and the numbers of the model card
    (:mod:`holo.training.train`).

The training code itself (losses, loops, metrics, model selection, ``holo train``'s
fine-tuning) is the stage's :mod:`holo.segmentation.train`.
"""
