"""Resume state of a grading batch: which submissions are graded, as of which files.

``<course>/.grader/<assignment>/done/<student>.json`` holds the hash of the submission
folder (names and regular files; links hashed, never followed), the grader's version and
the Outcome. A submission is graded again only if its files, the grader's version or its
state changed, or its autograded folder is gone: a batch killed half-way resumes and ends
with the grades an uninterrupted run gives. The state folder is never visible in a sandbox.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from .results import Outcome

GRADER_VERSION = "3"
MAX_STATE_BYTES = 1 << 20


def hash_files(folder: Path) -> str:
    """Hash of a submission folder's names and regular files; links are hashed, never followed."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*"), key=lambda q: os.fsencode(q)):
        if ".ipynb_checkpoints" in p.parts:
            continue
        h.update(os.fsencode(p.relative_to(folder)) + b"\0")
        try:
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                h.update(b"link:" + os.fsencode(os.readlink(p)))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()


def is_regular(path: Path) -> bool:
    """A regular file, not a link (the grader runs as root: it never follows a student's links)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_json_capped(path: Path, cap: int):
    """The JSON in `path`, or None if it is missing, larger than `cap` bytes or not JSON."""
    try:
        if not path.is_file() or path.stat().st_size > cap:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


class ResumeState:
    def __init__(self, state_dir: Path):
        self.done = Path(state_dir) / "done"

    def _file(self, student: str) -> Path:
        return self.done / f"{student}.json"

    def unchanged(self, student: str, digest: str, autograded: Path) -> Outcome | None:
        """The recorded Outcome (marked resumed) if nothing changed since it was graded, else None."""
        prior = read_json_capped(self._file(student), MAX_STATE_BYTES)
        if not (prior and prior.get("hash") == digest and prior.get("version") == GRADER_VERSION
                and autograded.is_dir() and isinstance(prior.get("outcome"), dict)):
            return None
        try:
            out = Outcome.from_json(prior["outcome"])
        except (ValueError, KeyError, TypeError, AttributeError):   # an older or damaged state: grade again
            return None
        out.resumed = True
        return out

    def save(self, student: str, digest: str, outcome: Outcome) -> None:
        """Atomically: a batch killed while writing leaves the old state or the new, never half."""
        path = self._file(student)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"hash": digest, "version": GRADER_VERSION, "outcome": outcome.to_json()}))
        os.replace(tmp, path)
