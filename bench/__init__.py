"""Benchmarks of Choreo on the real stack: ``choreo bench`` (the order saga end to end, with
baselines measured in the same run) and ``choreo bench rebuild`` (projections from the log).

Benchmarks report figures; they never pass or fail anything.

- :mod:`bench.saga`: the whole platform as real processes under a stream of orders.
- :mod:`bench.rebuild`: a synthetic log replayed by a raw reader and by the projection rebuild.
- :mod:`bench.baselines`: what the same work costs without Choreo (aiokafka, fastavro, COPY).
- :mod:`bench.report`: percentiles, ratio tables, the plot and the machine description.
"""
