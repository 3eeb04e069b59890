"""Course operations: assignments, nbgrader runs, papermill execution, grade tables.

Used by the ``llmcourse`` CLI (behind the Makefile), the grader and the test suite. Sample
classes for tests and the demo are built by llmcourse.authoring.sampleclass. Nothing
here runs in a student's kernel.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from .cells import nbgrader_meta


class CourseError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# where things are
# --------------------------------------------------------------------------

def find_root(start: str | os.PathLike | None = None) -> Path:
    """The course root: the nearest folder (from `start` or cwd upwards) with nbgrader_config.py and source/."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "source").is_dir():
            return folder
    pkg_parent = Path(__file__).resolve().parents[2]
    if (pkg_parent / "nbgrader_config.py").is_file():
        return pkg_parent
    raise CourseError("no course root found (a folder with nbgrader_config.py and source/)")


def list_assignments(root: Path, which: str = "all", graded_only: bool = False) -> list[str]:
    found = sorted(p.name for p in (root / "source").iterdir() if p.is_dir() and not p.name.startswith("."))
    if graded_only:
        found = [a for a in found if any(graded_cells(nb) for nb in source_notebooks(root, a))]
    if which in ("all", "", None):
        return found
    wanted = [w for w in which.replace(",", " ").split() if w]
    unknown = [w for w in wanted if w not in found]
    if unknown:
        raise CourseError(f"unknown assignment(s) {unknown}; known: {found}")
    return wanted


def source_notebooks(root: Path, assignment: str) -> list[Path]:
    return sorted((root / "source" / assignment).glob("*.ipynb"))


def read_nb(path: str | os.PathLike) -> nbformat.NotebookNode:
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # malformed JSON or schema
        raise CourseError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc})") from None


def graded_cells(nb_or_path) -> list:
    from nbgrader.utils import is_grade  # nbgrader's own test (imported when needed: it is slow to import)
    nb = read_nb(nb_or_path) if isinstance(nb_or_path, (str, Path)) else nb_or_path
    return [c for c in nb.cells if is_grade(c)]


def solution_cell_ids(nb_or_path) -> list[str]:
    """Grade ids of the code cells a student fills in, in notebook order."""
    nb = read_nb(nb_or_path) if isinstance(nb_or_path, (str, Path)) else nb_or_path
    from nbgrader.utils import is_solution
    return [nbgrader_meta(c)["grade_id"] for c in nb.cells if c.cell_type == "code" and is_solution(c)]


# --------------------------------------------------------------------------
# environments and subprocesses
# --------------------------------------------------------------------------

def venv_bin_first(env: dict) -> dict:
    """`env` with this interpreter's bin folder first on PATH (nbgrader shells out to `alembic`,
    kernelspecs may name `python`: this environment's must be the ones found). Changes `env`."""
    bindir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bindir:
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def jupyter_env(state_dir: str | os.PathLike, base: dict | None = None) -> dict:
    """Environment whose Jupyter/IPython/matplotlib state lives under state_dir, not $HOME."""
    env = dict(os.environ if base is None else base)
    state = Path(state_dir)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"),
                     ("MPLCONFIGDIR", "matplotlib")):
        (state / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(state / sub)
    venv_bin_first(env)
    env.setdefault("PYTHONHASHSEED", "0")
    env["MPLBACKEND"] = "Agg"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env.pop("NBGRADER_EXECUTION", None)
    return env


def run_nbgrader(args: list[str], cwd: Path, env: dict | None = None, check: bool = True,
                 quiet: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nbgrader", *args]
    if env is None:
        env = venv_bin_first(dict(os.environ))
    proc = subprocess.run(cmd, cwd=str(cwd), env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not quiet:
        print(proc.stdout)
    if check and proc.returncode != 0:
        raise CourseError(f"nbgrader {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc


# --------------------------------------------------------------------------
# releases
# --------------------------------------------------------------------------

def generate_release(course_root: Path, assignment: str, env: dict) -> Path:
    run_nbgrader(["generate_assignment", assignment, "--force"], cwd=course_root, env=env)
    return course_root / "release" / assignment


def release_differences(repo_root: Path, generated: Path, assignment: str) -> list[str]:
    """Files that differ between the committed release/<assignment> and a freshly generated copy."""
    committed = repo_root / "release" / assignment
    diffs = []
    gen_files = {p.relative_to(generated) for p in generated.rglob("*") if p.is_file()}
    com_files = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()} if committed.exists() else set()
    for rel in sorted(gen_files | com_files):
        a, b = generated / rel, committed / rel
        if not a.exists() or not b.exists():
            diffs.append(f"{rel}: only in {'release/' if b.exists() else 'freshly generated'}")
        elif a.suffix == ".ipynb":
            if json.loads(a.read_text()) != json.loads(b.read_text()):
                diffs.append(f"{rel}: content differs")
        elif a.read_bytes() != b.read_bytes():
            diffs.append(f"{rel}: content differs")
    return diffs


# --------------------------------------------------------------------------
# papermill execution
# --------------------------------------------------------------------------

def execute_notebook(src: Path, out: Path, profile: str = "smoke", device: str = "auto",
                     seed: int = 0, env_dir: Path | None = None, timeout: int = 1800) -> float:
    """Run one notebook with papermill (parameters injected); raise CourseError if a cell fails."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    state = env_dir or Path(tempfile.mkdtemp(prefix="llmcourse-jupyter-"))
    saved = dict(os.environ)
    os.environ.update(jupyter_env(state))
    os.environ.pop("NBGRADER_EXECUTION", None)
    # executed copies keep their figures: the inline backend, whatever MPLBACKEND said (jupyter_env says Agg)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(out), parameters={"PROFILE": profile, "DEVICE": device, "SEED": seed},
                            kernel_name="python3", cwd=str(src.parent), progress_bar=False,
                            execution_timeout=timeout)
    except pm.PapermillExecutionError as exc:
        raise CourseError(f"{src}: cell {exc.exec_count} failed: {exc.ename}: {exc.evalue}\n"
                          f"executed copy: {out}") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return time.perf_counter() - start


# --------------------------------------------------------------------------
# grades
# --------------------------------------------------------------------------

def cell_scores(db_url: str, assignment: str) -> dict[str, dict[str, dict]]:
    """{student: {grade_id: {"score", "max", "auto", "manual", "kind"}}} for the graded cells.

    kind is "code" for autograded test cells and "markdown" for hand-graded answers
    (nbgrader gives an unchanged answer an automatic 0, so "auto" alone does not tell).
    """
    from nbgrader.api import Gradebook

    out: dict[str, dict[str, dict]] = {}
    with Gradebook(db_url) as gb:
        for sub in gb.assignment_submissions(assignment):
            per = {}
            for nb in sub.notebooks:
                for g in nb.grades:
                    per[g.name] = {"score": g.score, "max": g.max_score,
                                   "auto": g.auto_score, "manual": g.manual_score,
                                   "kind": g.cell_type}
            out[sub.student_id] = per
    return out


def failure_summary(scores: dict[str, dict[str, dict]]) -> list[tuple[str, int, int]]:
    """[(grade_id, students who lost points, students graded)] over a class, autograded cells only."""
    counts: dict[str, list[int]] = {}
    for per in scores.values():
        for gid, g in per.items():
            if g["kind"] != "code" or g["auto"] is None:
                continue
            lost, total = counts.get(gid, [0, 0])
            counts[gid] = [lost + (g["auto"] < g["max"]), total + 1]
    return [(gid, lost, total) for gid, (lost, total) in sorted(counts.items())]


def write_failure_summary(path: Path, scores_by_assignment: dict) -> None:
    """CSV of failure_summary for {assignment: cell_scores(...)}."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["assignment", "test_cell", "students_losing_points", "students_graded"])
        for assignment, scores in scores_by_assignment.items():
            for gid, lost, total in failure_summary(scores):
                w.writerow([assignment, gid, lost, total])


def copy_nb_without_outputs(nb):
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
    return nb
