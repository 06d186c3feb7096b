"""Reproduction of the shipped weights: data-set generation (``python -m segmentation.training.make_data``)
and training / held-out evaluation (``python -m segmentation.training.train``)."""
