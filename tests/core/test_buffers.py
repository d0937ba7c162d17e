"""Prefaulted result buffers: their pages are resident before the first write, and they are
ordinary tensors."""

from __future__ import annotations

import platform

import pytest
import torch

from es_plugins.masks import buffers


def rss_anon() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def kernel_at_least(major: int, minor: int) -> bool:
    try:
        found = tuple(int(part) for part in platform.release().split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return platform.system() == "Linux" and found >= (major, minor)


@pytest.mark.skipif(not kernel_at_least(5, 14), reason="MADV_POPULATE_WRITE needs Linux 5.14+")
def test_a_prefaulted_buffer_is_resident_before_its_first_write():
    size = 64 << 20  # above glibc's largest mmap threshold: a fresh mapping either way
    before = rss_anon()
    plain = torch.empty(size, dtype=torch.bool)
    untouched = rss_anon() - before
    prefaulted = buffers.prefaulted_bools(size)
    populated = rss_anon() - before - untouched
    assert untouched < size // 8  # the control: torch.empty maps nothing until written
    assert populated >= size * 0.95
    del plain, prefaulted


def test_small_and_non_cpu_buffers_are_left_alone_and_every_buffer_is_an_ordinary_tensor():
    assert not buffers.prefault(torch.empty(buffers.PREFAULT_MIN_BYTES - 1, dtype=torch.bool))
    assert not buffers.prefault(torch.empty(buffers.PREFAULT_MIN_BYTES, device="meta"))
    mask = buffers.prefaulted_bools(buffers.PREFAULT_MIN_BYTES + 3)
    mask.fill_(True)
    mask[::7] = False
    assert mask.dtype == torch.bool and int((~mask).sum()) == len(range(0, mask.numel(), 7))
