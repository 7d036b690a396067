"""`choreo chaos`: orders and faults against a running platform, then invariants.

A chaos run places orders of a mix at a rate against a running platform (`choreo run`, whose
supervisor restarts what is killed), asks for returns of some as they settle, injects faults
on a schedule (or at random with a seed), waits for quiescence and checks what must hold
from the services' own tables, not from the read model. One part per module:

- :mod:`choreo.chaos.plan`: the run's configuration, the fault kinds and their schedule.
- :mod:`choreo.chaos.processes`: the platform's processes as the operating system sees them.
- :mod:`choreo.chaos.faults`: each fault: kill, stop, broker and PostgreSQL restarts,
  re-sends, malformed values.
- :mod:`choreo.chaos.orders`: placing the orders, asking for returns, answering approvals.
- :mod:`choreo.chaos.returns`: which settled orders get a return, and which one.
- :mod:`choreo.chaos.snapshot`: the services' tables, read once the platform is quiet.
- :mod:`choreo.chaos.invariants`: the checks, pure functions over a snapshot.
- :mod:`choreo.chaos.report`: the report, as a table and as JSON.
- :mod:`choreo.chaos.run`: the run itself, tying them together.
"""
