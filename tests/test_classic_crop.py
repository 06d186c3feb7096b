"""The classic watershed works on the foreground's box: its labels equal the whole volume's."""

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from holo.segmentation.classic import remove_small, watershed_instances


def _whole_volume(fg, vs, h_um, min_volume_um3):
    """The definition on the whole volume: distance → h-maxima seeds → watershed."""
    d = ndi.distance_transform_edt(fg, sampling=vs).astype(np.float32)
    markers, _ = ndi.label(h_maxima(d, h_um) & fg, structure=np.ones((3, 3, 3), bool))
    return remove_small(watershed(-d, markers, mask=fg).astype(np.int32), vs, min_volume_um3)


def test_box_labels_equal_whole_volume():
    vs = (0.4, 0.2, 0.2)
    z, y, x = np.indices((24, 40, 48)) * np.array(vs)[:, None, None, None]
    fg = np.zeros(z.shape, bool)
    # two touching spheres (split by their seeds), a sphere thinner than h (no seed of its own
    # when alone: one path through the background links it to the others) and one cut by the edge
    for (cz, cy, cx), r in (((4.8, 3.0, 3.2), 1.6), ((4.8, 3.0, 6.0), 1.4), ((3.0, 6.0, 7.0), 0.45),
                            ((4.0, 7.6, 1.0), 1.2)):
        fg |= (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    for h_um, vmin in ((0.6, 0.0), (0.3, 0.3)):
        ref = _whole_volume(fg, vs, h_um, vmin)
        got = watershed_instances(fg, vs, h_um=h_um, min_volume_um3=vmin)
        assert ref.max() >= 2
        np.testing.assert_array_equal(got, ref)


def test_holes_filled_on_the_box_as_on_the_whole_volume():
    from holo.segmentation.classic import foreground_mask

    z, y, x = np.indices((20, 30, 30))
    r = np.sqrt((z - 10) ** 2 + (y - 12) ** 2 + (x - 14) ** 2)
    ri = np.full(r.shape, 1.337, np.float32)
    ri[(r > 3) & (r < 6)] = 1.36  # a hollow shell: its inside is a hole
    ri[:, :, 27:] = 1.36  # a slab on the edge, its background open to the border
    got = foreground_mask(ri, (1.0, 1.0, 1.0), 1.337, threshold="delta", smooth_um=0.0)
    np.testing.assert_array_equal(got, ndi.binary_fill_holes(ri > 1.343))
    assert got[10, 12, 14] and not got[10, 12, 24]
