"""`choreo bench peers`: the order saga on Choreo's peers (DBOS Transact, Temporal) beside
Choreo itself, same orders and arrival pattern, measured the same way (see README.md here)."""

WARM_UP = 300
"""Orders each system runs before its clock by default: from a broker just started, 200 orders
at 20/s without them measured Choreo's p99 at 291 ms and 77 ms of CPU an order, Kafka's JIT
compiler taking 3.7 of the broker's 6.2 CPU seconds (bench/peers/README.md)."""
