"""`choreo bench peers`: the order saga on Choreo's peers (DBOS Transact, Temporal) beside
Choreo itself, same orders and arrival pattern, measured the same way (see README.md here)."""
