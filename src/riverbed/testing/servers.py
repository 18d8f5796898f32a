"""Private PostgreSQL and Redis servers for tests and examples: each in its own temp dir on a
free port, with the settings a test needs (``wal_level=logical`` for CDC, say), stopped and
removed afterwards. No Docker, no mock: the real server binaries installed on the machine.

    with PostgresServer(settings={"wal_level": "logical"}) as pg:
        psycopg.connect(pg.dsn)
    with RedisServer() as redis:
        redis.Redis(port=redis.port)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresServer", "RedisServer", "postgres_bin"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin(name: str) -> str | None:
    """Path of a PostgreSQL server program (initdb, pg_ctl, postgres), newest version first."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return candidates[-1] if candidates else None


class PostgresServer:
    """A PostgreSQL cluster made with initdb in a temp dir, trust auth on 127.0.0.1:`port`.

    As root (PostgreSQL refuses to run as root) the server runs as the ``postgres`` user.
    """

    def __init__(self, settings: Mapping[str, str | int] | None = None, user: str = "postgres", database: str = "postgres") -> None:
        self.settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": 50, **(settings or {})}
        self.user, self.database = user, database
        self.port = 0
        self.dir: Path | None = None
        self._run_as: list[str] = []

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={self.database}"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _cmd(self, *args: str) -> list[str]:
        return [*self._run_as, *args]

    def start(self, timeout: float = 60.0) -> PostgresServer:
        initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("PostgreSQL server programs (initdb, pg_ctl) are not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="riverbed-pg-"))
        data, sockets = self.dir / "data", self.dir / "sock"
        sockets.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.dir, sockets):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        subprocess.run(self._cmd(initdb, "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync"), check=True, capture_output=True, timeout=timeout)
        conf = "\n".join(f"{k} = '{v}'" for k, v in {**self.settings, "port": self.port, "listen_addresses": "127.0.0.1", "unix_socket_directories": str(sockets)}.items())
        with open(data / "postgresql.conf", "a") as f:
            f.write("\n" + conf + "\n")
        with open(data / "pg_hba.conf", "a") as f:
            f.write("\nhost replication all 127.0.0.1/32 trust\n")
        subprocess.run(self._cmd(pg_ctl, "-D", str(data), "-l", str(self.dir / "server.log"), "-w", "-t", str(int(timeout)), "start"), check=True, capture_output=True, timeout=timeout + 10)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL did not listen on {self.port}: {self.log()[-2000:]}")

    def log(self) -> str:
        path = None if self.dir is None else self.dir / "server.log"
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode: smart, fast or immediate, as pg_ctl names them)."""
        if self.dir is not None and (self.dir / "data" / "postmaster.pid").exists():
            subprocess.run(self._cmd(postgres_bin("pg_ctl") or "pg_ctl", "-D", str(self.dir / "data"), "-m", mode, "-w", "stop"), capture_output=True, timeout=60)

    def restart(self, mode: str = "fast", timeout: float = 60.0) -> None:
        assert self.dir is not None
        self.stop(mode)
        subprocess.run(self._cmd(postgres_bin("pg_ctl") or "pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"), "-w", "start"), check=True, capture_output=True, timeout=timeout)
        self._wait_ready(timeout)

    def close(self) -> None:
        self.stop("immediate")
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class RedisServer:
    """redis-server on 127.0.0.1:`port`, nothing kept on disk unless `persist` (AOF, fsync always)."""

    def __init__(self, persist: bool = False) -> None:
        self.persist = persist
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="riverbed-redis-"))
        self.port = _free_port()
        disk = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--save", "", "--appendonly", "no"]
        log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), *disk], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'server.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"redis-server did not answer on {self.port}")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
