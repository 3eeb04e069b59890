"""Shared fixtures. Jupyter, IPython and matplotlib state goes to a temp dir, never $HOME."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

_STATE = Path(tempfile.mkdtemp(prefix="llmcourse-test-state-"))
from llmcourse.grading.course import jupyter_env  # noqa: E402
from llmcourse.settings import setting  # noqa: E402

os.environ.update(jupyter_env(_STATE))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_STATE, ignore_errors=True)


def require_system(command: str, package: str) -> None:
    """Skip when a Debian-packaged tool is missing; under CI (CI=true) a missing tool fails the test."""
    if shutil.which(command):
        return
    msg = f"{command} not found: install Debian package {package!r} (make sysdeps does it as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " [under CI a missing package is a failure]")
    pytest.skip(msg)


def require_sandbox() -> None:
    """Skip when this machine cannot sandbox (not root, no cgroups); under CI that is a failure."""
    require_system("bwrap", "bubblewrap")
    from llmcourse.grading import sandbox
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"sandbox unavailable under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@dataclass
class GradedCourse:
    root: Path
    env: dict
    db_url: str
    assignments: list
    scores: dict        # {assignment: {student: {grade_id: {...}}}}
    students: list
    sandboxed: bool     # graded by the course's sandboxed grader (else stock nbgrader)


@pytest.fixture(scope="session")
def graded_course(tmp_path_factory) -> GradedCourse:
    """A scratch course: release generated, correct/blank/partial submissions autograded, feedback made."""
    from llmcourse.authoring.sampleclass import SAMPLE_KINDS, build_sample, grade_class, make_scratch_course
    from llmcourse.grading.course import cell_scores, generate_release, list_assignments, run_nbgrader, source_notebooks

    graded = list_assignments(ROOT, graded_only=True)
    only = setting("LLMCOURSE_ASSIGNMENTS")  # e.g. "02_entropy_perplexity" while authoring
    if only:
        graded = [a for a in graded if a in only.replace(",", " ").split()]
    course = make_scratch_course(tmp_path_factory.mktemp("course") / "course", ROOT, graded)
    students = list(SAMPLE_KINDS)
    sandboxed = True
    for a in graded:
        generate_release(course.root, a, course.env)
        for nb in source_notebooks(ROOT, a):
            for student in students:
                build_sample(course.root, a, nb, student, kind=student)
        # the course's grader (what `make autograde` runs), or stock nbgrader without a sandbox
        sandboxed &= grade_class(course.root, a, course.env, workers=2) is None
        run_nbgrader(["generate_feedback", a, "--force"], cwd=course.root, env=course.env)
    db = f"sqlite:///{course.db_path}"
    return GradedCourse(root=course.root, env=course.env, db_url=db, assignments=graded,
                        scores={a: cell_scores(db, a) for a in graded}, students=students, sandboxed=sandboxed)
