"""Label vocabulary shared by the twin, segmentation, the report and the faces: defined once here.

Semantic labels
    A uint8 volume whose value indexes :data:`SEMANTIC_NAMES`: 0 background, 1 cytoplasm,
    2 nucleus, 3 nucleolus, 4 lipid droplet. Instance labels are int32, 0 = no cell.
Cell classes
    The class names a cell can be given (:data:`CELL_CLASSES`), by family: nucleated white
    cells, red-cell shapes, bacteria. A classifier whose calibrated top probability is too low
    answers :data:`UNCERTAIN` instead.
"""

from __future__ import annotations

__all__ = [
    "SEMANTIC_NAMES",
    "BACKGROUND",
    "CYTOPLASM",
    "NUCLEUS",
    "NUCLEOLUS",
    "LIPID_DROPLET",
    "ORGANELLE_LABELS",
    "NUCLEATED_CLASSES",
    "RBC_CLASSES",
    "BACTERIA_CLASSES",
    "CELL_CLASSES",
    "UNCERTAIN",
    "UNKNOWN",
]

#: Semantic label names; the label value is the index.
SEMANTIC_NAMES = ("background", "cytoplasm", "nucleus", "nucleolus", "lipid_droplet")
BACKGROUND, CYTOPLASM, NUCLEUS, NUCLEOLUS, LIPID_DROPLET = range(len(SEMANTIC_NAMES))
#: Semantic label values of the two small organelles, (nucleolus, lipid droplet).
ORGANELLE_LABELS = (NUCLEOLUS, LIPID_DROPLET)

NUCLEATED_CLASSES = ("lymphocyte", "monocyte", "neutrophil", "eosinophil")
RBC_CLASSES = ("rbc_discocyte", "rbc_echinocyte", "rbc_stomatocyte", "rbc_spherocyte")
BACTERIA_CLASSES = ("bacteria_rod", "bacteria_coccus", "bacteria_chain")
#: Every class name a cell can have.
CELL_CLASSES = NUCLEATED_CLASSES + RBC_CLASSES + BACTERIA_CLASSES
#: Class name given to cells whose calibrated top probability is below the threshold.
UNCERTAIN = "uncertain"
#: Class name given to cells unlike the training distribution (out of distribution).
UNKNOWN = "unknown"
