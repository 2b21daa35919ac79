"""A real PostgreSQL for tests: one throwaway cluster per session (``grid.imports.pg_instance``).

Import the fixture into a test module (``from postgres_server import postgres``); it skips with the reason
when PostgreSQL's binaries are missing (``make test`` installs Debian's ``postgresql``).
"""
from __future__ import annotations

import shutil
import tempfile
import uuid

import pytest


@pytest.fixture(scope="session")
def postgres():
    from grid.imports.pg_instance import LocalPostgres, find_bin

    if find_bin() is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl; Debian package postgresql)")
    root = tempfile.mkdtemp(prefix="cg-pg-")  # not under pytest's tmp: the postgres user must reach it
    pg = LocalPostgres(root).start()
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


def new_database(pg) -> str:
    """A fresh database on the session's cluster; its DSN."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return pg.dsn.replace("dbname=postgres", f"dbname={name}")
