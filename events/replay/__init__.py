"""Rebuilding a process's state from the log (``choreo replay``, :mod:`choreo.replay`).

- :mod:`events.replay.providers`: what a provider answers when a message is processed a
  second time (replay providers, :class:`~events.replay.providers.ReplayDivergence`).
- :mod:`events.replay.delivery`: :class:`~events.replay.delivery.ReplayDelivery`, the
  transactional delivery that runs the handlers again without publishing anything.
"""
