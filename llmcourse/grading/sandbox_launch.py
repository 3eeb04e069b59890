"""Starts bubblewrap for llmcourse.grading.sandbox: as root first, then as the sandbox's unprivileged uid.

Run as ``python -S -E sandbox_launch.py CONFIG_JSON`` (the standard library only, no site
packages: it runs before any limit would notice a slow import). In order, it:

1. joins the sandbox's cgroups and sets its rlimits (inherited by everything bwrap starts);
2. starts a new session;
3. when a folder the sandbox needs (the Python runtime, the course's environment) lies under
   a folder that other users cannot enter (say ``/root/.pyenv/...`` under ``/root``, mode
   0700), gives itself a private mount namespace in which that folder is a fresh tmpfs
   holding read-only binds of exactly the needed folders: what the sandbox's uid may reach
   is what is bound, nothing else under that folder. The host's mounts are not touched;
4. drops to the unprivileged host uid (no supplementary groups) and executes bwrap, which
   then runs unprivileged: its user namespace maps the sandbox's uid to that host uid.
Rootless (``uid`` is null, the grader is not root): steps 3 and 4 are skipped; bwrap runs as
the grading user.
"""
import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc, source, target, fstype, flags, data=None):
    def enc(s):
        return s.encode() if s is not None else None
    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def make_views(views: list) -> None:
    """Cover each folder `base` by a tmpfs holding read-only binds of `paths` (folders under it)."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    for view in views:
        base, paths = view["base"], view["paths"]
        fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in paths}
        _mount(libc, "tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for p, fd in fds.items():
            os.makedirs(p, mode=0o755, exist_ok=True)
            _mount(libc, f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            _mount(libc, None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
            os.close(fd)
        _mount(libc, None, base, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    pid = str(os.getpid())
    for f in cfg["cgroup_procs"]:
        with open(f, "w") as fh:
            fh.write(pid)
    for name, value in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    os.setsid()
    if cfg["views"]:
        make_views(cfg["views"])
    if cfg["uid"] is None:          # rootless: bwrap keeps this user's uid (its user namespace maps it)
        os.execv(cfg["argv"][0], cfg["argv"])
    uid = int(cfg["uid"])
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("could not drop to the sandbox's uid")
    os.execv(cfg["argv"][0], cfg["argv"])


if __name__ == "__main__":
    main()
