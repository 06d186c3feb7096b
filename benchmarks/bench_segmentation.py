"""Benchmark of the segmentation stage: CPU time and accuracy, U-Net vs. the classical baseline.

A held-out twin volume of 96 × 256 × 256 voxels (Z, Y, X) on a reconstruction-like grid
(0.3 µm axial, 0.11 µm lateral; 28 × 28 µm field, seed 777777, never used in training) is
made from a phantom seen through the instrument's transfer function
(:func:`holo.segmentation.data.apply_otf`). We time

* ``segment(method="unet")`` + ``classify`` with the default U-Net (the issue's budget: ≤ 15 s
  on CPU),
* the same with every other shipped U-Net (``unet:<name>``, e.g. ``unet:unet_fine``),
* ``segment(method="classic")``,

and score them against the ground truth (Dice of the cell mask and of the nucleus ∪ nucleolus,
instance AP@0.5).

``--field Z Y X`` instead times a Tomocube-sized field (default sampling of an HT-2,
0.839 × 0.196 × 0.196 µm, ``--voxel`` to change it) through the whole chain, segment →
classify → measure (:func:`holo.segmentation.diagnose`), once per mode — ``default`` (the
shipped test-time augmentation) and ``fast`` (none) — each in its own process so that its
peak resident memory (``ru_maxrss``) is its own; the ratio fast / default is the number to
compare across machines.

``--large`` times the issue's laptop target, a 96 × 1024 × 1024 field at 0.3 × 0.11 × 0.11 µm
(``--field``/``--voxel`` change it) in ``fast`` mode (``--modes``): the volume is made and saved
by one child process, then each mode loads it in its own child, so that the peak resident
memory (``ru_maxrss`` of that child: the loaded volume, the imports and ``diagnose``) holds
no trace of the volume's making, and the user and system CPU seconds are those of
``diagnose`` alone; a per-stage table (wall, CPU seconds, CPU / wall, peak RSS; steps and
the parts of the segmentation) goes to stderr, the JSON to stdout. Target: ≤ 60 s wall on 2
cores, ≤ 4 GB peak.

Usage::

    python benchmarks/bench_segmentation.py [--threads N] [--kind mixed] [--repeat 2] [--json]
    python benchmarks/bench_segmentation.py --field 96 512 512 [--modes fast default]
    python benchmarks/bench_segmentation.py --large [--modes fast default]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def make_volume(kind: str, seed: int, shape_zyx=(96, 256, 256), voxel_size_um=(0.3, 0.11, 0.11)):
    """(Tomogram, semantic truth, instance truth) of one twin volume through the OTF."""
    import numpy as np

    from holo.model import Tomogram
    from holo.twin.phantoms import make_phantom
    from holo.segmentation.data import apply_otf

    ph = make_phantom(kind, shape_zyx=shape_zyx, voxel_size_um=voxel_size_um, medium_index=1.337, seed=seed)
    ri = apply_otf(ph.ri, ph.voxel_size_um, ph.medium_index, rng=seed, noise_ri=0.002)
    tomo = Tomogram(ri=ri, voxel_size_um=voxel_size_um, medium_index=ph.medium_index, wavelength_um=0.532)
    return tomo, np.asarray(ph.semantic), np.asarray(ph.instance)


def field_child(shape_zyx, voxel_size_um, mode: str, seed: int) -> dict:
    """Time diagnose() on one field in this process; returns seconds, peak RSS and counts."""
    import resource

    from holo.segmentation import diagnose

    t0 = time.perf_counter()
    tomo, _, inst_true = make_volume("mixed", seed, shape_zyx=tuple(shape_zyx), voxel_size_um=tuple(voxel_size_um))
    t_make = time.perf_counter() - t0
    rss_make = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    seg, cells, timings = diagnose(tomo, fast=(mode == "fast"))
    total = time.perf_counter() - t0
    return {"mode": mode, "shape_zyx": list(shape_zyx), "voxel_size_um": list(voxel_size_um),
            "seconds_total": round(total, 1), "timings_s": timings, "seconds_make_volume": round(t_make, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 0),
            "peak_rss_mb_after_making_volume": round(rss_make, 0),
            "n_cells": int(len(cells)), "n_true_cells": int(len(set(inst_true.ravel().tolist())) - 1)}


def _usage() -> tuple[float, float, float, float]:
    """(wall s, CPU s of the process: user + system, peak RSS MB so far, CPU s of the calling
    thread)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime + r.ru_stime, r.ru_maxrss / 1024.0, time.thread_time()


#: Parts of the segmentation step timed on their own by ``--large`` (module, function, label).
SEGMENTATION_PARTS = (("resample_volume", "resample to the training grid"), ("predict_tiled", "U-Net tiles"),
                      ("labels_from_prediction", "watershed and clean-up"), ("resize_labels", "labels back to the grid"))


def _time_parts(infer, rows: list) -> None:
    """Wrap the functions of :data:`SEGMENTATION_PARTS` in ``infer`` so that each call appends
    (label, wall s, CPU s, peak RSS MB at its end, CPU s of the calling thread) to ``rows``
    (the second U-Net call is the organelle network's)."""
    import functools

    for name, label in SEGMENTATION_PARTS:
        def timed(*args, _f=getattr(infer, name), _label=label, **kw):
            t0, c0, _, m0 = _usage()
            try:
                return _f(*args, **kw)
            finally:
                t1, c1, rss, m1 = _usage()
                n = sum(r[0].startswith(_label) for r in rows)
                rows.append((f"{_label} #{n + 1}" if n else _label, t1 - t0, c1 - c0, rss, m1 - m0))

        setattr(infer, name, functools.wraps(getattr(infer, name))(timed))


def _bound(cpu: float, serial: float) -> float:
    """Least wall (s) of work of ``cpu`` CPU seconds, ``serial`` of them in one thread, on two
    idle cores: max(serial, cpu / 2)."""
    return max(serial, cpu / 2)


def stage_table(res: dict) -> str:
    """Per-stage table of a ``--large`` child's result: wall, CPU seconds, CPU / wall (how many
    cores the stage kept busy), the peak RSS reached by its end, the CPU seconds of the main
    thread, and a lower bound of the wall on two idle cores (what a loaded shared machine's
    wall cannot show): per part of the segmentation max(main thread, CPU / 2) — the main
    thread's work is serial, the rest at best splits evenly — summed with the rest of the
    step; classification and measurement, which run at the same time, together:
    max(classification's main thread, the measuring thread, CPU / 2)."""
    head = f"{'stage':36s} {'wall s':>7s} {'CPU s':>7s} {'CPU/wall':>8s} {'peak MB':>8s} {'main s':>7s} {'2-core bound':>12s}"
    row = "{:36s} {:7.1f} {:7.1f} {:8.2f} {:8.0f} {:7.1f} {:>12s}"
    lines, stages = [head], {n: v for n, *v in res["stages"]}
    parts = [v for n, *v in res["stages"] if n.startswith(" ")]
    seg_wall, seg_cpu, _, seg_main = stages["segmentation"]
    seg_bound = sum(_bound(c, m) for _, c, _, m in parts) + _bound(seg_cpu - sum(p[1] for p in parts),
                                                                     seg_main - sum(p[3] for p in parts))
    cm_cpu = stages["classification"][1] + stages["measurement"][1]
    cm_bound = _bound(cm_cpu, max(stages["classification"][3] + stages["measurement"][3], res["measuring_thread_cpu_s"]))
    for name, wall, cpu, rss, main in res["stages"]:
        b = (_bound(cpu, main) if name.startswith(" ") else seg_bound if name == "segmentation"
             else cm_bound if name == "measurement" else None)
        lines.append(row.format(name, wall, cpu, cpu / max(wall, 1e-9), rss, main, "" if b is None else f"{b:.1f}"))
    cpu = res["cpu_user_s"] + res["cpu_system_s"]
    lines.append(row.format("total (diagnose)", res["seconds_total"], cpu, cpu / max(res["seconds_total"], 1e-9),
                            res["peak_rss_mb"], float("nan"), f"{seg_bound + cm_bound:.1f}").replace("nan", "   "))
    lines.append(f"(measurement row's bound: classification and measurement together; measuring thread "
                 f"{res['measuring_thread_cpu_s']:.1f} CPU-s)")
    lines.append(f"load (1 min) before / after: {res['load_1min_before_after']}, torch threads {res['torch_threads']}")
    return "\n".join(lines)


def large_child(npz: str, mode: str) -> dict:
    """Time diagnose() on the saved field in this process: wall, user and system CPU seconds,
    peak RSS (whole process, before diagnose, and reached by the end of each step), per stage
    (the three steps, and the parts of the segmentation, :data:`SEGMENTATION_PARTS`) wall, CPU
    seconds and peak RSS, tiles run per network, the machine's 1-minute load before and after.
    Classification and measurement run at the same time (:func:`holo.segmentation.diagnose`):
    the classification stage ends when the classes are known, the measurement stage is the rest."""
    import resource

    import numpy as np
    import torch

    import holo.segmentation as chain
    from holo.model import Tomogram
    from holo.segmentation import diagnose
    from holo.segmentation import infer

    with np.load(npz) as f:
        tomo = Tomogram(ri=f["ri"], voxel_size_um=tuple(f["voxel_size_um"]), medium_index=1.337, wavelength_um=0.532)
        n_true = int(f["n_true"])
    stats = {}
    seg_fn = infer.unet_segment
    infer.unet_segment = lambda *args, **kw: seg_fn(*args, stats=stats, **kw)  # record the tiles run
    parts: list = []
    _time_parts(infer, parts)
    measuring = {}
    measured = getattr(chain, "_measured", None)  # absent from code that measures after classifying

    def measured_timed(*args, **kw):  # the CPU seconds of the thread that measures, alongside the classifier
        c0 = time.thread_time()
        try:
            return measured(*args, **kw)
        finally:
            measuring["cpu"] = time.thread_time() - c0

    if measured is not None:
        chain._measured = measured_timed
    steps = ("segmentation", "classification", "measurement")
    rss_by_step = {}
    marks = []
    stages: list = []

    def progress(done, total, note=""):  # called before each step and at the end: usage so far
        marks.append(_usage())
        if done:
            rss_by_step[steps[done - 1]] = round(marks[-1][2])
            (t0, c0, _, m0), (t1, c1, rss, m1) = marks[-2], marks[-1]
            stages.append((steps[done - 1], t1 - t0, c1 - c0, rss, m1 - m0))
            if done == 1:
                stages.extend(("  " + p[0], *p[1:]) for p in parts)

    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    seg, cells, timings = diagnose(tomo, fast=(mode == "fast"), progress=progress)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"mode": mode, "shape_zyx": list(tomo.shape_zyx), "voxel_size_um": list(tomo.voxel_size_um),
            "seconds_total": round(wall, 1), "timings_s": timings,
            "cpu_user_s": round(after.ru_utime - before.ru_utime, 1), "cpu_system_s": round(after.ru_stime - before.ru_stime, 1),
            "peak_rss_mb": round(after.ru_maxrss / 1024.0), "rss_mb_before_diagnose": round(before.ru_maxrss / 1024.0),
            "peak_rss_mb_by_end_of_step": rss_by_step, "load_1min_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "stages": [(n, round(w, 2), round(c, 2), round(r), round(m, 2)) for n, w, c, r, m in stages],
            "measuring_thread_cpu_s": round(measuring.get("cpu", 0.0), 2),
            "torch_threads": torch.get_num_threads(), "tiles": stats, "n_cells": int(len(cells)), "n_true_cells": n_true}


def large_benchmark(a) -> dict:
    """Make the field once (child process, saved to a temporary .npz), then time each mode in
    its own child; returns their results and whether they meet the target."""
    import subprocess
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        npz = str(Path(tmp) / "field.npz")
        code = ("import sys, numpy as np; sys.path.insert(0, %r); from benchmarks.bench_segmentation import make_volume; "
                "t, s, i = make_volume('mixed', %d, shape_zyx=%r, voxel_size_um=%r); "
                "np.savez(%r, ri=t.ri, voxel_size_um=np.asarray(t.voxel_size_um), n_true=len(np.unique(i)) - 1)"
                % (str(Path(__file__).resolve().parents[1]), a.seed, tuple(a.field), tuple(a.voxel), npz))
        subprocess.run([sys.executable, "-c", code], check=True)
        for mode in a.modes:
            r = subprocess.run([sys.executable, __file__, "--large-child", mode, npz], capture_output=True, text=True,
                               env=os.environ.copy())
            if r.returncode:
                raise RuntimeError(f"{mode}: {r.stderr[-2000:]}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res["meets_target"] = res["seconds_total"] <= 60 and res["peak_rss_mb"] <= 4096
            print(f"{mode} mode\n{stage_table(res)}\n", file=sys.stderr)  # stdout stays the JSON
            out[mode] = res
    return out


def field_benchmark(a) -> dict:
    """Each mode of ``a.modes`` in a child process (own peak memory); returns their results."""
    import subprocess

    out = {}
    for mode in a.modes:
        cmd = [sys.executable, __file__, "--field-child", mode, "--field", *map(str, a.field),
               "--voxel", *map(str, a.voxel), "--seed", str(a.seed)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if r.returncode:
            raise RuntimeError(f"{mode}: {r.stderr[-2000:]}")
        out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    if "default" in out and "fast" in out:
        out["fast_over_default_time"] = round(out["fast"]["seconds_total"] / out["default"]["seconds_total"], 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all allowed CPUs)")
    ap.add_argument("--kind", default="mixed")
    ap.add_argument("--seed", type=int, default=777777)
    ap.add_argument("--repeat", type=int, default=2, help="timed repetitions (the best is reported)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--field", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                    help="time the whole chain on a field of this shape instead (modes in child processes)")
    ap.add_argument("--voxel", type=float, nargs=3, default=(0.839, 0.196, 0.196), help="voxel of --field (µm)")
    ap.add_argument("--modes", nargs="+", default=["fast", "default"], choices=["fast", "default"])
    ap.add_argument("--field-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--large", action="store_true",
                    help="the laptop target: 96 x 1024 x 1024 at 0.3 x 0.11 x 0.11 µm (unless --field/--voxel), fast mode")
    ap.add_argument("--large-child", nargs=2, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads:
        os.environ["HOLO_THREADS"] = str(a.threads)
    if a.large_child:
        print(json.dumps(large_child(a.large_child[1], a.large_child[0])))
        return 0
    if a.large:
        argv_ = list(argv if argv is not None else sys.argv[1:])
        a.field = a.field or [96, 1024, 1024]
        a.voxel = a.voxel if "--voxel" in argv_ else (0.3, 0.11, 0.11)
        a.modes = a.modes if "--modes" in argv_ else ["fast"]
        print(json.dumps(large_benchmark(a), indent=2))
        return 0
    if a.field_child:
        print(json.dumps(field_child(a.field, a.voxel, a.field_child, a.seed)))
        return 0
    if a.field:
        print(json.dumps(field_benchmark(a), indent=2))
        return 0
    import numpy as np
    import torch

    from holo.segmentation import classify, segment
    from holo.segmentation.infer import load_unet, unet_names
    from holo.segmentation.train import NUCLEUS_LABELS, dice, instance_ap

    tomo, sem_true, inst_true = make_volume(a.kind, a.seed)
    res = {"shape_zyx": list(tomo.shape_zyx), "voxel_size_um": list(tomo.voxel_size_um), "kind": a.kind,
           "n_true_cells": int(len(set(inst_true.ravel().tolist())) - 1)}
    others = {f"unet:{n}": load_unet(None, n) for n in unet_names() if n != "unet"}
    segment(tomo)  # warm-up: imports, weight loading, allocator
    for method in ("unet", *others, "classic"):
        kw = dict(zip(("model", "cfg"), others[method])) if method in others else {}
        best = None
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            seg = segment(tomo, method=method.split(":")[0], **kw)
            t1 = time.perf_counter()
            cls = classify(tomo, seg.instance) if method.startswith("unet") else None
            t2 = time.perf_counter()
            if best is None or t2 - t0 < best[0]:
                best = (t2 - t0, t1 - t0, t2 - t1, seg, cls)
        total, t_seg, t_cls, seg, cls = best
        res[method] = {
            "seconds_total": round(total, 2),
            "seconds_segment": round(t_seg, 2),
            "seconds_classify": round(t_cls, 2),
            "n_cells": seg.n_cells,
            "dice_cell": round(dice(seg.semantic > 0, sem_true > 0), 4),
            "dice_nucleus": round(dice(np.isin(seg.semantic, NUCLEUS_LABELS), np.isin(sem_true, NUCLEUS_LABELS)), 4) if method.startswith("unet") else None,
            "ap50": round(instance_ap(seg.instance, inst_true), 4),
        }
    res["torch_threads"] = torch.get_num_threads()
    res["meets_15s_budget"] = res["unet"]["seconds_total"] <= 15.0
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
