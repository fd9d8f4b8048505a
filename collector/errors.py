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
    """Wrong type, wrong shape, missing or unexpected field, malformed or wrong-prefix id."""


class InvalidStateTransition(CollectorError):
    """A state change the resource's state machine refuses (``running`` -> ``pending``, a late
    ``attaching`` after ``attached``)."""


class NotFound(CollectorError):
    """No row with that id: the base of every ``Unknown...`` error."""


class UnknownInstanceID(NotFound):
    """No instance with that id."""


class UnknownImageID(NotFound):
    """No machine image with that id."""


class UnknownNetworkID(NotFound):
    """No network with that id (or name, where a name is asked for)."""


class UnknownNIC(NotFound):
    """No network interface (vif) or other object with that id."""


class UnknownHostNodeID(NotFound):
    """No host node with that id."""


class UnknownNodeID(NotFound):
    """No host node with that node id (the agent's ``hva.demo1``, not an ``hn-`` id)."""


class UnknownStorageNodeID(NotFound):
    """No storage node with that id."""


class UnknownVolumeID(NotFound):
    """No volume with that id."""


class UnknownSnapshotID(NotFound):
    """No volume snapshot with that id."""


class UnknownBackupObjectID(NotFound):
    """No backup object with that id."""


class UnknownBackupStorage(NotFound):
    """No backup storage served by that storage agent (node id)."""


class UnknownSecurityGroupID(NotFound):
    """No security group with that id."""


class UnknownVnicID(NotFound):
    """No vnic (vif) with that id."""


class UnknownNetworkRouteID(NotFound):
    """No network route with that id."""


class UnknownAlarmID(NotFound):
    """No alarm with that id."""


class UnknownResourceID(NotFound):
    """No resource with that id."""


class UnknownJob(NotFound):
    """No job with that id in the job ledger."""


class UnknownLoadBalancerID(NotFound):
    """No load balancer with that id."""


class AlreadyTerminated(CollectorError):
    """A finished job cannot change again (finishing or cancelling it)."""


class DestroyRefused(CollectorError):
    """A destroy the model forbids now (backups running, group still in use, ...)."""


class InsufficientCapacity(CollectorError):
    """No node can take the resource."""


class InvalidSecurityGroupRuleSyntax(CollectorError):
    """A security group rule that does not parse."""


class ValidationFailed(CollectorError):
    """A model validation rule refused the change (two attached volumes on one device name)."""


ALL_ERRORS: dict[str, type[CollectorError]] = {
    cls.__name__: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, CollectorError)
}


class InternalError(CollectorError):
    """An unexpected failure inside the Collector; the transaction was rolled back."""


ALL_ERRORS["InternalError"] = InternalError
