"""Memory helpers: anonymous RSS sampling, the allocator setting, the thread default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from es_plugins.engines.memory import default_threads

# Run in a fresh interpreter: what a process allocated and freed before (a Ray driver, other
# tests) changes what a new allocation adds to RssAnon, and this test is about one allocation.
SAMPLER_CHECK = """
import json, time, torch
from es_plugins.engines.memory import PeakAnonSampler, release_memory, rss_anon, stable_allocator
assert stable_allocator()  # glibc on the machines we support
before = rss_anon()
with PeakAnonSampler(0.0005) as sampler:
    block = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, touched
    deadline = time.monotonic() + 5  # hold it until the sampling thread has run, 5 s at most
    while sampler.peak - sampler.baseline < 60 << 20 and time.monotonic() < deadline:
        time.sleep(0.001)
    del block
release_memory()
print(json.dumps({"added": sampler.added, "left": rss_anon() - before}))
"""


def test_sampler_sees_an_allocation_and_the_allocator_returns_it():
    result = subprocess.run([sys.executable, "-c", SAMPLER_CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["added"] >= 60 << 20  # the sampler saw the 64 MiB
    assert measured["left"] < 16 << 20  # given back to the OS, not kept in a heap arena


def test_default_threads_is_within_the_cores_we_may_use():
    assert 1 <= default_threads() <= len(os.sched_getaffinity(0))
