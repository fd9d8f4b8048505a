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


class AlreadyTerminated(CollectorError):
    """A finished job cannot change again."""


class DestroyRefused(CollectorError):
    """A destroy the model forbids now (backups running, group still in use, ...)."""


class PlacementError(CollectorError):
    """Base of the scheduler's placement failures (the reason a placement job failed)."""


class InsufficientCapacity(PlacementError):
    """No node can take the resource."""


class NoMatchingHostNode(PlacementError):
    """No online, schedulable host has the requested hypervisor and architecture."""


class NoMatchingStorageNode(PlacementError):
    """No online storage node exists for the volume."""


class NetworkSchedulingError(PlacementError):
    """The vifs request cannot be turned into vifs (bad shape, unknown network, ...)."""


class OutOfIpRange(PlacementError):
    """The network's DHCP ranges have no free address left (or it has no range)."""


class OutOfMacRange(PlacementError):
    """No MAC address range has a free address left (or none exists)."""


class UnknownServiceType(PlacementError):
    """The service type names no configured set of strategies."""


class SchedulerConfigError(CollectorError):
    """The scheduler configuration is invalid; the message names the key."""


# Errors of the API's requests (original REST API names, spec 1.8).

class InvalidParameter(InvalidArgument):
    """A request parameter the API refuses."""


class InvalidInstanceState(InvalidStateTransition):
    """The instance is not in a state that allows the request."""


class OutOfHostCapacity(InsufficientCapacity):
    """The hosts (or the explicit host) lack the cpu, memory or local disk requested."""


class OutOfDiskSpace(InsufficientCapacity):
    """The storage nodes lack the disk space requested."""


class InvalidHostNodeID(InvalidParameter):
    """The explicit host is not online."""


class IncompatibleHostNode(InvalidParameter):
    """The explicit host has another hypervisor or architecture."""


class AddressRefused(InvalidParameter):
    """Base of the manual MAC / IP address errors."""


class InvalidMacAddress(AddressRefused):
    pass


class DuplicateMacAddress(AddressRefused):
    pass


class MacNotInRange(AddressRefused):
    pass


class InvalidIPAddress(AddressRefused):
    pass


class DuplicateIPAddress(AddressRefused):
    pass


class IPAddressNotInSegment(AddressRefused):
    pass


class IpNotInDhcpRange(AddressRefused):
    pass


class ReservedIPAddress(AddressRefused):
    """Network, broadcast, gateway, DNS, DHCP or metadata address (the original allowed it)."""


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
