"""Grading on cgroup v2, as root and as an ordinary user, in a virtual machine (tests/vm.py).

One boot of Debian's kernel (software emulation: tens of minutes) runs tests/vm_inside.py:
the sandbox's limits (memory killed at its limit and seen in memory.events, processes, CPU
share, wall time, every cgroup removed, the v2 files read back) and 01_chain_rule graded
end to end for a correct, a blank and a hostile submission, first as root, then as uid
54321 in a subtree root delegated to it. VM_PHASES picks phases (default: all). Measured on
the development machine (2 cores, load 10-15): boot about 1 min, each limits phase 2-2.5 min;
a class phase ran past 25 min unfinished (every kernel imports torch under emulation over
9p). Too slow for `make test`: `make test-vm` (which CI
also runs) sets LLMCOURSE_VM_TESTS=1. Where QEMU cannot run, skipped with the reason (a
failure under CI=true).
"""
from __future__ import annotations

import os

import pytest
import vm
from nbutil import ROOT

from llmcourse.settings import setting

if not setting("LLMCOURSE_VM_TESTS"):
    pytest.skip("the cgroup v2 VM tests take tens of minutes: `make test-vm` runs them", allow_module_level=True)

MODES = {"root": "root, cgroup v2", "rootless": "rootless, cgroup v2"}
ALL_PHASES = "root-limits,rootless-limits,root-class,rootless-class"
PHASES = os.environ.get("VM_PHASES", ALL_PHASES)     # e.g. VM_PHASES=root-limits,rootless-limits


@pytest.fixture(scope="module")
def booted():
    try:
        results, out, secs = vm.boot(f"cd {ROOT} && VM_PHASES={PHASES} {ROOT}/.venv/bin/python tests/vm_inside.py",
                                     timeout=setting("LLMCOURSE_VM_TIMEOUT"))
    except vm.Unavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the VM cannot run under CI: {exc}")
        pytest.skip(f"the VM cannot run here: {exc}")
    print(f"\nVM boot + all phases: {secs:.0f} s")
    for k, v in results.items():
        print(f"  {k}: {v}")
    return results, out


def _phase(booted, name):
    if name not in PHASES.split(",") + ["vm", "cleanup"]:
        pytest.skip(f"phase {name} not asked for (VM_PHASES={PHASES})")
    results, out = booted
    if name not in results:
        pytest.fail(f"phase {name} reported nothing; the VM's output ends with:\n{out[-4000:]}")
    r = results[name]
    assert "error" not in r, r["error"]
    return r


def test_the_vm_runs_cgroup_v2_with_the_controllers(booted):
    r = _phase(booted, "vm")
    assert r["fs"] == 1, "cgroup2 is not mounted at /sys/fs/cgroup in the VM"
    assert {"memory", "pids", "cpu"} <= set(r["controllers"])


@pytest.mark.parametrize("who", ["root", "rootless"])
def test_limits_on_cgroup_v2(booted, who):
    r = _phase(booted, f"{who}-limits")
    assert r["mode"] == MODES[who], r["describe"]
    assert (r["uid"] == 0) == (who == "root")
    assert r["uid_inside"] == 65534
    assert r["memory_oom_killed"] is True, "memory.events showed no oom_kill"
    assert 40 <= r["memory_mb_reached"] <= 100, f"killed after {r['memory_mb_reached']} MB (limit 100 MB)"
    assert r["forks"] is not None and r["forks"] < 32, r["forks"]
    assert r["cpu_ratio"] is not None and r["cpu_ratio"] < 0.75, f"CPU share {r['cpu_ratio']} (limit 0.5)"
    assert r["wall_timed_out"] is True and r["wall_s"] < 60
    assert r["files"] == {"memory.max": str(100 * 2**20), "memory.swap.max": "0", "pids.max": "32",
                          "cpu.max": "50000 100000"}
    assert r["removed"] and r["left"] == [], r["left"]


@pytest.mark.parametrize("who", ["root", "rootless"])
def test_a_small_class_graded_on_cgroup_v2(booted, who):
    r = _phase(booted, f"{who}-class")
    assert r["mode"] == MODES[who]
    assert r["scores"] == {"correct": r["correct_max"], "blank": 0, "hostile": r["correct_max"]}, r["flags"]
    assert r["db"] == r["scores"]
    assert any("memory limit" in f for f in r["flags"]["hostile"]), r["flags"]
    assert r["report_mode"].startswith(f"sandboxed ({MODES[who]}")
    assert r["left"] == []


def test_every_cgroup_is_removed(booted):
    r = _phase(booted, "cleanup")
    assert r["removed"] and r["left_in_subtree"] == [] and r["root_parent_children"] == []
