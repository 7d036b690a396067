"""The local PostgreSQL's client authentication (choreo/stack/postgres.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

from choreo.stack.postgres import Postgres

MADE_BY_OLD_INITDB = """\
# TYPE  DATABASE        USER            ADDRESS                 METHOD
# "local" is for Unix domain socket connections only: trust
local   all             all                                     trust
host    all             all             127.0.0.1/32            scram-sha-256
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            scram-sha-256
"""


def cluster(tmp_path: Path) -> Postgres:
    (tmp_path / "pg_hba.conf").write_text(MADE_BY_OLD_INITDB)
    return cast(Postgres, SimpleNamespace(data=tmp_path))


def test_the_unix_socket_asks_for_a_password_like_tcp(tmp_path: Path):
    postgres = cluster(tmp_path)
    assert Postgres._password_local_auth(postgres) is True
    hba = (tmp_path / "pg_hba.conf").read_text().splitlines()
    local = [line.split() for line in hba if line.startswith("local")]
    assert [fields[-1] for fields in local] == ["scram-sha-256", "scram-sha-256"]
    assert hba[1].endswith("trust")  # a comment stays as it was
    assert [line for line in hba if line.startswith("host")] == [
        line for line in MADE_BY_OLD_INITDB.splitlines() if line.startswith("host")
    ]
    assert Postgres._password_local_auth(postgres) is False  # nothing left to change
