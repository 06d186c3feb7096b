"""Thread count of the CPU kernels (holo.threads)."""

from __future__ import annotations

import os

import pytest

from holo.threads import cpu_threads, fft_workers


def test_default_is_the_affinity_mask(monkeypatch):
    monkeypatch.delenv("HOLO_THREADS", raising=False)
    assert cpu_threads() == len(os.sched_getaffinity(0)) == fft_workers()


def test_environment_overrides_and_is_validated(monkeypatch):
    monkeypatch.setenv("HOLO_THREADS", "3")
    assert cpu_threads() == 3 and fft_workers() == 3
    monkeypatch.setenv("HOLO_THREADS", "0")
    assert cpu_threads() == 1
    monkeypatch.setenv("HOLO_THREADS", "many")
    with pytest.raises(ValueError, match="HOLO_THREADS"):
        cpu_threads()


def test_pool_workers_share_the_threads(monkeypatch):
    from holo.threads import worker_thread_env

    monkeypatch.setenv("HOLO_THREADS", "8")
    env = worker_thread_env(3)
    assert env == {"HOLO_THREADS": "2", "NUMBA_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    assert worker_thread_env(16)["HOLO_THREADS"] == "1"


def test_thread_map_keeps_the_order_bounds_the_work_ahead_and_raises():
    import threading
    import time

    from holo.threads import thread_map

    started, lock = [], threading.Lock()

    def slow_square(i):
        with lock:
            started.append(i)
        time.sleep(0.002 * (i % 3))
        return i * i

    assert list(thread_map(slow_square, range(20), threads=3)) == [i * i for i in range(20)]
    started.clear()
    it = thread_map(slow_square, range(50), threads=2, ahead=4)
    assert next(it) == 0
    time.sleep(0.05)
    assert len(started) <= 5  # at most `ahead` submitted before the consumer took one
    it.close()
    assert list(thread_map(slow_square, range(5), threads=1)) == [0, 1, 4, 9, 16]  # the serial path

    def fail(i):
        if i == 3:
            raise ValueError("item 3")
        return i

    with pytest.raises(ValueError, match="item 3"):
        list(thread_map(fail, range(8), threads=2))
