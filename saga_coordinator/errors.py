"""The coordinator's errors, under Choreo's one root; retryability is data on the error."""

from __future__ import annotations

from events.errors import ChoreoError


class SagaError(ChoreoError):
    """Root of every error the saga coordinator raises on purpose."""


class SagaConflictError(SagaError):
    """Another transaction appended to the saga first (optimistic check failed).

    Retryable: the next attempt reloads the saga, folds the newer facts and decides again.
    """

    retryable = True


class UnknownDefinitionError(SagaError):
    """A message names a saga type, or a saga a definition version, this process does not have
    (or a message of one saga type names the key of a saga of another).

    Permanent: a saga must finish on the version it started with, so guessing another one would
    be wrong; deploy the version back instead.
    """


class InvalidDefinitionError(SagaError):
    """A saga definition breaks a rule (checked when it is declared, at import)."""
