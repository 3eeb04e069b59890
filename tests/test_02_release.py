"""2. Release: release/ equals what nbgrader generates now, and carries no solution or hidden test."""
from __future__ import annotations

import pytest
from nbutil import ROOT, graded_test_cells, read, solution_bodies, source_nbs, split_hidden

from llmcourse.authoring.sampleclass import make_scratch_course
from llmcourse.grading.course import generate_release, list_assignments, release_differences

ASSIGNMENTS = list_assignments(ROOT)


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory):
    course = make_scratch_course(tmp_path_factory.mktemp("rel") / "course", ROOT)
    for a in ASSIGNMENTS:
        generate_release(course.root, a, course.env)
    return course.root / "release"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_matches_fresh_generation(fresh_release, assignment):
    diffs = release_differences(ROOT, fresh_release / assignment, assignment)
    assert not diffs, f"release/{assignment} is stale; run `make release`: {diffs}"


def _public_lines(nb) -> set[str]:
    """Stripped lines of the source that lie outside every solution and hidden-test region."""
    public, inside = set(), False
    for c in nb.cells:
        for line in c.source.split("\n"):
            if "### BEGIN SOLUTION" in line or "### BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "### END SOLUTION" in line or "### END HIDDEN TESTS" in line:
                inside = False
            elif not inside:
                public.add(line.strip())
    return public


def _significant(line: str) -> bool:
    s = line.strip()
    return len(s) >= 12 and not s.startswith("#") and s not in ('"""', "'''")


@pytest.mark.parametrize("src", source_nbs(), ids=lambda p: p.parent.name)
def test_release_has_no_solution_or_hidden_test(src):
    rel_path = ROOT / "release" / src.parent.name / src.name
    assert rel_path.is_file(), f"{rel_path} missing; run `make release`"
    text = "\n".join(c.source for c in read(rel_path).cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "MARK SCHEME"):
        assert marker not in text, f"release contains the marker {marker!r}"
    released_lines = {ln.strip() for ln in text.split("\n")}
    # lines that legitimately appear in the public part of the source too (e.g. a locked cell)
    released_lines -= _public_lines(read(src))
    leaked = [ln for ln in solution_bodies(read(src)) if _significant(ln) and ln.strip() in released_lines]
    assert not leaked, f"solution lines in release: {leaked[:3]}"
    hidden = [ln for c in graded_test_cells(read(src)) for block in split_hidden(c.source)[1]
              for ln in block.split("\n")]
    leaked = [ln for ln in hidden if _significant(ln) and ln.strip() in released_lines]
    assert not leaked, f"hidden test lines in release: {leaked[:3]}"
    for c in read(rel_path).cells:
        if c.cell_type == "code":
            assert not c.outputs, "release notebooks carry no outputs"


def test_course_package_carries_no_solution():
    """Students install llmcourse; it must not contain any graded solution."""
    package = "\n".join(p.read_text() for p in sorted((ROOT / "llmcourse").rglob("*.py")))
    package_lines = {ln.strip() for ln in package.split("\n")}
    for src in source_nbs():
        leaked = [ln for ln in solution_bodies(read(src)) if _significant(ln) and ln.strip() in package_lines]
        assert not leaked, f"{src.parent.name}: solution lines inside llmcourse/: {leaked[:3]}"
