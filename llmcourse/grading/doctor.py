"""`llmcourse doctor` (`make doctor`): what isolation this machine gives the grader, and how to get more.

Looks, and where it can, tries: who runs it, bubblewrap and its version, whether an
unprivileged process may create a user namespace (tried, as an unused uid when run as root),
which cgroup hierarchy is mounted with which controllers and which of them this user may use,
whether systemd (and a user manager) runs, and so which grading mode `make autograde` will
use (llmcourse.grading.cgroups) and what to do to get the full one (root, or a delegated subtree,
with memory, pids and cpu limits).
Exit status: 0 when grading can be sandboxed, 1 when it would be refused.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import cgroups

_USERNS_PROBE = ("import ctypes, os\n"
                 "os._exit(0 if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0 else 1)\n")


def bwrap_version(bwrap: str | None) -> str | None:
    if not bwrap:
        return None
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout.strip() or out.stderr.strip()).replace("bubblewrap ", "") or "unknown version"
    except (OSError, subprocess.TimeoutExpired):
        return None


def try_userns(euid: int, as_uid: int) -> tuple[bool, str]:
    """Can an unprivileged process create a user namespace here? (As root: tried as `as_uid`.)"""
    def drop():
        os.setgroups([])
        os.setresgid(as_uid, as_uid, as_uid)
        os.setresuid(as_uid, as_uid, as_uid)
    try:
        probe = ["unshare", "--user", "true"] if shutil.which("unshare") else \
            [sys.executable, "-S", "-E", "-c", _USERNS_PROBE]
        proc = subprocess.run(probe, capture_output=True,
                              timeout=20, preexec_fn=drop if euid == 0 else None, cwd="/")
    except (OSError, subprocess.TimeoutExpired, subprocess.SubprocessError) as exc:
        return False, f"could not try ({exc})"
    notes = []
    for f in ("/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/user/max_user_namespaces",
              "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        try:
            notes.append(f"{Path(f).name}={Path(f).read_text().strip()}")
        except OSError:
            pass
    who = f"as uid {as_uid}" if euid == 0 else "as this user"
    ok = proc.returncode == 0
    return ok, f"{'yes' if ok else 'NO'} (tried {who}; {', '.join(notes) or 'no sysctl knobs'})"


def cgroup_lines(fs: Path, mine: dict, euid: int) -> list[tuple[str, str]]:
    kind = cgroups.hierarchy(fs)
    rows = [("cgroup hierarchy", {"v2": f"v2 (unified) at {fs}", "v1": f"v1 under {fs}",
                                  "none": f"none usable at {fs}"}[kind])]
    if kind == "v2":
        rows.append(("  controllers (root)", " ".join(cgroups._words(fs / "cgroup.controllers")) or "none"))
        own = fs / mine.get("", "/").lstrip("/")
        rows.append(("  this process's cgroup", str(own)))
        writable = cgroups._writable(own, ("cgroup.procs", "cgroup.subtree_control")) and own != fs
        given = " ".join(cgroups._words(own / "cgroup.controllers")) or "none"
        rows.append(("  delegated to this user", f"yes, controllers: {given}" if writable and euid != 0
                     else "root needs no delegation" if euid == 0 else "no"))
    elif kind == "v1":
        mounted = sorted(d.name for d in fs.iterdir() if (d / "cgroup.procs").is_file()
                         and not (d / "cgroup.controllers").is_file()) if fs.is_dir() else []
        rows.append(("  mounted controllers", " ".join(mounted)))
        if (fs / "unified" / "cgroup.controllers").is_file():
            rows.append(("  cgroup2 at unified/", "controllers: " + (" ".join(
                cgroups._words(fs / "unified" / "cgroup.controllers")) or "none (hybrid: v1 holds them)")))
        own = {c: fs / c / mine.get(c, "/").lstrip("/") for c in cgroups.V1_CONTROLLERS if c in mounted}
        usable = [c for c, d in own.items() if cgroups._writable(d)]
        rows.append(("  writable by this user", " ".join(usable) if usable else "none"))
    return rows


def report(fs: Path = cgroups.CGROUP_FS, env=None, euid: int | None = None, bwrap: str | None | bool = True,
           self_cgroup: str | None = None, userns: tuple[bool, str] | None = None,
           systemd: bool | None = None) -> tuple[list[tuple[str, str]], cgroups.Mode, bool]:
    """(rows, mode, sandboxed?) for this machine; the arguments let tests describe another one."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    if bwrap is True:
        bwrap = shutil.which("bwrap")
    from .sandbox import SANDBOX_HOST_UID
    rows = []
    try:
        import pwd
        user = pwd.getpwuid(euid).pw_name
    except (KeyError, ImportError):
        user = "?"
    rows.append(("running as", f"{'root' if euid == 0 else 'not root'} (uid {euid}, {user})"))
    ver = bwrap_version(bwrap) if bwrap else None
    rows.append(("bubblewrap", f"{bwrap} {ver}" if bwrap else "NOT installed (Debian/Ubuntu: apt-get install "
                                                            "bubblewrap; as root `make sysdeps-grading`)"))
    if userns is None:
        userns = try_userns(euid, SANDBOX_HOST_UID)
    rows.append(("unprivileged user namespaces", userns[1]))
    mine = cgroups.own_cgroups(self_cgroup)
    rows += cgroup_lines(fs, mine, euid)
    if systemd is None:
        systemd = Path("/run/systemd/system").is_dir()
    user_mgr = cgroups.systemd_user_available(env)
    rows.append(("systemd", ("running" if systemd else "not running (no systemd delegation here)") +
                 (f"; user manager: {'yes' if user_mgr else 'no'}" if systemd or user_mgr else "")))
    mode = cgroups.detect(fs=fs, env=env, euid=euid, self_cgroup=self_cgroup)
    fixes = list(mode.fix)
    ok = mode.usable and bool(bwrap) and userns[0]
    if not bwrap:
        why = "bubblewrap is not installed"
    elif not userns[0]:
        why = "unprivileged user namespaces are disabled (bubblewrap cannot isolate)"
        fixes.insert(0, "allow them: sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces>0; "
                        "on Ubuntu 24.04 an AppArmor profile for bwrap, or "
                        "kernel.apparmor_restrict_unprivileged_userns=0")
    elif not mode.usable:
        why = mode.reason
    else:
        why = ""
    if ok:
        text = mode.describe() + (" [re-run by `llmcourse grade` in a systemd user scope]" if mode.needs_scope else "")
        full = mode.privileged and not mode.unenforced
        rows.append(("grading mode", text + (" -- the full mode" if full else "")))
    else:
        rows.append(("grading mode", f"REFUSED: {why} (make autograde UNSAFE=1 would run stock nbgrader, "
                                     f"unsandboxed)"))
        full = False
    if not full:
        for f in fixes or ["run the grader as root on a machine with cgroup memory, pids and cpu controllers"]:
            rows.append(("to get the full mode", f))
    return rows, mode, ok


def main(argv: list[str] | None = None) -> int:
    rows, _, ok = report()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
