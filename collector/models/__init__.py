"""The data model: one module per aggregate, all re-exported here."""

from collector.models.accounts import Account
from collector.models.alarms import ALARM_STATES, LOG_METRICS, RESOURCE_METRICS, Alarm
from collector.models.base import TAGGABLE_CLASSES, Base, find_taggable
from collector.models.credentials import NodeCredential
from collector.models.dead_letters import DEAD_LETTER_SOURCES, DeadLetter
from collector.models.event_receipts import DISPATCH, EventReceipt
from collector.models.images import BOOT_DEV_LOCAL, BOOT_DEV_SAN, BackupObject, BackupStorage, Image
from collector.models.instances import (
    HostnameLease,
    Instance,
    InstanceMonitorAttr,
    ResourceLabel,
    SshKeyPair,
)
from collector.models.jobs import QueuedJob
from collector.models.load_balancers import LoadBalancer, LoadBalancerInbound, LoadBalancerTarget
from collector.models.networks import (
    ALLOC_AUTO,
    DcNetwork,
    DhcpRange,
    HostNodeGroup,
    IpHandle,
    IpLease,
    IpPool,
    IpPoolDcNetwork,
    MacLease,
    MacRange,
    Network,
    NetworkGroup,
    NetworkRoute,
    NetworkService,
    NetworkVif,
    NetworkVifIpLease,
    NetworkVifMonitor,
    StorageNodeGroup,
    Tag,
    TagMapping,
    VlanLease,
)
from collector.models.nodes import HostNode, HostNodeVnet, NodeState, StorageNode
from collector.models.outbox import OutboxMessage
from collector.models.placement import HostAllocation, MigrationAllocation, StorageAllocation
from collector.models.placement_groups import (
    AFFINITY,
    ANTI_AFFINITY,
    SOFT_AFFINITY,
    PlacementGroup,
)
from collector.models.resources import ResourceSample
from collector.models.security_groups import (
    NetworkVifSecurityGroup,
    SecurityGroup,
    SecurityGroupReference,
)
from collector.models.volumes import (
    ISCSI,
    LOCAL,
    NFS,
    IscsiVolume,
    LocalVolume,
    NfsVolume,
    Volume,
    VolumeSnapshot,
)

__all__ = [name for name in dir() if not name.startswith("_")]
