"""Single-hologram phase retrieval: holo vs qpretrieve on the same measured hologram.

The HL60 off-axis hologram and its background (``tests/data/hl60_hologram_cell.npz``, from
qpretrieve's examples, MIT) are processed by both tools with the same sideband radius (half
the carrier distance); each tool's time per hologram (hologram + background → unwrapped,
background-subtracted phase) is the median of ``--repeat`` runs after one warm-up, peak
traced memory from tracemalloc, and the phase difference after removing a plane is reported
with the ratio. Writes ``benchmarks/results/bench_qpi.json``.

    python -m benchmarks.bench_qpi [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "hl60_hologram_cell.npz"


def _holo(d):
    from holo.reconstruction.fields.qpi import hologram_phase

    return hologram_phase(d["data"], d["bg_data"], pixel_size_um=1.0, wavelength_um=1.0, radius_fraction=0.5).phase


def _peer(d):
    import qpretrieve
    from skimage.restoration import unwrap_phase

    h = qpretrieve.OffAxisHologram(data=d["data"])
    h.run_pipeline(filter_name="smooth disk", filter_size=1 / 2)
    b = qpretrieve.OffAxisHologram(data=d["bg_data"])
    b.process_like(h)
    return unwrap_phase(h.get_data_with_input_layout(h.phase) - b.get_data_with_input_layout(b.phase))


def _time(fn, d, repeat):
    fn(d)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(d)
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    fn(d)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return float(np.median(times)), peak, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from holo.reconstruction.fields import fit_polynomial

    d = dict(np.load(DATA))
    t_holo, m_holo, p_holo = _time(_holo, d, args.repeat)
    t_peer, m_peer, p_peer = _time(_peer, d, args.repeat)
    diff = p_holo - p_peer
    diff -= fit_polynomial(diff[None], np.ones((1,) + diff.shape, bool), 1)[0]
    edge = 9  # one sideband-filter response width 1/R (R ≈ 0.118 cycles/pixel)
    res = {
        "frame": list(d["data"].shape),
        "holo_s": t_holo, "qpretrieve_s": t_peer, "speedup": t_peer / t_holo,
        "holo_peak_mib": m_holo / 2**20, "qpretrieve_peak_mib": m_peer / 2**20,
        "phase_rms_rad_inner": float(np.sqrt(np.mean(diff[edge:-edge, edge:-edge] ** 2))),
        "phase_rms_rad_whole": float(np.sqrt(np.mean(diff**2))),
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_qpi.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
