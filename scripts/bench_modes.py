"""Per-submission overhead of the grading mode this process gets, against a bare kernel start.

    python scripts/bench_modes.py [--runs 5]

Times, median of N: `python -c pass`; a bare Jupyter kernel running one cell (nbclient, no
sandbox); the sandbox starting a process that answers over its channel (`sandbox.run`); the
sandbox running the same one-cell notebook through llmcourse.grading.sandbox_runner (what the
grader does per notebook: sandbox + runner + kernel). Prints one JSON line. Run it as root, as a
user with a delegated subtree (LLMCOURSE_CGROUP_ROOT), or with LLMCOURSE_NO_CGROUP=1 to compare
modes.
"""
from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbformat  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from llmcourse.grading import sandbox  # noqa: E402

ANSWER = ("import os, socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/llmcourse/channel'); "
          "s.sendall(b'ok\\n')")


def _median(f, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rlimits-only", action="store_true",
                    help="measure the rlimits-only mode even where cgroups exist (as if there were none)")
    args = ap.parse_args()
    if args.rlimits_only:
        from llmcourse.grading import cgroups
        sandbox._MODE = cgroups.detect(fs=Path("/nonexistent-cgroup-fs"), env={"LLMCOURSE_NO_CGROUP": "1"})
    m = sandbox.check_available()
    exe = sandbox.python_executable()
    nb = new_notebook(cells=[new_code_cell("x = 1 + 1\nx")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    lim = sandbox.Limits(wall_s=120)

    def bare_python():
        subprocess.run([exe, "-c", "pass"], check=True)

    def bare_kernel():
        from nbclient import NotebookClient
        NotebookClient(nbformat.reads(nbformat.writes(nb), as_version=4), kernel_name="python3", timeout=60,
                       startup_timeout=120).execute()

    def sandbox_process():
        r = sandbox.run(None, [exe, "-S", "-c", ANSWER], lim)
        assert r.lines == [b"ok\n"], r

    def sandbox_notebook():
        key = secrets.token_bytes(32)
        payload = key.hex().encode() + b"\n" + nbformat.writes(nb).encode()
        r = sandbox.run(None, [exe, "-m", "llmcourse.grading.sandbox_runner"], lim, stdin_bytes=payload)
        assert r.lines, r.stderr_tail

    out = {"mode": m.describe(), "runs": args.runs,
           "python_c_pass_s": _median(bare_python, args.runs),
           "bare_kernel_one_cell_s": _median(bare_kernel, args.runs),
           "sandbox_process_s": _median(sandbox_process, args.runs),
           "sandbox_notebook_one_cell_s": _median(sandbox_notebook, args.runs)}
    out["overhead_vs_bare_kernel_s"] = round(out["sandbox_notebook_one_cell_s"] - out["bare_kernel_one_cell_s"], 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
