"""The order domain's contract: what every party to the order saga agrees on.

* :mod:`contracts.order` — the saga's statuses, cancel reasons and compensations (which
  command undoes which step, which event acknowledges it, and the order they run in).

The runtime (:mod:`events`) knows none of this; services, the coordinator, the read models
and the CLI import it from here, so each of these facts is written once.
"""
