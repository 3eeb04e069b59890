"""4. Blank: the released notebook, submitted untouched, scores 0 on every autograded test cell."""
from __future__ import annotations

import nbformat
from nbutil import is_test_cell, meta


def test_blank_scores_zero_everywhere(graded_course):
    for a in graded_course.assignments:
        blank = graded_course.scores[a]["blank"]
        auto = {gid: g for gid, g in blank.items() if g["kind"] == "code"}
        assert auto, f"{a}: no autograded cells recorded"
        scored = {gid: g["auto"] for gid, g in auto.items() if g["auto"] != 0}
        assert not scored, f"{a}: the blank notebook scored on {scored}: those tests are vacuous"


def test_blank_test_cells_fail_with_not_implemented(graded_course):
    for a in graded_course.assignments:
        for path in (graded_course.root / "autograded" / "blank" / a).glob("*.ipynb"):
            nb = nbformat.read(str(path), 4)
            for c in nb.cells:
                if is_test_cell(c):
                    errors = [o for o in c.outputs if o.output_type == "error"]
                    assert errors, f"{a}/{meta(c)['grade_id']}: no error on the blank notebook"


def test_partial_scores_between(graded_course):
    for a in graded_course.assignments:
        per = graded_course.scores[a]["partial"]
        got = sum(g["auto"] for g in per.values() if g["kind"] == "code")
        mx = sum(g["max"] for g in per.values() if g["kind"] == "code")
        assert 0 < got < mx, f"{a}: half the solutions should earn some but not all points ({got}/{mx})"
