"""Placement: which host and storage node take an instance or a volume, and which MAC and
IP addresses its vifs get. Domain only: nothing here imports Celery.

Modules
-------
placement_config.py  the scheduler configuration (TOML named by
                 ``COLLECTOR_SCHEDULER_CONFIG``, built-in defaults = the original's sample
                 configuration), loaded once per process: the strategies of each service type
candidates.py    the frozen rows strategies see (HostCandidate, HostRequest, StorageCandidate,
                 VifPlan, GroupMember)
strategies/      the strategies: each one frozen dataclass (its fields are its options),
                 registered by name
  protocols.py   one Protocol per kind: HostStrategy, StorageStrategy, NetworkStrategy,
                 IpStrategy, MacStrategy (what the callers use, with the defaults)
  catalog.py     the registry per kind, the builder derived from a strategy's ``option``
                 fields, the option helpers (one-line errors naming the key)
  host_node.py   host strategies LeastUsage (allow_over_commit for HA), FindFirst,
                 SpecifyNode, ExcludeSame
  piped_rules.py host strategy PipedRules and its rules RequestParamToGroup, LeastUsageBy,
                 ScatterBy (custom rules register by name)
  storage_node.py  storage strategies LeastUsage, FindFirst
  network.py     network strategies (pure plans): VifsRequestParam, PerInstance, VifTemplate,
                 VifParamTemplate, SpecifyNetwork, NatOneToOne, FlatSingle,
                 RequestParamToGroup, NetworkGroup; ``vifs`` validation
  ip_address.py  Incremental (explicit per-network cursor) and SpecifyIP; manual IP checks
  mac_address.py Default, ByHostNodeGroup and SpecifyMacAddress; manual MAC checks
placement.py     the steps that run a strategy and write its choice: the host claim loop
                 (place_host), the API's explicit host, the storage claim loop and the
                 volume's device row, lease_ip
vifs.py          vif creation from the plans (network groups resolved, NAT from the NAT
                 network)
capacity.py      used-capacity counters and allocation rows: candidates, atomic claims,
                 releases, reconcile; what a host offers (physical x allocation ratio)
ratios.py        allocation ratios in thousandths: parsing, physical x ratio
refusals.py      why no host took a request: one grouped count of the fleet per reason
groups.py        placement groups: hard policies as a condition of the claim statement
                 (the group's row locked first), soft ones as a ranking
gaps.py          the first free address of a range (IP and MAC leases)
teardown.py      what placement claimed, given back (instances, vifs, leases, volumes)
handlers.py      the job steps schedule_instance, schedule_start_instance, schedule_volume
batch.py         schedule_instances: a list of new instances placed in one transaction
                 (vifs last, one flush; any failure: again one savepoint per instance);
                 batch_memo.py holds what a batch
                 locks and reads once (network rows, DHCP ranges, MAC ranges);
                 schedule_launch: a bulk launch in batches, min_count placed or none
evacuation.py    evacuate_from (HA re-placement) and the node-offline event handler
migration.py     live migration: the destination claimed beside the source (start), the
                 switch the destination's agent reports (switch); a failure is undone by the
                 job ledger when the migration job ends without a switch

Interface for the API side
--------------------------
Every function takes the caller's session and never commits. Errors are the typed errors of
``collector.errors`` (PlacementError and its subclasses, the manual-address errors).

placement_config.scheduler_config() -> SchedulerConfig   (cached; reload_scheduler_config())
    .default_service_type, .mac_address_vendor_id, .create_volume_min_size,
    .create_volume_max_size (MB),
    .service_type(name or None) -> ServiceTypeConfig   (None -> default; unknown ->
                                                         UnknownServiceType)

capacity.hypervisor_available(session, hypervisor) -> bool
    some host is online, scheduling-enabled and has this hypervisor (spec 1.8.1 step 2)
capacity.domain_host_capacity(session, cpu_cores, memory_size) -> bool    (spec 5.4)
capacity.domain_storage_capacity(session, size_bytes) -> bool             (spec 5.4)
capacity.host_candidates(session, request, order="memory", limit=8) -> [HostCandidate]
    online + enabled + same hypervisor and arch + cpu, memory and disk fit (cpu and memory
    of what the host offers: physical x its allocation ratio, else the configured one);
    best first
capacity.claim_host(session, host_id, instance, disk_bytes, force=False, over_commit=False,
                    drained_ok=False) -> bool
    one conditional UPDATE of the host's used counters plus the allocation row, the
    allocation ratios inside its WHERE; False when it does not fit (try the next host)
capacity.release_host(session, instance) -> None        idempotent
capacity.claim_storage(session, storage_node_id, volume, force=False) -> bool
capacity.local_disk_bytes(session, instance) -> int     local volumes of the instance
capacity.move_host(session, instance, host_id or None)  the claim follows a stop or a move
capacity.claim_migration(session, host_id, instance, disk_bytes, job_id=None) -> bool
    a live migration's destination: claim_host's WHERE, recorded as a migration
    allocation (the source's host allocation stays until the switch)
capacity.promote_migration(session, instance) -> host id or None
    the switch: source claim released, the migration allocation becomes the host's
capacity.reconcile(session) -> [corrections]            counters := sums of allocations
                                                        (host and migration allocations)

placement.assign_explicit_host(session, instance, host_cuuid) -> HostNode
    spec 1.8.1 step 9, and the claim: UnknownHostNodeID, InvalidHostNodeID (not online),
    IncompatibleHostNode (hypervisor/arch), OutOfHostCapacity (cpu, memory or local disk);
    sets instance.host_node_id. Call it after the instance's volumes exist (local disk
    counts). The handler then skips host selection.
placement.place_migration(session, instance, strategy, job_id=None) -> HostCandidate
    the strategy's best host other than the instance's own, claimed with claim_migration
placement.place_host(session, instance, request, strategy) -> HostCandidate
    no host: NoMatchingHostNode or InsufficientCapacity, the message counting the fleet's
    hosts per reason (refusals.explained)

vifs.parse_vifs(value) -> dict[str, dict]
    absent -> {}, a JSON string is parsed; map of vif name -> map (InvalidParameter)
vifs.check_manual_addresses(session, vifs) -> None
    every vif's mac_addr / ipv4_addr+network / nat_ipv4_addr+nat_network, nothing written:
    InvalidMacAddress, DuplicateMacAddress, MacNotInRange, UnknownNetworkID,
    InvalidIPAddress, IPAddressNotInSegment, IpNotInDhcpRange, DuplicateIPAddress,
    ReservedIPAddress
vifs.create_vifs(session, instance, service_type=None) -> [NetworkVif]
    the service type's network strategy; honours a vif's mac_addr, ipv4_addr and
    nat_ipv4_addr (matched by vif name) and allocates the rest. Call it in the API
    transaction when any vif carries a manual address, so those addresses are held from
    the answer on; otherwise leave vifs to schedule_instance (it creates them when the
    instance has none).
strategies.ip_address.check_manual_ip(session, network, address) -> int
placement.lease_ip(session, network, vif, service_type=None) -> NetworkVifIpLease
strategies.mac_address.check_manual_mac(session, text) -> int
placement.associate(session, volume, storage_candidate) -> None
    the device row of the node's kind (iSCSI or NFS) and ``volume_type``; the caller
    claimed the room (capacity.claim_storage)

What the API leaves for the scheduler: the instance and each of its volumes in
``scheduling``; a local volume has ``volume_type = "local"`` (its ``local_volumes`` row is
made at placement), a shared one ``volume_type = NULL`` (a storage node is chosen).

Job handlers (the task layer wraps them; session first, commit by the caller):
handlers.schedule_instance(session, instance_id) -> dict
handlers.schedule_start_instance(session, instance_id) -> dict
handlers.schedule_volume(session, volume_id) -> dict
    {"outcome": "placed", "host_node_id"/"storage_node_id": ..., "jobs": [job ids], ...}
    {"outcome": "noop", "state": <current state>, ...}      repeated or late job
    {"outcome": "failed", "error_type": ..., "message": ..., "state": ...}
    A failure is applied (terminated / stopped / deleted, reason in ``placement_error``)
    and returned, never raised, so it commits; an unknown id raises its typed error.
batch.schedule_instances(session, instance_ids) -> [dict]
    schedule_instance's answer for each id, in order (a repeated id: noop); one
    transaction, so placements pay BEGIN/COMMIT, the instance reads and the network and
    MAC range locks once per batch. An unknown id raises before anything is written.
batch.schedule_launch(session, instance_ids, min_count) -> dict
    {"outcome": "placed", "placed": n, "instances": [schedule_instances' answers]}, or
    "failed" (fewer than min_count: none placed, each waiting one refused, the typed error
    and message), or "noop" (none was waiting).
evacuation.evacuate_from(session, host_node_id, keep_offline=False)
    -> {"scheduled": [...], "failed": [...], "halted": [...]}  (see evacuation.py)
"""
