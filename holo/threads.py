"""How many threads the CPU kernels of holo may use.

One rule for every FFT (``scipy.fft``), Numba and torch call: the number of CPUs this
process may run on (its affinity mask, so ``taskset`` and container CPU sets are honoured),
unless the environment variable ``HOLO_THREADS`` names a number. Worker processes of a pool
(``holo run --workers``, ``holo.training.make_data``) set ``HOLO_THREADS`` so that
N processes × threads does not oversubscribe the machine.

:func:`thread_map` runs independent pieces of array work (one per cell, per foreground
component, per channel) on that many threads: NumPy, SciPy's ``ndimage`` and scikit-image's
compiled loops release the GIL, so the pieces run on separate cores; the results come back in
the order of the inputs, so a caller that combines them in that order gets what the serial
loop gives.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["cpu_threads", "fft_workers", "worker_thread_env", "thread_map"]

_T = TypeVar("_T")
_R = TypeVar("_R")


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


def thread_map(fn: Callable[[_T], _R], items: Iterable[_T], *, threads: int | None = None,
               ahead: int | None = None) -> Iterator[_R]:
    """``fn(item)`` for every item, yielded in the order of ``items``, computed by up to
    ``threads`` threads (default :func:`cpu_threads`).

    At most ``ahead`` results (default 2 × threads) are computed before the consumer takes
    them, so memory stays bounded whatever the number of items (e.g. a distance map per
    cell). With one thread the items are mapped in the calling thread, one after the other
    (the serial path, no pool). An exception of ``fn`` is raised when its result is reached;
    pending work is cancelled when the iterator is closed.
    """
    n = cpu_threads() if threads is None else max(1, int(threads))
    if n == 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    window = max(n, 2 * n if ahead is None else int(ahead))
    pending: deque = deque()
    it = iter(items)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="holo") as pool:
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
