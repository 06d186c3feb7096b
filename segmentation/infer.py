"""Inference: shipped-weight loading, resampling, tiled U-Net prediction, instances, cell crops.

Models: a weights folder holds the default U-Net (``unet.*``) and optionally others trained at
other voxel sizes (``unet_<tag>.*``, e.g. the shipped ``unet_fine`` at 0.2 × 0.1 × 0.1 µm for
small objects such as bacteria on finely sampled tomograms); ``name`` picks one.

Resampling: the tomogram is interpolated (linear) onto the training voxel grid of the model;
the labels found there are brought back to the tomogram's grid by nearest neighbour, so the
output always has the input's shape and voxel size.

Tiling: the volume (padded with the medium, x = 0, to at least one tile) is covered by tiles
overlapping by ``overlap`` of their size; each tile's softmax probabilities and distance map
are weighted by a separable Gaussian window w(r) = Π exp(−(r_i − c_i)² / (2 (T_i/6)²)) (high in
the tile centre where the receptive field is complete) and the weighted sum is divided by
Σ w, which blends the seams.

Semantic labels: foreground where 1 − P(background) > ``fg_threshold``, there the most
probable other class. Instances: h-maxima seeds of the relief E·(½ + d̂) (E the distance to the
background in µm, d̂ the predicted normalised distance) grown by a watershed inside the
foreground (:func:`instances_from_prediction`); fragments sharing a wide face are merged and
faint artefacts dropped (:mod:`holo.segmentation.instances`). All thresholds come from the weights'
JSON, chosen on validation data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from holo.errors import HoloError
from holo.labels import CYTOPLASM, ORGANELLE_LABELS
from holo.threads import cpu_threads, thread_map
from holo.segmentation.cross_section import split_by_cross_section
from holo.segmentation.instances import (drop_faint, merge_by_contact, refine_small_by_half_max,
                                         seeded_watershed_by_component)

__all__ = [
    "WEIGHTS_DIR",
    "load_unet",
    "unet_names",
    "check_unet_name",
    "user_weights_root",
    "user_weight_sets",
    "load_classifier",
    "resample_volume",
    "resize_labels",
    "predict_tiled",
    "contrast_mask",
    "instances_from_prediction",
    "semantic_from_probabilities",
    "unet_segment",
    "with_organelles",
    "cell_crops",
    "classify_cells",
    "pick_device",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"


def pick_device(device: str | None = None):
    """torch device: the given one, else CUDA when present, else CPU (threads capped to the
    CPUs this process may use)."""
    import torch

    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    want = cpu_threads()
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
    return torch.device("cpu")


def _load(name: str, weights_dir, builder):
    import torch

    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    pt, js = d / f"{name}.pt", d / f"{name}.json"
    for p in (pt, js):
        if not p.is_file():
            raise HoloError("model weights not found", path=p, item=name)
    try:
        cfg = json.loads(js.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HoloError(f"not valid JSON ({exc})", path=js, item=name) from None
    if not isinstance(cfg, dict):
        raise HoloError("must hold a JSON object of settings", path=js, item=name)
    try:
        model = builder(cfg)
    except (KeyError, TypeError, ValueError) as exc:
        raise HoloError(f"settings do not describe a network ({type(exc).__name__}: {exc})", path=js, item=name) from None
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # corrupt file or architecture mismatch
        raise HoloError(f"cannot load weights ({exc})", path=pt, item=name) from None
    model.eval()
    return model, cfg


def load_unet(weights_dir=None, name: str = "unet"):
    """(UNet3D in eval mode, config dict) from ``<name>.pt`` + ``<name>.json``."""
    from holo.segmentation.unet import unet_from_config

    return _load(name, weights_dir, unet_from_config)


def unet_names(weights_dir=None) -> list[str]:
    """Names of the U-Net weight sets of a folder: ``unet`` and every ``unet_<tag>`` with both
    a ``.pt`` and a ``.json`` file."""
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    return sorted(p.stem for p in d.glob("unet*.json")
                  if (p.stem == "unet" or p.stem.startswith("unet_")) and p.with_suffix(".pt").is_file())


#: Environment variable naming the folder of the user's weight sets (fine-tuned weights).
USER_WEIGHTS_ENV = "HOLO_WEIGHTS_HOME"


def user_weights_root() -> Path:
    """Folder of the user's weight sets, one sub-folder each (what fine-tuning writes; the
    shipped folder is never written): ``$HOLO_WEIGHTS_HOME``, else
    ``$XDG_DATA_HOME/holo/weights``, else ``~/.local/share/holo/weights``."""
    import os

    env = os.environ.get(USER_WEIGHTS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME", "").strip() or Path.home() / ".local" / "share"
    return Path(base) / "holo" / "weights"


def user_weight_sets() -> dict[str, Path]:
    """{name: folder} of the user's weight sets: sub-folders of :func:`user_weights_root`
    holding a U-Net (``unet.pt`` + ``unet.json``)."""
    root = user_weights_root()
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir())
            if d.is_dir() and (d / "unet.pt").is_file() and (d / "unet.json").is_file()}


def check_unet_name(name: str, weights_dir=None) -> str:
    """``name`` if the folder holds that U-Net weights set (:func:`unet_names`), else a
    ValueError that lists the sets it holds."""
    names = unet_names(weights_dir)
    if name not in names:
        raise ValueError(f"no weights set {name!r} (available: {', '.join(names) or 'none'})")
    return name


def load_classifier(weights_dir=None):
    """(CellClassifier in eval mode, config dict) from ``classifier.pt`` + ``classifier.json``."""
    from holo.segmentation.classifier import classifier_from_config

    return _load("classifier", weights_dir, classifier_from_config)


def resample_volume(vol: np.ndarray, voxel_size_from_um, voxel_size_to_um, *, order: int = 1) -> np.ndarray:
    """Interpolate a (Z, Y, X) volume from one voxel size to another (grid edges aligned).

    The output shape is round(shape · d_from / d_to); identical voxel sizes return the input.
    """
    vf = np.asarray(voxel_size_from_um, float)
    vt = np.asarray(voxel_size_to_um, float)
    if np.allclose(vf, vt, rtol=1e-3):
        return vol
    out_shape = np.maximum(1, np.round(np.asarray(vol.shape) * vf / vt)).astype(int)
    return _zoom_to(vol, tuple(out_shape), order)


def _zoom_to(vol, out_shape, order):
    zoom = np.asarray(out_shape, float) / np.asarray(vol.shape, float)
    return ndi.zoom(vol, zoom, order=order, mode="nearest", grid_mode=True, prefilter=False)


def resize_labels(lab: np.ndarray, shape_zyx) -> np.ndarray:
    """Nearest-neighbour resize of a label volume to an exact shape (grid edges aligned).

    Output voxel i of an axis takes input voxel ⌊(i + ½) n_in / n_out⌋ (the centre of the
    output voxel in input voxel units; the same choice as ``scipy.ndimage.zoom(order=0,
    grid_mode=True)``), gathered in one indexing pass without interpolation, slabs of output
    planes on separate threads (:func:`holo.threads.thread_map`).
    """
    if tuple(lab.shape) == tuple(shape_zyx):
        return lab
    idx = [np.minimum(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp), n_in - 1)
           for n_in, n_out in zip(lab.shape, shape_zyx)]
    out = np.empty(tuple(int(n) for n in shape_zyx), lab.dtype)
    step = max(1, -(-len(idx[0]) // (4 * cpu_threads())))

    def gather(z0):  # slabs of output planes on separate threads
        out[z0:z0 + step] = lab[np.ix_(idx[0][z0:z0 + step], idx[1], idx[2])]

    for _ in thread_map(gather, range(0, len(idx[0]), step)):
        pass
    return out


def _gauss_window(tile):
    ax = []
    for t in tile:
        r = np.arange(t, dtype=np.float32) - (t - 1) / 2.0
        ax.append(np.exp(-(r * r) / (2.0 * (t / 6.0) ** 2)) + 1e-3)
    return ax[0][:, None, None] * ax[1][None, :, None] * ax[2][None, None, :]


def _starts(n, t, stride):
    if n <= t:
        return [0]
    k = int(np.ceil((n - t) / stride)) + 1
    return sorted(set(int(round(s)) for s in np.linspace(0, n - t, k)))


def _even_tiles(shape, tile_max, div, overlap: float) -> np.ndarray:
    """Tile size per axis: as few tiles as ``tile_max`` allows, then the smallest tile (a
    multiple of ``div``) that covers the axis with that many tiles at the given overlap.

    k = 1 if n ≤ t_max, else ⌈(n − t_max) / (t_max (1 − o))⌉ + 1 tiles; tile ⌈n / (k − (k − 1) o)⌉
    rounded up to ``div`` (a 282-voxel axis with t_max = 256 gets two 168-voxel tiles instead of
    two 256-voxel ones).
    """
    shape, tile_max, div = (np.asarray(a, int) for a in (shape, tile_max, div))
    t = np.minimum(tile_max, shape)
    stride = np.maximum(1, (t * (1 - overlap)).astype(int))
    k = np.where(shape <= t, 1, np.ceil((shape - t) / stride).astype(int) + 1)
    t = np.minimum(t, np.ceil(shape / (k - (k - 1) * overlap)))
    return (np.ceil(t / div) * div).astype(int)


def _axis_tiles(n: int, div: int, overlap_vox: int) -> list[tuple[int, int]]:
    """(tiles k, tile size t) choices for an axis of ``n`` voxels: k tiles of t voxels (a
    multiple of ``div``) whose neighbours overlap by at least ``overlap_vox``, i.e.
    t = ⌈(n + (k − 1) o) / k⌉ rounded up to ``div``; k grows while t stays above 2 o."""
    out = [(1, int(np.ceil(n / div) * div))]
    for k in range(2, n // max(div, 1) + 2):
        t = int(np.ceil(np.ceil((n + (k - 1) * overlap_vox) / k) / div) * div)
        if t <= 2 * overlap_vox or t >= out[-1][1]:
            break
        out.append((k, t))
    return out


def tile_plan(shape, tile_zyx, div, overlap: float, max_tile_voxels: float | None = None):
    """(tile size, tiles per axis) covering a (Z, Y, X) volume.

    Without ``max_tile_voxels``: :func:`_even_tiles` (tiles of at most ``tile_zyx``, neighbours
    overlapping by the fraction ``overlap``). With it: the tiles read the fewest voxels in all
    (Π k_i · Π t_i, ties to fewer tiles) among those of at most ``max_tile_voxels`` voxels,
    neighbours overlapping by o_i = ⌈overlap · min(tile_zyx_i, n_i)⌉ voxels — the halo the
    configured tile has, which the network's receptive field asks for whatever the tile size
    (:func:`_axis_tiles`); when no plan fits, the one with the smallest tile. A volume within
    one configured tile gets the same single tile either way.
    """
    import itertools

    shape, cfg_tile, div = (np.asarray(a, int) for a in (shape, tile_zyx, div))
    if max_tile_voxels is None:
        tile = _even_tiles(shape, cfg_tile, div, overlap)
        stride = np.maximum(1, (tile * (1 - overlap)).astype(int))
        k = [len(_starts(max(n, t), t, s)) for n, t, s in zip(shape, tile, stride)]
        return tile, np.asarray(k)
    ov = np.ceil(overlap * np.minimum(cfg_tile, shape)).astype(int)
    choices = [_axis_tiles(int(n), int(d), int(o)) for n, d, o in zip(shape, div, ov)]
    plans = [(np.prod([c[0] for c in p]) * np.prod([float(c[1]) for c in p]), np.prod([c[0] for c in p]), p)
             for p in itertools.product(*choices)]
    fits = [q for q in plans if np.prod([float(c[1]) for c in q[2]]) <= max_tile_voxels]
    best = min(fits, key=lambda q: q[:2])[2] if fits else min(plans, key=lambda q: np.prod([float(c[1]) for c in q[2]]))[2]
    return np.asarray([c[1] for c in best]), np.asarray([c[0] for c in best])


def _flip_averaged(model, xb, n_classes: int, flips):
    """Softmax probabilities and sigmoid distance of a batch, averaged over lateral flips, as
    one (N, C + 1, Z, Y, X) tensor in the default (contiguous) memory layout.

    ``flips`` lists the axis tuples to mirror (``()`` = the input as is); each prediction is
    mirrored back before averaging (test-time augmentation: the twin and the optics are
    symmetric under x → −x and y → −y, so every flipped view is an equally valid input).
    The softmax and sigmoid are written straight into the output (no concatenation of the
    channels-last network output, no division by one without flips): the same sums
    v₁ + v₂ + … divided by their count, element by element.
    """
    import torch

    acc = None
    for i, axes in enumerate(flips):
        xi = torch.flip(xb, dims=axes) if axes else xb
        out = model(xi)
        if acc is None:
            acc = torch.empty(out.shape, dtype=out.dtype, device=out.device)
        for dst, res in ((acc[:, :n_classes], torch.softmax(out[:, :n_classes], dim=1)),
                         (acc[:, n_classes:], torch.sigmoid(out[:, n_classes:]))):
            res = torch.flip(res, dims=axes) if axes else res
            dst.add_(res) if i else dst.copy_(res)
    return acc / len(flips) if len(flips) > 1 else acc


#: Lateral mirror sets for test-time augmentation (axes of an (N, C, Z, Y, X) batch).
TTA_FLIPS = {0: [()], 2: [(), (4,)], 4: [(), (4,), (3,), (3, 4)]}


def _for_device(net, device):
    """(network on ``device`` in eval mode, memory format its inputs should have).

    On the CPU the network and its inputs are laid out channels-last (N, Z, Y, X, C in
    memory, ``torch.channels_last_3d``): oneDNN's 3D convolutions then run without the
    reorders it inserts around each convolution of a (N, C, Z, Y, X) tensor, and the pooling,
    ReLU and concatenation stay in that layout (≈ 0.75 → 0.45 CPU-µs per voxel per U-Net
    pass on 2 AVX2 cores, measured; the same arithmetic, outputs equal to ≈ 1e-5 on the
    logits). Other devices keep the default layout.
    """
    import torch

    net = net.to(device).eval()
    if torch.device(device).type != "cpu":
        return net, torch.contiguous_format
    return net.to(memory_format=torch.channels_last_3d), torch.channels_last_3d


def _heap_kept():
    """Context manager: while inside, glibc keeps freed blocks of up to 1 GiB in the heap.

    A U-Net forward pass allocates and frees activations of tens of MB per layer; glibc serves
    each from a fresh ``mmap`` and returns it with ``munmap``, so every pass faults its pages in
    again (≈ 45 % system time on 2 cores, measured). Raising ``M_MMAP_THRESHOLD`` and
    ``M_TRIM_THRESHOLD`` keeps them for reuse (system time → ≈ 0); on exit the thresholds go
    back to glibc's largest dynamic values and ``malloc_trim`` hands the free heap back.
    No-op where the C library is not glibc.
    """
    import contextlib
    import ctypes
    import ctypes.util

    @contextlib.contextmanager
    def kept():
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt, trim = libc.mallopt, libc.malloc_trim
        except (OSError, AttributeError):
            yield
            return
        m_trim, m_mmap = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
        mallopt(m_mmap, 1 << 30)
        mallopt(m_trim, 1 << 30)
        try:
            yield
        finally:
            mallopt(m_mmap, 32 << 20)
            mallopt(m_trim, 64 << 20)
            trim(0)

    return kept()


def contrast_mask(delta_ri: np.ndarray, *, k_sigma: float = 6.0, cap_ri: float | None = None) -> np.ndarray:
    """Voxels whose |n − n_m| stands above the noise: |Δn| > min(k σ, ``cap_ri``).

    σ = 1.4826 · median |Δn| over every 7th voxel (the background, n ≈ n_m, is most of a
    field, so this is the noise's standard deviation); ``cap_ri`` bounds the threshold from
    above (half the weakest cell peak the chain keeps, ``min_peak_delta_ri`` / 2), so a dense
    field whose median lies inside cells cannot hide faint cells. Tiles with no such voxel
    within a margin are background (:func:`predict_tiled`'s ``mask``).
    """
    sample = np.abs(delta_ri.ravel()[::7])
    thr = float(k_sigma * 1.4826 * np.median(sample)) if sample.size else 0.0
    if cap_ri:
        thr = min(thr, float(cap_ri))
    return np.abs(delta_ri) > np.float32(thr)


def _tile_origins(full, tile, counts):
    """Origins of ``counts`` tiles per axis spread evenly over a padded volume ``full``."""
    import itertools

    return list(itertools.product(*[sorted(set(int(round(s)) for s in np.linspace(0, n - t, k)))
                                    for n, t, k in zip(full, tile, counts)]))


def _needed(mask, origin, tile, margin) -> bool:
    """Whether ``mask`` has a True voxel in the tile at ``origin`` grown by ``margin`` voxels."""
    if mask is None:
        return True
    box = tuple(slice(max(0, o - m), o + t + m) for o, t, m in zip(origin, tile, margin))
    return bool(mask[box].any())


def _blend(acc: np.ndarray, r: np.ndarray, win: np.ndarray, sl) -> None:
    """acc[:, sl] += r · win, one channel per thread (:func:`holo.threads.thread_map`; ``r``
    is overwritten): the same float operations as on the whole array."""
    def one(k):
        np.multiply(r[k], win, out=r[k])
        acc[k][sl] += r[k]

    for _ in thread_map(one, range(len(r))):
        pass


def predict_tiled(model, x: np.ndarray, *, tile_zyx=(48, 128, 128), overlap: float = 0.25,
                  device=None, batch_size: int = 1, tta: int = 0, mask=None, margin_vox=(0, 0, 0),
                  max_tile_voxels: float | None = None, stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sliding-window U-Net prediction with Gaussian blending.

    Parameters
    ----------
    model : UNet3D
        Run with its batch norms folded into the convolutions
        (:func:`holo.segmentation.unet.fused_for_inference`).
    x : (Z, Y, X) float32
        Normalised RI on the model's voxel grid.
    tile_zyx : largest tile size (:func:`_even_tiles`: as few tiles as that allows, each as small
        as covers the volume; multiples of the network's divisor).
    overlap : float in [0, 0.9)
    max_tile_voxels : float, optional
        Memory budget of one tile: the tiles reading the fewest voxels within it, with the
        halo of ``tile_zyx`` (:func:`tile_plan`; :func:`holo.memory.unet_tile_voxels`).
    tta : {0, 2, 4}
        Test-time augmentation: average over this many lateral mirror images (0 = none).
    mask : (Z, Y, X) bool, optional
        Tiles without a True voxel within ``margin_vox`` of them are not run and predict
        background (P(background) = 1, distance 0) — e.g. :func:`contrast_mask`, or the cells
        found by a first network.
    stats : dict, optional
        Receives ``tiles`` (all) and ``tiles_run``.

    Returns
    -------
    probs : (C, Z, Y, X) float32, softmax probabilities per semantic class
    dist : (Z, Y, X) float32, predicted normalised distance in [0, 1]
    """
    import torch

    from holo.segmentation.unet import UNet3D, fused_for_inference

    if not 0 <= overlap < 0.9:
        raise ValueError(f"overlap must be in [0, 0.9), got {overlap}")
    if int(tta) not in TTA_FLIPS:
        raise ValueError(f"tta must be one of {sorted(TTA_FLIPS)}, got {tta}")
    flips = TTA_FLIPS[int(tta)]
    device = pick_device() if device is None else device
    shape = np.asarray(x.shape)
    tile, counts = tile_plan(shape, tile_zyx, model.divisor, overlap, max_tile_voxels)
    pad = np.maximum(tile - shape, 0)
    xp = np.pad(x, [(0, p) for p in pad]) if pad.any() else x
    C = model.n_classes
    acc = np.zeros((C + 1,) + xp.shape, np.float32)
    wsum = np.zeros(xp.shape, np.float32)
    win = _gauss_window(tile)
    origins = _tile_origins(xp.shape, tile, counts)
    run = [o for o in origins if _needed(mask, o, tile, margin_vox)]
    for a, b, c in [o for o in origins if o not in set(run)]:  # background tiles: P(background) = 1, d = 0
        sl = (slice(a, a + tile[0]), slice(b, b + tile[1]), slice(c, c + tile[2]))
        acc[(0,) + sl] += win
        wsum[sl] += win
    net = fused_for_inference(model.eval()) if isinstance(model, UNet3D) else model
    net, layout = _for_device(net, device)
    with _heap_kept(), torch.inference_mode():
        for i in range(0, len(run), batch_size):
            group = run[i:i + batch_size]
            batch = np.stack([xp[a:a + tile[0], b:b + tile[1], c:c + tile[2]] for a, b, c in group])
            xb = torch.from_numpy(np.ascontiguousarray(batch[:, None], dtype=np.float32)).to(device)
            xb = xb.contiguous(memory_format=layout)
            res = _flip_averaged(net, xb, C, flips).float().cpu().numpy()
            del xb
            for (a, b, c), r in zip(group, res):
                sl = (slice(a, a + tile[0]), slice(b, b + tile[1]), slice(c, c + tile[2]))
                _blend(acc, r, win, sl)
                wsum[sl] += win
    if stats is not None:
        stats.update(tiles=len(origins), tiles_run=len(run), tile_zyx=[int(t) for t in tile])
    for _ in thread_map(lambda ch: np.divide(ch, wsum, out=ch), acc):  # channels on separate threads
        pass
    z, y, xx = shape
    acc = acc[:, :z, :y, :xx]
    return acc[:C], acc[C]


def semantic_from_probabilities(probs: np.ndarray, fg_threshold: float = 0.5) -> np.ndarray:
    """Foreground where 1 − P(background) > ``fg_threshold``; there the most probable
    non-background class (uint8). The threshold is tuned on validation data (weights' JSON).
    The most probable class is found class by class (a running maximum, the first class kept
    on ties: ``argmax``'s answer without its strided pass over the class axis), voxel by
    voxel, so slabs along the first axis are labelled on separate threads."""
    if not 0 < fg_threshold < 1:
        raise ValueError(f"fg_threshold must be in (0, 1), got {fg_threshold}")
    sem = np.ones(probs.shape[1:], np.uint8)
    step = max(1, -(-sem.shape[0] // (2 * cpu_threads())))

    def label_slab(z0):
        p, out = probs[:, z0:z0 + step], sem[z0:z0 + step]
        best = p[1].copy() if len(p) > 2 else p[1]
        for c in range(2, len(p)):
            out[p[c] > best] = c
            np.maximum(best, p[c], out=best)
        out[(1.0 - p[0]) <= fg_threshold] = 0

    for _ in thread_map(label_slab, range(0, sem.shape[0], step)):
        pass
    return sem


def instances_from_prediction(semantic: np.ndarray, dist: np.ndarray, voxel_size_um, *,
                              h_um: float = 0.2, min_volume_um3: float = 0.3) -> np.ndarray:
    """Instance labels (int32) from the semantic foreground and the predicted distance map.

    The relief D = E · (½ + d̂) combines E, the Euclidean distance (µm, physical voxel size) to
    the predicted background, with the network's normalised distance d̂ ∈ [0, 1], which dips
    at the faces between touching cells where E alone has no valley. Seeds are the h-maxima
    of D (height ``h_um``), grown by a watershed of −D inside the foreground; foreground
    components without a seed become cells of their own, and cells under ``min_volume_um3``
    are dropped. Computed per 26-connected foreground component on its bounding box
    (:func:`holo.segmentation.instances.seeded_watershed_by_component`: the same labels as on
    the whole volume, with only the boxes' voxels sorted).
    """
    from holo.segmentation.classic import remove_small

    fg = semantic > 0
    if not fg.any():
        return np.zeros(semantic.shape, np.int32)
    vs = tuple(float(v) for v in voxel_size_um)
    half = np.float32(0.5)

    def relief_of(fg_box, box):
        return ndi.distance_transform_edt(fg_box, sampling=vs).astype(np.float32) * (half + dist[box].astype(np.float32))

    lab = seeded_watershed_by_component(fg, relief_of, vs, h_um)
    return remove_small(lab, vs, min_volume_um3)


#: Margin (µm) around the voxels above the noise within which a tile is still run
#: (:func:`contrast_mask`): the blurred fringe of a cell whose core lies in the next tile.
EMPTY_TILE_MARGIN_UM = 2.0


def unet_segment(ri: np.ndarray, voxel_size_um, medium_index: float, *, model=None, cfg=None,
                 weights_dir=None, name: str = "unet", device=None, tile_zyx=None,
                 overlap: float = 0.25, fast: bool = False, stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Semantic (uint8) and instance (int32) labels of an RI volume with the U-Net.

    The volume is resampled once to the training voxel size, normalised as (n − n_m)·s,
    predicted tile by tile (averaged over ``tta`` lateral mirror images when ``cfg`` asks for
    it; tiles with no voxel above the noise within :data:`EMPTY_TILE_MARGIN_UM`,
    :func:`contrast_mask`, are background without running the network), labelled
    (:func:`labels_from_prediction`: watershed, then
    :func:`holo.segmentation.instances.merge_by_contact` with ``merge_contact_ratio`` and
    :func:`holo.segmentation.instances.drop_faint` with ``min_peak_delta_ri`` from ``cfg``;
    absent keys disable those steps), nucleoli and lipid droplets are taken from the network
    ``cfg["organelle_model"]`` of ``weights_dir`` (default: the shipped folder) when the config
    names one (:func:`with_organelles`; run only on the tiles holding cells of the first
    network, the only voxels it writes), and the labels are resized back (nearest neighbour).
    ``name`` selects the weights set of ``weights_dir`` (:func:`unet_names`) when no ``model``
    is given. Tiles: the largest the memory allows (:func:`holo.memory.unet_tile_voxels`,
    :func:`tile_plan`; the halo of ``tile_zyx``, so fewer voxels are predicted twice). ``fast``: no test-time augmentation for either network (one forward pass per
    tile instead of ``tta``; the model card gives the accuracy it costs). Memory is checked
    before allocating (:func:`holo.memory.segmentation_bytes`); the first network's
    probabilities are freed before the organelle network runs. ``stats`` receives the tiles
    run per network.
    """
    from holo.memory import check_memory, segmentation_bytes, unet_tile_voxels

    if model is None:
        model, cfg = load_unet(weights_dir, name)
    ri = np.asarray(ri, dtype=np.float32)
    if ri.ndim != 3:
        raise ValueError(f"ri must be 3D (Z, Y, X), got shape {ri.shape}")
    train_vs = tuple(cfg["voxel_size_um"])
    tile = tuple(tile_zyx or cfg.get("tile_zyx", (48, 128, 128)))
    train_shape = np.maximum(1, np.round(np.asarray(ri.shape) * np.asarray(voxel_size_um, float) / np.asarray(train_vs)))
    max_vox = unet_tile_voxels(ri.shape, train_shape, n_classes=int(cfg["n_classes"]))
    planned = tile_plan(train_shape.astype(int), tile, model.divisor, overlap, max_vox)[0]
    check_memory(segmentation_bytes(ri.shape, train_shape, planned, n_classes=int(cfg["n_classes"])),
                 item="segmentation", what="segmenting it")
    x = resample_volume(ri, voxel_size_um, train_vs, order=1) - np.float32(medium_index)
    fg = contrast_mask(x, cap_ri=0.5 * float(cfg.get("min_peak_delta_ri", 0.0)) or None)
    x *= np.float32(cfg["ri_scale"])
    margin = tuple(int(np.ceil(EMPTY_TILE_MARGIN_UM / v)) for v in train_vs)
    stats = {} if stats is None else stats
    probs, dist = predict_tiled(model, x, tile_zyx=tile, overlap=overlap, device=device,
                                tta=0 if fast else int(cfg.get("tta", 0)), mask=fg, margin_vox=margin,
                                max_tile_voxels=max_vox, stats=stats.setdefault("unet", {}))
    del fg
    sem, inst = labels_from_prediction(probs, dist, x / np.float32(cfg["ri_scale"]), cfg)
    del probs, dist
    if cfg.get("organelle_model"):
        org_model, org_cfg = load_unet(weights_dir, cfg["organelle_model"])
        if not np.allclose(org_cfg["voxel_size_um"], train_vs) or org_cfg["ri_scale"] != cfg["ri_scale"]:
            raise HoloError("organelle model: voxel size or RI scale differs from the U-Net's", item=cfg["organelle_model"])
        org_probs, _ = predict_tiled(org_model, x, tile_zyx=tile, overlap=overlap, device=device,
                                     tta=0 if fast else int(org_cfg.get("tta", 0)), mask=sem > 0,
                                     max_tile_voxels=max_vox, stats=stats.setdefault("organelles", {}))
        sem = with_organelles(sem, semantic_from_probabilities(org_probs, float(org_cfg.get("fg_threshold", 0.5))))
        del org_probs
    return resize_labels(sem, ri.shape), resize_labels(inst, ri.shape)


def with_organelles(semantic: np.ndarray, organelle_semantic: np.ndarray, labels=ORGANELLE_LABELS) -> np.ndarray:
    """Semantic labels with the nucleolus / lipid-droplet voxels (``labels``) of a second
    network's semantic map written in, inside the first map's cells only (the cell masks,
    instances and the other classes stay those of the first network)."""
    out = semantic.copy()
    put = (semantic > 0) & np.isin(organelle_semantic, labels)
    out[put] = organelle_semantic[put]
    return out


def labels_from_prediction(probs: np.ndarray, dist: np.ndarray, delta_ri: np.ndarray, cfg: dict):
    """Semantic (uint8) and instance (int32) labels on the training grid from the network's
    output: foreground threshold, distance-relief watershed, contact merging, faint-object
    removal, half-maximum boundary of small objects, splitting of merged bacteria by their
    cross-section (:func:`holo.segmentation.cross_section.split_by_cross_section`; parameters
    ``fg_threshold``, ``instance_h_um``, ``min_volume_um3``, ``merge_contact_ratio``,
    ``min_peak_delta_ri``, ``half_max_below_um3``, ``half_max_fraction``,
    ``split_cross_section_um2``, ``split_max_piece_ratio``, ``split_below_um3``,
    ``split_h_fraction``, ``split_min_piece_um3``, ``split_max_turn_rad`` of
    ``cfg``; absent keys disable a step or keep its first behaviour).
    ``delta_ri`` is n − n_m on the same grid; voxels a small object gains become cytoplasm."""
    from concurrent.futures import ThreadPoolExecutor

    train_vs = tuple(cfg["voxel_size_um"])
    min_peak, small = float(cfg.get("min_peak_delta_ri", 0.0)), float(cfg.get("half_max_below_um3", 0.0))
    with ThreadPoolExecutor(1, thread_name_prefix="holo-contrast") as pool:
        # the smoothed contrast both later steps read (their default σ of 0.5 voxel), computed
        # once, on a second thread while the watershed runs
        smoothing = pool.submit(ndi.gaussian_filter, np.asarray(delta_ri, np.float32), 0.5) \
            if min_peak > 0 or small > 0 or float(cfg.get("split_cross_section_um2", 0.0)) > 0 else None
        sem = semantic_from_probabilities(probs, float(cfg.get("fg_threshold", 0.5)))
        inst = instances_from_prediction(sem, dist, train_vs, h_um=float(cfg.get("instance_h_um", 0.2)),
                                         min_volume_um3=float(cfg.get("min_volume_um3", 0.3)))
        inst = merge_by_contact(inst, train_vs, float(cfg.get("merge_contact_ratio", 0.0)))
        contrast = delta_ri if smoothing is None else smoothing.result()
    inst = drop_faint(inst, contrast, min_peak, smooth_voxels=0.0)
    if small > 0:
        inst = refine_small_by_half_max(inst, contrast, small, train_vs,
                                        fraction=float(cfg.get("half_max_fraction", 0.5)), smooth_voxels=0.0)
        sem = np.where((inst > 0) & (sem == 0), np.uint8(CYTOPLASM), sem)
    if float(cfg.get("split_cross_section_um2", 0.0)) > 0:
        inst = split_by_cross_section(inst, contrast, train_vs,
                                      max_cross_section_um2=float(cfg["split_cross_section_um2"]),
                                      max_volume_um3=float(cfg.get("split_below_um3", 15.0)),
                                      h_fraction=float(cfg.get("split_h_fraction", 0.05)),
                                      min_piece_um3=float(cfg.get("split_min_piece_um3", 0.3)),
                                      max_piece_ratio=float(cfg.get("split_max_piece_ratio", 1.0)),
                                      max_turn_rad=float(cfg.get("split_max_turn_rad", 0.0)))
    del contrast
    sem[inst == 0] = 0
    return sem, inst


def label_centroids(instance: np.ndarray, ids, slices=None) -> list[tuple[float, float, float]]:
    """Centroid (voxel index, float64) of each label of ``ids``: Σ index / N over its voxels,
    each computed on the label's bounding box (the sums are integers, exact in int64, so the
    result equals ``scipy.ndimage.center_of_mass`` on the whole volume without its float64
    whole-volume temporaries). NaN for an id absent from the volume. ``slices``: the labels'
    boxes (:func:`holo.segmentation.drymass.label_slices`) when already known."""
    from holo.segmentation.drymass import label_slices

    slices = label_slices(instance) if slices is None else slices

    def centroid(cid):
        sl = slices[cid - 1] if 0 < cid <= len(slices) else None
        if sl is None:
            return (np.nan,) * 3
        idx = np.nonzero(instance[sl] == cid)
        n = float(idx[0].size)
        return tuple(float(np.sum(i, dtype=np.int64) + i.size * s.start) / n for i, s in zip(idx, sl))

    return list(thread_map(centroid, np.asarray(ids, np.int64)))  # labels on several threads


def _sample_on_grid(vol: np.ndarray, coords, order: int) -> np.ndarray:
    """``vol`` sampled at every point of the grid ``coords[0] × coords[1] × coords[2]`` (1D
    voxel coordinates per axis): linear (``order`` 1, float32 out) or nearest-voxel (0, the
    input's dtype) interpolation, 0 where a coordinate lies outside [0, n − 1] — what
    ``scipy.ndimage.map_coordinates(mode="constant", cval=0)`` gives on the full grid of points.

    Trilinear interpolation on a separable grid is the product of 1D linear weights, so it is
    done one axis at a time (the axis that shrinks the array most first): v ← (1 − f) v[i₀] +
    f v[i₀ + 1] with i₀ = ⌊c⌋, f = c − i₀, in float64 as scipy; nearest takes v[⌊c + ½⌋] in
    one gather.
    """
    coords = [np.asarray(c, np.float64) for c in coords]
    inside = [(c >= 0) & (c <= n - 1) for c, n in zip(coords, vol.shape)]
    if order == 0:
        out = vol[np.ix_(*[np.clip(np.floor(c + 0.5), 0, n - 1).astype(np.intp) for c, n in zip(coords, vol.shape)])]
    else:
        out = vol
        for axis in sorted(range(vol.ndim), key=lambda a: len(coords[a]) / vol.shape[a]):
            c, n = coords[axis], vol.shape[axis]
            i0 = np.clip(np.floor(c), 0, n - 1).astype(np.intp)
            f = (c - i0).reshape((-1,) + (1,) * (vol.ndim - axis - 1))
            lo = np.take(out, i0, axis=axis).astype(np.float64, copy=False)
            out = lo * (1.0 - f) + np.take(out, np.minimum(i0 + 1, n - 1), axis=axis) * f
        out = out.astype(np.float32)
    for axis, ok in enumerate(inside):
        if not ok.all():
            out[(slice(None),) * axis + (~ok,)] = 0
    return out


def cell_crops(ri: np.ndarray, instance: np.ndarray, voxel_size_um, medium_index: float, *,
               crop_zyx, crop_voxel_size_um, ri_scale: float, ids=None) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-size crops (N, 2, Z, Y, X) float32 centred on each cell's centroid.

    Channel 0: (n − n_m)·s linearly interpolated on the crop grid of voxel ``crop_voxel_size_um``
    (the medium outside the volume); channel 1: the cell's own mask (nearest neighbour).
    Returns (crops, ids). The crop grid is axis-aligned, so both are sampled one axis at a
    time (:func:`_sample_on_grid`) on the box the crop covers; the cells present are read
    from their boxes (``find_objects``), not from a sort of the whole volume.
    """
    from holo.segmentation.drymass import label_slices

    vs = np.asarray(voxel_size_um, float)
    cv = np.asarray(crop_voxel_size_um, float)
    crop = np.asarray(crop_zyx, int)
    inst = np.asarray(instance)
    slices = label_slices(inst)
    if ids is None:
        ids = np.asarray([k for k, sl in enumerate(slices, start=1) if sl is not None], np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return np.zeros((0, 2) + tuple(crop), np.float32), ids
    centroids = label_centroids(inst, ids, slices)
    ri = np.asarray(ri)
    offs = [(np.arange(n) - (n - 1) / 2.0) * c for n, c in zip(crop, cv)]
    out = np.zeros((len(ids), 2) + tuple(crop), np.float32)
    half = [int(np.ceil(o[-1] / v)) + 2 for o, v in zip(offs, vs)]  # crop half-extent in tomogram voxels
    def crop(k):
        # only the box the crop covers is read: no whole-volume copy per cell
        cid, cen = ids[k], centroids[k]
        c = [int(round(cen[a])) for a in range(3)]
        box = tuple(slice(max(c[a] - half[a], 0), min(c[a] + half[a] + 1, inst.shape[a])) for a in range(3))
        coords = [(cen[a] * vs[a] + offs[a]) / vs[a] - box[a].start for a in range(3)]
        x = (ri[box].astype(np.float32) - np.float32(medium_index)) * np.float32(ri_scale)
        out[k, 0] = _sample_on_grid(x, coords, 1)
        out[k, 1] = _sample_on_grid(inst[box], coords, 0) == cid

    for _ in thread_map(crop, range(len(ids))):  # cells on several threads, each writing its own crop
        pass
    return out, ids


def classify_cells(ri: np.ndarray, instance: np.ndarray, voxel_size_um, medium_index: float, *,
                   model=None, cfg=None, weights_dir=None, device=None, batch_size: int = 8,
                   threads: int | None = None):
    """Calibrated class probabilities of every cell: (ids, probs (N, K), class names).

    ``batch_size`` crops per forward pass: 8 keeps the classifier's activations near 0.5 GB on
    the CPU (16: ≈ 1 GB), which :func:`holo.segmentation.diagnose` holds while it measures the
    cells; the logits depend on it only to float rounding (≈ 1e-5). ``threads``: torch CPU
    threads for these passes (default :func:`holo.threads.cpu_threads`), e.g. one fewer while
    another thread measures the cells, so that torch's threads do not wait on each other at
    every layer for a core."""
    import torch

    from holo.segmentation.classifier import calibrated_probabilities
    from holo.segmentation.unet import fused_for_inference

    if model is None:
        model, cfg = load_classifier(weights_dir)
    device = pick_device() if device is None else device
    crops, ids = cell_crops(ri, instance, voxel_size_um, medium_index, crop_zyx=cfg["crop_zyx"],
                            crop_voxel_size_um=cfg["voxel_size_um"], ri_scale=cfg["ri_scale"])
    logits = np.zeros((len(ids), len(cfg["classes"])), np.float32)
    model, layout = _for_device(fused_for_inference(model.eval()), device)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    try:
        with _heap_kept(), torch.inference_mode():
            for i in range(0, len(ids), batch_size):
                xb = torch.from_numpy(crops[i:i + batch_size]).to(device).contiguous(memory_format=layout)
                logits[i:i + batch_size] = model(xb).float().cpu().numpy()
    finally:
        torch.set_num_threads(before)
    probs = calibrated_probabilities(logits, float(cfg.get("temperature", 1.0)))
    return ids, probs, list(cfg["classes"])
