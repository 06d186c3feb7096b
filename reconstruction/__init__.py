"""Reconstruction stages of holo: forward models, field retrieval, tomography, regularisation.

Sub-packages are imported explicitly (``from holo.reconstruction.forward import bpm_fields``);
this package itself imports nothing heavy.
"""
