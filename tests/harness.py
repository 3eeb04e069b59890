"""The one seam between the tests and grading: make a course, submit, grade, read scores and feedback.

Tests that touch grading go through these functions instead of building the steps by hand or
reading the grader's state folder (``<course>/.grader/``): when the grader's insides change,
this file changes and the tests do not. Every function works on a scratch course
(:func:`scratch_course`) and returns plain data or the grader's own results.

    course = scratch_course(tmp_path, ["01_chain_rule"])
    submit(course, "alice", notebook)                   # a NotebookNode, raw bytes or a file
    outcomes = grade(course, "01_chain_rule")           # {student: Outcome}: score, flags, cells
    scores(course, "01_chain_rule")["alice"]            # the gradebook: {grade_id: {...}}
    feedback_html(course, "01_chain_rule", "alice")     # the page the student gets
"""
from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ the course
def scratch_course(dest: Path, assignments: list[str], release: bool = True, env: dict | None = None):
    """A throw-away course (copy of source/, config, own gradebook and exchange), release generated.

    env: added to the course's environment first (e.g. LLMCOURSE_DB_URL for a PostgreSQL gradebook)."""
    from llmcourse.authoring.sampleclass import make_scratch_course
    from llmcourse.grading.course import generate_release
    course = make_scratch_course(Path(dest) / "course", ROOT, assignments)
    course.env.update(env or {})
    course.assignments = list(assignments)
    if release:
        for a in assignments:
            generate_release(course.root, a, course.env)
    return course


def notebook_names(assignment: str) -> list[str]:
    return sorted(p.name for p in (ROOT / "source" / assignment).glob("*.ipynb"))


def release_path(course, assignment: str, name: str | None = None) -> Path:
    return course.root / "release" / assignment / (name or notebook_names(assignment)[0])


def filled(course, assignment: str, fill="all", name: str | None = None):
    """The release notebook with the reference solution in the answer cells `fill` ("all", "none",
    a list of grade ids, or a sample kind: "correct", "blank", "partial"), as a student would submit it."""
    import tempfile

    from llmcourse.authoring.sampleclass import SAMPLE_KINDS, build_submission, sample_fill
    name = name or notebook_names(assignment)[0]
    if isinstance(fill, str) and fill in SAMPLE_KINDS:
        fill = sample_fill(fill, ROOT / "source" / assignment / name)
    with tempfile.TemporaryDirectory() as d:
        out = build_submission(release_path(course, assignment, name), ROOT / "source" / assignment / name,
                               Path(d) / name, fill=fill)
        return nbformat.read(str(out), 4)


# ------------------------------------------------------------------ submit, grade
def submission_dir(course, assignment: str, student: str) -> Path:
    return course.root / "submitted" / student / assignment


def submit(course, student: str, notebook, assignment: str | None = None, name: str | None = None) -> Path:
    """Put one notebook into submitted/<student>/<assignment>/ (a NotebookNode, raw bytes or a path)."""
    assignment = assignment or course.assignments[0]
    name = name or notebook_names(assignment)[0]
    d = submission_dir(course, assignment, student)
    d.mkdir(parents=True, exist_ok=True)
    out = d / name
    if isinstance(notebook, bytes):
        out.write_bytes(notebook)
    elif isinstance(notebook, (str, Path)):
        shutil.copyfile(notebook, out)
    else:
        nbformat.write(notebook, str(out))
    return out


def grader(course, assignment: str, workers: int = 2, **limits):
    """The course's sandboxed grader for this course, with short limits (overridden by `limits`)."""
    from llmcourse.grading.grader import Grader
    from llmcourse.grading.sandbox import Limits
    lim = Limits(wall_s=180, cpu_s=180, memory_mb=1500, pids=96, cell_timeout_s=20, cell_output_kb=64)
    for k, v in limits.items():
        setattr(lim, k, v)
    return Grader(course.root, assignment, workers=workers, limits=lim, env=course.env, progress=False)


def grade(course, assignment: str, students: list[str] | None = None, workers: int = 2, **limits) -> dict:
    """Grade the submissions (all, or `students`) in the sandbox: {student: Outcome}."""
    outcomes = grader(course, assignment, workers=workers, **limits).grade_all(only=students)
    return {o.student: o for o in outcomes}


def grade_stock(course, assignment: str) -> None:
    """Stock nbgrader's autograde with the course's config (`make autograde UNSAFE=1`)."""
    from llmcourse.grading.course import run_nbgrader
    run_nbgrader(["autograde", assignment, "--force"], cwd=course.root, env=course.env)


def finished(course, assignment: str, students: list[str]) -> list[str]:
    """The students whose grading has finished and been saved (what a resumed run skips)."""
    done = course.root / ".grader" / assignment / "done"
    return [s for s in students if (done / f"{s}.json").exists()]


def forget(course, assignment: str, students: list[str]) -> None:
    """Drop the saved state of these students, so that the next run grades them again."""
    for s in students:
        (course.root / ".grader" / assignment / "done" / f"{s}.json").unlink(missing_ok=True)


def staged(course, assignment: str, student: str) -> Path:
    """The folder of decided notebooks the grader handed nbgrader for `student`."""
    return course.root / ".grader" / assignment / "staged" / student / assignment


# ------------------------------------------------------------------ read the results
def db_url(course) -> str:
    """The gradebook the course's config uses (LLMCOURSE_DB_URL in its environment, else its SQLite file)."""
    from llmcourse.grading.gradebook import db_url as configured
    return configured(course.root, course.env)


def scores(course, assignment: str) -> dict:
    """The gradebook: {student: {grade_id: {"score", "max", "auto", "manual", "kind"}}}."""
    from llmcourse.grading.course import cell_scores
    return cell_scores(db_url(course), assignment)


def totals(course, assignment: str) -> dict[str, float]:
    """{student: autograded points} from the gradebook."""
    return {s: sum(g["auto"] or 0 for g in per.values() if g["kind"] == "code")
            for s, per in scores(course, assignment).items()}


def graded_notebooks(course, assignment: str, student: str) -> list:
    """The notebooks nbgrader recorded for `student` (autograded/<student>/<assignment>/)."""
    d = course.root / "autograded" / student / assignment
    return [nbformat.read(str(p), 4) for p in sorted(d.glob("*.ipynb"))]


def outputs_text(course, assignment: str, student: str) -> str:
    """Every code cell's outputs of the graded notebooks, as one JSON text."""
    import json
    return "".join(json.dumps(c.get("outputs", [])) for nb in graded_notebooks(course, assignment, student)
                   for c in nb.cells if c.cell_type == "code")


def generate_feedback(course, assignment: str, student: str | None = None) -> None:
    """nbgrader's generate_feedback with the course's config, for one student or all."""
    from llmcourse.grading.course import run_nbgrader
    run_nbgrader(["generate_feedback", assignment, *(["--student", student] if student else []), "--force"],
                 cwd=course.root, env=course.env)


def feedback_html(course, assignment: str, student: str, generate: bool = True) -> str:
    """The feedback page(s) of `student` (generated first unless generate=False), joined."""
    if generate:
        generate_feedback(course, assignment, student)
    pages = sorted((course.root / "feedback" / student / assignment).glob("*.html"))
    assert pages, f"no feedback page for {student}/{assignment}"
    return "\n".join(p.read_text(encoding="utf-8") for p in pages)


def visible_text(page: str) -> str:
    """What a reader of the page sees: no tags, no style or script, entities decoded."""
    text = re.sub(r"<style.*?</style>|<script.*?</script>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))
