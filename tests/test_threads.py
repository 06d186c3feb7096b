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
