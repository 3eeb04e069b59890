"""One notebook run in the sandbox: the request, the run, the verified replies.

The canonical notebook (llmcourse.grading.trusted) goes in with the sandbox's version of
each test cell (hidden checks that record the student's values, no expected value); what
comes back is read through llmcourse.grading.protocol, so that only the runner's own signed
lines count. Nothing of the submission but its notebook enters the sandbox: the sandbox's
work folder is a fresh tmpfs.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# isort: off
from . import fastimport  # noqa: F401  (before nbformat: see its docstring)

import nbformat  # noqa: E402
# isort: on

from ..student.checks import parse_records  # noqa: E402
from . import protocol, sandbox  # noqa: E402
from .trusted import sandbox_notebook, sandbox_test_sources  # noqa: E402

RUNNER_MODULE = "llmcourse.grading.sandbox_runner"


@dataclass
class SandboxRun:
    result: sandbox.Result      # exit, wall time, limits hit, the runner's stderr tail
    cells: list | None          # per cell index: {"cell_type", "outputs", "metadata"} or None; None: nothing usable
    records: dict               # the check records of the cells that reported


class SandboxRunner:
    """Runs notebooks of one course in the sandbox, with the limits and environment given."""

    def __init__(self, root: Path, limits: sandbox.Limits, env: dict):
        self.root = Path(root)
        self.limits = limits
        self.env = env
        self._fonts: dict | None = None
        self._test_sources: dict[str, dict] = {}

    def test_sources(self, nb_path: Path) -> dict:
        """The sandbox's version of each test cell of a course notebook (computed once)."""
        key = str(nb_path)
        if key not in self._test_sources:
            self._test_sources[key] = sandbox_test_sources(nbformat.read(str(nb_path), 4))
        return self._test_sources[key]

    def run(self, canonical_nb, test_sources: dict | None = None) -> SandboxRun:
        key = protocol.new_key()
        payload = protocol.encode_request(key, nbformat.writes(sandbox_notebook(canonical_nb, test_sources)))
        env = {"LLMCOURSE_RECORD": "/sandbox/records.jsonl", "NBGRADER_EXECUTION": "autograde",
               "LLMCOURSE_LIMIT_CELL_TIMEOUT_S": str(self.limits.cell_timeout_s),
               "LLMCOURSE_LIMIT_CELL_OUTPUT_KB": str(self.limits.cell_output_kb)}
        python = sandbox.python_executable()
        res = sandbox.run(None, [python, "-m", RUNNER_MODULE], self.limits, env=env,
                          stdin_bytes=payload, ro_files=self.font_cache(),
                          diagnose=[python, "-c", f"import {RUNNER_MODULE}"])
        replies = protocol.read_replies(key, res.lines)
        if replies.fatal is not None:
            res.stderr_tail = replies.fatal
        cells: list = [None] * len(canonical_nb.cells)
        record_text = []
        for reply in replies.cells:
            i = reply.index
            if 0 <= i < len(cells) and canonical_nb.cells[i].cell_type == "code":
                cells[i] = {"cell_type": "code", "outputs": reply.outputs,
                            "metadata": {"llmcourse_seconds": reply.seconds}}
                record_text.append(reply.records)
        if not record_text:
            return SandboxRun(res, None, {})
        return SandboxRun(res, cells, parse_records("".join(record_text)))

    def font_cache(self) -> dict:
        """matplotlib's font list, built once, read-only in every sandbox (else each kernel
        rebuilds it in its empty MPLCONFIGDIR: ~0.25 s per submission)."""
        if self._fonts is None:
            self._fonts = {}
            d = self.root / ".grader" / "mplconfig"
            try:
                found = sorted(d.glob("fontlist-*.json"))
                if not found:
                    d.mkdir(parents=True, exist_ok=True)
                    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], timeout=120,
                                   env=dict(self.env, MPLCONFIGDIR=str(d)), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, check=True)
                    found = sorted(d.glob("fontlist-*.json"))
                if found:
                    self._fonts = {f"/tmp/mpl/{found[-1].name}": found[-1]}
            except (OSError, subprocess.SubprocessError):
                pass
        return self._fonts
