"""11. Grading modes: the cgroup backends (v1, v2, none), their detection, and `llmcourse doctor`.

Fake trees in a temporary folder stand for machines this one is not (cgroup v2, a delegated
scope, no cgroup at all, no bubblewrap): every file the v2 backend writes is recorded and
checked. The real machine is checked too: doctor's report against /proc/mounts, and the
rootless mode run for real as a throw-away user on this machine's cgroup v1 hierarchy.
The same checks on a real cgroup v2 kernel run in a virtual machine (tests/test_vm_cgroup_v2.py).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from nbutil import ROOT
from rootless import as_user

from llmcourse.grading import cgroups
from llmcourse.grading.sandbox import Limits


def _v2_tree(tmp: Path, controllers="cpuset cpu io memory pids") -> Path:
    fs = tmp / "cgroup"
    fs.mkdir()
    (fs / "cgroup.controllers").write_text(controllers + "\n")
    (fs / "cgroup.subtree_control").write_text("")
    (fs / "cgroup.procs").write_text("1\n")
    return fs


def _cg(d: Path, controllers: str, procs: str = "") -> Path:
    d.mkdir(parents=True)
    (d / "cgroup.controllers").write_text(controllers + "\n")
    (d / "cgroup.subtree_control").write_text("")
    (d / "cgroup.procs").write_text(procs)
    return d


@pytest.fixture
def writes(monkeypatch):
    """Record (path, text) of every write the backend makes, then perform it."""
    log = []
    real = cgroups._write

    def record(path, text):
        log.append((str(path), text))
        real(path, text)
    monkeypatch.setattr(cgroups, "_write", record)
    return log


NO_SYSTEMD = {"XDG_RUNTIME_DIR": "/nonexistent-runtime-dir"}


def test_root_on_v2_enables_controllers_and_writes_every_limit(tmp_path, writes):
    fs = _v2_tree(tmp_path)
    mode = cgroups.detect(fs=fs, env=NO_SYSTEMD, euid=0, self_cgroup="0::/init.scope")
    assert (mode.usable, mode.privileged, mode.backend, mode.parent) == (True, True, "v2", fs / "llmcourse")
    assert mode.unenforced == [] and mode.name == "root, cgroup v2"
    _cg(fs / "llmcourse", "cpu memory pids")          # what the kernel shows in a new child
    cgroups.prepare_v2(mode.parent, fs=fs, privileged=True)
    # the root cgroup may keep its processes (it is exempt); llmcourse/ holds none, so no leaf
    assert writes == [(str(fs / "cgroup.subtree_control"), "+memory +pids +cpu"),
                      (str(fs / "llmcourse" / "cgroup.subtree_control"), "+memory +pids +cpu")], writes
    assert not (fs / "llmcourse" / cgroups.LEAF).exists()
    writes.clear()
    cg = cgroups.create(mode, Limits(memory_mb=100, pids=32, cpu_cores=0.5))
    d = Path(cg.dir)
    assert d.parent == fs / "llmcourse" and d.name.startswith(f"llmcourse-{os.getpid()}-")
    got = {Path(p).name: t for p, t in writes if Path(p).parent == d}
    assert got == {"memory.max": str(100 * 2**20), "memory.swap.max": "0", "pids.max": "32",
                   "cpu.max": "50000 100000"}, got
    assert cg.procs_files() == [d / "cgroup.procs"]


def test_v2_memory_events_oom_kill_is_parsed(tmp_path):
    fs = _v2_tree(tmp_path)
    parent = _cg(fs / "p", "memory pids cpu")
    (parent / "cgroup.subtree_control").write_text("memory pids cpu")
    cg = cgroups.CgroupV2(Limits(), parent)
    events = Path(cg.dir) / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 17\noom 3\noom_kill 0\noom_group_kill 0\n")
    assert cg.oom_killed() is False          # hitting max / oom without a kill is not a kill
    events.write_text("low 0\nhigh 0\nmax 17\noom 3\noom_kill 2\noom_group_kill 0\n")
    assert cg.oom_killed() is True
    events.unlink()
    assert cg.oom_killed() is False


def test_v2_teardown_writes_cgroup_kill(tmp_path, writes):
    fs = _v2_tree(tmp_path)
    parent = _cg(fs / "p", "memory pids cpu")
    cg = cgroups.CgroupV2(Limits(), parent)
    (Path(cg.dir) / "cgroup.kill").write_text("")
    (Path(cg.dir) / "cgroup.procs").write_text("")
    writes.clear()
    cg.kill_all()
    assert writes == [(str(Path(cg.dir) / "cgroup.kill"), "1")]


def test_delegated_scope_moves_its_processes_into_a_leaf_first(tmp_path, writes):
    """No internal processes: a cgroup with processes cannot give its children controllers."""
    fs = _v2_tree(tmp_path)
    scope = _cg(fs / "user.slice" / "user-1000.slice" / "run-u7.scope", "cpu memory pids", "4242\n4243\n")
    mode = cgroups.detect(fs=fs, env=NO_SYSTEMD, euid=1000,
                          self_cgroup="0::/user.slice/user-1000.slice/run-u7.scope")
    assert (mode.usable, mode.privileged, mode.backend, mode.parent) == (True, False, "v2", scope), mode
    cgroups.prepare_v2(mode.parent, fs=fs)
    leaf = scope / cgroups.LEAF
    assert leaf.is_dir()
    assert writes == [(str(leaf / "cgroup.procs"), "4242"), (str(leaf / "cgroup.procs"), "4243"),
                      (str(scope / "cgroup.subtree_control"), "+memory +pids +cpu")], writes
    # run again from inside the leaf (a second grader process): the scope is still the parent
    again = cgroups.detect(fs=fs, env=NO_SYSTEMD, euid=1000,
                           self_cgroup=f"0::/user.slice/user-1000.slice/run-u7.scope/{cgroups.LEAF}")
    assert again.parent == scope
    # and the leaf never counts as a sandbox's cgroup
    assert cgroups.ours(again) == set()


def test_delegated_root_must_contain_the_grader(tmp_path):
    fs = _v2_tree(tmp_path)
    deleg = _cg(fs / "llmcourse-alice", "cpu memory pids")
    env = dict(NO_SYSTEMD, LLMCOURSE_CGROUP_ROOT=str(deleg))
    outside = cgroups.detect(fs=fs, env=env, euid=1000, self_cgroup="0::/user.slice/session-3.scope")
    assert not outside.usable and "outside LLMCOURSE_CGROUP_ROOT" in outside.reason
    inside = cgroups.detect(fs=fs, env=env, euid=1000, self_cgroup="0::/llmcourse-alice")
    assert inside.usable and inside.parent == deleg and "LLMCOURSE_CGROUP_ROOT" in inside.where


def test_a_subtree_without_the_pids_controller_is_refused(tmp_path):
    fs = _v2_tree(tmp_path)
    _cg(fs / "u.scope", "cpu memory")
    mode = cgroups.detect(fs=fs, env=NO_SYSTEMD, euid=1000, self_cgroup="0::/u.scope")
    assert not mode.usable and "pids" in mode.reason
    no_cpu = _cg(fs / "v.scope", "memory pids")
    mode = cgroups.detect(fs=fs, env=NO_SYSTEMD, euid=1000, self_cgroup="0::/v.scope")
    assert mode.usable and mode.parent == no_cpu and mode.unenforced == ["cpu_cores (CPU share)"]


def test_no_cgroup_is_refused_unless_rlimits_only_is_asked_for(tmp_path):
    fs = tmp_path / "empty"
    fs.mkdir()
    refused = cgroups.detect(fs=fs, env=NO_SYSTEMD, euid=1000, self_cgroup="")
    assert not refused.usable and "no cgroup hierarchy" in refused.reason
    assert any("rlimits-only" in f for f in refused.fix)
    asked = cgroups.detect(fs=fs, env=dict(NO_SYSTEMD, LLMCOURSE_NO_CGROUP="1"), euid=1000, self_cgroup="")
    assert asked.usable and asked.backend == "none"
    assert [u.split()[0] for u in asked.unenforced] == ["memory_mb", "pids", "cpu_cores"]
    assert "NOT enforced: memory_mb" in asked.describe()
    assert cgroups.create(asked, Limits()).procs_files() == []
    # a user on v2 with no delegation and no user systemd: refused, and told how to get one
    fs2 = _v2_tree(tmp_path)
    mode = cgroups.detect(fs=fs2, env=NO_SYSTEMD, euid=1000, self_cgroup="0::/")
    assert not mode.usable and any("delegate.conf" in f for f in mode.fix)


def test_stale_cgroups_of_dead_graders_are_removed(tmp_path):
    fs = _v2_tree(tmp_path)
    parent = _cg(fs / "p", "memory pids cpu")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (parent / f"llmcourse-{dead.pid}-0123456789ab").mkdir()
    (parent / f"llmcourse-{os.getpid()}-0123456789ab").mkdir()
    (parent / "llmcourse-alice").mkdir()          # a subtree delegated to someone: never touched
    (parent / cgroups.LEAF).mkdir()
    mode = cgroups.Mode(privileged=False, backend="v2", parent=parent)
    assert cgroups.remove_stale(mode) == 1
    assert sorted(d.name for d in parent.glob("llmcourse-*")) == sorted(
        [f"llmcourse-{os.getpid()}-0123456789ab", "llmcourse-alice", cgroups.LEAF])
    assert cgroups.ours(mode) == {str(parent / f"llmcourse-{os.getpid()}-0123456789ab")}


def test_v1_tree_as_root_and_delegated(tmp_path):
    fs = tmp_path / "v1"
    for c in ("memory", "pids", "cpu"):
        (fs / c).mkdir(parents=True)
        (fs / c / "cgroup.procs").write_text("")
    mode = cgroups.detect(fs=fs, env=NO_SYSTEMD, euid=0, self_cgroup="")
    assert (mode.backend, mode.privileged) == ("v1", True)
    assert mode.v1_parents == {c: fs / c for c in ("memory", "pids", "cpu")}
    for c in ("memory", "pids", "cpu"):
        (fs / c / "llmcourse-bob").mkdir()
        (fs / c / "llmcourse-bob" / "cgroup.procs").write_text("")
    deleg = cgroups.detect(fs=fs, env=dict(NO_SYSTEMD, LLMCOURSE_CGROUP_ROOT="llmcourse-bob"), euid=1000,
                           self_cgroup="")
    assert deleg.usable and deleg.v1_parents == {c: fs / c / "llmcourse-bob" for c in ("memory", "pids", "cpu")}
    # an absolute path into one hierarchy names the same subtree in all
    deleg2 = cgroups.detect(fs=fs, env=dict(NO_SYSTEMD, LLMCOURSE_CGROUP_ROOT=str(fs / "memory" / "llmcourse-bob")),
                            euid=1000, self_cgroup="")
    assert deleg2.v1_parents == deleg.v1_parents


# ------------------------------------------------------------------------------------- doctor
def _rows(rows):
    return {k.strip(): v for k, v in rows}


def test_doctor_on_a_fake_v2_machine_without_bubblewrap(tmp_path):
    from llmcourse.grading import doctor
    fs = _v2_tree(tmp_path)
    _cg(fs / "user.slice" / "u.scope", "cpu memory pids")
    rows, mode, ok = doctor.report(fs=fs, env=NO_SYSTEMD, euid=1000, bwrap=None, self_cgroup="0::/user.slice/u.scope",
                                   userns=(True, "yes (given)"), systemd=False)
    r = _rows(rows)
    assert not ok
    assert r["running as"].startswith("not root (uid 1000")
    assert r["bubblewrap"].startswith("NOT installed")
    assert r["cgroup hierarchy"].startswith("v2")
    assert r["controllers (root)"] == "cpuset cpu io memory pids"
    assert r["delegated to this user"] == "yes, controllers: cpu memory pids"
    assert r["systemd"].startswith("not running")
    assert r["grading mode"].startswith("REFUSED: bubblewrap is not installed")
    # the same machine with bubblewrap: rootless on the delegated scope, and how to get more
    rows, mode, ok = doctor.report(fs=fs, env=NO_SYSTEMD, euid=1000, bwrap="/bin/true",
                                   self_cgroup="0::/user.slice/u.scope", userns=(True, "yes (given)"), systemd=False)
    r = _rows(rows)
    assert ok and r["grading mode"].startswith("sandboxed (rootless, cgroup v2, delegated")
    assert "root" in r["to get the full mode"]
    # user namespaces disabled: refused, with the knob to turn
    rows, _, ok = doctor.report(fs=fs, env=NO_SYSTEMD, euid=1000, bwrap="/bin/true",
                                self_cgroup="0::/user.slice/u.scope", userns=(False, "NO (given)"), systemd=False)
    assert not ok and "user namespaces" in _rows(rows)["grading mode"]


def test_doctor_on_this_machine():
    """The real report, checked against what /proc/mounts and id say independently."""
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "llmcourse.cli", "doctor"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    out = proc.stdout
    assert "running as" in out and "grading mode" in out, proc.stderr
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    v2_root = any(m[1] == "/sys/fs/cgroup" and m[2] == "cgroup2" for m in mounts)
    v1 = {o for m in mounts if m[2] == "cgroup" for o in m[3].split(",")}
    line = {ln.split("  ", 1)[0].strip(): ln.split("  ", 1)[1].strip() for ln in out.splitlines() if "  " in ln}
    if v2_root:
        assert line["cgroup hierarchy"].startswith("v2")
    elif {"memory", "pids"} <= v1:
        assert line["cgroup hierarchy"].startswith("v1")
    assert line["running as"].startswith("root" if os.geteuid() == 0 else "not root")
    have_bwrap = subprocess.run(["sh", "-c", "command -v bwrap"], capture_output=True).returncode == 0
    assert line["bubblewrap"].startswith("NOT") != have_bwrap
    sandboxed = line["grading mode"].startswith("sandboxed")
    assert (proc.returncode == 0) == sandboxed
    if os.geteuid() == 0 and have_bwrap and ({"memory", "pids"} <= v1 or v2_root):
        assert sandboxed and line["grading mode"].startswith("sandboxed (root, cgroup")


# --------------------------------------------------------------- rootless, for real, on this machine
def test_rootless_mode_on_this_machine(rootless_user):
    """As an ordinary user with a delegated v1 subtree: bubblewrap without root, the user's own uid
    inside, and the cgroup limits (memory, pids) enforced and every cgroup removed."""
    user, env = rootless_user
    script = r"""
import json, os, sys
from llmcourse.grading import sandbox
m = sandbox.check_available()
exe = sandbox.python_executable()
lim = sandbox.Limits(wall_s=60, memory_mb=120, pids=24, cpu_s=20)
probe = ("import os, socket, json; s = socket.socket(socket.AF_UNIX); s.connect('/run/llmcourse/channel');"
         "s.sendall((json.dumps({'uid': os.getuid(), 'status': open('/proc/self/status').read()}) + '\\n').encode())")
r = sandbox.run(None, [exe, "-c", probe], lim)
info = json.loads(r.lines[0])
uid_line = next(l for l in info["status"].splitlines() if l.startswith("Uid:"))
bomb = ("import os, socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/llmcourse/channel');"
        "x = []\nwhile True: x.append(bytearray(16 << 20))")
rb = sandbox.run(None, [exe, "-c", bomb], lim)
forks = ("import os, socket, time; s = socket.socket(socket.AF_UNIX); s.connect('/run/llmcourse/channel')\n"
         "n = 0\ntry:\n    while n < 200:\n        if os.fork() == 0:\n"
         "            time.sleep(30); os._exit(0)\n        n += 1\n"
         "except OSError:\n    pass\ns.sendall(f'{n}\\n'.encode())")
rf = sandbox.run(None, [exe, "-c", forks], lim)
print(json.dumps({"mode": m.describe(), "privileged": m.privileged, "uid_inside": info["uid"], "uid_line": uid_line,
                  "oom": rb.oom_killed, "forks": int(rf.lines[0]) if rf.lines else None,
                  "left": sorted(__import__("llmcourse.grading.cgroups").grading.cgroups.ours(m))}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd="/tmp",
                          timeout=300, preexec_fn=as_user(user))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["privileged"] is False and got["mode"].startswith("sandboxed (rootless, cgroup v1")
    assert got["uid_inside"] == 65534          # the sandbox's own uid, in its user namespace ...
    assert got["uid_line"].split()[1:] == ["65534"] * 4
    assert got["oom"] is True                   # the memory cgroup killed the bomb at 120 MB
    assert got["forks"] is not None and got["forks"] < 24
    assert got["left"] == []


@pytest.fixture
def rootless_user():
    """A throw-away user with a delegated subtree in the memory, pids and cpu v1 hierarchies (removed after)."""
    from conftest import require_system
    require_system("bwrap", "bubblewrap")
    if os.geteuid() != 0:
        pytest.skip("creating a throw-away user needs root")
    if cgroups.hierarchy() != "v1":
        pytest.skip("this test delegates a cgroup v1 subtree; on v2 the VM test covers rootless mode")
    if subprocess.run(["sh", "-c", "command -v useradd userdel"], capture_output=True).returncode != 0:
        pytest.skip("useradd / userdel missing")
    import pwd
    user = f"llmc{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
    uid = pwd.getpwnam(user).pw_uid
    name = f"llmctest-{user}"
    made, made_home = [], []
    try:
        for c in ("memory", "pids", "cpu"):
            d = cgroups.CGROUP_FS / c / name
            d.mkdir()
            made.append(d)
            for f in ["", "cgroup.procs", "tasks"]:
                os.chown(d / f if f else d, uid, uid)
        home = Path(tempfile.mkdtemp(prefix="llmcourse-rootless-"))     # not under root's 0700 pytest folder
        made_home.append(home)
        os.chown(home, uid, uid)
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
               "LLMCOURSE_CGROUP_ROOT": name, "PYTHONPATH": str(ROOT / "tests")}
        for k, v in os.environ.items():
            if k.startswith(("JUPYTER_", "IPYTHONDIR", "CI")):
                env[k] = v
        yield user, env
    finally:
        for d in made:
            for sub in d.glob("llmcourse-*"):
                cgroups.kill_procs([sub / "cgroup.procs"])
                cgroups.CgroupV1.remove_dir(sub)
            cgroups.kill_procs([d / "cgroup.procs"])
            cgroups.CgroupV1.remove_dir(d)
        subprocess.run(["userdel", user], check=False)
        for h in made_home:
            shutil.rmtree(h, ignore_errors=True)


@pytest.mark.slow
def test_safety_suite_passes_rootless_on_this_machine(rootless_user):
    """tests/test_07_safety.py's hostile class, sandbox probe and mode check, run by a throw-away
    user (rootless, the delegated v1 subtree): every attack gets the grade it must get."""
    user, env = rootless_user
    env = dict(env, LLMCOURSE_TEST_MODE="rootless, cgroup v1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_07_safety.py"), "-x", "-q",
                           "-p", "no:cacheprovider", "-k", "mode_asked or hostile or no_grader_fd",
                           f"--basetemp={env['HOME']}/pytest", f"--rootdir={ROOT}"],
                          capture_output=True, text=True, env=env, cwd=env["HOME"], timeout=1800,
                          preexec_fn=as_user(user))
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert "3 passed" in proc.stdout, tail
    print(tail[-600:])


@pytest.mark.slow
def test_rlimits_only_grades_and_every_report_says_what_was_not_enforced(tmp_path, monkeypatch):
    """Asked for rlimits only: still sandboxed (the correct submission gets full marks), and the
    flag on every submission, flagged.csv, lms_grades.csv and grading_mode.txt say so."""
    from conftest import require_sandbox
    require_sandbox()
    import csv

    from llmcourse.authoring.sampleclass import build_submission, make_scratch_course
    from llmcourse.grading import sandbox
    from llmcourse.grading.course import generate_release
    from llmcourse.grading.grader import Grader
    # the flag only allows the fallback: a machine with cgroups keeps them, so this one is told it has none
    nowhere = tmp_path / "no-cgroup-fs"
    nowhere.mkdir()
    assert cgroups.detect(fs=nowhere, env={}).usable is False
    forced = cgroups.detect(fs=nowhere, env={"LLMCOURSE_NO_CGROUP": "1"})
    monkeypatch.setattr(sandbox, "_MODE", forced)
    a, nb = "01_chain_rule", "chain_rule.ipynb"
    c = make_scratch_course(tmp_path / "course", ROOT, [a])
    generate_release(c.root, a, c.env)
    build_submission(c.root / "release" / a / nb, ROOT / "source" / a / nb, c.root / "submitted" / "s1" / a / nb,
                     fill="all")
    g = Grader(c.root, a, workers=1, env=c.env, progress=False, engine="threads",
               limits=Limits(wall_s=300, cell_timeout_s=60))
    assert g.mode.backend == "none"
    [o] = g.grade_all()
    assert o.score == 90.0, o.flags
    assert any("limits NOT enforced: memory_mb" in f.message and "pids" in f.message and "cpu_cores" in f.message
               for f in o.flags), o.flags
    rows = list(csv.reader((g.reports / "flagged.csv").read_text().splitlines()))
    assert any(r[0] == "s1" and "NOT enforced" in r[1] for r in rows[1:]), rows
    lms = list(csv.DictReader((g.reports / "lms_grades.csv").read_text().splitlines()))
    assert lms[0]["flagged"] == "yes"
    assert "NOT enforced: memory_mb" in (g.reports / "grading_mode.txt").read_text()
