"""The API's requests: one checked model per request, saying what the request may contain.

``InstanceRequest.from_params(params)`` (``api.create_instance``) and
``VolumeRequest.from_params(params)`` (``api.create_volume``) check a request whole before
anything reads the database: its keys, each value's type, ranges, id formats, the ``vifs``
parameter's shape (device indexes, manual MAC and IP address syntax), volume sizes, column
lengths, and that a named service type is configured. A value of None means the key is
absent. A refusal is the project's typed error, never pydantic's ``ValidationError``:
InvalidParameter naming the field (``vifs['eth0'].network must be an id nw-..., got ...``),
or the error of the pure check that refused it (InvalidMacAddress, InvalidIPAddress,
UnknownServiceType).

What needs the database (the image is available, the networks, groups, backup objects and
ssh key exist, manual addresses are free, hosts have room, the hostname is free) is checked
after the model is built, by the service that writes: ``instances.py``, ``volumes.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from collector import ids
from collector.errors import (
    ALL_ERRORS,
    CollectorError,
    InvalidArgument,
    InvalidParameter,
    NetworkSchedulingError,
    UnknownServiceType,
)
from collector.fields import check_fits
from collector.models import Instance, PlacementGroup, Volume
from collector.scheduling import placement_config
from collector.scheduling.batch import MAX_LAUNCH
from collector.scheduling.strategies.ip_address import parse_ipv4
from collector.scheduling.strategies.mac_address import parse_mac
from collector.scheduling.vifs import parse_vifs, plan_request_vifs

DEFAULT_ACCOUNT = "a-shpoolxx"
HOSTNAME = re.compile(r"^[0-9a-z][0-9a-z-]{0,31}$")
SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
NETWORK_KEYS = ("network", "nat_network", "network_group")


# --- the requests ------------------------------------------------------------------------------

class _Checked(BaseModel):
    """Strict (no coercion: ``"2"`` is no int), unknown keys refused, read-only."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Request(_Checked):
    """A request's parameters; ``from_params`` is the only way in."""

    kind: ClassVar[str]
    _given: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_params(cls, params: object) -> Self:
        """The checked request, or the typed error of its first problem."""
        if not isinstance(params, dict):
            raise InvalidParameter("the request must be a map of parameters")
        given = {key: value for key, value in params.items() if value is not None}
        try:
            request = cls.model_validate(given)
        except ValidationError as exc:
            raise refusal(exc, cls.kind) from None
        request._given = given
        return request

    @property
    def given(self) -> dict[str, Any]:
        """The parameters as the caller gave them (None values left out)."""
        return dict(self._given)


class InstanceRequest(Request):
    """``api.create_instance(params)``: the original's names. The lookups after it: the image
    exists and is available; an online, scheduling-enabled host has the hypervisor; the online
    hosts together have the cpu and memory; what the vifs, groups, volumes and ssh key name
    exists; the hostname is free in the account; an explicit host is online, compatible and
    has room (claimed now)."""

    kind: ClassVar[str] = "instance"

    image_id: ImageId
    hypervisor: Hypervisor
    cpu_cores: Annotated[int, _within(1, 128)]
    memory_size: Annotated[int, _within(128, 999_999)]  # MB
    # {name: vif} or the same as JSON text; absent: no vif.
    vifs: Vifs = {}
    # Every vif's groups (else each vif's own).
    security_groups: SecurityGroupIds | None = None
    # {key: volume} or a list of them: volumes beside the boot volume.
    volumes: Annotated[dict[str | int, VolumeParams], BeforeValidator(_keyed)] = {}
    # Place there (the first of the three given); its capacity is claimed now.
    host_id: HostNodeId | None = None
    host_pool_id: HostNodeId | None = None
    host_node_id: HostNodeId | None = None
    ha_enabled: HaEnabled = False
    hostname: Hostname | None = None  # default: the instance's id
    account_id: AccountId = DEFAULT_ACCOUNT
    ssh_key_id: SshKeyId | None = None
    user_data: str = ""
    display_name: InstanceDisplayName | None = None
    quota_weight: QuotaWeight = 0.0
    service_type: ServiceTypeName | None = None  # default: the image's, else the configured
    network_scheduler: str | None = None  # a PerInstance network strategy's choice
    placement_group: PlacementGroupId | None = None  # a member of that group (alive)

    @property
    def explicit_host(self) -> str | None:
        return self.host_id or self.host_pool_id or self.host_node_id

    @property
    def vif_params(self) -> dict[str, dict[str, Any]]:
        return {name: vif.as_param() for name, vif in self.vifs.items()}

    @property
    def security_group_ids(self) -> list[str]:
        """Every group the request names, the request's then each vif's, once each."""
        named = [*(self.security_groups or []),
                 *(g for vif in self.vifs.values() for g in vif.security_groups)]
        return list(dict.fromkeys(named))

    def request_params(self, service_type: str,
                       volumes: list[dict[str, Any]]) -> dict[str, Any]:
        """What the instance keeps for placement: the request as given, with its vifs,
        groups and ``volumes`` as checked, its account and its service type."""
        kept = {**self._given, "vifs": self.vif_params, "account_id": self.account_id,
                "service_type": service_type}
        if self.security_groups is not None:
            kept["security_groups"] = self.security_groups
        if "volumes" in kept:
            kept["volumes"] = volumes
        return kept


class LaunchRequest(Request):
    """``api.create_instances(params, count, min_count)``: how many instances of one
    request; ``min_count`` (default ``count``: all or none) is the fewest placed for any to
    be. The request itself is an ``InstanceRequest``."""

    kind: ClassVar[str] = "launch"

    count: Annotated[int, _within(1, MAX_LAUNCH)]
    min_count: Annotated[int, _within(1, MAX_LAUNCH)] | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if self.min_count is not None and self.min_count > self.count:
            raise _whole(f"min_count must be within 1..count ({self.count}), "
                         f"got {self.min_count}")
        return self

    @property
    def fewest(self) -> int:
        """The fewest instances placed for any to be."""
        return self.count if self.min_count is None else self.min_count


class VifParams(_Checked):
    """One vif of ``vifs`` (spec 4.2.1). Its networks and groups must exist, its manual
    addresses be free (the service's lookups)."""

    # The device number (or its digits); default: the one after the previous vif's.
    index: DeviceIndex | None = None
    network: BlankOr[NetworkId] = None
    nat_network: BlankOr[NetworkId] = None
    # Instead of network: a network of that group, for the group strategies.
    network_group: BlankOr[NetworkGroupId] = None
    security_groups: SecurityGroupIds = []  # the request's security_groups replace them
    mac_addr: MacAddress | None = None  # 12 hex digits, in a MAC range
    ipv4_addr: Ipv4Address | None = None  # in the network's DHCP range
    nat_ipv4_addr: Ipv4Address | None = None  # in the NAT network's
    monitors: Any = None  # {key: {protocol, title, enabled, params}} or a list of them
    vendor_id: Any = None
    bandwidth: Any = None

    @model_validator(mode="after")
    def _addresses_have_networks(self) -> Self:
        for key, network_key in (("ipv4_addr", "network"), ("nat_ipv4_addr", "nat_network")):
            if getattr(self, key) and getattr(self, network_key) is None:
                raise _refusal(f"needs {network_key} for {key}")
        return self

    def as_param(self) -> dict[str, Any]:
        """The vif as placement reads it: as given, blank networks left out, groups listed."""
        given = self.model_dump(exclude_unset=True)
        return {key: value for key, value in given.items()
                if not (key in NETWORK_KEYS and value is None)}


class VolumeParams(_Checked):
    """One entry of an instance's ``volumes``."""

    volume_type: Literal["local", "shared"]
    size: ByteSize | None = None  # bytes, or a text such as "10G"; else the backup object's
    backup_object_id: BackupObjectId | None = None  # must exist, not deleted
    display_name: Annotated[str, AfterValidator(_at_most_255)] | None = None

    @model_validator(mode="after")
    def _sized(self) -> Self:
        if self.size is None and self.backup_object_id is None:
            raise _refusal("needs a size or a backup_object_id")
        return self


class VolumeRequest(Request):
    """``api.create_volume(params)``. The lookups after it: the backup object exists, the
    storage node named is online and has room, else the online ones together have."""

    kind: ClassVar[str] = "volume"

    # MB, within the configured bounds; required without backup_object_id (and ignored
    # with it: the backup object's size is the volume's).
    volume_size: int | None = None
    backup_object_id: BackupObjectId | None = None
    storage_node_id: StorageNodeId | None = None  # place there; else the scheduler places it
    display_name: VolumeDisplayName | None = None
    account_id: AccountId = DEFAULT_ACCOUNT
    service_type: ServiceTypeName | None = None  # default: the configured

    @model_validator(mode="after")
    def _sized(self) -> Self:
        if self.backup_object_id is not None:
            return self
        if self.volume_size is None:
            raise _whole("volume_size (MB) or backup_object_id is required")
        cfg = placement_config.scheduler_config()
        low, high = cfg.create_volume_min_size, cfg.create_volume_max_size
        if not low <= self.volume_size <= high:
            raise _whole(f"volume_size must be within {low}..{high}, got {self.volume_size}")
        return self


class PlacementGroupRequest(Request):
    """``api.create_placement_group(params)``: a name and a policy; ``max_per_host`` (default
    1) only for the anti-affinity policies."""

    kind: ClassVar[str] = "placement group"

    name: GroupName
    policy: Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"]
    max_per_host: Annotated[int, _within(1, 1000)] | None = None
    account_id: AccountId = DEFAULT_ACCOUNT

    @model_validator(mode="after")
    def _spread(self) -> Self:
        if self.max_per_host is not None and "anti-affinity" not in self.policy:
            raise _whole(f"max_per_host is for the anti-affinity policies, not {self.policy}")
        return self


def vif_params(value: object) -> dict[str, dict[str, Any]]:
    """The ``vifs`` parameter alone, checked as in a request: each vif as placement reads it."""
    try:
        vifs = _VIFS.validate_python(value)
    except ValidationError as exc:
        raise refusal(exc, "vif", within=("vifs",)) from None
    return {name: vif.as_param() for name, vif in vifs.items()}


# --- the checked types (pure checks) -----------------------------------------------------------

def _canonical_id(prefix: str) -> AfterValidator:
    """An id ``<prefix>-...`` (whether its row exists is the service's lookup)."""
    def check(value: str) -> str:
        try:
            ids.raw_part(value, prefix)
        except InvalidArgument:
            raise _refusal(f"must be an id {prefix}-..., got {value!r:.60}") from None
        return value
    return AfterValidator(check)


def _within(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise _refusal(f"must be within {low}..{high}, got {value}")
        return value
    return AfterValidator(check)


def _fits(kind: str, model: type, column: str) -> AfterValidator:
    """Short enough for its column (``collector.fields.check_fits``)."""
    def check(value: Any) -> Any:
        try:
            check_fits(kind, model, {column: value})
        except InvalidArgument as exc:
            raise _passed_on(exc, InvalidParameter) from None
        return value
    return AfterValidator(check)


def _json_types(*types: type) -> BeforeValidator:
    """One of ``types`` (a bool is no int here)."""
    names = " or ".join(t.__name__ for t in types)

    def check(value: object) -> object:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _refusal(f"must be {names}, got {value!r:.60}")
        return value
    return BeforeValidator(check)


def _not_blank(value: str) -> str:
    if not value:
        raise _refusal("is required")
    return value


def _blank_is_absent(value: object) -> object:
    return None if value == "" else value


def _at_most_255(value: str) -> str:
    if len(value) > 255:
        raise _refusal("must be text of up to 255 characters")
    return value


def _hostname(value: str) -> str:
    name = value.lower()
    if not HOSTNAME.match(name):
        raise _refusal(f"must match {HOSTNAME.pattern}, got {name!r:.40}")
    return name


def _true_or_false(value: object) -> object:
    """``"true"`` / ``"false"`` (any case) as a bool; a bool as it is."""
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise _refusal(f"must be true or false, got {value!r:.20}")
        return value.lower() == "true"
    return value


def _finite_non_negative(value: float) -> float:
    if not 0 <= value < math.inf:
        raise _refusal("must be a finite number >= 0")
    return value


def _configured_service_type(name: str) -> str:
    """A service type of the scheduler's configuration ("" is the default one)."""
    if name:
        try:
            placement_config.scheduler_config().service_type(name)
        except UnknownServiceType as exc:
            raise _passed_on(exc) from None
    return name


def _group_ids(value: object) -> object:
    """``sg-...`` or a list of them; blank entries mean none (the original crashed, S23)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise _refusal("must be an id sg-... or a list of them")
    return list(dict.fromkeys(i.strip() for i in items if i.strip()))


def _syntax_of(parse: Callable[[str], object]) -> Callable[[str], str]:
    """A validator keeping a non-empty text that ``parse`` accepts (its typed error passed
    on otherwise)."""

    def check(value: str) -> str:
        if value:
            try:
                parse(value)
            except CollectorError as exc:
                raise _passed_on(exc) from None
        return value

    return check


def _byte_size(value: object) -> object:
    """Bytes from a number of bytes or a text such as ``"10G"`` / ``"512M"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := SIZE.match(value)):
        number, unit = match.groups()
        size = int(number) * SIZE_UNITS[unit.lower()]
    else:
        raise _refusal(f"must be a number of bytes or a size like '10G', got {value!r:.40}")
    if size <= 0 or size >= 2 ** 63:
        raise _refusal("must be positive and below 2^63 bytes")
    return size


def _keyed(value: object) -> object:
    """A map as it is; a list keyed by position."""
    if isinstance(value, list):
        return dict(enumerate(value))
    if not isinstance(value, dict):
        raise _refusal(f"must be dict or list, got {value!r:.60}")
    return value


def _vif_map(value: object) -> object:
    """JSON text parsed; a map of vif name -> map (``scheduling.vifs.parse_vifs``)."""
    try:
        return parse_vifs(value)
    except CollectorError as exc:
        raise _passed_on(exc) from None


def _plannable(vifs: dict[str, VifParams]) -> dict[str, VifParams]:
    """Device indexes as placement will read them: numbers, each used once."""
    try:
        plan_request_vifs({name: vif.as_param() for name, vif in vifs.items()})
    except NetworkSchedulingError as exc:
        raise _passed_on(exc, InvalidParameter) from None
    return vifs


T = TypeVar("T")
BlankOr = Annotated[T | None, BeforeValidator(_blank_is_absent)]  # "" is absent too
ImageId = Annotated[str, _canonical_id("wmi")]
NetworkId = Annotated[str, _canonical_id("nw")]
NetworkGroupId = Annotated[str, _canonical_id("nwg")]
SecurityGroupIds = Annotated[list[Annotated[str, _canonical_id("sg")]],
                             BeforeValidator(_group_ids)]
BackupObjectId = Annotated[str, _canonical_id("bo")]
HostNodeId = Annotated[str, _canonical_id("hn")]
StorageNodeId = Annotated[str, _canonical_id("sn")]
AccountId = Annotated[str, _canonical_id("a")]
SshKeyId = Annotated[str, _canonical_id("ssh")]
ServiceTypeName = Annotated[str, AfterValidator(_configured_service_type)]
MacAddress = Annotated[str, AfterValidator(_syntax_of(parse_mac))]
Ipv4Address = Annotated[str, AfterValidator(_syntax_of(parse_ipv4))]
ByteSize = Annotated[int, BeforeValidator(_byte_size)]
Hypervisor = Annotated[str, AfterValidator(_not_blank), _fits("instance", Instance, "hypervisor")]
Hostname = Annotated[str, AfterValidator(_hostname)]  # kept lower-cased
HaEnabled = Annotated[bool, BeforeValidator(_true_or_false)]  # or "true" / "false"
QuotaWeight = Annotated[float, AfterValidator(_finite_non_negative)]
DeviceIndex = Annotated[int | str, _json_types(int, str)]  # a number, or its digits
InstanceDisplayName = Annotated[str, _fits("instance", Instance, "display_name")]
VolumeDisplayName = Annotated[str, _fits("volume", Volume, "display_name")]
PlacementGroupId = Annotated[str, _canonical_id("pg")]
GroupName = Annotated[str, AfterValidator(_not_blank),
                      _fits("placement group", PlacementGroup, "name")]
Vifs = Annotated[dict[str, VifParams], BeforeValidator(_vif_map), AfterValidator(_plannable)]


# --- refusals --------------------------------------------------------------------------------
# A validator refuses with a PydanticCustomError whose type is the typed error's name, so
# pydantic collects it with its own errors; ``refusal`` turns the first into the typed error.

def _refusal(predicate: str) -> PydanticCustomError:
    """InvalidParameter, its message the field's name and ``predicate`` (``must be ...``)."""
    return PydanticCustomError(InvalidParameter.__name__, "{predicate}",
                               {"predicate": predicate})


def _whole(message: str, error: type[CollectorError] = InvalidParameter
           ) -> PydanticCustomError:
    """``error`` with ``message`` as it is."""
    return PydanticCustomError(error.__name__, "{message}", {"message": message})


def _passed_on(exc: CollectorError, error: type[CollectorError] | None = None
               ) -> PydanticCustomError:
    """A pure check's typed error (or ``error``), its message kept."""
    return _whole(exc.message, error or type(exc))


TYPE_NAMES = {"int_type": "int", "string_type": "str", "bool_type": "bool",
              "float_type": "int or float", "dict_type": "a map", "model_type": "a map",
              "list_type": "a list"}


def _where(loc: Sequence[str | int]) -> str:
    """``cpu_cores``, ``vifs['eth0'].network``, ``volumes[0].size``, ``security_groups[1]``."""
    text = str(loc[0])
    for position, part in enumerate(loc[1:], start=1):
        text += f"[{part!r}]" if position == 1 or isinstance(part, int) else f".{part}"
    return text


def refusal(exc: ValidationError, kind: str, within: tuple[str, ...] = ()) -> CollectorError:
    """The typed error for pydantic's errors: unknown keys first, else the first error."""
    errors = [{**e, "loc": (*within, *e["loc"])} for e in exc.errors(include_url=False)]
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        outer = min((e["loc"][:-1] for e in unknown), key=len)
        keys = ", ".join(sorted(str(e["loc"][-1]) for e in unknown if e["loc"][:-1] == outer))
        if not outer:
            return InvalidParameter(f"unknown {kind} parameter(s): {keys}")
        return InvalidParameter(f"{_where(outer)}: unknown key(s) {keys}")
    first = errors[0]
    kind_of, context, value = first["type"], first.get("ctx") or {}, first.get("input")
    where = _where(first["loc"]) if first["loc"] else "the request"
    error = ALL_ERRORS.get(kind_of, InvalidParameter)
    if "message" in context:
        return error(context["message"])
    if "predicate" in context:
        return error(f"{where} {context['predicate']}")
    if kind_of == "missing":
        return InvalidParameter(f"{where} is required")
    if kind_of == "literal_error":
        return InvalidParameter(f"{where} must be {context['expected']}, got {value!r:.20}")
    if kind_of in TYPE_NAMES:
        return InvalidParameter(f"{where} must be {TYPE_NAMES[kind_of]}, got {value!r:.60}")
    return InvalidParameter(f"{where}: {first['msg']}")


# --- the models built, now that every type they name is defined ----------------------------------

for _model in (VifParams, VolumeParams, InstanceRequest, VolumeRequest, LaunchRequest):
    _model.model_rebuild()
_VIFS = TypeAdapter(Vifs)
