"""Apache Kafka in KRaft mode, from the Maven Central jars on the machine's JDK."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import string
import uuid
from pathlib import Path

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
from events.settings import Settings


class Kafka:
    """Single-node Kafka in KRaft mode from the Maven Central jars, on the machine's JDK."""

    name = "kafka"

    def __init__(self, settings: Settings, stack: StackSettings) -> None:
        self.settings = settings
        self.stack = stack
        self.external = "KAFKA_BOOTSTRAP_SERVERS" in os.environ
        self.home = settings.state_dir / "kafka"
        self.libs = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
        self.daemon = Daemon("kafka", self.home)

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
        return [
            "java",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{INFRA / 'kafka' / 'log4j.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def start(self, log: Log) -> None:
        if self.external or self.daemon.pid() is not None:
            return
        check_port_free(self.stack.kafka_port, "Kafka")
        check_port_free(self.stack.kafka_controller_port, "the Kafka controller")
        data = self.home / "data"
        config = self.home / "server.properties"
        template = string.Template((INFRA / "kafka" / "server.properties.template").read_text())
        self.home.mkdir(parents=True, exist_ok=True)
        config.write_text(
            template.substitute(
                port=self.stack.kafka_port,
                controller_port=self.stack.kafka_controller_port,
                data_dir=data,
            )
        )
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            log(f"formatting Kafka storage in {data} (cluster {cluster_id})")
            run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", config),
                what="kafka storage format",
            )
        log(f"starting Kafka {KAFKA_VERSION} (KRaft) on 127.0.0.1:{self.stack.kafka_port}")
        self.daemon.spawn(self._java("kafka.Kafka", config, heap=self.stack.kafka_heap))
        wait_until(
            lambda: self.daemon.pid() is not None and _kafka_answers(self.address),
            what="Kafka",
            timeout=self.stack.ready_timeout_s,
            log_path=self.daemon.log_file,
        )

    @property
    def address(self) -> str:
        if self.external:
            return self.settings.kafka_bootstrap_servers
        return f"127.0.0.1:{self.stack.kafka_port}"

    def stop(self, log: Log) -> None:
        if not self.external:
            self.daemon.terminate(log, timeout=60)

    def status(self) -> ComponentStatus:
        pid = None if self.external else self.daemon.pid()
        running = _kafka_answers(self.address) if (self.external or pid) else False
        return ComponentStatus(
            name=self.name,
            running=running,
            external=self.external,
            address=self.address,
            pid=pid,
            log=None if self.external else str(self.daemon.log_file),
            detail=f"Apache Kafka {KAFKA_VERSION}, KRaft" if not self.external else "external",
            ports={}
            if self.external
            else {"client": self.stack.kafka_port, "controller": self.stack.kafka_controller_port},
        )


def _kafka_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if port.isdigit() and not port_open(int(port), host or "127.0.0.1"):
        return False  # not listening yet: skip the client, whose retries log errors

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
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


# --------------------------------------------------------------------------- PostgreSQL
