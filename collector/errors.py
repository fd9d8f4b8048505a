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


class UnknownJob(NotFound):
    """No job with that id in the job ledger."""


class UnknownLoadBalancerID(NotFound):
    """No load balancer with that id."""


class UnknownDeadLetter(NotFound):
    """No parked message has that id (``collector dead-letters``)."""


class UnknownPlacementGroupID(NotFound):
    """No placement group (pg-) with that id, or it was deleted."""


class AlreadyTerminated(CollectorError):
    """A finished job cannot change again (finishing or cancelling it)."""


class DestroyRefused(CollectorError):
    """A destroy the model forbids now (backups running, group still in use, ...)."""


class PlacementError(CollectorError):
    """Base of the scheduler's placement failures (the reason a placement job failed)."""


class InsufficientCapacity(PlacementError):
    """No node can take the resource. For an instance the message counts every host by why
    it could not (``0/N hosts available for i-...: 3 short of memory, 1 disabled, ...``)."""


class NoMatchingHostNode(PlacementError):
    """No online, schedulable host has the requested hypervisor and architecture (or the
    strategy's rules leave none); when placement tried every host, the message counts them
    by why, as for InsufficientCapacity."""


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


class UnknownGroup(PlacementError):
    """A host node group (hng-) or network group (nwg-) that the scheduler configuration or
    the request names does not exist, or none applies and no default is configured."""


class UnknownMacRange(PlacementError):
    """A MAC address range (mr-) that the scheduler configuration names does not exist."""


class StalePlacement(InvalidStateTransition):
    """A report or job of an instance's earlier placement: the instance was placed again
    (on another host, or started anew) and the sender's copy is stale; drop it."""


class PlacementGenerationRequired(InvalidArgument):
    """A report of the state or host of an instance placed more than once must carry its
    ``generation`` (the instance document's ``placement_generation``)."""


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


class InvalidMigrationTarget(InvalidParameter):
    """A migration's named destination is the instance's own host, or takes no placements
    (scheduling disabled)."""


class AddressRefused(InvalidParameter):
    """Base of the manual MAC / IP address errors."""


class InvalidMacAddress(AddressRefused):
    """A requested MAC address is not 12 hex digits."""


class DuplicateMacAddress(AddressRefused):
    """A requested MAC address is already leased."""


class MacNotInRange(AddressRefused):
    """A requested MAC address lies in no MAC range."""


class InvalidIPAddress(AddressRefused):
    """A requested address is not an IPv4 address."""


class DuplicateIPAddress(AddressRefused):
    """A requested address is already leased in that network."""


class IPAddressNotInSegment(AddressRefused):
    """A requested address lies outside the network's segment."""


class IpNotInDhcpRange(AddressRefused):
    """A requested address lies in none of the network's DHCP ranges."""


class ReservedIPAddress(AddressRefused):
    """Network, broadcast, gateway, DNS, DHCP or metadata address (the original allowed it)."""


class InvalidSecurityGroupRuleSyntax(CollectorError):
    """A security group rule that does not parse."""


class ValidationFailed(CollectorError):
    """A model validation rule refused the change (two attached volumes on one device name,
    or any other constraint of the database: the message names the rule, never the SQL)."""


class WrongQueue(CollectorError):
    """The task arrived on a queue it is not served from (sent there by hand or forged); it
    did not run. Call ``<endpoint>.<method>`` on the queue ``<endpoint>``."""


class Unauthorized(CollectorError):
    """The message's sender is not proven (unsigned, badly signed, a revoked or superseded
    key), or the proven sender may not make this call (another node's instance, volume,
    job or heartbeat; a task reserved to the Collector). Nothing ran."""


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


class CommitOutcomeUnknown(InternalError):
    """The connection failed during COMMIT: the call may or may not have been committed.
    Not transient (a client must not take it for "nothing happened"), but a call the
    Collector answers as it did the first when repeated (an agent's report, a state it
    reports) may be sent again to learn the outcome."""


ALL_ERRORS["CommitOutcomeUnknown"] = CommitOutcomeUnknown
