"""Flags: what an instructor should look at in a graded submission, each with a code and a message.

The code says what happened (tests, the CLI and reports branch on it); the message says it to
a person (flagged.csv, the CLI) and is the grader's own text, student-controlled parts quoted
as data. Standard library only: the trusted child process that reads a submission makes flags.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FlagCode(str, Enum):
    LINKS_IGNORED = "links_ignored"              # symbolic links in the submission folder
    RENAMED = "renamed"                          # the one notebook had another name
    REJECTED = "rejected"                        # unreadable, oversized, ...: graded as the blank notebook
    ANSWER_DUPLICATE = "answer_duplicate"        # an answer cell appears twice
    ANSWER_TYPE_CHANGED = "answer_type_changed"  # an answer cell became markdown/code
    NO_ANSWER_CELLS = "no_answer_cells"          # no answer cell of the assignment at all
    ANSWERS_MISSING = "answers_missing"          # some answer cells are missing
    WALL_TIME = "wall_time"                      # the sandbox's wall-time limit killed the run
    MEMORY = "memory"                            # the sandbox's memory limit killed a process
    NO_RUN = "no_run"                            # the sandboxed run left nothing usable
    TAMPERED = "tampered"                        # in-kernel and trusted verdicts of a cell disagree
    GRADER_ERROR = "grader_error"                # the grader failed on this submission
    LIMITS_NOT_ENFORCED = "limits_not_enforced"  # the grading mode enforces fewer limits (rlimits only, no cpu)


@dataclass(frozen=True)
class Flag:
    code: FlagCode
    message: str

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict:
        return {"code": self.code.value, "message": self.message}

    @classmethod
    def from_json(cls, data: dict) -> "Flag":
        """A flag written by to_json; ValueError/KeyError/TypeError for anything else."""
        return cls(FlagCode(data["code"]), str(data["message"]))
