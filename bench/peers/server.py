"""The Temporal CLI's development server: built once from the Go module proxy (cached like
Jaeger), started for a Temporal run on its own ports and state folder, stopped after it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from choreo.stack.base import Daemon, Log, check_port_free, port_open, run, wait_until
from events.errors import StackError
from events.settings import Settings

TEMPORAL_CLI_MODULE = "github.com/temporalio/cli/cmd/temporal"
TEMPORAL_CLI_VERSION = "v1.5.1"
"""Its go.mod has no replace directives, so ``go install`` builds it (Go >= 1.25)."""
GRPC_PORT = 17233
"""Off Temporal's default 7233, beside the stack's own ports (Kafka 19092, PostgreSQL 15432)."""
READY_TIMEOUT_S = 120.0


def find_go() -> str:
    """The Go toolchain: on PATH, or where the official tarball installs it."""
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise StackError("the Temporal CLI is built with Go (>= 1.25), which is not installed")
    return go


class TemporalDevServer:
    """``temporal server start-dev`` (SQLite persistence in a file, no web UI) for one run."""

    name = "temporal"

    def __init__(self, settings: Settings, port: int = GRPC_PORT) -> None:
        self.port = port
        self.binary = settings.cache_dir / "bin" / f"temporal-{TEMPORAL_CLI_VERSION}"
        self.daemon = Daemon("temporal", settings.state_dir / "temporal")
        self.db_file = self.daemon.home / "bench.db"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def install(self, log: Log) -> Path:
        """Build the CLI once into the cache (``go install`` into a scratch GOBIN, then
        renamed, so an interrupted build never leaves a half-written binary)."""
        if self.binary.exists():
            return self.binary
        go = find_go()
        log(f"building the Temporal CLI {TEMPORAL_CLI_VERSION} from the Go module proxy (once)")
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.binary.parent) as scratch:
            run(
                [go, "install", f"{TEMPORAL_CLI_MODULE}@{TEMPORAL_CLI_VERSION}"],
                what="go install temporal",
                env={**os.environ, "GOBIN": scratch},
            )
            (Path(scratch) / "temporal").rename(self.binary)
        return self.binary

    def start(self, log: Log) -> int:
        """Start a fresh server (its previous run's database deleted); returns its pid."""
        self.install(log)
        if self.daemon.pid() is not None:
            self.daemon.terminate(log)
        check_port_free(self.port, "the Temporal dev server")
        self.daemon.home.mkdir(parents=True, exist_ok=True)
        for leftover in self.daemon.home.glob("bench.db*"):
            leftover.unlink()
        log(f"starting the Temporal dev server on {self.address}")
        pid = self.daemon.spawn(
            [
                self.binary,
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--headless",
                "--db-filename",
                self.db_file,
                "--log-level",
                "warn",
            ]
        )
        wait_until(
            lambda: self.daemon.pid() is not None and port_open(self.port),
            what="the Temporal dev server",
            timeout=READY_TIMEOUT_S,
            log_path=self.daemon.log_file,
        )
        return pid

    def stop(self, log: Log) -> None:
        """Stop it (SIGTERM, then SIGKILL); safe to call twice."""
        self.daemon.terminate(log)


if __name__ == "__main__":
    # `make bench-peers`: build the CLI into the cache once (a no-op when it is there).
    from events.settings import get_settings

    print(TemporalDevServer(get_settings()).install(print))
