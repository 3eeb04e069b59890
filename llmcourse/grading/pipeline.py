"""One submission, in two steps: run it (trusted rebuild, sandbox), then finish it (decide, record).

``execute`` needs no reference: it rebuilds each notebook from the course's source and the
submission (llmcourse.grading.trusted.prepare, in a limited child process) and runs it in
the sandbox; an unchanged submission returns its recorded Outcome instead. ``finish``
decides every test cell against the reference records, stages the notebook nbgrader
records (llmcourse.grading.merge) and records it through the gradebook writer. The engines
(llmcourse.grading.engines) run the two steps as one call or as two Dask tasks.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nbformat

from . import sandbox
from .gradebook import Writer
from .merge import graded_notebook
from .results import Executed, FlagCode, NotebookRun, Outcome
from .sandboxrun import SandboxRunner
from .state import ResumeState, hash_files, is_regular
from .trusted import Canonical, decide, prepare

NBGRADER_SMALL_FILES = ("timestamp.txt", "submission_secret.txt")


class SubmissionPipeline:
    def __init__(self, root: Path, assignment: str, notebooks: list[Path], runner: SandboxRunner,
                 writer: Writer, state_dir: Path, env: dict):
        self.root = Path(root)
        self.assignment = assignment
        self.notebooks = notebooks
        self.runner = runner
        self.writer = writer
        self.state_dir = Path(state_dir)
        self.resume = ResumeState(state_dir)
        self.env = env

    def grade_one(self, student: str, references: dict) -> Outcome:
        ex = self.execute(student)
        return ex if isinstance(ex, Outcome) else self.finish(ex, references)

    def execute(self, student: str) -> Executed | Outcome:
        """Run a submission in the sandbox (no reference needed); an unchanged one returns its Outcome."""
        t0 = time.perf_counter()
        sub_dir = self.root / "submitted" / student / self.assignment
        digest = hash_files(sub_dir)
        prior = self.resume.unchanged(student, digest, self.root / "autograded" / student / self.assignment)
        if prior is not None:
            return prior
        self.writer.warm()   # starts while the sandbox runs
        limits = self.runner.limits
        outcome = Outcome(student=student, assignment=self.assignment)
        mode = sandbox.mode()
        if mode.unenforced:
            outcome.flag(FlagCode.LIMITS_NOT_ENFORCED,
                         f"graded {mode.name}: limits NOT enforced: {', '.join(mode.unenforced)}")
        runs = []
        links = sorted(p.name for p in sub_dir.iterdir() if p.is_symlink())
        if links:
            outcome.flag(FlagCode.LINKS_IGNORED,
                         f"symbolic links in the submission were ignored: {', '.join(links[:5])}")
        present = sorted(p for p in sub_dir.glob("*.ipynb") if is_regular(p))
        expected_names = {nb.name for nb in self.notebooks}
        for nb_path in self.notebooks:
            sub_nb = sub_dir / nb_path.name
            if not is_regular(sub_nb):
                others = [p for p in present if p.name not in expected_names]
                if len(self.notebooks) == 1 and len(others) == 1:
                    outcome.flag(FlagCode.RENAMED, f"notebook renamed to {others[0].name!r}; graded as {nb_path.name}")
                    sub_nb = others[0]
                else:
                    sub_nb = None
            canon: Canonical = prepare(nb_path, self.root / "release" / self.assignment / nb_path.name, sub_nb,
                                       drop_to=sandbox.SANDBOX_HOST_UID, env=self.env)
            outcome.flags.extend(canon.flags)
            if canon.rejected:
                outcome.rejected = canon.rejected
                outcome.flag(FlagCode.REJECTED, f"rejected: {canon.rejected}; graded as the blank notebook")
            t_run = time.perf_counter()
            run = self.runner.run(canon.nb, self.runner.test_sources(nb_path))
            outcome.run_seconds += round(time.perf_counter() - t_run, 2)
            if run.result.timed_out:
                outcome.flag(FlagCode.WALL_TIME, f"the run hit the {limits.wall_s} s wall-time limit and was killed")
            if run.result.oom_killed:
                outcome.flag(FlagCode.MEMORY, f"a process hit the {limits.memory_mb} MB memory limit and was killed")
            if run.cells is None:
                outcome.flag(FlagCode.NO_RUN, "the sandboxed run left no usable notebook; every test cell scores 0")
            runs.append(NotebookRun(name=nb_path.name, canonical=canon.nb, cells=run.cells, records=run.records))
        return Executed(outcome=outcome, digest=digest, runs=runs, seconds=time.perf_counter() - t0)

    def finish(self, ex: Executed, references: dict) -> Outcome:
        """Decide the test cells against the reference, stage the notebook, record it in the gradebook."""
        t0 = time.perf_counter()
        outcome, student = ex.outcome, ex.outcome.student
        sub_dir = self.root / "submitted" / student / self.assignment
        staged = self.state_dir / "staged" / student / self.assignment
        if staged.exists():
            shutil.rmtree(staged)
        staged.mkdir(parents=True)
        for run in ex.runs:
            verdicts = decide(run.canonical, run.cells, run.records, references[run.name]["records"])
            for v in verdicts:
                outcome.cells[v.grade_id] = {"points": v.points, "passed": v.passed, "reason": v.reason}
                if v.tampered:
                    outcome.flag(FlagCode.TAMPERED, f"{v.grade_id}: {v.tampered}")
                if not v.passed and v.failed_check is not None:
                    outcome.failed_checks.append(v.failed_check)
            nbformat.write(graded_notebook(run.canonical, verdicts, references[run.name]["outputs"]),
                           str(staged / run.name))
        # nbgrader's own small files: the timestamp, and the exchange's submission secret
        # (release_feedback / `make return` refuses a feedback folder without it).
        for name in NBGRADER_SMALL_FILES:
            f = sub_dir / name
            if is_regular(f) and f.stat().st_size < 1000:
                shutil.copy2(f, staged / name)
        t_rec = time.perf_counter()
        self.writer.record(self.assignment, student, os.path.relpath(self.state_dir / "staged", self.root))
        outcome.record_seconds = round(time.perf_counter() - t_rec, 2)
        outcome.score = sum(c["points"] for c in outcome.cells.values() if c["passed"])
        outcome.max_score = sum(c["points"] for c in outcome.cells.values())
        outcome.seconds = round(ex.seconds + time.perf_counter() - t0, 2)
        self.resume.save(student, ex.digest, outcome)
        return outcome
