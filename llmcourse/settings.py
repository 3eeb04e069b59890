"""Every ``LLMCOURSE_*`` environment variable: its default, its type, what it means. One accessor.

Code reads a setting only through :func:`setting` (a test holds every module to it), so this
list is complete; the README's table is rendered from it (``python -m llmcourse.settings
--markdown``) and a test fails when the two disagree. A value that does not parse is a clear
error naming the variable, never a silent default. Standard library only: the student
runtime and the sandbox's runner read settings too.

"internal" settings are set by the course's own processes for each other (the grader for
its sandbox, the gradebook writer for nbgrader's config): listed so that nothing is hidden,
never needed by a person.
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass


class SettingError(ValueError):
    pass


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type                   # str, int, float or bool
    default: object              # None: unset (the meaning says what then)
    meaning: str
    used_by: str                 # student, grader, sandbox, config (nbgrader_config.py), tests
    internal: bool = False       # set by the course's own processes, not by a person
    deprecated: tuple[str, ...] = ()   # older names still read, with a warning


def _limit(field: str, kind: type, default, meaning: str) -> Setting:
    return Setting(f"LLMCOURSE_LIMIT_{field.upper()}", kind, default, meaning + " (sandbox limit)", "grader")


_ALL = [
    # the course and its gradebook
    Setting("LLMCOURSE_DB_URL", str, None, "SQLAlchemy URL of the gradebook, e.g. postgresql://user:pass@host/db; "
            "unset: SQLite, gradebook.db in the course folder", "config"),
    Setting("LLMCOURSE_EXCHANGE", str, "/srv/nbgrader/exchange", "nbgrader exchange folder", "config"),
    Setting("LLMCOURSE_GRADEBOOK_TIMEOUT_S", float, 300.0, "seconds one gradebook write may take before that "
            "submission fails instead of hanging the batch", "grader"),
    # the sandbox
    Setting("LLMCOURSE_SANDBOX_UID", int, 2_000_000_000, "host uid the sandbox's processes run as (never root, "
            "no account's, no subordinate id)", "grader"),
    _limit("wall_s", int, 600, "wall time per submission, kernel start included, seconds"),
    Setting("LLMCOURSE_LIMIT_CELL_TIMEOUT_S", int, 60, "seconds one cell may run, then interrupt and, if ignored, "
            "a kernel restart (sandbox limit); also nbgrader's Execute.timeout (validate, stock autograde)",
            "grader", deprecated=("LLMCOURSE_CELL_TIMEOUT",)),
    _limit("cpu_s", int, 900, "CPU seconds per process"),
    _limit("memory_mb", int, 4096, "resident memory of the whole sandbox (cgroup), MB"),
    _limit("pids", int, 256, "processes and threads of the whole sandbox (cgroup pids.max)"),
    _limit("file_mb", int, 64, "largest file a process may write, MB"),
    _limit("nofile", int, 1024, "open files per process"),
    _limit("cell_output_kb", int, 256, "output kept per cell, KB; the rest is dropped with a note"),
    _limit("disk_mb", int, 512, "the sandbox's work folder (a tmpfs, counted as memory), MB"),
    _limit("cpu_cores", float, 1.0, "CPU share of the whole sandbox (cgroup cfs quota), cores"),
    _limit("result_mb", int, 48, "results read back from the sandbox at most, MB"),
    Setting("LLMCOURSE_CGROUP_ROOT", str, None, "a cgroup subtree delegated to the grading user (not root): a "
            "cgroup v2 folder, or on v1 a path under each of the memory, pids and cpu hierarchies (README, "
            "\"Grading safely\"); unset: root's hierarchy, or the grader's own cgroup if this user may write it",
            "grader"),
    Setting("LLMCOURSE_NO_CGROUP", bool, False, "where no cgroup can be had, grade with rlimits only (memory, "
            "processes and CPU share not limited; every report says so); same as `--limits rlimits-only`",
            "grader"),
    # notebooks
    Setting("LLMCOURSE_FIGURES", str, None, "folder where save_if_asked writes each notebook's figures as PNG "
            "(CI keeps them); unset: figures are not saved", "student"),
    Setting("LLMCOURSE_RECORD", str, None, "file the check helpers append their records to (the grader sets it "
            "inside the sandbox); unset: checks only pass or fail", "student", internal=True),
    # between the course's own processes
    Setting("LLMCOURSE_PRE_EXECUTED", bool, False, "nbgrader_config.py: the notebook was run and decided by the "
            "sandboxed grader, nbgrader only records it (set by the gradebook writer)", "config", internal=True),
    Setting("LLMCOURSE_CHANNEL", str, None, "the sandbox's result socket the runner connects to", "sandbox",
            internal=True),
    Setting("LLMCOURSE_IN_SANDBOX", bool, False, "the runner is inside the sandbox's own PID namespace (it may "
            "kill every other process there)", "sandbox", internal=True),
    Setting("LLMCOURSE_RUNNER_WORK", str, "/sandbox", "the runner's work folder", "sandbox", internal=True),
    Setting("LLMCOURSE_IN_SCOPE", bool, False, "the grader was re-run in a systemd user scope with a delegated "
            "cgroup (llmcourse grade does it; never again)", "grader", internal=True),
    Setting("LLMCOURSE_RUNNER_DEBUG", bool, False, "the runner logs nbclient's steps (to its stderr, which the "
            "grader keeps only when the run fails)", "sandbox"),
    # the test suite
    Setting("LLMCOURSE_ASSIGNMENTS", str, None, "tests grade only these assignments (comma-separated), e.g. "
            "while authoring one; unset: every graded assignment", "tests"),
    Setting("LLMCOURSE_TEST_MODE", str, None, "tests/test_07_safety.py insists on this grading mode (e.g. "
            "\"rootless, cgroup v2\"); unset: whatever this machine gives", "tests"),
    Setting("LLMCOURSE_VM_TESTS", bool, False, "run the cgroup v2 virtual-machine tests (make test-vm sets it)",
            "tests"),
    Setting("LLMCOURSE_VM_TIMEOUT", int, 3000, "seconds the VM tests' one boot may take", "tests"),
    Setting("LLMCOURSE_UPDATE_DOCS_SCREENSHOTS", bool, False, "the browser test rewrites docs/*.png from its "
            "screenshots", "tests"),
]
SETTINGS: dict[str, Setting] = {s.name: s for s in _ALL}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _parse(s: Setting, raw: str, name: str):
    try:
        if s.kind is bool:
            low = raw.strip().lower()
            if low not in _TRUE | _FALSE:
                raise ValueError
            return low in _TRUE
        return s.kind(raw.strip()) if s.kind is not str else raw
    except ValueError:
        want = {int: "an integer", float: "a number", bool: "1 or 0"}.get(s.kind, "text")
        raise SettingError(f"{name}={raw!r}: expected {want} ({s.meaning})") from None


def setting(name: str, env: dict | None = None):
    """The value of one setting under `env` (default: this process's environment), typed."""
    try:
        s = SETTINGS[name]
    except KeyError:
        raise SettingError(f"unknown setting {name!r}; every one is listed in llmcourse.settings") from None
    env = os.environ if env is None else env
    raw = env.get(name)
    if raw in (None, ""):
        for old in s.deprecated:
            if env.get(old) not in (None, ""):
                warnings.warn(f"{old} is deprecated: set {name}", DeprecationWarning, stacklevel=2)
                return _parse(s, env[old], old)
        return s.default
    return _parse(s, raw, name)


def markdown() -> str:
    """The README's table of settings."""
    rows = ["| variable | default | meaning | read by |", "|---|---|---|---|"]
    for s in _ALL:
        default = "unset" if s.default is None else ("1" if s.default is True else "0" if s.default is False
                                                     else str(s.default))
        meaning = s.meaning + (" *(internal)*" if s.internal else "")
        if s.deprecated:
            meaning += f"; formerly {', '.join('`' + d + '`' for d in s.deprecated)}"
        rows.append(f"| `{s.name}` | {default} | {meaning} | {s.used_by} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":   # python -m llmcourse.settings --markdown
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m llmcourse.settings --markdown")
    sys.stdout.write(markdown())
