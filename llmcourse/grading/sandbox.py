"""Run one command in a sandbox: bubblewrap namespaces + seccomp + cgroup v1 limits + rlimits.

Isolation (bubblewrap, started by root through llmcourse.grading.sandbox_launch, run unprivileged):
  - bwrap itself runs as SANDBOX_HOST_UID (default 2000000000: no account, no subordinate
    id; ``LLMCOURSE_SANDBOX_UID`` changes it), so the sandbox's uid 65534 (nobody) maps to
    that host uid, never to root; all capabilities dropped; no nested user namespaces
    (--disable-userns);
  - network
    namespace (loopback only: the Jupyter kernel's ZMQ sockets live inside it), PID, IPC
    and UTS namespaces, a new session (no terminal injection), dies with its parent;
  - a seccomp filter (llmcourse.grading.seccomp): no ptrace, no new namespaces, no mounts, no
    keyrings, bpf, io_uring, kernel modules, ... ;
  - a filesystem made only of: /usr (read-only), the Python runtime and the course's virtual
    environment and package (read-only, followed through symbolic links), a private /tmp,
    /proc, /dev, the work folder /sandbox (a size-bounded tmpfs) and the result channel.
    The course root, source/, the gradebook, the exchange and every other submission are
    simply not there;
  - no file descriptor of the grader inside: bwrap's stdin, stdout and stderr are /dev/null
    (its pid 1 holds nothing else); results come back over a Unix socket that the program
    connects to first (``LLMCOURSE_CHANNEL``), after which the grader stops listening, so
    only that process holds the connection.
Limits:
  - memory (resident), processes, CPU share: cgroup v1 or v2, whichever this machine has, as root
    or in a subtree delegated to the grading user (llmcourse.grading.cgroups: the backends, the modes);
  - CPU seconds (RLIMIT_CPU), size of any file written (RLIMIT_FSIZE), open files (RLIMIT_NOFILE),
    no core dumps; wall time (the whole sandbox is killed at the deadline).
Every limit is a field of :class:`Limits`; the grader reads overrides from LLMCOURSE_LIMIT_<FIELD>
environment variables (README, "Grading safely").

Rootless (the grader is an ordinary user): bwrap runs as that user; its user namespace maps
the sandbox's uid 65534 to the grader's own uid (there is no other uid it could change to), so
the launcher neither drops privileges nor builds views (docs/threat-model.md: what that loses).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

from ..settings import setting
from . import cgroups, seccomp

CGROUP_ROOT = Path("/sys/fs/cgroup")
SANDBOX_UID = 65534                                   # the uid inside the sandbox
SANDBOX_HOST_UID = setting("LLMCOURSE_SANDBOX_UID")   # ... on the host (default 2000000000)
CHANNEL = "/run/llmcourse/channel"                    # the result socket, inside


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
        """The defaults (llmcourse.settings), then any LLMCOURSE_LIMIT_<FIELD> set, then `overrides`."""
        values = {f.name: setting(f"LLMCOURSE_LIMIT_{f.name.upper()}") for f in fields(cls)}
        return cls(**{**values, **overrides})


class SandboxUnavailable(RuntimeError):
    pass


_MODE: cgroups.Mode | None = None


def mode(refresh: bool = False) -> cgroups.Mode:
    """This machine's grading mode (llmcourse.grading.cgroups.detect), looked up once per process."""
    global _MODE
    if _MODE is None or refresh:
        m = cgroups.detect()
        if m.usable and m.backend == "v2" and m.parent is not None:
            try:
                cgroups.prepare_v2(m.parent, fs=m.fs, privileged=m.privileged)
            except (cgroups.CgroupError, OSError) as exc:
                m.usable, m.reason = False, str(exc)
        _MODE = m
    return _MODE


def check_available(refresh: bool = False) -> cgroups.Mode:
    """The grading mode; raise SandboxUnavailable with the reason when this machine cannot sandbox."""
    if not shutil.which("bwrap"):
        raise SandboxUnavailable("bubblewrap is not installed (Debian package 'bubblewrap'; `make sysdeps`)")
    m = mode(refresh)
    if not m.usable:
        raise SandboxUnavailable(f"{m.reason}; to fix: {'; '.join(m.fix)}" if m.fix else m.reason)
    if m.needs_scope:
        raise SandboxUnavailable("the grader must run in a cgroup systemd delegates to this user: "
                                 "systemd-run --user --scope -p Delegate=yes -- <command> "
                                 "(`llmcourse grade` does so by itself)")
    if not m.privileged:
        return m
    _check_host_uid(SANDBOX_HOST_UID)
    for p in _python_runtime():
        try:
            st_mode = os.stat(p).st_mode
        except OSError as exc:
            raise SandboxUnavailable(f"cannot read {p}: {exc.strerror}") from None
        if st_mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
            raise SandboxUnavailable(f"the sandbox runs as an unprivileged uid, which cannot read {p}: make "
                                     f"the course environment world-readable (chmod -R o+rX) or install it "
                                     f"elsewhere")
    return m


def _check_host_uid(uid: int) -> None:
    """The sandbox's host uid must be nobody's: not in /etc/passwd, not a subordinate id."""
    if uid <= 0:
        raise SandboxUnavailable(f"LLMCOURSE_SANDBOX_UID={uid}: the sandbox's host uid must not be root")
    import pwd
    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = None
    if owner is not None:
        raise SandboxUnavailable(f"the sandbox's host uid {uid} belongs to the user {owner!r}: set "
                                 f"LLMCOURSE_SANDBOX_UID to a uid no account or container uses")
    for f in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(f).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                lo, n = int(parts[1]), int(parts[2])
                if lo <= uid < lo + n:
                    raise SandboxUnavailable(f"the sandbox's host uid {uid} is a subordinate id of "
                                             f"{parts[0]!r} in {f}: set LLMCOURSE_SANDBOX_UID to another uid")


def _views(paths: list[Path]) -> list[dict]:
    """For runtime folders under a folder others cannot enter: {base, paths} for sandbox_launch."""
    views: dict[str, list[str]] = {}
    for p in paths:
        blocked = None
        for folder in reversed(p.parents):          # "/" first
            if folder == Path("/"):
                continue
            try:
                if not os.stat(folder).st_mode & stat.S_IXOTH:
                    blocked = folder
                    break
            except OSError:
                break
        if blocked is not None:
            views.setdefault(str(blocked), []).append(str(p))
    # a blocked folder inside another blocked one: the outer view covers it
    bases = sorted(views, key=len)
    merged: dict[str, list[str]] = {}
    for b in bases:
        outer = next((o for o in merged if b.startswith(o.rstrip("/") + "/")), None)
        merged.setdefault(outer or b, []).extend(views[b])
    return [{"base": b, "paths": sorted(set(ps))} for b, ps in merged.items()]


@dataclass
class Result:
    returncode: int | None
    wall_s: float
    timed_out: bool
    oom_killed: bool
    stderr_tail: str
    lines: list = None         # the runner's stdout, line by line (capped at Limits.result_mb)


def remove_stale_cgroups() -> int:
    """Kill and remove cgroups left by a grader that died (their names carry its PID)."""
    return cgroups.remove_stale(mode())


def python_executable() -> str:
    """This interpreter's path with its folder's symbolic links resolved (a course whose .venv is
    a link to elsewhere): the name itself stays, so that the virtual environment still applies."""
    exe = Path(sys.executable)
    return str(Path(os.path.realpath(exe.parent)) / exe.name)


def _python_runtime() -> list[Path]:
    """Folders the sandbox needs read-only so that this interpreter and its venv work."""
    exe = Path(python_executable())
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), exe.parent.parent,
             Path(sys.executable).resolve().parent.parent}
    pkg = Path(__file__).resolve().parents[1]   # the whole llmcourse package (the runner imports student/)
    paths.add(pkg)
    return sorted(paths)


def bwrap_command(argv: list[str], env: dict[str, str], disk_mb: int = 512,
                  ro_files: dict[str, Path] | None = None, channel_dir: Path | None = None,
                  seccomp_fd: int | None = None) -> list[str]:
    cmd = [shutil.which("bwrap") or "/usr/bin/bwrap", "--unshare-user", "--disable-userns",
           "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
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
    if channel_dir is not None:
        cmd += ["--ro-bind", str(channel_dir), str(Path(CHANNEL).parent)]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    # the work folder: a tmpfs of bounded size
    cmd += ["--size", str(disk_mb * 1024 * 1024), "--tmpfs", "/sandbox", "--chdir", "/sandbox", "--clearenv"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    return cmd + ["--"] + argv


def base_env() -> dict[str, str]:
    return {
        "HOME": "/tmp/home", "PATH": f"{Path(python_executable()).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/mpl", "JUPYTER_CONFIG_DIR": "/tmp/jupyter/config",
        "JUPYTER_DATA_DIR": "/tmp/jupyter/data", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter/runtime",
        "IPYTHONDIR": "/tmp/ipython", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1", "TQDM_DISABLE": "1", "LLMCOURSE_IN_SANDBOX": "1",
        "LLMCOURSE_CHANNEL": CHANNEL,
    }


def _seccomp_fd() -> int | None:
    """A file descriptor that reads the seccomp program (a pipe: bwrap reads it once)."""
    prog = seccomp.program()
    if prog is None:
        return None
    r, w = os.pipe()
    os.write(w, prog)    # a few hundred bytes: fits in the pipe's buffer
    os.close(w)
    return r


def run(workdir: Path | None, argv: list[str], limits: Limits, env: dict[str, str] | None = None,
        stdin_bytes: bytes | None = None, ro_files: dict[str, Path] | None = None,
        diagnose: list[str] | None = None) -> Result:
    """Run argv in the sandbox; blocks until it is done or killed.

    The program reads `stdin_bytes` from, and writes its result lines to, the Unix socket
    at LLMCOURSE_CHANNEL (the first connection only). `workdir` is unused (the work folder
    is a fresh tmpfs; kept for callers). `diagnose`: a command run the same way, with its
    stderr kept, when the program never connected (bwrap's and Python's start-up errors
    would otherwise be lost: the sandbox's stderr is /dev/null).
    """
    m = check_available()
    uid = SANDBOX_HOST_UID if m.privileged else os.getuid()
    env_all = base_env()
    env_all.update(env or {})
    run_dir = Path(tempfile.mkdtemp(prefix="llmcourse-sandbox-"))
    lines: list[bytes] = []
    state = {"connected": False}
    try:
        chan_dir = run_dir / "channel"
        chan_dir.mkdir(mode=0o700)
        if m.privileged:
            os.chown(run_dir, 0, 0)
            os.chown(chan_dir, uid, uid)
        os.chmod(run_dir, 0o711)
        files = {}
        for i, (dest, src) in enumerate((ro_files or {}).items()):   # copies the sandbox's uid can read
            try:
                if Path(src).is_file() and not Path(src).is_symlink():
                    copy = run_dir / f"ro-{i}"
                    shutil.copyfile(src, copy)
                    os.chmod(copy, 0o644)
                    files[dest] = copy
            except OSError:
                pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock_path = chan_dir / "channel"
        listener.bind(str(sock_path))
        if m.privileged:
            os.chown(sock_path, uid, uid)
        os.chmod(sock_path, 0o600)
        listener.listen(1)
        listener.settimeout(0.2)
        res = _run(argv, limits, env_all, stdin_bytes, files, chan_dir, listener, lines, state, mode=m)
        if not state["connected"] and diagnose and not res.timed_out:
            diag = _run(diagnose, limits, env_all, None, files, chan_dir, None, [], {}, keep_stderr=True, mode=m)
            res.stderr_tail = diag.stderr_tail or res.stderr_tail
        return res
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _run(argv, limits: Limits, env_all, stdin_bytes, files, chan_dir, listener, lines, state,
         keep_stderr: bool = False, mode: cgroups.Mode | None = None) -> Result:
    m = mode or check_available()
    cg = cgroups.create(m, limits)
    sec_fd = _seccomp_fd()
    size = limits.file_mb * 1024 * 1024
    launch = {"cgroup_procs": [str(f) for f in cg.procs_files()],
              "uid": SANDBOX_HOST_UID if m.privileged else None,
              "rlimits": {"RLIMIT_CPU": limits.cpu_s, "RLIMIT_FSIZE": size, "RLIMIT_NOFILE": limits.nofile,
                          "RLIMIT_CORE": 0},
              "views": _views(_python_runtime()) if m.privileged else []}

    start = time.perf_counter()
    timed_out = False
    tail = b""

    def serve():
        """Accept the first connection, send the input, read the result lines (capped)."""
        deadline = time.monotonic() + limits.wall_s
        conn = None
        while conn is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
        listener.close()
        try:
            os.unlink(chan_dir / "channel")
        except OSError:
            pass
        if conn is None:
            return
        state["connected"] = True
        with conn:
            conn.settimeout(None)
            try:
                if stdin_bytes:
                    conn.sendall(stdin_bytes)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            _read_lines(conn.makefile("rb"), limits, lines)

    try:
        launch["argv"] = bwrap_command(argv, env_all, limits.disk_mb, files, chan_dir, sec_fd)
        cmd = [sys.executable, "-S", "-E", str(Path(__file__).with_name("sandbox_launch.py")), json.dumps(launch)]
        fds = (sec_fd,) if sec_fd is not None else ()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL,
                                close_fds=True, pass_fds=fds, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        for fd in fds:
            os.close(fd)
        sec_fd = None
        server = threading.Thread(target=serve, daemon=True) if listener is not None else None
        if server:
            server.start()
        try:
            if keep_stderr:
                _, err = proc.communicate(timeout=limits.wall_s)
                tail = err[-4000:]
            else:
                proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            cg.kill_all()
            proc.kill()
            proc.wait()
        if server:
            server.join(timeout=10)
        rc = proc.returncode
        oom = cg.oom_killed()
    finally:
        if sec_fd is not None:
            os.close(sec_fd)
        cg.remove()
    return Result(returncode=rc, wall_s=time.perf_counter() - start, timed_out=timed_out,
                  oom_killed=oom, stderr_tail=tail.decode("utf-8", "replace"), lines=lines)


def _read_lines(stream, limits: Limits, lines: list, max_line: int = 8 << 20) -> None:
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
