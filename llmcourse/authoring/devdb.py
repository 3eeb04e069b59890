"""A throw-away PostgreSQL server from Debian's package, for tests and benchmarks.

    with PostgresServer() as pg:
        url = pg.create_database("gradebook")    # postgresql://postgres@127.0.0.1:<port>/gradebook

The server listens on 127.0.0.1 only, on a free port, with its data in a fresh folder under
/tmp that is deleted on stop, and asks for a random password (other local users cannot log
in). PostgreSQL refuses to run as root, so as root it runs as the
``postgres`` user that Debian's package creates. Durability is switched off (fsync=off):
this server holds nothing worth keeping. A real course points LLMCOURSE_DB_URL at its own,
managed PostgreSQL server instead (README, "Grading past one machine").
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    """Folder with initdb and pg_ctl: Debian keeps them in /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
                   if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresUnavailable("PostgreSQL server binaries not found: install Debian package 'postgresql' "
                              "(make sysdeps does it as root)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, port: int | None = None):
        self.bindir = find_bindir()
        self.port = port or free_port()
        self.dir: Path | None = None
        self.user = "postgres"
        self.password = secrets.token_hex(16)
        self._as: dict = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root needs the 'postgres' user (Debian package "
                                          "'postgresql' creates it)") from None
            self._as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _run(self, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.bindir}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": str(self.dir)}
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], cwd=str(self.dir), env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, **self._as)
        if proc.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed (exit {proc.returncode}): {proc.stdout[-2000:]}")
        return proc

    def start(self) -> "PostgresServer":
        self.dir = Path(tempfile.mkdtemp(prefix="llmcourse-pg-"))
        try:
            self._start()
        except (PostgresUnavailable, subprocess.TimeoutExpired, OSError) as exc:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            self.stop()
            raise PostgresUnavailable(f"{exc}\n{tail}") from None
        return self

    def _start(self) -> None:
        if self._as:
            os.chown(self.dir, self._as["user"], self._as["group"])
        data, sock, pwfile = self.dir / "data", self.dir / "sock", self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as:
            os.chown(pwfile, self._as["user"], self._as["group"])
        pwfile.chmod(0o600)
        self._run("initdb", "-D", str(data), "-U", self.user, "-A", "scram-sha-256", f"--pwfile={pwfile}",
                  "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        sock.mkdir(mode=0o700)
        if self._as:
            os.chown(sock, self._as["user"], self._as["group"])
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {sock} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(data), "-l", str(self.dir / "server.log"), "-o", opts, "-w",
                  "-t", "60", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        if (self.dir / "data" / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop", timeout=60)
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
