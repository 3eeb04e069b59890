"""Runs inside the cgroup v2 virtual machine (tests/vm.py), as root: the grading sandbox's limit
checks and a small class graded end to end, first as root, then as an ordinary user (uid
54321, no account) in a subtree root delegated to it. Prints one ``VMRESULT <json>`` line
per phase; tests/test_vm_cgroup_v2.py decides.

Phases: root-limits, rootless-limits, root-class, rootless-class (each also says whether every
cgroup it made is gone), then cleanup (the delegated subtree removed).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
FS = Path("/sys/fs/cgroup")
DELEG = FS / "llmcourse-vmtest"
USER_UID = 54321

MEM = r"""
import os, socket
s = socket.socket(socket.AF_UNIX); s.connect("/run/llmcourse/channel")
hog = []
while True:
    hog.append(bytearray(8 << 20))
    for i in range(0, len(hog[-1]), 4096):
        hog[-1][i] = 1
    s.sendall(f"{len(hog) * 8}\n".encode())
"""
PIDS = r"""
import os, socket, time
s = socket.socket(socket.AF_UNIX); s.connect("/run/llmcourse/channel")
n = 0
try:
    while n < 500:
        if os.fork() == 0:
            time.sleep(60); os._exit(0)
        n += 1
except OSError:
    pass
s.sendall(f"{n}\n".encode())
"""
CPU = r"""
import os, socket, time
s = socket.socket(socket.AF_UNIX); s.connect("/run/llmcourse/channel")
t0, c0 = time.monotonic(), time.process_time()
while time.monotonic() - t0 < 4:
    pass
s.sendall(f"{(time.process_time() - c0) / (time.monotonic() - t0)}\n".encode())
"""
WALL = r"""
import os, socket, time
s = socket.socket(socket.AF_UNIX); s.connect("/run/llmcourse/channel")
time.sleep(120)
"""
UID = r"""
import os, socket
s = socket.socket(socket.AF_UNIX); s.connect("/run/llmcourse/channel")
s.sendall(f"{os.getuid()}\n".encode())
"""


def emit(phase: str, **kw) -> None:
    print("VMRESULT " + json.dumps(dict(phase=phase, **kw), default=str), flush=True)


def limits_phase() -> dict:
    from llmcourse.grading import cgroups, sandbox
    m = sandbox.check_available()
    exe = sandbox.python_executable()
    out = {"mode": m.name, "describe": m.describe(), "parent": str(m.parent)}
    lim = sandbox.Limits(wall_s=240, memory_mb=100, pids=32, cpu_cores=0.5, cpu_s=120)
    seen = {}

    def run(name, code, limits=lim):
        t0 = time.perf_counter()
        r = sandbox.run(None, [exe, "-S", "-c", code], limits)
        seen[name] = time.perf_counter() - t0
        return r
    r = run("uid", UID)
    out["uid_inside"] = int(r.lines[0]) if r.lines else None
    r = run("memory", MEM)
    out["memory_oom_killed"] = r.oom_killed
    out["memory_mb_reached"] = int(r.lines[-1]) if r.lines else None
    r = run("pids", PIDS)
    out["forks"] = int(r.lines[0]) if r.lines else None
    r = run("cpu", CPU)
    out["cpu_ratio"] = float(r.lines[0]) if r.lines else None
    wall = sandbox.Limits(wall_s=8, memory_mb=100, pids=32)
    r = run("wall", WALL, wall)
    out["wall_timed_out"], out["wall_s"] = r.timed_out, r.wall_s
    out["left"] = sorted(cgroups.ours(m))
    out["seconds"] = seen
    # the v2 files really were the ones written: a cgroup made now, read back, removed
    cg = cgroups.create(m, lim)
    names = ("memory.max", "memory.swap.max", "pids.max", "cpu.max") if m.backend == "v2" else ()
    try:
        out["files"] = {f: (cg.dirs()[0] / f).read_text().strip() for f in names}
    finally:
        cg.remove()
    out["removed"] = not any(d.exists() for d in cg.dirs())
    return out


def class_phase(home: Path) -> dict:
    """01_chain_rule: a correct, a blank and a hostile submission, graded in the sandbox."""
    import nbformat
    from test_07_safety import CORRECT, NB, A, with_cell

    from llmcourse.authoring.sampleclass import build_submission, make_scratch_course
    from llmcourse.grading import cgroups, sandbox
    from llmcourse.grading.course import cell_scores, generate_release
    from llmcourse.grading.grader import Grader
    m = sandbox.check_available()
    t0 = time.perf_counter()
    c = make_scratch_course(home / "course", ROOT, [A])
    generate_release(c.root, A, c.env)
    correct = home / NB
    build_submission(c.root / "release" / A / NB, ROOT / "source" / A / NB, correct, fill="all")
    ok = nbformat.read(str(correct), 4)
    blank = nbformat.read(str(c.root / "release" / A / NB), 4)
    hostile = with_cell(with_cell(ok, "logsumexp", "import numpy as np\nhog = np.ones(2**31)"), "count_bigrams",
                        "import os, time\nkids = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                        "            time.sleep(20)\n            os._exit(0)\n        kids += 1\n"
                        "except OSError as e:\n    print('fork stopped after', kids)\n"
                        "print(open('/etc/shadow').read()[:20] if os.path.exists('/etc/shadow') else 'no shadow')")
    for student, nb in (("correct", ok), ("blank", blank), ("hostile", hostile)):
        d = c.root / "submitted" / student / A
        d.mkdir(parents=True)
        nbformat.write(nb, str(d / NB))
    lim = sandbox.Limits(wall_s=900, cpu_s=900, memory_mb=700, pids=96, cell_timeout_s=240)
    g = Grader(c.root, A, workers=2, limits=lim, env=c.env, progress=False, engine="threads")
    t1 = time.perf_counter()
    outcomes = {o.student: o for o in g.grade_all()}
    return {"mode": m.name, "scores": {s: o.score for s, o in outcomes.items()},
            "flags": {s: o.flags for s, o in outcomes.items()}, "correct_max": CORRECT,
            "db": {s: sum(v["auto"] or 0 for v in cell.values()) for s, cell in
                   cell_scores(f"sqlite:///{c.db_path}", A).items()},
            "left": sorted(cgroups.ours(m)), "grade_s": time.perf_counter() - t1,
            "setup_s": t1 - t0, "report_mode": (g.reports / "grading_mode.txt").read_text().strip()}


def in_child(phase: str, rootless: bool) -> None:
    """Run one phase in a child process: as root, or as USER_UID inside the delegated subtree."""
    home = Path(tempfile.mkdtemp(prefix=f"vm-{phase}-"))
    from llmcourse.grading.course import jupyter_env
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home), "USER": "grader", "LOGNAME": "grader",
           "PYTHONDONTWRITEBYTECODE": "1", **jupyter_env(home / "state")}
    pre = None
    if rootless:
        os.chown(home, USER_UID, USER_UID)
        env["LLMCOURSE_CGROUP_ROOT"] = str(DELEG)
        from llmcourse.grading import sandbox
        from llmcourse.grading.sandbox_launch import make_views
        views = sandbox._views(sandbox._python_runtime())

        def pre():
            # an administrator put the grader's session into the delegated subtree, then it runs as the user
            (DELEG / "cgroup.procs").write_text(str(os.getpid()))
            if views:
                make_views(views)
            os.setgroups([])
            os.setresgid(USER_UID, USER_UID, USER_UID)
            os.setresuid(USER_UID, USER_UID, USER_UID)
    import subprocess
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--phase", phase, str(home)], env=env, preexec_fn=pre,
                       capture_output=True, text=True, cwd=str(home))
    sys.stdout.write(p.stdout)
    if "VMRESULT" not in p.stdout:
        emit(phase, error=f"exit {p.returncode}: {p.stderr[-3000:]}")
    print(f"[{phase}: {time.perf_counter() - t0:.0f} s]", flush=True)


def delegate() -> None:
    """What an administrator does on a cgroup v2 server (README, "Grading safely")."""
    controllers = (FS / "cgroup.controllers").read_text().split()
    want = [c for c in ("cpu", "memory", "pids") if c in controllers]
    (FS / "cgroup.subtree_control").write_text(" ".join("+" + c for c in want))
    DELEG.mkdir(exist_ok=True)
    for f in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(DELEG / f if f else DELEG, USER_UID, USER_UID)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--phase":
        phase, home = sys.argv[2], Path(sys.argv[3])
        try:
            res = limits_phase() if phase.endswith("limits") else class_phase(home)
            emit(phase, uid=os.getuid(), **res)
        except Exception:
            emit(phase, error=traceback.format_exc()[-3000:])
        return
    emit("vm", kernel=os.uname().release, controllers=(FS / "cgroup.controllers").read_text().split(),
         fs=Path("/proc/mounts").read_text().count("cgroup2 /sys/fs/cgroup "))
    only = os.environ.get("VM_PHASES", "root-limits,rootless-limits,root-class,rootless-class").split(",")
    delegate()
    for phase in only:
        in_child(phase, rootless=phase.startswith("rootless"))
    # cleanup: the delegated subtree and everything in it
    from llmcourse.grading import cgroups
    left = [str(d) for d in DELEG.rglob("llmcourse-*") if d.is_dir() and d.name != cgroups.LEAF]
    for d in sorted(DELEG.rglob("*"), key=lambda p: -len(p.parts)):
        if d.is_dir():
            cgroups.kill_procs([d / "cgroup.procs"])
            d.rmdir()
    DELEG.rmdir()
    emit("cleanup", left_in_subtree=left, removed=not DELEG.exists(),
         root_parent_children=[d.name for d in (FS / "llmcourse").glob("llmcourse-*")]
         if (FS / "llmcourse").is_dir() else [])


if __name__ == "__main__":
    main()
