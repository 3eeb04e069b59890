"""Where the grading sandbox's limits come from: cgroup v1, cgroup v2, or nothing but rlimits.

:func:`detect` looks at this machine once and returns a :class:`Mode`: who grades (root, who
drops the sandbox to an unused uid, or an ordinary user, whose sandbox keeps that user's uid
behind a user namespace), which cgroup backend holds the limits and where its cgroups are
made, what is not enforced, and what to do to get the full mode. Both backends enforce the
same :class:`llmcourse.grading.sandbox.Limits` fields under the same names:

=================  =============================  =====================================
limit              cgroup v1                      cgroup v2
=================  =============================  =====================================
memory_mb          memory.limit_in_bytes (+memsw)  memory.max, memory.swap.max = 0
pids               pids.max                       pids.max
cpu_cores          cpu.cfs_quota_us / period      cpu.max "<quota> <period>"
OOM kill seen      memory.oom_control oom_kill    memory.events oom_kill
teardown           SIGKILL every pid, rmdir       cgroup.kill, rmdir
=================  =============================  =====================================

Where the cgroups are made:
  - root, v1: ``/sys/fs/cgroup/{memory,pids,cpu}/llmcourse-*`` (as before);
  - root, v2: ``/sys/fs/cgroup/llmcourse/llmcourse-*``; the controllers are enabled in the
    root's and in ``llmcourse``'s ``cgroup.subtree_control``;
  - not root: a subtree delegated to this user: ``LLMCOURSE_CGROUP_ROOT`` (set by whoever
    delegated it), else the cgroup this process already runs in when this user may write it
    (``systemd-run --user --scope -p Delegate=yes``, which the CLI does by itself where a user
    systemd runs). cgroup v2 forbids processes in a cgroup whose controllers are enabled for
    its children ("no internal processes"): the grader first moves the processes of its
    delegated cgroup into a leaf child, ``llmcourse-grader``, then enables the controllers.
  - nowhere: refused, unless asked for rlimits only (``--limits rlimits-only`` or
    ``LLMCOURSE_NO_CGROUP=1``, ``make autograde NO_CGROUP=1``); then every report says which limits were not enforced.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import setting

CGROUP_FS = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu")       # cpu is optional on v1 (as before)
V2_CONTROLLERS = ("memory", "pids", "cpu")
LEAF = "llmcourse-grader"                        # v2: where the grader's own processes go
PREFIX = "llmcourse-"
ROOT_V2_PARENT = "llmcourse"
NOT_ENFORCED_WITHOUT_CGROUP = ["memory_mb (memory of the whole sandbox)", "pids (processes and threads)",
                               "cpu_cores (CPU share)"]


class CgroupError(RuntimeError):
    pass


@dataclass
class Mode:
    """How this machine grades; ``usable`` False means grading is refused (``reason`` says why)."""
    privileged: bool                 # root: bwrap is started as an unused host uid
    backend: str                     # "v1", "v2" or "none"
    where: str = ""                  # how the cgroups were found (root / delegated / systemd scope)
    parent: Path | None = None       # v2: children are made here
    v1_parents: dict = field(default_factory=dict)   # v1: controller -> folder children are made in
    usable: bool = True
    reason: str = ""                 # why not usable, or why this is less than the full mode
    fix: list = field(default_factory=list)          # what to do to get the full mode
    unenforced: list = field(default_factory=list)   # Limits fields this mode does not enforce
    needs_scope: bool = False        # re-run under systemd-run --user --scope -p Delegate=yes
    fs: Path = CGROUP_FS             # where the hierarchy is mounted

    @property
    def name(self) -> str:
        who = "root" if self.privileged else "rootless"
        what = {"v1": "cgroup v1", "v2": "cgroup v2", "none": "rlimits only"}[self.backend]
        return f"{who}, {what}"

    def describe(self) -> str:
        text = f"sandboxed ({self.name}{', ' + self.where if self.where else ''})"
        if self.unenforced:
            text += "; NOT enforced: " + ", ".join(self.unenforced)
        return text


# ---------------------------------------------------------------------------------- detection
def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _enabled(d: Path) -> list[str]:
    """The controllers a cgroup gives its children (cgroup.subtree_control; a '+' written to a
    fake tree's plain file reads back as written)."""
    return [w.lstrip("+") for w in _words(d / "cgroup.subtree_control")]


def _write(path: Path, text: str) -> None:
    """Every write into the cgroup tree goes through here (tests record them)."""
    with open(path, "w") as fh:
        fh.write(text)


def hierarchy(fs: Path = CGROUP_FS) -> str:
    """'v2' (the unified hierarchy is mounted at fs, with controllers), 'v1' or 'none'."""
    if (fs / "cgroup.controllers").is_file():
        return "v2"
    if any((fs / c / "cgroup.procs").is_file() for c in V1_CONTROLLERS):
        return "v1"
    return "none"


def own_cgroups(text: str | None = None) -> dict[str, str]:
    """/proc/self/cgroup as {controller: path}; the v2 entry is under the key ''."""
    if text is None:
        try:
            text = Path("/proc/self/cgroup").read_text()
        except OSError:
            return {}
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for ctrl in (parts[1].split(",") if parts[1] else [""]):
            out[ctrl] = parts[2]
    return out


def _writable(d: Path, files=("cgroup.procs",)) -> bool:
    return d.is_dir() and os.access(d, os.W_OK | os.X_OK) and all(os.access(d / f, os.W_OK) for f in files)


def systemd_user_available(env=None) -> bool:
    """A user systemd manager this process can ask for a delegated scope."""
    env = os.environ if env is None else env
    run = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return shutil.which("systemd-run") is not None and Path(run, "systemd", "private").exists()


def detect(fs: Path = CGROUP_FS, env=None, euid: int | None = None, self_cgroup: str | None = None,
           rlimits_only: bool | None = None) -> Mode:
    """This machine's grading mode (arguments other than the defaults are for tests)."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    if rlimits_only is None:
        rlimits_only = setting("LLMCOURSE_NO_CGROUP", env)
    privileged = euid == 0
    kind = hierarchy(fs)
    mine = own_cgroups(self_cgroup)
    delegated = setting("LLMCOURSE_CGROUP_ROOT", env) or ""
    mode = _detect_cgroup(fs, kind, privileged, mine, delegated, env)
    mode.fs = fs
    if mode.usable or not rlimits_only:
        return mode
    return Mode(privileged=privileged, backend="none", where="asked for rlimits only",
                reason=mode.reason, fix=mode.fix, unenforced=list(NOT_ENFORCED_WITHOUT_CGROUP), fs=fs)


def _refuse(privileged, reason, fix) -> Mode:
    return Mode(privileged=privileged, backend="none", usable=False, reason=reason, fix=fix,
                unenforced=list(NOT_ENFORCED_WITHOUT_CGROUP))


def _detect_cgroup(fs, kind, privileged, mine, delegated, env) -> Mode:
    rlimit_hint = ("or, accepting that memory, processes and CPU share are not limited, grade with "
                   "rlimits only: `make autograde LIMITS=rlimits-only` (llmcourse grade --limits rlimits-only)")
    if kind == "none":
        return _refuse(privileged, f"no cgroup hierarchy with the memory and pids controllers is mounted at {fs}",
                       ["mount cgroup2 at /sys/fs/cgroup (any systemd distribution does)", rlimit_hint])
    if kind == "v1":
        return _detect_v1(fs, privileged, mine, delegated, rlimit_hint)
    return _detect_v2(fs, privileged, mine, delegated, env, rlimit_hint)


def _v1_rel(fs: Path, value: str) -> str:
    """LLMCOURSE_CGROUP_ROOT on v1: a path relative to each hierarchy, or one controller's folder."""
    p = Path(value)
    if p.is_absolute():
        try:
            rel = p.relative_to(fs)
            return "/".join(rel.parts[1:])     # drop the controller's own folder
        except ValueError:
            return value.strip("/")
    return value.strip("/")


def _detect_v1(fs, privileged, mine, delegated, rlimit_hint) -> Mode:
    missing = [c for c in ("memory", "pids") if not (fs / c / "cgroup.procs").is_file()]
    if missing:
        return _refuse(privileged, f"cgroup v1 controller(s) {', '.join(missing)} not mounted under {fs}",
                       [f"mount the {' and '.join(missing)} hierarchies, or boot with cgroup v2", rlimit_hint])
    if privileged and not delegated:
        parents = {c: fs / c for c in V1_CONTROLLERS if (fs / c / "cgroup.procs").is_file()}
        return Mode(privileged=True, backend="v1", where="root's own hierarchies", v1_parents=parents)
    how = "LLMCOURSE_CGROUP_ROOT" if delegated else "this process's own cgroups"
    parents, bad = {}, []
    for c in V1_CONTROLLERS:
        if not (fs / c / "cgroup.procs").is_file():
            continue
        rel = _v1_rel(fs, delegated) if delegated else mine.get(c, "").strip("/")
        d = fs / c / rel if rel else fs / c
        if _writable(d):
            parents[c] = d
        elif c != "cpu":
            bad.append(str(d))
    if bad:
        who = "this user" if not privileged else "root"
        return _refuse(privileged, f"not root, and no cgroup v1 subtree is delegated to {who} "
                                   f"({how}: {', '.join(bad)} not writable)",
                       ["grade as root (the full mode), or have an administrator delegate a subtree "
                        "(README, \"Grading safely\": mkdir + chown in the memory, pids and cpu hierarchies) "
                        "and set LLMCOURSE_CGROUP_ROOT", rlimit_hint])
    unenf = [] if "cpu" in parents else ["cpu_cores (CPU share)"]
    return Mode(privileged=privileged, backend="v1", where=f"delegated ({how})", v1_parents=parents,
                unenforced=unenf, fix=[] if privileged else
                ["grading as root adds a separate unused uid for student code (docs/threat-model.md)"])


def _detect_v2(fs, privileged, mine, delegated, env, rlimit_hint) -> Mode:
    if privileged and not delegated:
        have = _words(fs / "cgroup.controllers")
        missing = [c for c in ("memory", "pids") if c not in have]
        if missing:
            return _refuse(True, f"cgroup v2 at {fs} lacks the {', '.join(missing)} controller(s)",
                           ["enable them in the kernel / boot options", rlimit_hint])
        unenf = [] if "cpu" in have else ["cpu_cores (CPU share)"]
        return Mode(privileged=True, backend="v2", where=f"root, under {fs / ROOT_V2_PARENT}",
                    parent=fs / ROOT_V2_PARENT, unenforced=unenf)
    own = fs / mine.get("", "/").lstrip("/")
    if delegated:
        base = Path(delegated) if Path(delegated).is_absolute() else fs / delegated
        how = "LLMCOURSE_CGROUP_ROOT"
        if not _writable(base, ("cgroup.procs", "cgroup.subtree_control")):
            return _refuse(privileged, f"LLMCOURSE_CGROUP_ROOT={delegated}: {base} is not a cgroup v2 folder "
                                       f"this user may write (it, cgroup.procs and cgroup.subtree_control "
                                       f"must be chowned to the grader)",
                           ["README, \"Grading safely\": the administrator's commands", rlimit_hint])
        inside = own == base or base in own.parents
        if not inside:
            return _refuse(privileged, f"this process runs in {own}, outside LLMCOURSE_CGROUP_ROOT={base}: "
                                       f"cgroup v2 lets a process move others only within a subtree whose "
                                       f"cgroup.procs it may write, so the grader must be started inside it",
                           [f"as root, once per login: echo <shell pid> > {base}/cgroup.procs (README), or use "
                            f"systemd-run --user --scope -p Delegate=yes", rlimit_hint])
    else:
        base = own.parent if own.name == LEAF else own
        how = "this process's own cgroup"
        if base == fs or not _writable(base, ("cgroup.procs", "cgroup.subtree_control")):
            if systemd_user_available(env) and not setting("LLMCOURSE_IN_SCOPE", env):
                return Mode(privileged=False, backend="v2", where="systemd user scope (Delegate=yes)",
                            needs_scope=True, parent=None,
                            fix=["grading as root adds a separate unused uid for student code"])
            return _refuse(privileged, f"not root, and no cgroup v2 subtree is delegated to this user "
                                       f"({base} is not writable; no user systemd to ask for one)",
                           ["have systemd delegate the controllers to users (README, \"Grading safely\": "
                            "user@.service.d/delegate.conf), log in again, and run the grader from that "
                            "session; or have an administrator delegate a subtree and set "
                            "LLMCOURSE_CGROUP_ROOT", rlimit_hint])
    # controllers this subtree may use: those its parent enabled for it
    have = _words(base / "cgroup.controllers")
    missing = [c for c in ("memory", "pids") if c not in have]
    if missing:
        return _refuse(privileged, f"{base} ({how}) is delegated without the {', '.join(missing)} "
                                   f"controller(s) (its cgroup.controllers: {' '.join(have) or 'none'})",
                       ["enable them in the parent's cgroup.subtree_control (systemd: "
                        "Delegate=cpu cpuset io memory pids)", rlimit_hint])
    unenf = [] if "cpu" in have else ["cpu_cores (CPU share)"]
    return Mode(privileged=privileged, backend="v2", where=f"delegated ({how}: {base})", parent=base,
                unenforced=unenf,
                fix=[] if privileged else ["grading as root adds a separate unused uid for student code"])


# ----------------------------------------------------------------------------- v2 preparation
def prepare_v2(parent: Path, fs: Path = CGROUP_FS, privileged: bool = False) -> None:
    """Make `parent` ready to hold limited children: controllers enabled, no process inside.

    Root mode creates ``fs/llmcourse`` (and enables the controllers in the root cgroup, which
    the "no internal processes" rule exempts). A delegated cgroup that holds processes (the
    grader itself, in a systemd scope) has them moved into the leaf child ``llmcourse-grader``
    first: a cgroup with processes cannot enable controllers for its children.
    """
    if privileged and parent.parent == fs:
        _enable(fs, _words(fs / "cgroup.controllers"))
        parent.mkdir(exist_ok=True)
    have = _words(parent / "cgroup.controllers")
    want = [c for c in V2_CONTROLLERS if c in have]
    enabled = _enabled(parent)
    if all(c in enabled for c in want):
        return
    if parent != fs:
        procs = _words(parent / "cgroup.procs")
        if procs:
            leaf = parent / LEAF
            leaf.mkdir(exist_ok=True)
            for pid in procs:
                try:
                    _write(leaf / "cgroup.procs", pid)
                except ProcessLookupError:
                    continue
                except OSError as exc:
                    raise CgroupError(f"cannot move process {pid} out of {parent} into its leaf {leaf} "
                                      f"({exc.strerror}): cgroup v2 allows no process in a cgroup that "
                                      f"gives its children controllers") from None
    _enable(parent, want)


def _enable(d: Path, controllers) -> None:
    missing = [c for c in V2_CONTROLLERS if c in controllers and c not in _enabled(d)]
    if not missing:
        return
    try:
        _write(d / "cgroup.subtree_control", " ".join("+" + c for c in missing))
    except OSError as exc:
        raise CgroupError(f"cannot enable {', '.join(missing)} in {d}/cgroup.subtree_control: "
                          f"{exc.strerror}") from None


# ----------------------------------------------------------------------------------- cgroups
_NAME = re.compile(PREFIX + r"([0-9]+)-[0-9a-f]{12}")


def _name() -> str:
    return f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"


class CgroupV1:
    """One sandbox's cgroups in the memory, pids (and cpu) v1 hierarchies."""

    def __init__(self, limits, parents: dict):
        self.name = _name()
        self.mem = parents["memory"] / self.name
        self.pids = parents["pids"] / self.name
        self.cpu = parents["cpu"] / self.name if "cpu" in parents else None
        self.mem.mkdir()
        self.pids.mkdir()
        if self.cpu is not None and (parents["cpu"] / "cpu.cfs_quota_us").exists():
            try:
                self.cpu.mkdir()
                period = int((self.cpu / "cpu.cfs_period_us").read_text())
                (self.cpu / "cpu.cfs_quota_us").write_text(str(max(1000, int(period * limits.cpu_cores))))
            except OSError:
                self.remove_dir(self.cpu)
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

    def dirs(self):
        return [self.mem, self.pids] + ([self.cpu] if self.cpu else [])

    def procs_files(self):
        return [d / "cgroup.procs" for d in self.dirs()]

    def oom_killed(self) -> bool:
        return _count(self.mem / "memory.oom_control", "oom_kill") > 0

    def kill_all(self) -> None:
        kill_procs(self.procs_files())

    @staticmethod
    def remove_dir(d: Path) -> None:
        for _ in range(40):
            try:
                d.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs():
            self.remove_dir(d)


class CgroupV2:
    """One sandbox's cgroup in the unified hierarchy, a child of a prepared parent."""

    def __init__(self, limits, parent: Path):
        self.name = _name()
        self.dir = parent / self.name
        self.dir.mkdir()
        try:
            have = _words(self.dir / "cgroup.controllers") or _enabled(parent)
            _write(self.dir / "memory.max", str(limits.memory_mb * 1024 * 1024))
            swap = self.dir / "memory.swap.max"
            if swap.exists() or not (self.dir / "cgroup.controllers").exists():   # real tree / fake tree
                try:
                    _write(swap, "0")
                except OSError:
                    pass
            _write(self.dir / "pids.max", str(limits.pids))
            self.cpu = "cpu" in have
            if self.cpu:
                period = 100_000
                _write(self.dir / "cpu.max", f"{max(1000, int(period * limits.cpu_cores))} {period}")
        except OSError as exc:
            self.remove()
            raise CgroupError(f"cannot set the limits of {self.dir}: {exc.strerror or exc}") from None

    def dirs(self):
        return [self.dir]

    def procs_files(self):
        return [self.dir / "cgroup.procs"]

    def oom_killed(self) -> bool:
        return _count(self.dir / "memory.events", "oom_kill") > 0

    def kill_all(self) -> None:
        kill = self.dir / "cgroup.kill"
        if kill.exists():
            try:
                _write(kill, "1")
                for _ in range(100):
                    if not _words(self.dir / "cgroup.procs"):
                        return
                    time.sleep(0.02)
            except OSError:
                pass
        kill_procs(self.procs_files())

    def remove(self) -> None:
        self.kill_all()
        CgroupV1.remove_dir(self.dir)


class NoCgroup:
    """rlimits only: nothing to join, nothing counted."""

    def __init__(self, limits=None):
        pass

    def dirs(self):
        return []

    def procs_files(self):
        return []

    def oom_killed(self) -> bool:
        return False

    def kill_all(self) -> None:
        pass

    def remove(self) -> None:
        pass


def create(mode: Mode, limits):
    if mode.backend == "v1":
        return CgroupV1(limits, mode.v1_parents)
    if mode.backend == "v2":
        sub = _enabled(mode.parent)
        if not all(c in sub for c in ("memory", "pids")):
            prepare_v2(mode.parent, fs=mode.fs, privileged=mode.privileged)
        return CgroupV2(limits, mode.parent)
    return NoCgroup(limits)


def _count(path: Path, key: str) -> int:
    """A 'key value' line of a flat-keyed cgroup file (memory.events, memory.oom_control)."""
    try:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
    except (OSError, ValueError):
        pass
    return 0


def kill_procs(procs_files, rounds: int = 100) -> None:
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
            except (ProcessLookupError, PermissionError):
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


def remove_stale(mode: Mode) -> int:
    """Kill and remove cgroups left by a grader that died (their names carry its PID)."""
    if mode.backend == "v1":
        parents = list(mode.v1_parents.values())
    elif mode.backend == "v2" and mode.parent is not None and mode.parent.is_dir():
        parents = [mode.parent]
    else:
        return 0
    removed = 0
    for p in parents:
        for d in p.glob(PREFIX + "*"):
            if d.name == LEAF:
                continue
            m = _NAME.fullmatch(d.name)
            if m is None or _pid_alive(int(m.group(1))):
                continue        # not a sandbox's (a delegated subtree named llmcourse-alice), or its grader lives
            kill = d / "cgroup.kill"
            if kill.exists():
                try:
                    kill.write_text("1")
                except OSError:
                    pass
            kill_procs([d / "cgroup.procs"])
            try:
                d.rmdir()
                removed += 1
            except OSError:
                pass
    return removed


def ours(mode: Mode) -> set[str]:
    """Every sandbox cgroup now present (for tests: none must be left behind)."""
    found = set()
    dirs = list(mode.v1_parents.values()) if mode.backend == "v1" else \
        [mode.parent] if mode.backend == "v2" and mode.parent is not None else []
    for p in dirs:
        found |= {str(d) for d in Path(p).glob(PREFIX + "*") if _NAME.fullmatch(d.name)}
    return found


def in_scope_argv(argv: list[str]) -> list[str]:
    """argv re-run in a transient user scope whose cgroup systemd delegates to this user."""
    return ["systemd-run", "--user", "--scope", "--quiet", "-p", "Delegate=yes", "--", "env",
            "LLMCOURSE_IN_SCOPE=1"] + argv


def scope_works() -> bool:
    """Whether `systemd-run --user --scope` can start a command here (a user manager answers)."""
    try:
        return subprocess.run(["systemd-run", "--user", "--scope", "--quiet", "true"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
