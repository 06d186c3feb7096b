"""Streaming time-lapse through ``holo run``'s per-sample path: seconds per frame and memory.

A twin time-lapse of 96 × 512 × 512 voxels per frame (0.4 × 0.196 × 0.196 µm, a 100 µm field
of a dozen cells as the tomograph sees them) is written to a TCF file frame by frame (the
series is a lazy dask array: no more than one frame in memory while writing), then tracked
by :func:`holo.timelapse.process_timelapse` (frames read one at a time from the file,
segmented, labels streamed to disk, linked at the end, outputs and report written).

Measured per frame: wall seconds and the process's resident memory (RSS) right after the
frame. A bounded stream shows the same RSS after frame 2 and after the last frame. Linking
(:func:`holo.segmentation.tracking.link_cells` with the growth and lineage tables) is timed
again on the run's own detections cut to the first N/4, N/2 and N frames, to show how it
grows with the series (measured, not extrapolated).

    python -m benchmarks.bench_timelapse_stream [--frames 6] [--seg-method classic]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

SHAPE, VOXEL = (96, 512, 512), (0.4, 0.196, 0.196)


def lazy_series(n_frames: int, seed: int = 0):
    """(Tomogram with a lazy (T, Z, Y, X) RI, plan): frames rendered on demand."""
    import dask
    import dask.array as da

    from holo.model import Tomogram
    from holo.segmentation.data import apply_otf
    from holo.twin.timelapse import plan_timelapse, render_frame

    tl = plan_timelapse(n_frames, 600.0, shape_zyx=SHAPE, voxel_size_um=VOXEL, n_cells=12, seed=seed)

    def frame(t):
        p = render_frame(tl, t)
        rng = np.random.default_rng(seed * 1000 + t)
        return apply_otf(p.ri, tl.voxel_size_um, tl.medium_index, rng=rng, noise_ri=0.0015).astype(np.float32)

    ri = da.stack([da.from_delayed(dask.delayed(frame)(t), SHAPE, np.float32) for t in range(n_frames)])
    return Tomogram(ri, voxel_size_um=VOXEL, medium_index=tl.medium_index, wavelength_um=0.532, time_step_s=600.0), tl


def write_series(path, n_frames: int) -> None:
    """The lazy twin series saved as TCF, one frame at a time."""
    from holo.io import save_tomogram

    save_tomogram(lazy_series(n_frames)[0], path)


def _record_detections(store: list):
    """Wrap ``link_cells`` so that the detections table it receives lands in ``store``."""
    from holo.segmentation import tracking

    link = tracking.link_cells

    def recording(det, **kw):
        store.append((det.copy(), kw))
        return link(det, **kw)

    tracking.link_cells = recording
    return link


def linking_seconds(det, kw, link, n_frames: int) -> dict:
    """Wall and CPU seconds of linking + growth + lineage on the first ``n_frames`` frames."""
    from holo.segmentation.growth import growth_table, lineage_table

    sub = det[det["frame"] < n_frames].reset_index(drop=True)
    t0, c0 = time.perf_counter(), time.process_time()
    tracks = link(sub, **kw)
    growth_table(tracks), lineage_table(tracks)
    return {"frames": n_frames, "detections": len(sub), "s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3)}


def main(argv=None) -> None:
    from holo.sample import SampleOptions
    from holo.timelapse import process_timelapse

    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--seg-method", default="classic")
    args = ap.parse_args(argv)
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "series.tcf"
        t0 = time.perf_counter()
        # written in a child process, so that this process's peak memory is the tracking's own
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            pool.submit(write_series, src, args.frames).result()
        t_write = time.perf_counter() - t0
        rss_start = proc.memory_info().rss
        stamps = []

        def on_frame(done, total, note=""):
            stamps.append((done, time.perf_counter(), proc.memory_info().rss, sum(proc.cpu_times()[:2])))

        recorded: list = []
        link = _record_detections(recorded)
        load0 = os.getloadavg()[0]
        t0, cpu0 = time.perf_counter(), sum(proc.cpu_times()[:2])
        summary = process_timelapse(src, Path(tmp) / "out", SampleOptions(seg_method=args.seg_method), on_frame)
        total = time.perf_counter() - t0
        cpu_total = sum(proc.cpu_times()[:2]) - cpu0
    det, kw = recorded[-1]
    n = args.frames
    linking = [linking_seconds(det, kw, link, k) for k in sorted({max(2, n // 4), max(2, n // 2), n})]
    per_frame = np.diff([t0] + [s[1] for s in stamps])
    seg_s = float(np.median(per_frame))
    after = total - (stamps[-1][1] - t0)  # linking, growth, relabelling the labels, report
    mib = 2**20
    res = {
        "shape_zyx": SHAPE, "voxel_um": VOXEL, "frames_measured": args.frames, "seg_method": args.seg_method,
        "write_tcf_s_per_frame": round(t_write / args.frames, 2),
        "s_per_frame_median": round(seg_s, 2), "s_per_frame_each": [round(x, 2) for x in per_frame],
        "cpu_s_per_frame_median": round(float(np.median(np.diff([cpu0] + [s[3] for s in stamps]))), 2),
        "load_average_1min_start_end": [round(load0, 1), round(os.getloadavg()[0], 1)], "cores": os.cpu_count(),
        "tracking_total_s": round(total, 1), "tracking_total_cpu_s": round(cpu_total, 1),
        "link_write_report_s": round(after, 2), "linking_in_run_s": summary["timings_s"].get("linking"),
        "linking_vs_frames": linking, "cells_tracked": summary["n_cells"],
        "rss_start_mib": round(rss_start / mib), "rss_after_frame_mib": [round(s[2] / mib) for s in stamps],
        "rss_growth_frame2_to_last_mib": round((stamps[-1][2] - stamps[1][2]) / mib, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "writer_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"timelapse_stream_{n}frames.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
