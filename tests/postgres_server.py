"""A throwaway PostgreSQL server for the tests: Debian's `initdb` and `pg_ctl` on a temporary
folder, listening on 127.0.0.1 (a free port) and a Unix socket in that folder, with a random
password. As root (initdb refuses root) it runs as the `postgres` user through `runuser`.

Each test gets a database of its own (`create_database`), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_START_S = 120.0
COMMAND_S = 120.0
SUPERUSER = "postgres"


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: Debian's newest /usr/lib/postgresql/N/bin, else
    the PATH's."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server; `url(database)` for SQLAlchemy."""

    bin_dir: Path
    folder: Path
    port: int
    password: str

    @property
    def _as_owner(self) -> list[str]:
        # initdb and postgres refuse to run as root.
        return ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []

    @classmethod
    def start(cls, bin_dir: Path) -> PostgresServer:
        """initdb a fresh cluster in a private temporary folder and start it."""
        # Under /tmp, not pytest's tmp_path: the server's user must be able to reach the folder.
        folder = Path(tempfile.mkdtemp(prefix="deepfake-postgres-"))
        server = cls(bin_dir, folder, _free_port(), secrets.token_hex(16))
        try:
            if os.geteuid() == 0:
                shutil.chown(folder, SUPERUSER, SUPERUSER)
            password_file = folder / "password"
            password_file.write_text(server.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(password_file, SUPERUSER, SUPERUSER)
            password_file.chmod(0o600)
            server._run(
                "initdb",
                "-D",
                str(folder / "data"),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(password_file),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            )
            password_file.unlink()
            options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder}"
            server._run(
                "pg_ctl",
                "-D",
                str(folder / "data"),
                "-l",
                str(folder / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(int(SERVER_START_S)),
                "start",
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return server

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as_owner, str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_S,
            cwd=self.folder,
        )
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(statement)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"history_{secrets.token_hex(6)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database`, whoever is still connected to it."""
        name = url.rsplit("/", 1)[-1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
