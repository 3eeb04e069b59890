"""Grade a whole class safely: sandboxed, tamper-proof, parallel, resumable.

For each submission ``submitted/<student>/<assignment>/``:

1. trusted: rebuild the notebook from the course's source (llmcourse.grading.trusted.prepare: in a
   child process with its own memory and CPU limits); only the notebook is taken from the
   submission folder, nothing that lies beside it; an unreadable or oversized notebook gets
   a clear message and is graded as the blank release (0 points);
2. sandboxed: run it in bubblewrap + cgroups (llmcourse.grading.sandbox) with the hidden checks
   recording the student's values only (no expected values in the student's process);
3. trusted: compare the records with the reference solution's (run the same way, once per
   assignment, cached), decide every test cell, flag cells whose in-kernel and trusted
   verdicts disagree;
4. nbgrader: hand the decided, already executed notebook to nbgrader's autograde (with
   execution switched off, LLMCOURSE_PRE_EXECUTED=1) so the gradebook, formgrader, feedback
   and export work as usual (llmcourse.grading.gradebook: a long-lived writer process per grading
   process; SQLite writes take turns, PostgreSQL writes run concurrently).

Each job has its module: resume state and hashing (``state``), one sandboxed run
(``sandboxrun``, over the line protocol of ``protocol``), the reference cache (``reference``),
the per-submission steps 1-4 (``pipeline``), what nbgrader and feedback get (``merge``), the
Dask and thread engines (``engines``), the CSV/PNG reports (``reports``). This module holds
the batch, and :func:`grade_assignment`, the one place that decides between the sandbox and
stock nbgrader.

State lives in ``<course>/.grader/<assignment>/`` (never visible inside a sandbox).
Reports go to ``<course>/reports/<assignment>/``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import sandbox
from .course import jupyter_env, run_nbgrader, source_notebooks
from .engines import ENGINES, DaskSession, run_dask, run_threads
from .gradebook import Writer, check_gradebook, db_url, file_lock, is_sqlite
from .pipeline import SubmissionPipeline
from .reference import ReferenceCache
from .reports import write_reports
from .results import Executed, Flag, FlagCode, GraderError, NotebookRun, Outcome  # noqa: F401  (public types)
from .sandboxrun import SandboxRunner
from .state import GRADER_VERSION  # noqa: F401


@dataclass
class GradeRun:
    """What :func:`grade_assignment` did: the sandboxed grader's outcomes, or stock nbgrader and why."""
    outcomes: list[Outcome] | None     # None: graded by stock nbgrader
    reports: Path | None
    stock_reason: str | None           # why the sandbox was unavailable (then stock nbgrader graded)

    @property
    def sandboxed(self) -> bool:
        return self.stock_reason is None


def grade_assignment(root: Path, assignment: str, env: dict | None = None, *, allow_stock: bool = False,
                     only: list[str] | None = None, **grader_options) -> GradeRun:
    """Grade every submission of one assignment: in the sandbox when this machine can.

    The one place that decides "sandbox or stock nbgrader": without a sandbox, refuse
    (GraderError with the reason) unless `allow_stock` (`make autograde UNSAFE=1`, the tests'
    and the demo's sample classes), then stock nbgrader autogrades, student code unsandboxed.
    """
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as exc:
        if not allow_stock:
            raise GraderError(f"{exc}. Refusing to run student code unsandboxed; pass --unsafe "
                              f"(make autograde UNSAFE=1) to use stock nbgrader instead.") from None
        run_nbgrader(["autograde", assignment, "--force"], cwd=Path(root), env=env)
        return GradeRun(outcomes=None, reports=None, stock_reason=str(exc))
    g = Grader(root, assignment, env=env, **grader_options)
    return GradeRun(outcomes=g.grade_all(only=only), reports=g.reports, stock_reason=None)


class Grader:
    def __init__(self, root: Path, assignment: str, workers: int | None = None,
                 limits: sandbox.Limits | None = None, env: dict | None = None, progress: bool = True,
                 engine: str = "dask", scheduler: str | None = None):
        if engine not in ENGINES:
            raise GraderError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")
        if scheduler and engine != "dask":
            raise GraderError("a scheduler address needs engine='dask'")
        self.mode = sandbox.check_available()
        sandbox.remove_stale_cgroups()
        self.root = Path(root).resolve()
        self.assignment = assignment
        self.workers = workers or max(1, (os.cpu_count() or 2))
        self.limits = limits or sandbox.Limits.from_env()
        self.env = dict(env or jupyter_env(self.root / ".grader" / ".jupyter-state"))
        self.progress = progress
        self.engine = engine
        self.scheduler = scheduler
        self.state = self.root / ".grader" / assignment
        self.reports = self.root / "reports" / assignment
        self.writer = Writer(self.root, self.env)
        self.notebooks = source_notebooks(self.root, assignment)
        if not self.notebooks:
            raise GraderError(f"no source notebooks for {assignment}")
        release = self.root / "release" / assignment
        missing = [nb.name for nb in self.notebooks if not (release / nb.name).is_file()]
        if missing:
            raise GraderError(f"release/{assignment} lacks {missing}: run `make release` first")
        self.runner = SandboxRunner(self.root, self.limits, self.env)
        self.reference_cache = ReferenceCache(self.state, self.runner, assignment)
        self.pipeline = SubmissionPipeline(self.root, assignment, self.notebooks, self.runner, self.writer,
                                           self.state, self.env)

    def reference(self, nb_path: Path) -> dict:
        return self.reference_cache.get(nb_path)

    def references(self) -> dict:
        return {nb.name: self.reference(nb) for nb in self.notebooks}

    def students(self) -> list[str]:
        base = self.root / "submitted"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / self.assignment).is_dir())

    def grade_all(self, only: list[str] | None = None) -> list[Outcome]:
        url = db_url(self.root, self.env)
        if self.scheduler and is_sqlite(url):
            raise GraderError("a SQLite gradebook cannot be shared by a cluster's workers (its lock works on "
                              "one machine only): set LLMCOURSE_DB_URL to a PostgreSQL database, or grade "
                              "without SCHEDULER= on this machine")
        check_gradebook(url, self.assignment)
        with file_lock(self.state / "grading.lock", 0,
                       f"another grading run of {self.assignment} is in progress in {self.root}", GraderError):
            return self._grade_all(only)

    def _grade_all(self, only: list[str] | None) -> list[Outcome]:
        students = [s for s in self.students() if not only or s in only]
        outcomes: list[Outcome] = []
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(students), desc=f"grading {self.assignment}", unit="submission")
        dask = DaskSession(self.scheduler, min(self.workers, len(students))) \
            if self.engine == "dask" and students else None
        try:
            run = run_threads(self, students) if dask is None else run_dask(self, dask, students)
            for outcome in run:
                outcomes.append(outcome)
                if bar:
                    bar.update(1)
        finally:
            self.writer.close()
            if dask is not None:
                dask.close()
            if bar:
                bar.close()
        outcomes.sort(key=lambda o: o.student)
        write_reports(self.reports, self.assignment, outcomes)
        (self.reports / "grading_mode.txt").write_text(self.mode.describe() + "\n")
        return outcomes
