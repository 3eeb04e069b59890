"""6. Grading end to end in a scratch course: autograde, manual grade, feedback, export."""
from __future__ import annotations

import csv
import html
import re

from nbutil import ROOT, graded_test_cells, read, split_hidden

from llmcourse.grading.course import run_nbgrader


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
    from llmcourse.grading.course import failure_summary
    for a in graded_course.assignments:
        rows = failure_summary(graded_course.scores[a])
        assert rows and all(total == len(graded_course.students) for _, _, total in rows)
        assert all(lost >= 1 for _, lost, _ in rows), "blank loses points on every test cell"


def test_collect_from_lms_zip(tmp_path):
    """An LMS download (Canvas or Moodle file naming) lands in submitted/<student>/<id>/."""
    import subprocess
    import sys
    import zipfile

    from llmcourse.authoring.sampleclass import make_scratch_course

    a = "01_chain_rule"
    course = make_scratch_course(tmp_path / "course", ROOT, [a])
    nb_text = (ROOT / "release" / a / "chain_rule.ipynb").read_text()
    for lms, names in {"canvas": ["alice_1234_5678_chain_rule.ipynb", "bob_LATE_99_100_chain_rule-1.ipynb"],
                       "moodle": ["Carol_42_assignsubmission_file_/chain_rule.ipynb"]}.items():
        z = tmp_path / f"{lms}.zip"
        with zipfile.ZipFile(z, "w") as zf:
            for n in names:
                zf.writestr(n, nb_text)
            zf.writestr("readme.txt", "not a notebook")
        proc = subprocess.run([sys.executable, "-m", "llmcourse.cli", "collect", "--assignment", a,
                               "--zip", str(z), "--lms", lms], cwd=course.root, env=course.env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    got = sorted(str(p.relative_to(course.root / "submitted")) for p in (course.root / "submitted").rglob("*.ipynb"))
    assert got == [f"Carol/{a}/chain_rule.ipynb", f"alice/{a}/chain_rule.ipynb", f"bob/{a}/chain_rule-1.ipynb"]


def test_stock_nbgrader_path_still_works(tmp_path):
    """`make autograde UNSAFE=1` (no sandbox available): stock nbgrader with the course's config."""
    import nbformat

    from llmcourse.authoring.sampleclass import build_submission, make_scratch_course
    from llmcourse.grading.course import cell_scores, generate_release

    a = "01_chain_rule"
    course = make_scratch_course(tmp_path / "course", ROOT, [a])
    generate_release(course.root, a, course.env)
    rel, src = course.root / "release" / a / "chain_rule.ipynb", ROOT / "source" / a / "chain_rule.ipynb"
    build_submission(rel, src, course.root / "submitted" / "correct" / a / "chain_rule.ipynb", fill="all")
    build_submission(rel, src, course.root / "submitted" / "blank" / a / "chain_rule.ipynb", fill="none")
    run_nbgrader(["autograde", a, "--force"], cwd=course.root, env=course.env)
    run_nbgrader(["generate_feedback", a, "--force"], cwd=course.root, env=course.env)
    scores = cell_scores(f"sqlite:///{course.db_path}", a)
    auto = {s: sum(g["auto"] for g in per.values() if g["kind"] == "code") for s, per in scores.items()}
    assert auto == {"correct": 90.0, "blank": 0.0}
    hidden = {ln.strip() for c in graded_test_cells(read(src)) for b in split_hidden(c.source)[1]
              for ln in b.split("\n") if len(ln.strip()) > 15}
    for page in (course.root / "feedback").rglob("*.html"):
        text = _visible_text(page.read_text())
        assert not [ln for ln in hidden if ln in text]
    assert nbformat.read(str(rel), 4)
