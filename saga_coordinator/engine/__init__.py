"""The generic saga engine: interprets any :class:`~sagas.definition.SagaDefinition`. No I/O.

* :mod:`.facts` — what a saga records (observed and decided), generic over definitions;
* :mod:`.state` — the saga's state as a fold of its facts;
* :mod:`.timing` — the durable timers a state needs;
* :mod:`.observe` — the facts an incoming event or a due timer establishes;
* :mod:`.decide` — the decisions a state calls for, and the events they render to.

It has every guarantee of the order saga's own core it replaced (kept in the tests as the
reference, ``tests/unit/saga_coordinator/old_core``): indifference to the order events arrive
in, redelivery changing nothing, late successes compensated, compensations newest first and
retried until acknowledged, and
escalation when they are not.
"""
