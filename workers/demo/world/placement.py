"""The placement world: hosts of one hypervisor, a storage node, a network with its MAC range,
a local-boot and a SAN-boot image, and instances waiting for placement.

The placement tests (end to end, races, evacuation) and the scheduler bench build theirs
here; each asks only for the parts it places onto.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from collector.models import HostNode, Image, Network, StorageNode
from workers.demo.world import make
from workers.demo.world.make import HostSize

__all__ = ["HostSize", "PlacementWorld", "build", "random_local_mac_vendor"]


@dataclass
class PlacementWorld:
    hosts: list[HostNode]
    image: Image  # local boot
    hypervisor: str
    storage: StorageNode | None = None
    network: Network | None = None
    san_image: Image | None = None

    def awaiting_placement(self, session: Session, count: int, **columns: Any) -> list[str]:
        """``count`` instances of this world's hypervisor and local-boot image waiting for
        placement, with a vif on its network if it has one (``make.awaiting_placement``)."""
        return make.awaiting_placement(session, count, self.image, self.network,
                                       **{"hypervisor": self.hypervisor, **columns})

    def ids(self) -> dict[str, Any]:
        """What a test's calls and agents name: hosts (id -> node id), the storage node's
        node id and id, the network's and images' ids (None for a part not built)."""
        return {"hosts": {h.canonical_uuid: h.node_id for h in self.hosts},
                "storage_node": self.storage.node_id if self.storage else None,
                "storage_id": self.storage.canonical_uuid if self.storage else None,
                "network": self.network.canonical_uuid if self.network else None,
                "image": self.image.canonical_uuid,
                "san_image": self.san_image.canonical_uuid if self.san_image else None}


def random_local_mac_vendor() -> int:
    """A locally administered MAC vendor prefix (02:xx:xx), a new one each call."""
    return 0x02_00_00 | secrets.randbits(16)


def build(session: Session, hosts: Sequence[HostSize], *, node_prefix: str | None = None,
          hypervisor: str = "kvm", storage: bool = False, cidr: str | None = None,
          mac_vendor: int = make.MAC_VENDOR, mac_range_end: int = 0xFF_FFFF,
          san_image: bool = False) -> PlacementWorld:
    """A host per size in ``hosts`` (online, in that order) and a local-boot image; with
    ``storage`` an online iSCSI storage node; with ``cidr`` a network and a MAC range
    (``mac_vendor``, device part 1 to ``mac_range_end``); with ``san_image`` a SAN-boot
    image.

    Node ids are make's random ones unless ``node_prefix`` is given: then
    ``hva.<prefix><token>1``, 2, ... and ``sta.<prefix><token>``, with a new random token
    each build.
    """
    token = secrets.token_hex(3)

    def node_id(kind: str, suffix: object = "") -> str | None:
        return f"{kind}.{node_prefix}{token}{suffix}" if node_prefix is not None else None

    host_rows = [make.host_node(session, node_id("hva", n), hypervisor=hypervisor,
                                **size.offering()) for n, size in enumerate(hosts, 1)]
    storage_node = make.storage_node(session, node_id("sta")) if storage else None
    network = make.network(session, cidr) if cidr is not None else None
    if network is not None:
        make.mac_range(session, mac_vendor, range_end=mac_range_end)
    return PlacementWorld(
        hosts=host_rows, storage=storage_node, network=network, hypervisor=hypervisor,
        image=make.image(session, local=True),
        san_image=make.image(session, local=False) if san_image else None)
