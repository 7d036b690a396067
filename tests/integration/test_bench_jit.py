"""The bench reads the JIT compiler's CPU of the stack's real Kafka broker (a JVM)."""

from __future__ import annotations

import pytest

from bench.measure import cpu_seconds, jit_cpu_seconds
from choreo.stack import Stack

pytestmark = pytest.mark.integration


def test_the_brokers_jit_compiler_time_is_read_and_is_part_of_its_cpu(stack: None):
    kafka = next(s for s in Stack().status() if s.name == "kafka" and s.pid is not None)
    assert kafka.pid is not None
    jit = jit_cpu_seconds(kafka.pid)
    total = cpu_seconds(kafka.pid)
    assert jit is not None
    assert total is not None
    assert 0 < jit < total  # a broker that served any request has compiled something
