"""Prefaulted result buffers: their pages are resident before the first write, and they are
ordinary tensors."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
import torch

from es_plugins.masks import buffers


def kernel_at_least(major: int, minor: int) -> bool:
    try:
        found = tuple(int(part) for part in platform.release().split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return platform.system() == "Linux" and found >= (major, minor)


# Run in a fresh interpreter: in a long test session the allocator may hand back memory that is
# already resident, and then neither buffer would grow the RSS.
_RESIDENCY = """
import json, torch
from es_plugins.masks import buffers

def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

size = 64 << 20  # above glibc's largest dynamic mmap threshold: a fresh mapping either way
before = rss_anon()
plain = torch.empty(size, dtype=torch.bool)
untouched = rss_anon() - before
prefaulted = buffers.prefaulted_bools(size)
print(json.dumps({"size": size, "untouched": untouched, "populated": rss_anon() - before - untouched}))
"""


@pytest.mark.skipif(not kernel_at_least(5, 14), reason="MADV_POPULATE_WRITE needs Linux 5.14+")
def test_a_prefaulted_buffer_is_resident_before_its_first_write():
    done = subprocess.run([sys.executable, "-c", _RESIDENCY], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["untouched"] < found["size"] // 8  # the control: torch.empty maps nothing until written
    assert found["populated"] >= found["size"] * 0.95


def test_small_and_non_cpu_buffers_are_left_alone_and_every_buffer_is_an_ordinary_tensor():
    assert not buffers.prefault(torch.empty(buffers.PREFAULT_MIN_BYTES - 1, dtype=torch.bool))
    assert not buffers.prefault(torch.empty(buffers.PREFAULT_MIN_BYTES, device="meta"))
    mask = buffers.prefaulted_bools(buffers.PREFAULT_MIN_BYTES + 3)
    mask.fill_(True)
    mask[::7] = False
    assert mask.dtype == torch.bool and int((~mask).sum()) == len(range(0, mask.numel(), 7))
