"""A throwaway local PostgreSQL cluster in a directory: what the tests and ``serve --demo`` run the billing
database on when no real one is given.

``initdb`` into the directory, ``wal_level = logical`` (logical decoding needs it), a free loopback port, the
Unix socket in the directory too (no clash with a system PostgreSQL), ``pg_ctl start``; :meth:`stop` is
``pg_ctl stop -m fast``. PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres``
system user (Debian's package creates it) through ``runuser``.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from grid.errors import ContextGridError

BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin",
            "/usr/lib/postgresql/14/bin")


def find_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    for d in BIN_DIRS:
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """A PostgreSQL cluster under ``root`` (created on :meth:`start`), reachable at :attr:`dsn`."""

    def __init__(self, root: str | Path, port: int | None = None, bin_dir: Path | None = None):
        self.root = Path(root)
        self.data = self.root / "pgdata"
        self.port = port or free_port()
        self.bin = bin_dir or find_bin()
        if self.bin is None:
            raise ContextGridError("PostgreSQL is not installed (no initdb/pg_ctl found)")
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres connect_timeout=10"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise ContextGridError(f"{args[0]} failed: {out.stderr.strip() or out.stdout.strip()}")
        return out

    def start(self) -> "LocalPostgres":
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8",
                      "--no-sync", "--locale=C")
            with open(self.data / "postgresql.conf", "a") as f:
                f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                        f"unix_socket_directories = '{self.root}'\nwal_level = logical\n"
                        "max_replication_slots = 16\nmax_wal_senders = 4\nfsync = off\n"
                        "synchronous_commit = on\nshared_buffers = 32MB\nmax_connections = 40\n")
        else:  # a restart on another port; a server the last run left behind (killed hard) is stopped first
            if (self.data / "postmaster.pid").exists():
                try:
                    self.stop()
                except ContextGridError:
                    pass
            with open(self.data / "postgresql.conf", "a") as f:
                f.write(f"\nport = {self.port}\n")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
