"""Typed errors. Each has a stable ``error_type`` (its class name) that reaches the caller.

Constructors take one message string only, so a plain Celery client can rebuild them
from the result backend (Celery calls ``cls(*args)``).
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error a Collector call may answer with."""

    @property
    def error_type(self) -> str:
        return type(self).__name__

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message


class InvalidArgument(CollectorError):
    """Wrong type, wrong shape, missing or unexpected field."""


class InvalidStateTransition(CollectorError):
    """A state change the resource's state machine refuses."""


class NotFound(CollectorError):
    """Base of every unknown-id error."""


class UnknownInstanceID(NotFound):
    pass


class UnknownImageID(NotFound):
    pass


class UnknownNetworkID(NotFound):
    pass


class UnknownNIC(NotFound):
    pass


class UnknownHostNodeID(NotFound):
    pass


class UnknownNodeID(NotFound):
    pass


class UnknownStorageNodeID(NotFound):
    pass


class UnknownVolumeID(NotFound):
    pass


class UnknownSnapshotID(NotFound):
    pass


class UnknownBackupObjectID(NotFound):
    pass


class UnknownBackupStorage(NotFound):
    pass


class UnknownSecurityGroupID(NotFound):
    pass


class UnknownVnicID(NotFound):
    pass


class UnknownNetworkRouteID(NotFound):
    pass


class UnknownAlarmID(NotFound):
    pass


class UnknownResourceID(NotFound):
    pass


class UnknownJob(NotFound):
    pass


class UnknownLoadBalancerID(NotFound):
    pass


class UnknownDeadLetter(NotFound):
    pass


class AlreadyTerminated(CollectorError):
    """A finished job cannot change again."""


class DestroyRefused(CollectorError):
    """A destroy the model forbids now (backups running, group still in use, ...)."""


class InsufficientCapacity(CollectorError):
    """No node can take the resource."""


class InvalidSecurityGroupRuleSyntax(CollectorError):
    pass


class ValidationFailed(CollectorError):
    """A model validation rule refused the change."""


ALL_ERRORS: dict[str, type[CollectorError]] = {
    cls.__name__: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, CollectorError)
}


class InternalError(CollectorError):
    """An unexpected failure inside the Collector; the transaction was rolled back."""


ALL_ERRORS["InternalError"] = InternalError


class TransientError(InternalError):
    """The database could not serve the call now (unreachable, deadlock, serialization
    failure, pool exhausted): nothing was committed, and the same call may succeed later."""


ALL_ERRORS["TransientError"] = TransientError
