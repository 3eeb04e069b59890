"""Run one command in a sandbox: bubblewrap namespaces + cgroup v1 limits + rlimits.

Isolation (bubblewrap, run by root):
  - new user namespace, mapped to uid/gid 65534 (nobody) inside, all capabilities dropped;
  - new network namespace (loopback only: the Jupyter kernel's ZMQ sockets live inside it),
    new PID, IPC and UTS namespaces, a new session (no terminal injection), dies with its parent;
  - a filesystem made only of: /usr (read-only), the Python runtime and the course's virtual
    environment and package (read-only), a private /tmp, /proc, /dev, and the submission's
    own work folder (read-write) at /sandbox. The course root, source/, the gradebook, the
    exchange and every other submission are simply not there.
Limits:
  - memory (resident, cgroup v1 memory.limit_in_bytes), processes (cgroup v1 pids.max);
  - CPU seconds (RLIMIT_CPU), size of any file written (RLIMIT_FSIZE), open files (RLIMIT_NOFILE),
    no core dumps; wall time (the whole sandbox is killed at the deadline).
Every limit is a field of :class:`Limits`; the grader reads overrides from LLMCOURSE_LIMIT_<FIELD>
environment variables (README, "Grading safely").
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SANDBOX_UID = 65534


@dataclass
class Limits:
    wall_s: int = 600          # the whole submission, kernel start included
    cpu_s: int = 900           # CPU seconds of any one process (RLIMIT_CPU)
    memory_mb: int = 4096      # resident memory of the whole sandbox (cgroup)
    pids: int = 256            # processes and threads of the whole sandbox (cgroup)
    file_mb: int = 64          # largest file any process may write (RLIMIT_FSIZE)
    nofile: int = 1024         # open file descriptors per process
    cell_timeout_s: int = 60   # one cell; then interrupt, then restart the kernel if it ignores that
    cell_output_kb: int = 256  # output kept per cell; the rest is dropped with a note
    disk_mb: int = 512         # the work folder is a tmpfs of this size (it also counts as memory)
    cpu_cores: float = 1.0     # CPU share of the whole sandbox (cgroup cfs quota)
    result_mb: int = 48        # results read back from the sandbox at most

    @classmethod
    def from_env(cls, **overrides) -> "Limits":
        lim = cls(**overrides)
        for f in fields(cls):
            val = os.environ.get(f"LLMCOURSE_LIMIT_{f.name.upper()}")
            if val:
                setattr(lim, f.name, int(val))
        return lim


class SandboxUnavailable(RuntimeError):
    pass


def check_available() -> None:
    """Raise SandboxUnavailable with the reason when this machine cannot sandbox."""
    if os.geteuid() != 0:
        raise SandboxUnavailable("sandboxed grading needs root (bubblewrap namespaces + cgroup limits)")
    if not shutil.which("bwrap"):
        raise SandboxUnavailable("bubblewrap is not installed (Debian package 'bubblewrap'; `make sysdeps`)")
    for ctrl in ("memory", "pids"):
        d = CGROUP_ROOT / ctrl
        if not (d / "cgroup.procs").exists() or not os.access(d, os.W_OK):
            raise SandboxUnavailable(f"cgroup v1 controller '{ctrl}' is not available at {d}")


@dataclass
class Result:
    returncode: int | None
    wall_s: float
    timed_out: bool
    oom_killed: bool
    stderr_tail: str
    lines: list = None         # the runner's stdout, line by line (capped at Limits.result_mb)


class _Cgroup:
    def __init__(self, limits: Limits):
        self.name = f"llmcourse-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.mem = CGROUP_ROOT / "memory" / self.name
        self.pids = CGROUP_ROOT / "pids" / self.name
        self.cpu = CGROUP_ROOT / "cpu" / self.name
        self.mem.mkdir()
        self.pids.mkdir()
        if (CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us").exists():
            try:
                self.cpu.mkdir()
                period = int((self.cpu / "cpu.cfs_period_us").read_text())
                (self.cpu / "cpu.cfs_quota_us").write_text(str(max(1000, int(period * limits.cpu_cores))))
            except OSError:
                self.cpu = None
        else:
            self.cpu = None
        (self.mem / "memory.limit_in_bytes").write_text(str(limits.memory_mb * 1024 * 1024))
        swap = self.mem / "memory.memsw.limit_in_bytes"
        if swap.exists():
            try:
                swap.write_text(str(limits.memory_mb * 1024 * 1024))
            except OSError:
                pass
        (self.pids / "pids.max").write_text(str(limits.pids))

    def procs_files(self):
        files = [self.mem / "cgroup.procs", self.pids / "cgroup.procs"]
        return files + ([self.cpu / "cgroup.procs"] if self.cpu else [])

    def oom_killed(self) -> bool:
        try:
            text = (self.mem / "memory.oom_control").read_text()
            for line in text.splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1]) > 0
            return False
        except OSError:
            return False

    def kill_all(self) -> None:
        _kill_cgroup_procs(self.procs_files())

    def remove(self) -> None:
        self.kill_all()
        for d in [self.mem, self.pids] + ([self.cpu] if self.cpu else []):
            for _ in range(40):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _kill_cgroup_procs(procs_files, rounds: int = 100) -> None:
    """SIGKILL every process listed in the cgroup.procs files until none is left."""
    for _ in range(rounds):
        pids: set[int] = set()
        for f in procs_files:
            try:
                pids |= {int(p) for p in Path(f).read_text().split()}
            except OSError:
                pass
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale_cgroups() -> int:
    """Kill and remove cgroups left by a grader that died (their names carry its PID)."""
    removed = 0
    for ctrl in ("memory", "pids", "cpu"):
        for d in (CGROUP_ROOT / ctrl).glob("llmcourse-*"):
            parts = d.name.split("-")
            owner = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            if owner is not None and _pid_alive(owner):
                continue
            _kill_cgroup_procs([d / "cgroup.procs"])
            try:
                d.rmdir()
                removed += 1
            except OSError:
                pass
    return removed


def _python_runtime() -> list[Path]:
    """Folders the sandbox needs read-only so that this interpreter and its venv work."""
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
             Path(sys.executable).resolve().parent.parent}
    pkg = Path(__file__).resolve().parent
    paths.add(pkg)
    return sorted(paths)


def bwrap_command(workdir: Path, argv: list[str], env: dict[str, str], disk_mb: int = 512,
                  ro_files: dict[str, Path] | None = None) -> list[str]:
    cmd = ["bwrap", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
           # the private /tmp first: binds below may live under /tmp (a checkout in /tmp)
           "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
           "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "sbin"):
        p = Path("/") / name
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.exists():
            cmd += ["--ro-bind", str(p), str(p)]
    for f in ("/etc/ld.so.cache", "/etc/localtime", "/etc/hosts", "/etc/nsswitch.conf"):
        if Path(f).exists():
            cmd += ["--ro-bind", f, f]
    for p in _python_runtime():
        cmd += ["--ro-bind", str(p), str(p)]
    for dest, src in (ro_files or {}).items():   # e.g. a prebuilt matplotlib font cache under /tmp
        if Path(src).is_file() and not Path(src).is_symlink():
            cmd += ["--ro-bind", str(src), dest]
    # the work folder: a tmpfs of bounded size; the submission's files are read-only under .input
    cmd += ["--size", str(disk_mb * 1024 * 1024), "--tmpfs", "/sandbox",
            "--ro-bind", str(workdir), "/sandbox/.input", "--chdir", "/sandbox", "--clearenv"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    return cmd + ["--"] + argv


def run(workdir: Path, argv: list[str], limits: Limits, env: dict[str, str] | None = None,
        stdin_bytes: bytes | None = None, ro_files: dict[str, Path] | None = None) -> Result:
    """Run argv inside the sandbox with workdir mounted at /sandbox. Blocks until done or killed."""
    check_available()
    workdir = Path(workdir).resolve()
    base_env = {
        "HOME": "/tmp/home", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/mpl", "JUPYTER_CONFIG_DIR": "/tmp/jupyter/config",
        "JUPYTER_DATA_DIR": "/tmp/jupyter/data", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter/runtime",
        "IPYTHONDIR": "/tmp/ipython", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1", "TQDM_DISABLE": "1", "LLMCOURSE_IN_SANDBOX": "1",
    }
    base_env.update(env or {})
    cg = _Cgroup(limits)
    procs = cg.procs_files()

    def preexec():  # runs in the child between fork and exec
        pid = str(os.getpid())
        for f in procs:
            with open(f, "w") as fh:
                fh.write(pid)
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        size = limits.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()

    start = time.perf_counter()
    timed_out = False
    err_path = workdir.parent / (workdir.name + ".stderr")
    lines: list[bytes] = []

    def read_lines(stream, max_line: int = 8 << 20):
        budget = limits.result_mb * 1024 * 1024
        partial, too_long = b"", False
        for piece in iter(lambda: stream.readline(1 << 20), b""):
            if not piece.endswith(b"\n"):      # a long line arrives in pieces
                too_long = too_long or len(partial) + len(piece) > max_line
                partial = b"" if too_long else partial + piece
                continue
            line, partial = partial + piece, b""
            if too_long:                          # drop the whole over-long line
                too_long = False
                continue
            budget -= len(line)
            if budget >= 0:                       # past the budget: keep draining, store nothing
                lines.append(line)

    try:
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(bwrap_command(workdir, argv, base_env, limits.disk_mb, ro_files), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, preexec_fn=preexec, close_fds=True)
            reader = threading.Thread(target=read_lines, args=(proc.stdout,), daemon=True)
            reader.start()
            try:
                if stdin_bytes:
                    proc.stdin.write(stdin_bytes)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                cg.kill_all()
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
        rc = proc.returncode
        oom = cg.oom_killed()
    finally:
        cg.remove()
    try:
        with open(err_path, "rb") as fh:
            fh.seek(max(0, err_path.stat().st_size - 4000))
            tail = fh.read().decode("utf-8", "replace")
        err_path.unlink()
    except OSError:
        tail = ""
    return Result(returncode=rc, wall_s=time.perf_counter() - start, timed_out=timed_out,
                  oom_killed=oom, stderr_tail=tail, lines=lines)
