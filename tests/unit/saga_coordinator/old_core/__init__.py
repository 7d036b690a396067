"""The order saga's coordinator core from before definitions: the reference the engine is checked
against (``tests/unit/saga_coordinator/engine/test_order_equivalence.py``). It decides nothing in
the product; the facts it stored are read by :mod:`saga_coordinator.legacy`."""
