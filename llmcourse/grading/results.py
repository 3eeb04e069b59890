"""What crosses the grader's modules: typed results, never formatted strings to parse back.

``Outcome`` is one submission's result (what reports, the CLI and the resume state read);
``NotebookRun`` one notebook's sandboxed run; ``Executed`` what the run step hands the
finish step (over Dask, pickled).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .course import CourseError


class GraderError(CourseError):
    pass


@dataclass
class Outcome:
    student: str
    assignment: str
    score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0
    flags: list[str] = field(default_factory=list)
    rejected: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    cells: dict = field(default_factory=dict)   # grade_id -> {"points", "passed", "reason"}
    resumed: bool = False
    run_seconds: float = 0.0      # in the sandbox (kernel start and cells)
    record_seconds: float = 0.0   # recording in the gradebook


@dataclass
class NotebookRun:
    """One notebook of a submission, rebuilt by the trusted step and run in the sandbox."""
    name: str                   # file name, as in source/<assignment>/
    canonical: object           # the canonical notebook (nbformat node) that ran
    cells: list | None          # per cell index: {"cell_type", "outputs", "metadata"} or None; None: no usable run
    records: dict               # the check records the student's kernel wrote


@dataclass
class Executed:
    """A submission run in the sandbox and not yet decided: what a run task hands a finish task."""
    outcome: Outcome
    digest: str
    runs: list[NotebookRun]
    seconds: float
