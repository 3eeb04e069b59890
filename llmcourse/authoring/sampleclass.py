"""Sample classes for the tests and the demo: scratch courses, submissions built from the reference.

``make_scratch_course`` copies source/ and the config into a throw-away course with its own
gradebook and exchange; ``build_submission`` writes a student's notebook from the release
with some solution cells filled in from the source (optionally with one misconception
written in); ``grade_class`` grades every submission, sandboxed when this machine can.
Nothing here is used by `make autograde`.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..grading.cells import SOLUTION_BEGIN, SOLUTION_END, nbgrader_meta
from ..grading.course import CourseError, jupyter_env, list_assignments, read_nb, solution_cell_ids

SOLUTION_MARKERS = (SOLUTION_BEGIN, SOLUTION_END)


@dataclass
class Scratch:
    root: Path
    env: dict

    @property
    def db_path(self) -> Path:
        return self.root / "gradebook.db"


def make_scratch_course(dest: str | os.PathLike, repo_root: Path, assignments: list[str] | None = None) -> Scratch:
    """A throw-away course directory: a copy of source/ and the config, its own gradebook and exchange."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "source").mkdir(parents=True)
    for a in assignments or list_assignments(repo_root):
        shutil.copytree(repo_root / "source" / a, dest / "source" / a)
    shutil.copy2(repo_root / "nbgrader_config.py", dest / "nbgrader_config.py")
    (dest / "exchange").mkdir()
    env = jupyter_env(dest / ".jupyter-state")
    env["LLMCOURSE_EXCHANGE"] = str(dest / "exchange")
    env.pop("LLMCOURSE_DB_URL", None)
    return Scratch(root=dest, env=env)


def strip_solution_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n") if not any(m in line for m in SOLUTION_MARKERS))


@dataclass(frozen=True)
class Mutation:
    cell: str   # grade_id of the solution cell
    old: str    # text in the solution that is replaced...
    new: str    # ...by this


def build_submission(release_nb: Path, source_nb: Path, out: Path, fill: str | list[str] = "all",
                     mutation: Mutation | None = None) -> Path:
    """Write a student's notebook: the released notebook with some solution cells filled in.

    fill: "all", "none", or a list of grade ids whose solution cells get the reference
    solution (markers removed). mutation: then replace `old` by `new` in one filled cell.
    """
    rel = read_nb(release_nb)
    src = {nbgrader_meta(c).get("grade_id"): c for c in read_nb(source_nb).cells if nbgrader_meta(c)}
    applied = mutation is None
    for cell in rel.cells:
        meta = nbgrader_meta(cell)
        gid = meta.get("grade_id")
        if not meta.get("solution") or cell.cell_type != "code":
            continue
        if fill == "all" or (isinstance(fill, list) and gid in fill):
            cell.source = strip_solution_markers(src[gid].source)
        if mutation is not None and gid == mutation.cell:
            if cell.source.count(mutation.old) != 1:
                raise CourseError(f"mutation text must occur exactly once in cell {gid!r}: {mutation.old!r}")
            cell.source = cell.source.replace(mutation.old, mutation.new)
            applied = True
    if not applied:
        raise CourseError(f"no filled solution cell {mutation.cell!r} to mutate")
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(rel, str(out))
    return out


SAMPLE_KINDS = ("correct", "blank", "partial")


def sample_fill(kind: str, source_nb: Path) -> str | list[str]:
    """What a sample student of `kind` fills in: every answer, none, or the first half of them."""
    if kind == "correct":
        return "all"
    if kind == "blank":
        return "none"
    if kind == "partial":
        ids = solution_cell_ids(source_nb)
        return ids[: len(ids) // 2]
    raise CourseError(f"unknown sample kind {kind!r}; one of {', '.join(SAMPLE_KINDS)}")


def build_sample(course_root: Path, assignment: str, source_nb: Path, student: str, kind: str = "correct",
                 mutation: Mutation | None = None) -> Path:
    """submitted/<student>/<assignment>/<notebook>: a sample student's notebook built from the course's release."""
    name = Path(source_nb).name
    return build_submission(Path(course_root) / "release" / assignment / name, source_nb,
                            Path(course_root) / "submitted" / student / assignment / name,
                            fill=sample_fill(kind, source_nb), mutation=mutation)


def grade_class(root: Path, assignment: str, env: dict, workers: int | None = None) -> str | None:
    """Grade every submission: sandboxed when this machine can, else with stock nbgrader.

    Returns None when sandboxed, else the reason the sandbox is unavailable. For tests and
    the demo; `make autograde` refuses the stock path unless told UNSAFE=1.
    """
    from ..grading.grader import grade_assignment
    return grade_assignment(root, assignment, env, allow_stock=True, workers=workers, progress=False).stock_reason
