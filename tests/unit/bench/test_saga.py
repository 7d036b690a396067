"""The bench helpers that need no stack."""

from __future__ import annotations

import os

from bench.measure import cpu_seconds, jit_cpu_seconds, peak_rss_kb
from bench.result import ProcessFigures
from bench.saga import warming_notes


def test_cpu_and_peak_memory_of_this_process_are_read():
    assert (cpu_seconds(os.getpid()) or 0) > 0
    assert (peak_rss_kb(os.getpid()) or 0) > 1000
    assert cpu_seconds(2**22 + 12345) is None
    assert peak_rss_kb(2**22 + 12345) is None


def test_a_process_without_jit_compiler_threads_has_no_jit_time():
    assert jit_cpu_seconds(os.getpid()) is None
    assert jit_cpu_seconds(2**22 + 12345) is None


def figures(name: str, cpu: float | None, jit: float | None) -> ProcessFigures:
    return ProcessFigures(name=name, pid=1, cpu_s_run=cpu, jit_cpu_s_run=jit)


def test_a_jvm_that_spent_a_tenth_of_its_run_compiling_is_noted():
    notes = warming_notes(
        [
            figures("kafka", 13.7, 4.2),  # warming up
            figures("postgres", 7.0, None),  # not a JVM
            figures("other jvm", 6.0, 0.5),  # warm: under a tenth
        ]
    )
    assert len(notes) == 1
    assert notes[0].startswith("kafka's JIT compiler used 4.2 of its 13.7 CPU seconds")
