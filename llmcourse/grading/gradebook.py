"""Recording decided submissions in nbgrader's gradebook: SQLite or PostgreSQL.

The grader (llmcourse.grading.grader) decides every test cell itself and stages the finished
notebook; nbgrader's own ``autograde`` (with execution switched off, LLMCOURSE_PRE_EXECUTED=1)
then records it, so formgrader, feedback and export work as usual.

Starting ``nbgrader autograde`` as a new process costs ~2 s per submission (imports), more
than the recording itself (~0.2 s). So each grading process (a thread pool, or each Dask
worker) keeps one long-lived writer process, ``python -m llmcourse.grading.gradebook``, that has
nbgrader imported and runs nbgrader's AutogradeApp in-process for one student at a time.

Which database: the course's nbgrader_config.py reads LLMCOURSE_DB_URL (default: SQLite
in the course root). SQLite allows one writer at a time (nbgrader's FAQ), so writers on
SQLite take an exclusive lock file (<course>/.grader/gradebook.lock) around each write;
on PostgreSQL they write concurrently.

Protocol (JSON lines): request {"assignment", "student", "submitted_directory"} on stdin,
reply {"ok": true, "span": [start, end]} (wall-clock seconds of the write itself, lock held)
or {"ok": false, "error": "..."} on the writer's original stdout.

Nothing waits forever: a write that takes longer than LLMCOURSE_GRADEBOOK_TIMEOUT_S seconds
(default 300; a stalled database, a stuck lock) kills that writer and fails the submission
with a clear reason.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..settings import setting  # noqa: E402
from . import fastimport  # noqa: F401  (before nbformat and nbgrader: see its docstring)
from .course import CourseError, venv_bin_first  # noqa: E402


def _write_timeout(env) -> float:
    return setting("LLMCOURSE_GRADEBOOK_TIMEOUT_S", env)


class GradebookError(CourseError):
    pass


def db_url(root: Path, env: dict | None = None) -> str:
    """The gradebook URL the course's nbgrader_config.py will use under this environment."""
    return setting("LLMCOURSE_DB_URL", env) or "sqlite:///" + str(Path(root) / "gradebook.db")


def is_sqlite(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] == "sqlite"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            cred = cred.split(":", 1)[0] + ":***"
        rest = cred + "@" + host
    return scheme + sep + rest


def _alembic_on_path() -> None:
    """nbgrader's Gradebook shells out to `alembic`: make this environment's the one found."""
    venv_bin_first(os.environ)


def check_gradebook(url: str, assignment: str) -> None:
    """Fail early, with a clear message, when the gradebook cannot be opened or lacks the assignment."""
    from nbgrader.api import Gradebook, MissingEntry
    _alembic_on_path()
    try:
        with Gradebook(url) as gb:
            try:
                gb.find_assignment(assignment)
            except MissingEntry:
                raise GradebookError(f"the gradebook {redact(url)} has no assignment {assignment!r}: "
                                     f"run `make release ASSIGNMENT={assignment}` with the same "
                                     f"LLMCOURSE_DB_URL first") from None
    except GradebookError:
        raise
    except Exception as exc:
        raise GradebookError(f"cannot open the gradebook {redact(url)}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None


@contextmanager
def file_lock(path: Path, timeout_s: float, message: str, error: type[CourseError] = CourseError):
    """Hold an exclusive lock on the file `path` for the block (one machine only: flock).

    Waits at most timeout_s for it (0: not at all), then raises error(message)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise error(message) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _write_lock(root: Path, url: str):
    if not is_sqlite(url):
        yield
        return
    lock = Path(root) / ".grader" / "gradebook.lock"
    timeout = _write_timeout(os.environ)
    with file_lock(lock, timeout, f"waited {timeout:.0f} s for the SQLite gradebook lock ({lock})", GradebookError):
        yield


class Writer:
    """A long-lived ``python -m llmcourse.grading.gradebook`` process; thread-safe, one write at a time."""

    def __init__(self, root: Path, env: dict):
        self.root = Path(root)
        self.env = dict(env, LLMCOURSE_PRE_EXECUTED="1")
        self.timeout = _write_timeout(self.env)   # the grader's setting, also on a remote worker
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        log = self.root / ".grader" / "gradebook-writer.log"   # nbgrader's warnings; appended by every writer
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as err:
            return subprocess.Popen([sys.executable, "-m", "llmcourse.grading.gradebook"], cwd=str(self.root),
                                    env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)

    def warm(self) -> None:
        """Start the writer now (its imports take ~2 s), so that it is ready when needed."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()

    def _reply(self, timeout: float) -> bytes:
        """One line from the writer, or b"" when it died or took longer than timeout (then it is killed)."""
        out = self._proc.stdout
        poller = select.poll()
        poller.register(out, select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(timeout * 1000):
            self._proc.kill()
            raise GradebookError(f"the gradebook write took longer than {timeout:.0f} s and was stopped "
                                 f"(LLMCOURSE_GRADEBOOK_TIMEOUT_S)")
        return out.readline()

    def record(self, assignment: str, student: str, submitted_directory: str) -> tuple[float, float]:
        """Record student's staged submission (folder relative to the course root); raise on failure.

        Returns the wall-clock span of the write itself (start, end) as the writer measured it."""
        request = json.dumps({"assignment": assignment, "student": student,
                              "submitted_directory": submitted_directory}).encode() + b"\n"
        with self._lock:
            for _attempt in (1, 2):   # a writer that died (killed, out of memory) is started again once
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = self._start()
                try:
                    self._proc.stdin.write(request)
                    self._proc.stdin.flush()
                    line = self._reply(self.timeout)
                except (BrokenPipeError, OSError):
                    line = b""
                except GradebookError:
                    self.close()
                    raise
                if line:
                    reply = json.loads(line)
                    if not reply.get("ok"):
                        raise GradebookError(f"nbgrader could not record {student}: {reply.get('error')}")
                    start, end = reply.get("span", (0.0, 0.0))
                    return float(start), float(end)
                self.close()
            raise GradebookError(f"the gradebook writer died while recording {student}")

    def close(self) -> None:
        with self._lock:   # never while another thread is writing through it
            proc, self._proc = self._proc, None
            if proc is None:
                return
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------- the writer process

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage()[:1000])


def _record_one(assignment: str, student: str, submitted_directory: str) -> tuple[float, float]:
    from nbgrader.apps.autogradeapp import AutogradeApp
    app = AutogradeApp()
    app.initialize([assignment, "--student", student, "--force", "--log-level=WARN",
                    f"--CourseDirectory.submitted_directory={submitted_directory}"])
    collect = _Collect()
    app.log.addHandler(collect)
    start = end = time.time()
    try:
        with _write_lock(Path(app.coursedir.root), app.coursedir.db_url):
            start = time.time()
            app.start()
            end = time.time()
    except SystemExit as exc:
        end = time.time()
        if exc.code not in (0, None):
            raise GradebookError("; ".join(collect.messages[-3:]) or f"nbgrader exited with {exc.code}") from None
    finally:
        app.log.removeHandler(collect)
    if collect.messages:
        raise GradebookError("; ".join(collect.messages[-3:]))
    out = Path(app.coursedir.format_path(app.coursedir.autograded_directory, student, assignment))
    if not out.is_dir():
        raise GradebookError(f"nbgrader wrote no autograded folder for {student}")
    return start, end


def main() -> int:
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)   # nbgrader's prints go to the log, never into the reply stream
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            span = _record_one(str(req["assignment"]), str(req["student"]), str(req["submitted_directory"]))
            reply = {"ok": True, "span": span}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        out.write(json.dumps(reply).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
