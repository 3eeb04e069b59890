"""What crosses the grader's modules: typed results, never formatted strings to parse back.

``Outcome`` is one submission's result (what reports, the CLI and the resume state read);
``NotebookRun`` one notebook's sandboxed run; ``Executed`` what the run step hands the
finish step (over Dask, pickled).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .course import CourseError
from .flags import Flag, FlagCode  # noqa: F401  (FlagCode: with Flag, what callers branch on)


class GraderError(CourseError):
    pass


@dataclass
class Outcome:
    student: str
    assignment: str
    score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0
    flags: list[Flag] = field(default_factory=list)
    rejected: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    cells: dict = field(default_factory=dict)   # grade_id -> {"points", "passed", "reason"}
    resumed: bool = False
    run_seconds: float = 0.0      # in the sandbox (kernel start and cells)
    record_seconds: float = 0.0   # recording in the gradebook

    def flag(self, code: FlagCode, message: str) -> None:
        self.flags.append(Flag(code, message))

    def has_flag(self, code: FlagCode) -> bool:
        return any(f.code is code for f in self.flags)

    def to_json(self) -> dict:
        return {**asdict(self), "flags": [f.to_json() for f in self.flags]}

    @classmethod
    def from_json(cls, data: dict) -> "Outcome":
        """An Outcome written by to_json; ValueError/KeyError/TypeError for anything else."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["flags"] = [Flag.from_json(f) for f in fields.get("flags", [])]
        return cls(**fields)


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
