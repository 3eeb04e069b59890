"""The reference solution's run in the sandbox, once per assignment notebook, cached on disk.

``<course>/.grader/<assignment>/reference/<notebook>-<key>.json``: the key hashes the
source notebook and the grader's version, so an edited notebook runs again. The reference
must pass every test cell in the sandbox and record checks for each, or grading stops
with the reason (a course that cannot grade its own solution grades nobody).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat

from .cells import is_test_cell
from .cells import nbgrader_meta as meta
from .merge import shown_outputs
from .results import GraderError
from .sandboxrun import SandboxRunner
from .state import GRADER_VERSION
from .trusted import hidden_secrets


class ReferenceCache:
    def __init__(self, state_dir: Path, runner: SandboxRunner, assignment: str):
        self.folder = Path(state_dir) / "reference"
        self.runner = runner
        self.assignment = assignment

    def get(self, nb_path: Path) -> dict:
        """{"records", "outputs"} of the reference run of one source notebook.

        "outputs": the outputs of the course's cells before the first answer cell, the only
        outputs feedback shows besides the verdicts (they depend on no answer, and no
        student code ran when they were made)."""
        src = nbformat.read(str(nb_path), 4)
        key = hashlib.sha256((nbformat.writes(src) + GRADER_VERSION).encode()).hexdigest()[:16]
        cache = self.folder / f"{nb_path.stem}-{key}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        run = self.runner.run(src, self.runner.test_sources(nb_path))
        problems = []
        if run.cells is None:
            res = run.result
            problems.append(f"the run produced no results ({'timed out' if res.timed_out else res.stderr_tail[-500:]})")
        else:
            for i, (c, ran) in enumerate(zip(src.cells, run.cells, strict=True)):
                first = next((o for o in (ran or {}).get("outputs", []) if o.get("output_type") == "error"), None)
                if first and not is_test_cell(c) and not problems:   # the cause, when a setup cell failed
                    problems.append(f"cell {i}: {first.get('ename')}: {str(first.get('evalue'))[:200]}")
                if is_test_cell(c):
                    gid = meta(c)["grade_id"]
                    err = next((o for o in (ran or {}).get("outputs", []) if o.get("output_type") == "error"), None)
                    if ran is None:
                        problems.append(f"{gid}: not executed")
                    elif err:
                        problems.append(f"{gid}: {err.get('ename')}: {err.get('evalue')}")
                    elif not any(n.startswith(gid + "/") for n in run.records):
                        problems.append(f"{gid}: recorded no checks")
        if problems:
            raise GraderError(f"the reference solution of {self.assignment}/{nb_path.name} does not pass in the "
                              f"sandbox: " + "; ".join(problems[:5]))
        first_answer = next((i for i, c in enumerate(src.cells) if meta(c).get("solution")), len(src.cells))
        secrets_ = hidden_secrets(src)
        outputs = [shown_outputs((run.cells[i] or {}).get("outputs", []), secrets_)
                   if src.cells[i].cell_type == "code" else [] for i in range(first_answer)]
        value = {"records": run.records, "outputs": outputs}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(value))
        return value
