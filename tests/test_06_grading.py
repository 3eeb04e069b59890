"""6. Grading end to end in a scratch course: autograde, manual grade, feedback, export."""
from __future__ import annotations

import csv
import html
import re

from nbutil import ROOT, read, split_hidden, graded_test_cells

from llmcourse.course import run_nbgrader


def test_correct_submission_gets_full_autograded_marks(graded_course):
    for a in graded_course.assignments:
        per = graded_course.scores[a]["correct"]
        lost = {gid: (g["auto"], g["max"]) for gid, g in per.items() if g["kind"] == "code" and g["auto"] != g["max"]}
        assert not lost, f"{a}: the reference solution lost points on {lost}"


def test_manual_grade_shows_in_export(graded_course, tmp_path):
    from nbgrader.api import Gradebook

    a = graded_course.assignments[0]
    nb_name = next((ROOT / "source" / a).glob("*.ipynb")).stem
    with Gradebook(graded_course.db_url) as gb:
        sub = gb.find_submission(a, "correct")
        auto_total = sub.score
        answer = next(g for nbk in sub.notebooks for g in nbk.grades if g.cell_type == "markdown")
        g = gb.find_grade(answer.name, nb_name, a, "correct")
        g.manual_score = 4.0
        gb.db.commit()
    out = tmp_path / "grades.csv"
    run_nbgrader(["export", "--to", str(out)], cwd=graded_course.root, env=graded_course.env)
    rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(out.open())}
    row = rows[(a, "correct")]
    assert float(row["score"]) == auto_total + 4.0
    assert float(row["max_score"]) == 100.0
    assert float(rows[(a, "blank")]["score"]) == 0.0


def _visible_text(page: str) -> str:
    text = re.sub(r"<style.*?</style>|<script.*?</script>", " ", page, flags=re.S)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text)


def test_feedback_never_shows_hidden_tests(graded_course):
    for a in graded_course.assignments:
        src = next((ROOT / "source" / a).glob("*.ipynb"))
        hidden_lines = {ln.strip() for c in graded_test_cells(read(src)) for block in split_hidden(c.source)[1]
                        for ln in block.split("\n") if len(ln.strip()) > 15}
        pages = list((graded_course.root / "feedback").glob(f"*/{a}/*.html"))
        assert len(pages) == len(graded_course.students)
        for page in pages:
            text = _visible_text(page.read_text())
            assert "HIDDEN TESTS" not in text
            shown = [ln for ln in hidden_lines if ln in text]
            assert not shown, f"{page}: hidden test source shown: {shown[:2]}"
        blank = _visible_text(next((graded_course.root / "feedback" / "blank" / a).glob("*.html")).read_text())
        assert "not implemented yet" in blank, "feedback should say why a test cell failed"


def test_failure_summary(graded_course):
    from llmcourse.course import failure_summary
    for a in graded_course.assignments:
        rows = failure_summary(graded_course.scores[a])
        assert rows and all(total == len(graded_course.students) for _, _, total in rows)
        assert all(lost >= 1 for _, lost, _ in rows), "blank loses points on every test cell"
