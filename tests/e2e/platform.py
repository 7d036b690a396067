"""The platform as real processes lives in :mod:`choreo.platform` (the benchmarks use it too)."""

from choreo.platform import Platform, _free_port

__all__ = ["Platform", "_free_port"]
