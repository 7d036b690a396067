"""One typed settings object for every Choreo process.

Each field reads an environment variable (named in ``validation_alias`` or ``CHOREO_<FIELD>``)
and has a default that matches the stack `choreo stack up` starts, so a fresh checkout needs no
configuration at all; a stack started on other ports (``CHOREO_POSTGRES_PORT``,
``CHOREO_JAEGER_OTLP_GRPC_PORT``, ``CHOREO_JAEGER_QUERY_PORT``, with ``CHOREO_STATE_DIR``) moves
the defaults with it. Point Choreo at existing infrastructure by setting
``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_KAFKA = "127.0.0.1:19092"
"""The local stack's Kafka, unless `choreo stack up` recorded another (:data:`BOOTSTRAP_FILE`)."""
BOOTSTRAP_FILE = Path("kafka") / "bootstrap.servers"
"""Where, under the state folder, `choreo stack up` records its Kafka nodes' addresses."""
KAFKA_TLS_DIR = Path("kafka") / "tls"
"""Where, under the state folder, `choreo stack up --secure` keeps the local CA, the broker's
key and certificate, and the key the SCRAM users' passwords derive from."""
KAFKA_CA_FILE = KAFKA_TLS_DIR / "ca.pem"
"""The local CA's certificate: its presence says the local Kafka is secured."""


def local_kafka(state_dir: Path) -> str:
    """The bootstrap servers of the local stack in ``state_dir``: every node of the cluster
    `choreo stack up` started there (three with ``--brokers 3``), so a client still starts
    when one node is down; :data:`LOCAL_KAFKA` before the first start."""
    try:
        recorded = (state_dir / BOOTSTRAP_FILE).read_text().strip()
    except OSError:
        return LOCAL_KAFKA
    return recorded or LOCAL_KAFKA


POSTGRES_SOCKET_FILE = Path("postgres") / "socket.dir"
"""Where, under the state folder, `choreo stack up` records the folder of its PostgreSQL's
Unix socket."""
SOCKET_PATH_MAX = 107
"""The longest path a Unix socket may have (``sun_path`` on Linux, less its NUL)."""


def local_database_url(state_dir: Path) -> str:
    """The local stack's PostgreSQL: over its Unix socket once `choreo stack up` recorded the
    socket's folder (a statement costs less there than over TCP on the loopback), else over
    TCP on 127.0.0.1. Both ask for the role's password."""
    port = _local_port("CHOREO_POSTGRES_PORT", 15432)
    try:
        folder = (state_dir / POSTGRES_SOCKET_FILE).read_text().strip()
    except OSError:
        folder = ""
    # A relative folder (recorded by a stack started with a relative CHOREO_STATE_DIR before
    # it was made absolute) would be taken for a host name.
    if folder.startswith("/") and len(f"{folder}/.s.PGSQL.{port}") <= SOCKET_PATH_MAX:
        return f"postgresql://choreo:choreo@/choreo?host={quote(folder)}&port={port}"
    return f"postgresql://choreo:choreo@127.0.0.1:{port}/choreo"


def _local_port(variable: str, default: int) -> str:
    """A port of the local stack (:class:`choreo.stack.base.StackSettings` reads the same)."""
    return os.environ.get(variable, str(default))


class Settings(BaseSettings):
    """Configuration shared by the runtime, the services, the coordinator and the CLI."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_", extra="ignore", frozen=True)

    # Absolute: paths derived from it are recorded for other processes, started elsewhere.
    state_dir: Annotated[Path, AfterValidator(Path.absolute)] = Field(
        default=PROJECT_ROOT / ".state",
        description="Where `choreo stack` keeps data, logs and pid files of the local stack.",
    )
    kafka_bootstrap_servers: str = Field(
        default_factory=lambda data: local_kafka(data["state_dir"]),
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma-separated host:port (default: the local"
        " stack's nodes, as `choreo stack up` recorded them).",
    )
    kafka_secure: bool = Field(
        default_factory=lambda data: (data["state_dir"] / KAFKA_CA_FILE).exists(),
        description="The local Kafka is secured: `choreo stack up` formats it with a SASL_SSL"
        " listener, SCRAM-SHA-512 users and ACLs; clients default to the stack's CA and admin"
        " user; `choreo run` gives each process its own user (default: whether the state"
        " folder holds a secured stack's CA).",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = (
        Field(
            default=None,
            validation_alias=AliasChoices(
                "KAFKA_SECURITY_PROTOCOL", "CHOREO_KAFKA_SECURITY_PROTOCOL"
            ),
            description="How clients talk to Kafka (default: SASL_SSL when `kafka_secure`, else"
            " PLAINTEXT).",
        )
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "CHOREO_KAFKA_SSL_CAFILE"),
        description="CA certificate(s) (PEM) the brokers' certificates are checked against"
        " (default: the local stack's CA when `kafka_secure`, else the system's).",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512",
        validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "CHOREO_KAFKA_SASL_MECHANISM"),
        description="SASL mechanism of a SASL_* protocol.",
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "CHOREO_KAFKA_SASL_USERNAME"),
        description="SASL user (default: the local stack's admin when `kafka_secure`).",
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "CHOREO_KAFKA_SASL_PASSWORD"),
        description="SASL password (default: the local stack's admin's when `kafka_secure`).",
    )
    kafka_user_secret: SecretStr | None = Field(
        default=None,
        description="Key the local stack's SCRAM passwords derive from (default: a random key"
        " in <state dir>/kafka/tls/users.key).",
    )
    database_url: str = Field(
        default_factory=lambda data: local_database_url(data["state_dir"]),
        validation_alias=AliasChoices("DATABASE_URL", "CHOREO_DATABASE_URL"),
        description="PostgreSQL DSN for the event log, service state and projections (default:"
        " the local stack's, over its Unix socket once `choreo stack up` recorded it).",
    )
    database_roles: bool = Field(
        default=True,
        description="Run each process as its own PostgreSQL role, owner of its schema only "
        "(`choreo/roles.py`); the user of `database_url` administers and creates the roles.",
    )
    database_role_secret: SecretStr | None = Field(
        default=None,
        description="Key the roles' passwords derive from (default: a random key in "
        "<state dir>/postgres-roles.key).",
    )
    otel_exporter_otlp_endpoint: str = Field(
        default_factory=lambda: (
            f"http://127.0.0.1:{_local_port('CHOREO_JAEGER_OTLP_GRPC_PORT', 4317)}"
        ),
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/gRPC endpoint traces and metrics are exported to (Jaeger).",
    )
    jaeger_query_url: str = Field(
        default_factory=lambda: (
            f"http://127.0.0.1:{_local_port('CHOREO_JAEGER_QUERY_PORT', 16686)}"
        ),
        description="Jaeger's UI and query API, for `choreo orders trace`.",
    )
    jaeger_ui_url: str | None = Field(
        default=None,
        description="Jaeger's own UI (its trace pages at <url>/trace/<id>), linked from the "
        "console's saga pages; unset: no link (the stack's Jaeger serves no UI).",
    )
    metrics_url: str = Field(
        default="http://127.0.0.1:8889/metrics",
        description="Where the collector serves Choreo's metrics (Prometheus format).",
    )
    tracing_enabled: bool = Field(
        default=True,
        description="Export OpenTelemetry traces (off: no spans, no trace context on messages).",
    )
    metrics_enabled: bool = Field(
        default=True,
        description="Export OpenTelemetry metrics (`choreo metrics`, the collector's Prometheus"
        " endpoint), whether or not tracing is on.",
    )
    tracing_db_spans: bool = Field(
        default=False,
        description="Also trace every PostgreSQL statement (asyncpg spans under the handler's):"
        " for debugging a slow handler; they are most of a trace's spans and of its cost.",
    )
    tracing_create_spans: bool = Field(
        default=False,
        description="Also a `<topic> create` span for every message a handler emits (its"
        " creation context, with the destination and message id); off, a message continues"
        " the span of the handler that emitted it, which the consumer's process span names.",
    )
    tracing_send_spans: bool = Field(
        default=False,
        description="Also an `outbox <schema> send` span for every publish to Kafka, a trace"
        " of its own linked to the traces of the messages it sent; off, the hop's latency"
        " still shows in each order's trace, between a handler and the next process span.",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The event loop of Choreo's processes: uvloop (libuv, in C; where it is"
        " installed) or the standard library's; the runtime's work between statements and"
        " Kafka requests is largely the loop's.",
    )
    gc_young_objects: int = Field(
        default=50_000,
        ge=0,
        description="Allocations between two young-generation runs of Python's cyclic"
        " garbage collector in Choreo's processes (Python's default: 700, which ran it every"
        " few messages; 0 keeps Python's).",
    )
    metrics_export_interval_ms: int = Field(
        default=5000, ge=100, description="How often metrics are pushed over OTLP."
    )
    topic_prefix: str = Field(
        default="choreo.",
        description="Prefix of every topic; a topic per domain is `<prefix><domain>`.",
    )
    topic_partitions: int = Field(default=3, ge=1, description="Partitions per event topic.")
    topic_replication_factor: int = Field(
        default=0,
        ge=0,
        description="Replication factor of provisioned topics (0: the cluster's broker count,"
        " at most 3).",
    )
    topic_min_insync_replicas: int = Field(
        default=0,
        ge=0,
        description="min.insync.replicas of provisioned topics: how many replicas must have a"
        " write before acks=all succeeds (0: 2 when the replication factor is 3 or more, else 1).",
    )
    schemas_dir: Path = Field(
        default=PROJECT_ROOT / "schemas", description="Folder of the Avro schemas (`.avsc`)."
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "choreo",
        description="Machine-wide cache of downloaded artifacts (Kafka jars, Jaeger binary).",
    )
    consumer_batch_size: int = Field(
        default=500, ge=1, description="Max records one `getmany` returns per poll."
    )
    consumer_batch_transactions: bool = Field(
        default=True,
        description="Deliver each poll's records in one PostgreSQL transaction (false: one"
        " transaction per record).",
    )
    projector_cache_orders: int = Field(
        default=2000,
        ge=0,
        description="Orders whose logged events the projector keeps in memory to refold"
        " them without reading the log back (0: always read).",
    )
    projector_fetch_wait_ms: int = Field(
        default=100,
        ge=0,
        description="How long the broker may hold the projector's fetch to gather events:"
        " at low load one fetch and one transaction cover the events of this long instead"
        " of one each (the read model trails the log by up to this much more; 0: answer"
        " each fetch as soon as one event is there).",
    )
    consumer_fetch_wait_ms: int = Field(
        default=50,
        ge=0,
        description="How long the broker may hold a fetch of a service or the coordinator"
        " while messages arrive fast (`CHOREO_CONSUMER_FETCH_WAIT_ABOVE_PER_S`): one poll and"
        " one transaction then cover several messages instead of one each (0: never hold).",
    )
    consumer_fetch_wait_above_per_s: float = Field(
        default=300.0,
        ge=0,
        description="Messages a second a consumer must receive before its fetches are held;"
        " it answers at once again below half of it (0: hold always). 300: a moderate load"
        " (20 orders/s, the coordinator ~140 messages/s) keeps its latency, a burst is batched.",
    )
    rebuild_workers: int = Field(
        default=0,
        ge=0,
        description="Lanes (this process + worker processes) a projection rebuild replays"
        " partitions in (0: as many as share the partition numbers evenly over the CPUs,"
        " e.g. 3 for 3 partitions on 2 CPUs; at most one per partition number).",
    )
    consumer_commit_interval_ms: int = Field(
        default=500,
        ge=0,
        description="How often a consumer commits its offsets to Kafka (0: after every"
        " batch). Later commits redeliver more after a crash; the inbox dedupes them.",
    )
    consumer_poll_timeout_ms: int = Field(
        default=200, ge=1, description="How long one poll waits for records."
    )
    consumer_session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="How long a silent group member keeps its partitions (a crashed process's "
        "partitions move after this).",
    )
    stop_timeout_ms: int = Field(
        default=15_000,
        ge=100,
        description="How long a process's stop (SIGTERM) may take in all, below choreo run's 20 s"
        " grace: finishing the batch in hand, committing, leaving the group, publishing what"
        " the last deliveries staged, closing the producer and the pool. Each step is bounded"
        " by its own timeout and by what is left of this; what is given up is safe to give up"
        " (see each step's setting).",
    )
    stop_drain_timeout_ms: int = Field(
        default=4_000,
        ge=0,
        description="How long a stopping process lets the batch in hand, the relay's publish in"
        " flight and its background tasks finish before it cancels them: what was not"
        " committed is read again after the restart (the inbox drops what was delivered);"
        " what was committed and not published stays in the outbox for the relay.",
    )
    consumer_close_timeout_ms: int = Field(
        default=10_000,
        ge=100,
        description="How long a stopping consumer waits for its last offset commit and for"
        " leaving its group, together, before it goes on without (as Kafka's own consumer's"
        " close(timeout) does): the group re-reads from its last commit, the inbox drops what"
        " was delivered, and the broker drops the member after its session timeout.",
    )
    outbox_publish_after_commit: bool = Field(
        default=True,
        description="A delivery publishes what it staged right after its commit, the outbox"
        " relay taking what is left (false: the relay publishes everything, woken by commits).",
    )
    producer_linger_ms: int = Field(
        default=0,
        ge=0,
        description="How long a producer holds a record to batch it with others (0: send"
        " as soon as the broker has answered the previous request, which under load still"
        " batches whatever arrived meanwhile). Every hop of a saga waits for it.",
    )
    handler_max_attempts: int = Field(
        default=5, ge=1, description="Attempts of a transient handler failure before the DLQ."
    )
    handler_backoff_initial_ms: int = Field(
        default=100, ge=0, description="First retry delay; doubles each attempt, with jitter."
    )
    handler_backoff_max_ms: int = Field(default=10_000, ge=0, description="Retry delay cap.")
    breaker_publish_interval_ms: int = Field(
        default=1000,
        ge=50,
        description="How often a process publishes its circuit breakers to PostgreSQL (and at"
        " once on every transition) and reads the provider faults injected there.",
    )
    replicas: str = Field(
        default="",
        description="Instances of processes `choreo run` starts, as `NAME=N,...` (e.g."
        " `payment=2,coordinator=2`, read by `choreo.replicas.parse`); others run once.",
    )
    log_level: str = Field(default="INFO", description="Log level of Choreo processes.")
    log_format: str = Field(
        default="json",
        description="`json` (lines with trace and order ids) or `text`; `choreo run` renders "
        "JSON lines readably.",
    )
    log_repeat_window_s: float = Field(
        default=10.0,
        ge=0,
        description="A warning or error repeated word for word is written once per this many"
        " seconds, the next one with how many were left out (0: every one is written).",
    )
    stop_report_s: float = Field(
        default=5.0,
        ge=0,
        description="While a process stops (SIGTERM), every this many seconds it logs what it is"
        " still waiting on, so a stop that hangs says where (0: never).",
    )

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic every consumer writes undeliverable messages to."""
        return f"{self.topic_prefix}dlq"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def describe_invalid_settings(error: ValidationError) -> str | None:
    """``error`` as the environment variables to fix, when it is a settings class's (any
    ``BaseSettings`` of Choreo's: runtime, services, coordinator, API, stack); else None.

    The values are not shown: a variable may hold a secret (a password, a key).
    """
    settings_class = next((c for c in _settings_classes() if c.__name__ == error.title), None)
    if settings_class is None:
        return None
    problems = [
        f"  {_variables(settings_class, e['loc'])}: {e['msg']}"
        for e in error.errors()
        # A default computed from other settings is not called once one of them is invalid.
        if e["type"] != "default_factory_not_called"
    ]
    return "\n".join(["invalid configuration in the environment:", *problems])


def _variables(settings_class: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable(s) a setting is read from: its name with the class's prefix,
    or (a field with aliases, whose error names one alias) each of its aliases."""
    name = str(loc[0]) if loc else "*"
    if name in settings_class.model_fields:
        return (str(settings_class.model_config.get("env_prefix", "")) + name).upper()
    for field in settings_class.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices) and name in alias.choices:
            return " or ".join(str(choice) for choice in alias.choices)
    return name


def _settings_classes() -> list[type[BaseSettings]]:
    found: list[type[BaseSettings]] = []
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        for subclass in pending.pop().__subclasses__():
            found.append(subclass)
            pending.append(subclass)
    return found
