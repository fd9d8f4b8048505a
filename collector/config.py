"""Settings from the environment, read in one place.

Every process (worker, beat, CLI, tests) reads its configuration here and nowhere else.
Credentials come only from the environment: nothing secret is written in a file we ship.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from collector.signing import Credential

# Hosts a broker may be reached on without a password: this machine only (the name
# ``localhost`` and loopback addresses, 127.0.0.0/8 and ::1; never a DNS name that merely
# starts with "127.").
LOCAL_NAMES = frozenset({"localhost"})
REDIS_SCHEMES = frozenset({"redis", "rediss"})
# A Redis Sentinel list, as Celery and kombu take it: ``sentinel://:pw@h1:26379/0;sentinel://:pw@h2:26379/0``.
SENTINEL_SCHEME = "sentinel"
SENTINEL_DEFAULT_PORT = 26379


class SettingsError(ValueError):
    """A setting in the environment cannot be used; the message names the variable."""


# The environment ``load_settings`` reads: the process's, or one given to it (the settings of
# another process: an agent's, a worker's being prepared).
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("collector_environ", default=None)


def _env(name: str, default: str | None = None) -> str | None:
    environ = _environ.get()
    value = (os.environ if environ is None else environ).get(name)
    return value if value not in (None, "") else default


def _number(name: str, default: float, kind: type = int) -> float:
    raw = _env(name, str(default))
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}"
                            ) from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0")
    return value


def is_local_host(host: str) -> bool:
    """``localhost``, or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name: it may resolve anywhere


def shown_url(url: str) -> str:
    """``url`` without its credentials, for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{url.split('://', 1)[0]}://..."
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_url(name: str, url: str) -> str | None:
    """Why one broker / backend URL cannot be used, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"{name}: {shown_url(url)} is not a valid URL ({exc})"
    if not parts.scheme:
        return f"{name}: {shown_url(url)} is not a URL (no scheme://)"
    if "socket" in parts.scheme:
        return None  # a unix socket: local by construction
    if parts.scheme in REDIS_SCHEMES or parts.scheme == SENTINEL_SCHEME:
        db = parts.path.strip("/")
        if db and not db.isdigit():
            return (f"{name}: {shown_url(url)}: the Redis database number {db!r} is not a "
                    "non-negative integer")
    host = host or "localhost"
    if is_local_host(host) or parts.password:
        return None
    return (f"{name} reaches {host} without a password: a broker beyond localhost must "
            f"require one ({parts.scheme}://:password@{host}:port/...)")


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (_env(name, default) or default).lower()
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def authenticated_beyond_localhost(name: str, url: str | None) -> str | None:
    """A broker URL reaching beyond this machine must carry a password; a failover list
    (``url1;url2``) is checked member by member. Anything unusable is a SettingsError
    naming the setting (never showing a password)."""
    if not url:
        return url
    for member in url.split(";"):
        problem = _check_url(name, member.strip()) if member.strip() else \
            f"{name}: an empty URL in the failover list"
        if problem:
            raise SettingsError(problem)
    schemes = {_scheme(member) for member in url.split(";")}
    if SENTINEL_SCHEME in schemes and len(schemes) > 1:
        raise SettingsError(f"{name}: a Sentinel list takes sentinel:// URLs only, not "
                            f"{', '.join(sorted(schemes - {SENTINEL_SCHEME}))}://")
    return url


def single_url(name: str, url: str | None) -> str | None:
    """A result backend takes one URL, or a Sentinel list (``sentinel://...;sentinel://...``,
    Celery's documented form): any other failover list is a SettingsError."""
    if url and ";" in url and not is_sentinel(url):
        raise SettingsError(f"{name}: a result backend takes one URL (or a list of sentinel:// "
                            "URLs), not a failover list")
    return url


def first_url(url: str | None) -> str | None:
    """The first URL of a failover list (the whole URL when it is not one)."""
    return url.split(";", 1)[0].strip() if url else url


# --- Redis Sentinel and TLS: the options every client of the broker needs -----------------


def _scheme(url: str | None) -> str:
    url = (url or "").strip()
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_sentinel(url: str | None) -> bool:
    """Whether ``url`` is a Sentinel list (every member is ``sentinel://``: checked at start)."""
    return _scheme(first_url(url)) == SENTINEL_SCHEME


def is_tls(url: str | None) -> bool:
    """Whether ``url`` reaches Redis over TLS (``rediss://``)."""
    return _scheme(first_url(url)) == "rediss"


def sentinel_hosts(url: str) -> list[tuple[str, int]]:
    """The (host, port) of every sentinel of a Sentinel list."""
    hosts = []
    for member in filter(None, (m.strip() for m in url.split(";"))):
        parts = urlsplit(member)
        hosts.append((parts.hostname or "localhost", parts.port or SENTINEL_DEFAULT_PORT))
    return hosts


def redis_db(url: str) -> int:
    """The Redis database number of a URL (of a Sentinel list's first member): 0 when absent."""
    db = urlsplit(first_url(url) or "").path.strip("/")
    return int(db) if db.isdigit() else 0


def redis_password(url: str) -> str | None:
    """The Redis password of a URL (of a Sentinel list's first member: the master's)."""
    password = urlsplit(first_url(url) or "").password
    return unquote(password) if password else None


def sentinel_kwargs(settings: Settings) -> dict:
    """How to talk to the sentinels themselves: COLLECTOR_SENTINEL_PASSWORD when they
    require one, and timeouts, so a sentinel out of reach is skipped rather than waited on."""
    found = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    if settings.sentinel_password:
        found["password"] = settings.sentinel_password
    return found


def redis_transport_options(settings: Settings, url: str | None) -> dict:
    """What a broker's (``broker_transport_options``) or a result backend's
    (``result_backend_transport_options``) transport options need for ``url``: for a
    Sentinel list the master's name and how to reach the sentinels; else nothing."""
    if not is_sentinel(url):
        return {}
    if not settings.redis_master_name:  # load_settings refuses it; a URL given in code too
        raise SettingsError(f"{shown_url(first_url(url) or '')}... is a Sentinel list: set "
                            "COLLECTOR_REDIS_MASTER_NAME to the name of the master the "
                            "sentinels watch")
    return {"master_name": settings.redis_master_name,
            "sentinel_kwargs": sentinel_kwargs(settings)}


def redis_ssl_options(settings: Settings) -> dict:
    """redis-py's TLS options (also Celery's ``broker_use_ssl`` / ``redis_backend_use_ssl``
    and redbeat's ``redbeat_redis_use_ssl``): the server's certificate is always verified,
    against COLLECTOR_REDIS_CA_FILE (else the system's CAs); a client certificate when
    COLLECTOR_REDIS_CERT_FILE / COLLECTOR_REDIS_KEY_FILE are set."""
    options: dict = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_ca_file:
        options["ssl_ca_certs"] = settings.redis_ca_file
    if settings.redis_cert_file:
        options["ssl_certfile"] = settings.redis_cert_file
        options["ssl_keyfile"] = settings.redis_key_file
    return options


def ssl_options_for(settings: Settings, url: str | None) -> dict | None:
    """The TLS options for ``url`` when it is ``rediss://``, else None (no TLS)."""
    return redis_ssl_options(settings) if is_tls(url) else None


def redbeat_settings(settings: Settings, broker_url: str) -> dict:
    """celery-redbeat's settings for the broker (its schedule and lock live there):
    ``redbeat_redis_url``, ``redbeat_redis_options``, ``redbeat_redis_use_ssl``.

    A Sentinel list becomes redbeat's ``redis-sentinel://`` form, the sentinels and the
    master in the options (a reconnection asks the sentinels for the master again; beat's
    ticks ride out the failover itself: ``tasks.beat_scheduler``)."""
    if is_sentinel(broker_url):
        host, port = sentinel_hosts(broker_url)[0]
        return {
            "redbeat_redis_url": f"redis-sentinel://{host}:{port}/{redis_db(broker_url)}",
            "redbeat_redis_options": {
                "sentinels": sentinel_hosts(broker_url),
                "service_name": redis_transport_options(settings, broker_url)["master_name"],
                "password": redis_password(broker_url), "db": redis_db(broker_url),
                "socket_timeout": 5.0, "sentinel_kwargs": sentinel_kwargs(settings)},
            "redbeat_redis_use_ssl": None,
        }
    return {"redbeat_redis_url": first_url(broker_url), "redbeat_redis_options": {},
            "redbeat_redis_use_ssl": ssl_options_for(settings, broker_url)}


def _tls_file(name: str) -> str | None:
    path = _env(name)
    if path is not None and not os.path.isfile(path):
        raise SettingsError(f"{name}={path!r} is not a file")
    return path


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str | None
    result_backend: str | None
    rpc_timeout: float = 30.0
    result_expires: int = 3600
    job_expires: int = 86400
    visibility_timeout: int = 60
    outbox_sweep_after: float = 5.0
    worker_sweep: bool = True  # every worker sweeps the outbox (tasks.worker_sweeper)
    node_timeout_sec: int = 20
    node_offline_sec: int = 40
    node_kill_sec: int = 320
    job_max_deliveries: int = 3
    job_heartbeat_timeout: int = 60
    resource_retention: int = 7 * 86400
    outbox_retention: int = 86400
    job_retention: int = 30 * 86400
    worker_concurrency: int | None = None  # None: the role's own (workers.roles)
    sqlite_synchronous: str = "full"
    flower_basic_auth: str | None = None
    agent_job_heartbeat: float = 5.0
    agent_broker_check: float = 5.0  # an agent PINGs its broker (workers.agent.broker_watch)
    beat_lock_timeout: int = 30
    event_retries: int = 5
    outbox_max_attempts: int = 5
    event_retry_backoff_max: float = 30.0
    event_resend_after: float = 30.0
    agent_longest_job: int = 3 * 3600
    fence_timeout_sec: int = 60
    # Convergence of placement requests (collector.scheduling.redrive, tasks.registry).
    job_retry_for: float = 600.0
    redrive_after: float = 30.0
    redrive_every: float = 15.0
    placement_max_jobs: int = 5
    # Redis Sentinel (a sentinel:// broker) and TLS (rediss://): collector.config helpers.
    redis_master_name: str | None = None
    sentinel_password: str | None = None
    redis_ca_file: str | None = None
    redis_cert_file: str | None = None
    redis_key_file: str | None = None
    # End-to-end delivery of jobs (collector.services.jobs.redelivery).
    job_take_deadline: float = 30.0
    job_take_deadlines: dict = field(default_factory=dict)
    outbox_claim_sec: float = 30.0
    # Signed messages (collector.signing): the Collector's secret, a node's own key, and
    # whether Collector workers refuse unsigned messages (off only to measure the cost).
    signing_secret: str | None = None
    node_id: str | None = None
    node_key: str | None = None
    require_signatures: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _deadlines(name: str) -> dict[str, float]:
    """``"name=seconds,name=seconds"`` -> ``{name: seconds}`` (seconds > 0)."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in (_env(name) or "").split(","))):
        key, sep, value = item.partition("=")
        try:
            seconds = float(value) if sep and key.strip() else 0.0
        except ValueError:
            seconds = 0.0
        if seconds <= 0:
            raise SettingsError(f"{name}: {item!r} is not NAME=SECONDS with SECONDS > 0")
        out[key.strip()] = seconds
    return out


SIGNING_SECRET_FILE = "signing-secret"


def _secret_file(data_dir: Path) -> str | None:
    """The installation's signing secret kept in the data directory (``collector up``
    writes it on first start), when COLLECTOR_SIGNING_SECRET is not set."""
    path = data_dir / SIGNING_SECRET_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def signing_credential(settings: Settings, principal: str) -> Credential | None:
    """What this process signs its messages with: the node's own key when COLLECTOR_NODE_ID
    and COLLECTOR_NODE_KEY are set (an agent), else ``principal``'s key derived from the
    signing secret (a Collector role, the operator); None when neither is set."""
    if settings.node_id and settings.node_key:
        try:
            return Credential.from_node_key(settings.node_id, settings.node_key)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    if settings.signing_secret:
        return Credential.from_secret(settings.signing_secret, principal)
    return None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the current environment (no caching: tests change it), or
    from ``environ``."""
    token = _environ.set(environ) if environ is not None else None
    try:
        return _load_settings()
    finally:
        if token is not None:
            _environ.reset(token)


def _load_settings() -> Settings:
    data_dir = Path(_env("COLLECTOR_DATA_DIR", str(Path.cwd() / "var")))
    database_url = _env("COLLECTOR_DATABASE_URL", f"sqlite:///{data_dir / 'collector.sqlite3'}")
    broker_url = authenticated_beyond_localhost("COLLECTOR_BROKER_URL",
                                                 _env("COLLECTOR_BROKER_URL"))
    # The result backend defaults to the broker (its first URL, when it is a failover list;
    # the whole list when it is a Sentinel list).
    result_backend = single_url("COLLECTOR_RESULT_BACKEND", authenticated_beyond_localhost(
        "COLLECTOR_RESULT_BACKEND", _env("COLLECTOR_RESULT_BACKEND", broker_url
                                         if is_sentinel(broker_url) else first_url(broker_url))))
    master_name = _env("COLLECTOR_REDIS_MASTER_NAME")
    for name, url in (("COLLECTOR_BROKER_URL", broker_url),
                      ("COLLECTOR_RESULT_BACKEND", result_backend)):
        if is_sentinel(url) and not master_name:
            raise SettingsError(f"{name} is a Sentinel list (sentinel://): set "
                                "COLLECTOR_REDIS_MASTER_NAME to the name of the master the "
                                "sentinels watch")
    cert_file, key_file = _tls_file("COLLECTOR_REDIS_CERT_FILE"), \
        _tls_file("COLLECTOR_REDIS_KEY_FILE")
    if bool(cert_file) != bool(key_file):
        raise SettingsError("COLLECTOR_REDIS_CERT_FILE and COLLECTOR_REDIS_KEY_FILE go "
                            "together (a client certificate and its key)")
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        result_backend=result_backend,
        rpc_timeout=_number("COLLECTOR_RPC_TIMEOUT", 30, float),
        result_expires=_number("COLLECTOR_RESULT_EXPIRES", 3600),
        job_expires=_number("COLLECTOR_JOB_EXPIRES", 86400),
        visibility_timeout=_number("COLLECTOR_VISIBILITY_TIMEOUT", 60),
        outbox_sweep_after=_number("COLLECTOR_OUTBOX_SWEEP_AFTER", 5, float),
        worker_sweep=_env("COLLECTOR_WORKER_SWEEP", "1") != "0",
        node_timeout_sec=_number("COLLECTOR_NODE_TIMEOUT_SEC", 20),
        node_offline_sec=_number("COLLECTOR_NODE_OFFLINE_SEC", 40),
        node_kill_sec=_number("COLLECTOR_NODE_KILL_SEC", 320),
        job_max_deliveries=_number("COLLECTOR_JOB_MAX_DELIVERIES", 3),
        job_heartbeat_timeout=_number("COLLECTOR_JOB_HEARTBEAT_TIMEOUT", 60),
        resource_retention=_number("COLLECTOR_RESOURCE_RETENTION", 7 * 86400),
        outbox_retention=_number("COLLECTOR_OUTBOX_RETENTION", 86400),
        job_retention=_number("COLLECTOR_JOB_RETENTION", 30 * 86400),
        worker_concurrency=_number("COLLECTOR_WORKER_CONCURRENCY", 4)
        if _env("COLLECTOR_WORKER_CONCURRENCY") else None,
        sqlite_synchronous=_choice("COLLECTOR_SQLITE_SYNCHRONOUS", "full", ("full", "normal")),
        flower_basic_auth=_env("COLLECTOR_FLOWER_BASIC_AUTH"),
        agent_job_heartbeat=_number("COLLECTOR_AGENT_JOB_HEARTBEAT", 5, float),
        agent_broker_check=_number("COLLECTOR_AGENT_BROKER_CHECK", 5, float),
        beat_lock_timeout=_number("COLLECTOR_BEAT_LOCK_TIMEOUT", 30),
        event_retries=_number("COLLECTOR_EVENT_RETRIES", 5),
        outbox_max_attempts=_number("COLLECTOR_OUTBOX_MAX_ATTEMPTS", 5),
        event_retry_backoff_max=_number("COLLECTOR_EVENT_RETRY_BACKOFF_MAX", 30, float),
        # An event not dispatched, or a handler message not handled, this many seconds after
        # it was sent is sent again (collector.services.event_receipts).
        event_resend_after=_number("COLLECTOR_EVENT_RESEND_AFTER", 30, float),
        agent_longest_job=_number("COLLECTOR_AGENT_LONGEST_JOB", 3 * 3600),
        fence_timeout_sec=_number("COLLECTOR_FENCE_TIMEOUT_SEC", 60),
        # How long a scheduler job, a ledger callback or an agent's job handler is retried
        # through transient failures (the database or the broker out of reach).
        job_retry_for=_number("COLLECTOR_JOB_RETRY_FOR", 600, float),
        # A request left ``scheduling`` whose placement job ended this long ago (or that has
        # none) is placed again, and a ledger job whose outcome callback is this late is
        # finished from the result backend; the pass runs every ``redrive_every`` seconds.
        redrive_after=_number("COLLECTOR_REDRIVE_AFTER", 30, float),
        redrive_every=_number("COLLECTOR_REDRIVE_EVERY", 15, float),
        # Placement jobs of one request that may end without a placement before the request
        # is refused (``PlacementError``) instead of placed again.
        placement_max_jobs=_number("COLLECTOR_PLACEMENT_MAX_JOBS", 5),
        redis_master_name=master_name,
        sentinel_password=_env("COLLECTOR_SENTINEL_PASSWORD"),
        redis_ca_file=_tls_file("COLLECTOR_REDIS_CA_FILE"),
        redis_cert_file=cert_file,
        redis_key_file=key_file,
        # A job no agent took (``jobqueue-proxy.running``) this long after its message was
        # sent is sent again under its id; per endpoint or job in COLLECTOR_JOB_TAKE_DEADLINES
        # ("sta-handle=120,hva-handle.run_local_store=60").
        job_take_deadline=_number("COLLECTOR_JOB_TAKE_DEADLINE", 30, float),
        job_take_deadlines=_deadlines("COLLECTOR_JOB_TAKE_DEADLINES"),
        # The after-commit relay owns the rows it wrote this long; then the sweep takes them.
        outbox_claim_sec=_number("COLLECTOR_OUTBOX_CLAIM_SEC", 30, float),
        signing_secret=_env("COLLECTOR_SIGNING_SECRET") or _secret_file(data_dir),
        node_id=_env("COLLECTOR_NODE_ID"),
        node_key=_env("COLLECTOR_NODE_KEY"),
        require_signatures=_env("COLLECTOR_REQUIRE_SIGNATURES", "1") != "0",
    )
    if bool(settings.node_id) != bool(settings.node_key):
        raise SettingsError("COLLECTOR_NODE_ID and COLLECTOR_NODE_KEY go together (what "
                            "`collector credentials issue NODE_ID` printed)")
    if settings.event_retry_backoff_max * 2 > settings.visibility_timeout:
        # A retry waits in its worker, unacknowledged, for its countdown: longer than the
        # visibility timeout and it is redelivered while it waits, again and again.
        raise SettingsError(
            f"COLLECTOR_EVENT_RETRY_BACKOFF_MAX={settings.event_retry_backoff_max:g} must be "
            f"at most half of COLLECTOR_VISIBILITY_TIMEOUT={settings.visibility_timeout}")
    return settings
