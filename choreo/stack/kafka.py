"""Apache Kafka in KRaft mode, from the Maven Central jars on the machine's JDK: one node, or a
cluster of N (``choreo stack up --brokers 3``).

Every node is a broker and a controller in one JVM, and every node votes in the controller
quorum, so a cluster of three survives the loss of any one node, the quorum's leader included.
Node ``n`` listens on ``CHOREO_KAFKA_PORT + 2(n-1)`` (its controller on
``CHOREO_KAFKA_CONTROLLER_PORT + 2(n-1)``) and keeps its data, log and pid file in
``<state>/kafka`` (node 1) or ``<state>/kafka-<n>``. A cluster's size is fixed when its storage
is formatted; it is read back from node 1's configuration, so ``status`` and ``down`` need no
flag. ``up`` records the nodes' client addresses in ``<state>/kafka/bootstrap.servers``, where
the settings find them (:class:`events.settings.Settings`).

A secured cluster (``choreo stack up --secure``, ``CHOREO_KAFKA_SECURE``; fixed at format time,
like the size) listens for clients with SASL_SSL (SCRAM-SHA-512; the brokers talk to each other
the same way, as the administrator), authorizes with KRaft's ``StandardAuthorizer`` (no ACL, no
access) and requires the local CA's certificate from whoever connects to a controller
(:mod:`choreo.stack.tls`). The administrator ``choreo-admin`` is created when the storage is
formatted; the processes' users and ACLs afterwards (:mod:`choreo.kafka_access`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import shutil
import string
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from choreo.stack.base import (
    INFRA,
    KAFKA_VERSION,
    ComponentStatus,
    Daemon,
    Log,
    StackSettings,
    apt_install,
    check_port_free,
    port_open,
    run,
    wait_until,
)
from choreo.stack.quorum import Quorum, describe_quorum
from choreo.stack.tls import BROKER_PRINCIPAL, TlsFiles, ensure_tls
from events.errors import StackError
from events.security import ADMIN_USER, kafka_options, kafka_user_password
from events.settings import BOOTSTRAP_FILE, Settings

PLAIN_LISTENERS = """\
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"""
SECURE_LISTENERS = """\
listeners=SASL_SSL://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:${port}
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required \
username="${admin}" password="${admin_password}";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=${keystore}
ssl.truststore.type=PEM
ssl.truststore.location=${truststore}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:${admin};${broker_principal}"""


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (broker + controller) of the local cluster."""

    node_id: int
    port: int
    controller_port: int
    home: Path

    @property
    def name(self) -> str:
        """``kafka`` for node 1, ``kafka-<n>`` for the others."""
        return "kafka" if self.node_id == 1 else f"kafka-{self.node_id}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def daemon(self) -> Daemon:
        return Daemon(self.name, self.home)


def cluster_nodes(settings: Settings, stack: StackSettings, size: int) -> list[KafkaNode]:
    """The ``size`` nodes of the local cluster: ports, and homes under the state folder
    (absolute: a node runs in its home, and its configuration names its data by path)."""
    state = settings.state_dir.resolve()
    return [
        KafkaNode(
            node_id=n,
            port=stack.kafka_port + 2 * (n - 1),
            controller_port=stack.kafka_controller_port + 2 * (n - 1),
            home=state / ("kafka" if n == 1 else f"kafka-{n}"),
        )
        for n in range(1, size + 1)
    ]


def formatted_secure(settings: Settings) -> bool | None:
    """Whether the cluster in the state folder was formatted secured (None: there is none)."""
    config = settings.state_dir / "kafka" / "server.properties"
    if formatted_size(settings) is None:
        return None
    return "SASL_SSL://" in config.read_text()


def formatted_size(settings: Settings) -> int | None:
    """How many nodes the cluster in the state folder was formatted with (the voters in node
    1's configuration), or None when there is none yet."""
    home = settings.state_dir / "kafka"
    if (
        not (home / "data" / "meta.properties").exists()
        or not (home / "server.properties").exists()
    ):
        return None
    for line in (home / "server.properties").read_text().splitlines():
        if line.startswith("controller.quorum.voters="):
            return len(line.split("=", 1)[1].split(","))
    return None


class Kafka:
    """The local Kafka, or an external one named by ``KAFKA_BOOTSTRAP_SERVERS``.

    Its size is the formatted cluster's when there is one, else ``brokers`` (``choreo stack up
    --brokers``), else ``CHOREO_KAFKA_BROKERS``; :meth:`start` refuses a ``brokers`` that
    differs from the formatted size.
    """

    name = "kafka"

    def __init__(
        self, settings: Settings, stack: StackSettings, brokers: int | None = None
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.external = "KAFKA_BOOTSTRAP_SERVERS" in os.environ
        self.libs = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
        self.formatted = formatted_size(settings)
        self.requested = brokers
        self.size = self.formatted or brokers or stack.kafka_brokers
        self.nodes = cluster_nodes(settings, stack, self.size)
        self.formatted_secure = formatted_secure(settings)
        self.secure = (
            settings.kafka_secure if self.formatted_secure is None else self.formatted_secure
        )

    @property
    def client_settings(self) -> Settings:
        """The settings of a client of this Kafka (the administrator, on a secured cluster)."""
        return self.settings.model_copy(
            update={"kafka_bootstrap_servers": self.address, "kafka_secure": self.secure}
        )

    def install(self, log: Log) -> None:
        if self.external or (self.libs / ".complete").exists():
            return
        if shutil.which("java") is None:
            apt_install(["openjdk-17-jre-headless"], log)
        if shutil.which("mvn") is None:
            apt_install(["maven"], log)
        log(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {self.libs}")
        self.libs.mkdir(parents=True, exist_ok=True)
        run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                INFRA / "kafka" / "pom.xml",
                f"-Dkafka.version={KAFKA_VERSION}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            what="maven fetch of the Kafka broker",
        )
        (self.libs / ".complete").write_text(KAFKA_VERSION)

    def _java(self, main: str, *args: str | Path, heap: str = "256m") -> list[str | Path]:
        options = self.stack.kafka_jvm_options.split()
        return [
            "java",
            f"-Xmx{heap}",
            *(options or ["-XX:+UseG1GC"]),
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{INFRA / 'kafka' / 'log4j.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def start(self, log: Log) -> None:
        """Start the nodes not running, then wait until every node is a registered broker.

        Every node is spawned before any is waited for: a quorum of three elects no leader,
        and no broker registers, until two controllers run.
        """
        if self.external:
            return
        if self.requested is not None and self.formatted not in (None, self.requested):
            raise StackError(
                f"the Kafka in {self.settings.state_dir} is a cluster of {self.formatted}"
                f" node(s), not {self.requested}: `choreo stack down` and delete its kafka*"
                " folders there to start another size"
            )
        if self.formatted_secure not in (None, self.settings.kafka_secure):
            mode = "secured" if self.formatted_secure else "plaintext"
            raise StackError(
                f"the Kafka in {self.settings.state_dir} is {mode}: `choreo stack down` and"
                " delete its kafka* folders there to start it the other way"
            )
        stopped = [node for node in self.nodes if node.daemon.pid() is None]
        for node in stopped:
            check_port_free(node.port, f"Kafka node {node.node_id}")
            check_port_free(node.controller_port, f"the Kafka controller of node {node.node_id}")
        cluster_id = new_cluster_id()
        # Each format is a JVM of its own: run them side by side.
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda node: self._configure(node, cluster_id, log), stopped))
        for node in stopped:
            log(f"starting Kafka {KAFKA_VERSION} (KRaft) node {node.node_id} on {node.address}")
            node.daemon.spawn(self._java("kafka.Kafka", node.config, heap=self.stack.kafka_heap))
        client = self.client_settings
        for node in self.nodes:
            wait_until(
                functools.partial(_node_answers, node, client),
                what=f"Kafka node {node.node_id}",
                timeout=self.stack.ready_timeout_s,
                log_path=node.daemon.log_file,
            )
        wait_until(
            lambda: _broker_count(client) == self.size,
            what=f"a Kafka cluster of {self.size} brokers",
            timeout=self.stack.ready_timeout_s,
            log_path=self.nodes[0].daemon.log_file,
        )
        bootstrap_file = self.settings.state_dir / BOOTSTRAP_FILE
        bootstrap_file.parent.mkdir(parents=True, exist_ok=True)
        bootstrap_file.write_text(self.address + "\n")

    def _configure(self, node: KafkaNode, cluster_id: str, log: Log) -> None:
        """Write the node's configuration; format its storage the first time (all nodes of a
        new cluster with one cluster id)."""
        template = string.Template((INFRA / "kafka" / "server.properties.template").read_text())
        node.home.mkdir(parents=True, exist_ok=True)
        replication = min(3, self.size)
        node.config.write_text(
            string.Template(template.safe_substitute(listeners=self._listeners())).substitute(
                node_id=node.node_id,
                voters=",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes),
                port=node.port,
                controller_port=node.controller_port,
                data_dir=node.data,
                replication=replication,
                min_insync=2 if replication >= 3 else 1,
            )
        )
        node.config.chmod(0o600)  # a secured node's holds the administrator's password
        if not (node.data / "meta.properties").exists():
            log(f"formatting Kafka storage of node {node.node_id} in {node.data} ({cluster_id})")
            scram: list[str] = []
            if self.secure:  # the administrator exists before the first broker starts
                password = kafka_user_password(self.settings, ADMIN_USER)
                scram = ["-S", f"SCRAM-SHA-512=[name={ADMIN_USER},password={password}]"]
            run(
                self._java(
                    "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", node.config,
                    *scram,
                ),
                what="kafka storage format",
            )  # fmt: skip

    def _listeners(self) -> str:
        """The node configuration's listener lines: plaintext or secured (making the TLS
        material the first time)."""
        if not self.secure:
            return PLAIN_LISTENERS
        tls: TlsFiles = ensure_tls(self.settings.state_dir)
        return string.Template(SECURE_LISTENERS).safe_substitute(
            admin=ADMIN_USER,
            admin_password=kafka_user_password(self.settings, ADMIN_USER),
            keystore=tls.broker,
            truststore=tls.ca,
            broker_principal=BROKER_PRINCIPAL,
        )

    @property
    def address(self) -> str:
        """The bootstrap servers: every node's client address."""
        if self.external:
            return self.settings.kafka_bootstrap_servers
        return ",".join(node.address for node in self.nodes)

    def stop(self, log: Log) -> None:
        if self.external:
            return
        # SIGTERM to every node first: stopped one by one, the last ones would have no
        # controller quorum left to acknowledge their controlled shutdown, and wait for it.
        for node in self.nodes:
            node.daemon.signal_stop()
        for node in reversed(self.nodes):
            node.daemon.terminate(log, timeout=60)

    def status(self) -> list[ComponentStatus]:
        """One row per node; in a cluster, which node leads the controller quorum."""
        if self.external:
            running = _kafka_answers(self.settings)
            return [ComponentStatus(self.name, running, True, self.address, detail="external")]
        client = self.client_settings
        quorum = _quorum(client) if self.size > 1 else None
        statuses = []
        for node in self.nodes:
            pid = node.daemon.pid()
            role = ""
            if quorum is not None:
                role = ", controller leader" if quorum.leader_id == node.node_id else ", voter"
            where = "" if self.size == 1 else f", node {node.node_id} of {self.size}"
            where += ", SASL_SSL + ACLs" if self.secure else ""
            statuses.append(
                ComponentStatus(
                    name=node.name,
                    running=_kafka_answers(_at(client, node)) if pid else False,
                    external=False,
                    address=node.address,
                    pid=pid,
                    log=str(node.daemon.log_file),
                    detail=f"Apache Kafka {KAFKA_VERSION}, KRaft{where}{role}",
                    ports={"client": node.port, "controller": node.controller_port},
                )
            )
        return statuses


def _at(client: Settings, node: KafkaNode) -> Settings:
    """``client`` connecting to ``node`` alone."""
    return client.model_copy(update={"kafka_bootstrap_servers": node.address})


def _node_answers(node: KafkaNode, client: Settings) -> bool:
    """Whether the node answers; raises if its process has exited (no use waiting on)."""
    if node.daemon.pid() is None:
        log = node.daemon.log_file
        tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
        raise StackError(f"Kafka node {node.node_id} exited; the end of {log}:\n" + "\n".join(tail))
    return _kafka_answers(_at(client, node))


def _quorum(client: Settings) -> Quorum | None:
    """The controller quorum, or None when no node answers."""
    options = kafka_options(client)
    try:
        return asyncio.run(
            describe_quorum(options["bootstrap_servers"], timeout_ms=3000, options=options)
        )
    except StackError:
        return None


def _kafka_answers(client: Settings) -> bool:
    host, _, port = client.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    if port.isdigit() and not port_open(int(port), host or "127.0.0.1"):
        return False  # not listening yet: skip the client, whose retries log errors

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(**kafka_options(client), request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    return asyncio.run(probe())


def _broker_count(client: Settings) -> int:
    """How many brokers the cluster's metadata lists (0 when it does not answer)."""

    async def count() -> int:
        admin = AIOKafkaAdminClient(**kafka_options(client), request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return len(cluster["brokers"])
        except Exception:
            return 0
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    return asyncio.run(count())


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64, never starting with ``-`` (the
    storage tool would read it as an option; Kafka's own ``Uuid.randomUuid`` avoids it too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id
