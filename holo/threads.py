"""How many threads the CPU kernels of holo may use.

One rule for every FFT (``scipy.fft``), Numba and torch call: the number of CPUs this
process may run on (its affinity mask, so ``taskset`` and container CPU sets are honoured),
unless the environment variable ``HOLO_THREADS`` names a number. Worker processes of a pool
(``holo run --workers``, ``holo.training.make_data``) set ``HOLO_THREADS`` so that
N processes × threads does not oversubscribe the machine.
"""

from __future__ import annotations

import os

__all__ = ["cpu_threads", "fft_workers", "worker_thread_env"]


def cpu_threads() -> int:
    """Threads for CPU kernels: ``$HOLO_THREADS`` if set (≥ 1), else the CPUs of the affinity mask."""
    env = os.environ.get("HOLO_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"HOLO_THREADS: expected a whole number of threads, got {env!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def fft_workers() -> int:
    """The ``workers=`` argument of ``scipy.fft`` calls (see :func:`cpu_threads`)."""
    return cpu_threads()


def worker_thread_env(n_workers: int) -> dict[str, str]:
    """Environment for each of ``n_workers`` pool processes: its share of :func:`cpu_threads`
    (at least 1) for holo's kernels, Numba and OpenMP, so the pool does not oversubscribe the
    CPUs. Must reach a worker before it imports numba."""
    per = str(max(1, cpu_threads() // max(1, int(n_workers))))
    return {"HOLO_THREADS": per, "NUMBA_NUM_THREADS": per, "OMP_NUM_THREADS": per}
