"""`choreo replay NAME`: names resolve through the registry, aliases included."""

from __future__ import annotations

import pytest

from choreo.replay import ReplayError, process_name


def test_process_names():
    assert process_name("coordinator") == "saga-coordinator"
    assert process_name("payment") == "payment"
    with pytest.raises(ReplayError, match="cannot replay 'projector'"):
        process_name("projector")
