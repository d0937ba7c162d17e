"""Memory helpers: anonymous RSS sampling, the allocator setting, the thread default."""

from __future__ import annotations

import os
import time

import torch

from es_plugins.memory import PeakAnonSampler, default_threads, release_memory, rss_anon, stable_allocator


def test_sampler_sees_an_allocation_and_the_allocator_returns_it():
    assert stable_allocator()  # glibc on the machines we support
    before = rss_anon()
    with PeakAnonSampler(0.0005) as sampler:
        block = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, touched
        # hold it until the sampling thread has had a chance to run (on a busy 2-core machine
        # it may not be scheduled within a freed-at-once allocation's lifetime); 5 s at most
        deadline = time.monotonic() + 5
        while sampler.peak - sampler.baseline < 60 << 20 and time.monotonic() < deadline:
            time.sleep(0.001)
        del block
    assert sampler.added >= 60 << 20
    release_memory()
    assert rss_anon() < before + (16 << 20)  # given back to the OS, not kept in a heap arena


def test_default_threads_is_within_the_cores_we_may_use():
    assert 1 <= default_threads() <= len(os.sched_getaffinity(0))
