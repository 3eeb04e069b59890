"""A cgroup v2 machine for the tests: Debian's own kernel booted by virtme-ng under QEMU.

This development machine mounts cgroup v1; a virtual machine running the Debian kernel gives
the unified hierarchy with every controller, over a read-only snapshot of this machine's file
system (the checkout and its .venv are visible inside; /tmp is writable). What it needs it
installs itself when root with apt, and caches under build/vm-cache/ (a second run downloads
nothing):
  - Debian packages qemu-system-x86, busybox-static, kmod;
  - the kernel image of the package linux-image-amd64 depends on (apt-get download +
    dpkg-deb -x), its modules linked into /lib/modules/<version> (where virtme-ng looks);
  - PyPI virtme-ng (pinned) in a tool venv of its own.
KVM hangs on the development machine: the VM runs under software emulation (--disable-kvm),
niced. One boot runs tests/vm_inside.py, which prints one ``VMRESULT <json>`` line per phase
(the VM's output goes to build/vm-cache/last-run.log as it comes).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "vm-cache"
VNG_VERSION = "1.42"
PACKAGES = ["qemu-system-x86", "busybox-static", "kmod"]


class Unavailable(Exception):
    """This machine cannot run the VM (the reason is the message)."""


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def ensure_packages() -> None:
    missing = [p for p in PACKAGES if _run(["dpkg", "-s", p]).returncode != 0] if shutil.which("dpkg") else PACKAGES
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(f"needs the Debian packages {' '.join(missing)} (root with apt installs them)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = _run(["apt-get", "install", "-y", "-qq", *missing], env=env)
    if r.returncode != 0:
        _run(["apt-get", "update", "-qq"], env=env)
        r = _run(["apt-get", "install", "-y", "-qq", *missing], env=env)
    if r.returncode != 0:
        raise Unavailable(f"apt-get install {' '.join(missing)} failed: {r.stderr[-500:]}")


def ensure_kernel() -> Path:
    """The Debian kernel's vmlinuz (its modules under /lib/modules/<version>)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted((CACHE / "kernel" / "boot").glob("vmlinuz-*"))
    if not found:
        if not shutil.which("apt-get"):
            raise Unavailable("no apt-get to download the Debian kernel")
        dep = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
        m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", dep)
        if not m:
            raise Unavailable(f"cannot tell which kernel linux-image-amd64 depends on: {dep[:300]}")
        r = _run(["apt-get", "download", m.group(1)], cwd=CACHE)
        debs = sorted(CACHE.glob(f"{m.group(1)}_*.deb"))
        if r.returncode != 0 or not debs:
            raise Unavailable(f"apt-get download {m.group(1)} failed: {r.stderr[-300:]}")
        (CACHE / "kernel").mkdir(exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(CACHE / "kernel")], check=True)
        found = sorted((CACHE / "kernel" / "boot").glob("vmlinuz-*"))
    vmlinuz = found[-1]
    version = vmlinuz.name[len("vmlinuz-"):]
    mods = Path("/lib/modules") / version
    if not mods.exists():
        if os.geteuid() != 0:
            raise Unavailable(f"the kernel's modules must be at {mods} (root links them there)")
        mods.parent.mkdir(parents=True, exist_ok=True)
        mods.symlink_to(CACHE / "kernel" / "lib" / "modules" / version)
        _run(["depmod", version])
    return vmlinuz


def ensure_vng() -> Path:
    venv = CACHE / "vng-venv"
    vng = venv / "bin" / "vng"
    if not vng.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        r = _run([str(venv / "bin" / "pip"), "install", "--quiet", f"virtme-ng=={VNG_VERSION}"])
        if r.returncode != 0 or not vng.exists():
            raise Unavailable(f"pip install virtme-ng=={VNG_VERSION} failed: {r.stderr[-300:]}")
    return vng


def boot(command: str, timeout: int = 3000) -> tuple[dict, str, float]:
    """Boot once, run `command` as root inside; ({phase: result}, output, seconds)."""
    if not shutil.which("qemu-system-x86_64") and os.geteuid() != 0:
        raise Unavailable("QEMU (qemu-system-x86_64) is not installed and this is not root")
    ensure_packages()
    vmlinuz = ensure_kernel()
    vng = ensure_vng()
    env = dict(os.environ, PATH=f"{vng.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    log = CACHE / "last-run.log"          # the VM's output as it comes (watch it: tail -f)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(["nice", "-n", "10", str(vng), "--disable-kvm", "--run", str(vmlinuz), "--memory",
                                 "2G", "--cpus", "2", "--exec", command], stdout=fh, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            stopped = ""
        except subprocess.TimeoutExpired:
            stopped = f"\n[the VM ran past {timeout} s and was stopped]"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)     # vng, virtme-run and QEMU: none outlives the run
            except ProcessLookupError:
                pass
            proc.wait()
    out = log.read_text(errors="replace") + stopped
    secs = time.perf_counter() - t0
    results = {}
    for line in out.splitlines():
        if line.startswith("VMRESULT "):
            try:
                r = json.loads(line[len("VMRESULT "):])
                results[r["phase"]] = r
            except (ValueError, KeyError):
                pass
    if not results and ("qemu" in out.lower() and "error" in out.lower()):
        raise Unavailable(f"QEMU could not run: {out[-800:]}")
    return results, out, secs


if __name__ == "__main__":   # python tests/vm.py: boot and print what the inside reports
    res, text, secs = boot(f"cd {ROOT} && {ROOT}/.venv/bin/python tests/vm_inside.py")
    print(text[-6000:])
    print(f"VM run: {secs:.0f} s; phases: {sorted(res)}")
