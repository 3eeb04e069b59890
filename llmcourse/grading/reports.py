"""The batch's reports, ``<course>/reports/<assignment>/``: CSV for the LMS and the instructor, one PNG.

lms_grades.csv (points per student), flagged.csv (every flag), timing.csv, test_cells.csv
(students failing each test cell), failed_checks.csv (the check each failing student failed
first) and test_cells.png (where the class loses points). Student-controlled text goes
through llmcourse.grading.safetext.SafeWriter: no cell of these files can be a formula.
"""
from __future__ import annotations

from pathlib import Path

from .results import Outcome
from .safetext import SafeWriter


def _csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as fh:
        w = SafeWriter(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(row)


def write_reports(folder: Path, assignment: str, outcomes: list[Outcome]) -> Path:
    r = Path(folder)
    r.mkdir(parents=True, exist_ok=True)
    _csv(r / "lms_grades.csv", ["student_id", "assignment", "autograded_points", "autograded_max", "flagged"],
         ([o.student, o.assignment, o.score, o.max_score, "yes" if o.flags else ""] for o in outcomes))
    _csv(r / "flagged.csv", ["student_id", "reason"], ([o.student, f.message] for o in outcomes for f in o.flags))
    _csv(r / "timing.csv", ["student_id", "seconds", "resumed"], ([o.student, o.seconds, o.resumed] for o in outcomes))
    cell_ids = sorted({g for o in outcomes for g in o.cells})
    fails = {g: sum(1 for o in outcomes if g in o.cells and not o.cells[g]["passed"]) for g in cell_ids}
    _csv(r / "test_cells.csv", ["test_cell", "students_failing", "students_graded"],
         ([g, fails[g], sum(1 for o in outcomes if g in o.cells)] for g in cell_ids))
    checks: dict[str, int] = {}
    for o in outcomes:
        for n in o.failed_checks:
            checks[n] = checks.get(n, 0) + 1
    _csv(r / "failed_checks.csv", ["check", "students_failing_first_here"],
         ([n, k] for n, k in sorted(checks.items(), key=lambda kv: -kv[1])))
    if cell_ids and outcomes:
        _plot_test_cells(r / "test_cells.png", assignment, cell_ids, fails, len(outcomes))
    return r


def _plot_test_cells(path: Path, assignment: str, cell_ids: list[str], fails: dict, n: int) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ..student.plotting import use_course_style
        use_course_style()
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(cell_ids) + 1.5))
        share = [100 * fails[g] / max(1, n) for g in cell_ids]
        ax.barh(cell_ids, share)
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of the class failing this test cell")
        ax.set_title(f"{assignment}: where the class loses points ({n} submissions)")
        ax.invert_yaxis()
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
    except Exception:   # a report figure never fails a grading batch
        pass
