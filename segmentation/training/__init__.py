"""Reproduction of the shipped weights: data-set generation (``python -m holo.segmentation.training.make_data``)
and training / held-out evaluation (``python -m holo.segmentation.training.train``)."""
