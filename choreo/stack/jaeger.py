"""Jaeger v2 (an OpenTelemetry Collector), built once from the Go module proxy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import orjson

from choreo.stack.base import (
    INFRA,
    JAEGER_MODULE,
    JAEGER_MODULE_VERSION,
    ComponentStatus,
    Daemon,
    Log,
    StackSettings,
    check_port_free,
    run,
    wait_until,
)
from events.errors import StackError
from events.settings import Settings


class Jaeger:
    """Jaeger v2 (OTLP in, in-memory storage, query API and UI), built from the Go proxy."""

    name = "jaeger"

    def __init__(self, settings: Settings, stack: StackSettings) -> None:
        self.settings = settings
        self.stack = stack
        self.external = "OTEL_EXPORTER_OTLP_ENDPOINT" in os.environ
        self.binary = settings.cache_dir / "bin" / f"jaeger-{JAEGER_MODULE_VERSION}"
        self.daemon = Daemon("jaeger", settings.state_dir / "jaeger")

    def install(self, log: Log) -> None:
        if self.external or self.binary.exists():
            return
        go = shutil.which("go") or (
            "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
        )
        if go is None:
            raise StackError("Jaeger is built with Go (>= 1.24), which is not installed")
        log(f"building Jaeger {JAEGER_MODULE_VERSION} from the Go module proxy (minutes, once)")
        # `go install` refuses modules whose go.mod has replace directives (Jaeger's has), so the
        # module is downloaded and built as the main module, honouring its own go.mod.
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        info = run(
            [go, "mod", "download", "-json", f"{JAEGER_MODULE}@{JAEGER_MODULE_VERSION}"],
            what="go mod download",
            cwd=self.binary.parent,
        )
        module_dir = orjson.loads(info)["Dir"]
        partial = self.binary.with_suffix(".partial")
        run(
            [go, "build", "-trimpath", "-o", partial, "./cmd/jaeger"],
            what="go build jaeger",
            cwd=module_dir,
        )
        partial.rename(self.binary)

    def start(self, log: Log) -> None:
        if self.external or self.daemon.pid() is not None:
            return
        for port in self._ports().values():
            check_port_free(port, "Jaeger")
        log(
            f"starting Jaeger on 127.0.0.1 (OTLP {self.stack.jaeger_otlp_grpc_port}, "
            f"UI {self.stack.jaeger_query_port})"
        )
        self.daemon.spawn(
            [self.binary, "--config", f"file:{INFRA / 'jaeger' / 'config.yaml'}"],
            env={
                "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_otlp_grpc_port}",
                "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_otlp_http_port}",
                "JAEGER_QUERY_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_query_port}",
                "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_query_port - 1}",
                "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_health_port}",
                "JAEGER_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_metrics_port}",
            },
        )
        wait_until(
            lambda: self.daemon.pid() is not None and self._healthy(),
            what="Jaeger",
            timeout=self.stack.ready_timeout_s,
            log_path=self.daemon.log_file,
        )

    def _ports(self) -> dict[str, int]:
        return {
            "otlp-grpc": self.stack.jaeger_otlp_grpc_port,
            "otlp-http": self.stack.jaeger_otlp_http_port,
            "ui": self.stack.jaeger_query_port,
            "health": self.stack.jaeger_health_port,
            "metrics": self.stack.jaeger_metrics_port,
        }

    def _healthy(self) -> bool:
        try:
            response = httpx.get(
                f"http://127.0.0.1:{self.stack.jaeger_health_port}/status", timeout=2
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    @property
    def address(self) -> str:
        return (
            self.settings.otel_exporter_otlp_endpoint
            if self.external
            else (f"http://127.0.0.1:{self.stack.jaeger_otlp_grpc_port}")
        )

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.jaeger_query_port}"

    def stop(self, log: Log) -> None:
        if not self.external:
            self.daemon.terminate(log)

    def status(self) -> list[ComponentStatus]:
        pid = None if self.external else self.daemon.pid()
        return [
            ComponentStatus(
                name=self.name,
                running=(pid is not None and self._healthy()) if not self.external else True,
                external=self.external,
                address=self.address,
                pid=pid,
                log=None if self.external else str(self.daemon.log_file),
                detail="external (not checked)" if self.external else f"UI {self.ui_url}",
                ports={} if self.external else self._ports(),
            )
        ]


# --------------------------------------------------------------------------- the stack
