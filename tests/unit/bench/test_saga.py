"""The bench helpers that need no stack."""

from __future__ import annotations

import os

from bench.measure import cpu_seconds, peak_rss_kb


def test_cpu_and_peak_memory_of_this_process_are_read():
    assert (cpu_seconds(os.getpid()) or 0) > 0
    assert (peak_rss_kb(os.getpid()) or 0) > 1000
    assert cpu_seconds(2**22 + 12345) is None
    assert peak_rss_kb(2**22 + 12345) is None
