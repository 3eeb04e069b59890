"""The sandbox's seccomp filter: a small classic-BPF program, assembled here, no library needed.

bubblewrap's ``--seccomp FD`` loads a compiled cBPF program (what libseccomp's
``seccomp_export_bpf`` writes) just before it starts the command; every process in the
sandbox then runs under it and cannot remove it. The program is a deny list on top of
what the namespaces already forbid: system calls that a notebook never needs and that are
the usual way out of a container or into the kernel's attack surface.

- denied with EPERM: ptrace and cross-process memory access, kernel keyrings, bpf,
  perf events, userfaultfd, io_uring, new namespaces (unshare, setns, and clone with any
  CLONE_NEW* flag), every mount call, chroot / pivot_root, swap, reboot, kexec, kernel
  modules, accounting, quotas, handle-based opens, raw I/O ports, setting the clocks,
  the kernel log, vhangup, fanotify, and the TIOCSTI ioctl (typing into a terminal);
- clone3 answers ENOSYS, so that the C library falls back to clone, whose flags a cBPF
  filter can read (clone3 passes them in memory it cannot see);
- the 32-bit x32 ABI answers ENOSYS; any other architecture than the one the program was
  built for kills the process (a 32-bit syscall table would bypass the numbers below).

Only x86_64 has a table here; elsewhere :func:`program` returns None and the sandbox runs
without seccomp (its namespaces and limits are unchanged) and says so.
"""
from __future__ import annotations

import errno
import platform
import struct

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

CLONE_NEW_FLAGS = (0x00000080      # CLONE_NEWTIME
                   | 0x00020000    # CLONE_NEWNS
                   | 0x02000000    # CLONE_NEWCGROUP
                   | 0x04000000    # CLONE_NEWUTS
                   | 0x08000000    # CLONE_NEWIPC
                   | 0x10000000    # CLONE_NEWUSER
                   | 0x20000000    # CLONE_NEWPID
                   | 0x40000000)   # CLONE_NEWNET
TIOCSTI = 0x5412

# x86_64 system call numbers (linux/arch/x86/entry/syscalls/syscall_64.tbl)
X86_64 = {
    "ioctl": 16, "clone": 56, "ptrace": 101, "syslog": 103, "personality": 135, "vhangup": 153,
    "pivot_root": 155, "adjtimex": 159, "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165,
    "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "nfsservctl": 180, "lookup_dcookie": 212,
    "clock_settime": 227, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "unshare": 272, "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "clone3": 435, "pidfd_getfd": 438, "mount_setattr": 442, "quotactl_fd": 443,
}

DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
          "add_key", "request_key", "keyctl", "bpf", "perf_event_open", "userfaultfd",
          "io_uring_setup", "io_uring_enter", "io_uring_register",
          "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
          "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
          "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
          "init_module", "finit_module", "delete_module", "acct", "quotactl", "quotactl_fd",
          "name_to_handle_at", "open_by_handle_at", "lookup_dcookie", "iopl", "ioperm",
          "clock_settime", "settimeofday", "adjtimex", "clock_adjtime", "syslog", "vhangup",
          "fanotify_init", "nfsservctl")


def _errno(code: int) -> int:
    return _RET_ERRNO | code


class _Asm:
    """A tiny assembler: instructions with jumps to labels, resolved to cBPF's relative offsets."""

    def __init__(self):
        self.ins: list[tuple] = []
        self.labels: dict[str, int] = {}

    def op(self, code, k=0, jt=None, jf=None):
        self.ins.append((code, jt, jf, k))

    def label(self, name):
        self.labels[name] = len(self.ins)

    def bytes(self) -> bytes:
        out = b""
        for i, (code, jt, jf, k) in enumerate(self.ins):
            def rel(target, i=i):
                if target is None:
                    return 0
                off = self.labels[target] - i - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"jump from {i} to {target} out of range")
                return off
            out += struct.pack("=HBBI", code, rel(jt), rel(jf), k)
        return out


def program(machine: str | None = None) -> bytes | None:
    """The filter as bytes for bwrap --seccomp, or None on an architecture without a table here."""
    machine = machine or platform.machine()
    if machine not in ("x86_64", "amd64", "AMD64"):
        return None
    nr = X86_64
    a = _Asm()
    a.op(_LD_W_ABS, 4)                                  # seccomp_data.arch
    a.op(_JEQ_K, AUDIT_ARCH_X86_64, jt="arch_ok", jf="kill")
    a.label("arch_ok")
    a.op(_LD_W_ABS, 0)                                  # seccomp_data.nr
    a.op(_JGE_K, X32_SYSCALL_BIT, jt="enosys", jf="next0")
    a.label("next0")
    a.op(_JEQ_K, nr["clone"], jt="clone", jf="next1")
    a.label("next1")
    a.op(_JEQ_K, nr["clone3"], jt="enosys", jf="next2")
    a.label("next2")
    a.op(_JEQ_K, nr["ioctl"], jt="ioctl", jf="next3")
    a.label("next3")
    for i, name in enumerate(DENIED):
        a.op(_JEQ_K, nr[name], jt="eperm", jf=f"d{i}")
        a.label(f"d{i}")
    a.op(_RET_K, RET_ALLOW)
    a.label("clone")
    a.op(_LD_W_ABS, 16)                                 # args[0], low 32 bits: the flags
    a.op(_JSET_K, CLONE_NEW_FLAGS, jt="eperm", jf="allow")
    a.label("ioctl")
    a.op(_LD_W_ABS, 24)                                 # args[1], low 32 bits: the request
    a.op(_JEQ_K, TIOCSTI, jt="eperm", jf="allow")
    a.label("allow")
    a.op(_RET_K, RET_ALLOW)
    a.label("eperm")
    a.op(_RET_K, _errno(errno.EPERM))
    a.label("enosys")
    a.op(_RET_K, _errno(errno.ENOSYS))
    a.label("kill")
    a.op(_RET_K, RET_KILL_PROCESS)
    return a.bytes()


def decode(prog: bytes) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) of every instruction: for tests and for reading the program."""
    return [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]


def run(prog: bytes, nr_: int, arch: int = AUDIT_ARCH_X86_64, args: tuple = (0,) * 6) -> int:
    """Interpret the program on one system call (what the kernel would return): for tests."""
    data = struct.pack("=iIQ6Q", nr_, arch, 0, *args)
    ins = decode(prog)
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = ins[pc]
        if code == _LD_W_ABS:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == _RET_K:
            return k
        else:
            hit = {_JEQ_K: acc == k, _JGE_K: acc >= k, _JSET_K: bool(acc & k)}[code]
            pc += 1 + (jt if hit else jf)
