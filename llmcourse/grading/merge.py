"""The notebook nbgrader records, and the outputs feedback may show: cleaned, merged, sanitised.

nbgrader gets the course's sources, the grader's verdicts and outputs of no student run
(:func:`graded_notebook`); the only outputs besides the verdicts come from the reference
solution's run, filtered by :func:`shown_outputs`.
"""
from __future__ import annotations

import copy
import json

import nbformat
from nbformat.v4 import new_output

from .cells import is_course_cell, is_test_cell
from .cells import nbgrader_meta as meta
from .htmlsafe import sanitize_markdown

MAX_OUTPUTS = 50
MAX_STREAM_CHARS = 20000


def shown_outputs(outputs: list, secrets_: list[str]) -> list:
    """Outputs of the reference run that feedback may show: text and PNG, quoting no hidden test."""
    keep = []
    for o in outputs[:MAX_OUTPUTS]:
        if not isinstance(o, dict):
            continue
        text = json.dumps(o.get("text", "")) + json.dumps((o.get("data") or {}).get("text/plain", ""))
        if any(sec in text for sec in secrets_):
            continue
        kind = o.get("output_type")
        if kind == "stream" and isinstance(o.get("text"), str):
            keep.append({"output_type": "stream", "name": "stdout" if o.get("name") == "stdout" else "stderr",
                         "text": o["text"][:MAX_STREAM_CHARS]})
        elif kind in ("display_data", "execute_result"):
            data = {k: v for k, v in (o.get("data") or {}).items() if k in ("image/png", "text/plain")
                    and isinstance(v, str)}
            if data:
                keep.append({"output_type": "display_data", "data": data, "metadata": {}})
        elif kind == "error":
            keep.append({"output_type": "error", "ename": str(o.get("ename", "Error"))[:100],
                         "evalue": str(o.get("evalue", ""))[:300], "traceback": []})
    return keep


def graded_notebook(canonical_nb, verdicts, reference_outputs: list | None = None):
    """The notebook nbgrader records: course sources, trusted verdicts, outputs of no student run.

    - test cells: only the grader's verdict (its own text, llmcourse.grading.trusted.decide);
    - the course's cells before the first answer cell: their outputs from the *reference*
      run (text and PNG only), which depend on no answer and ran no student code;
    - every other cell: no outputs. Whatever the student's run printed or displayed (a
      hook in the kernel sees every test cell sent to it and could print it) is dropped;
    - markdown answers: student-written HTML sanitised (llmcourse.grading.htmlsafe).
    The student's run is used for nothing but the verdicts it was decided from.
    """
    nb = nbformat.from_dict(copy.deepcopy(canonical_nb))
    by_id = {v.grade_id: v for v in verdicts}
    first_answer = next((i for i, c in enumerate(nb.cells) if not is_course_cell(c)), len(nb.cells))
    ref = reference_outputs or []
    for i, c in enumerate(nb.cells):
        if c.cell_type == "markdown" and meta(c).get("solution"):
            c.source = sanitize_markdown(c.source)
            c.pop("attachments", None)
            continue
        if c.cell_type != "code":
            continue
        c.execution_count = None
        gid = meta(c).get("grade_id")
        if is_test_cell(c):
            v = by_id[gid]
            c.outputs = []
            if not v.passed:
                ename, _, evalue = (v.reason or "Failed: the test did not pass").partition(": ")
                c.outputs.append(new_output("error", ename=ename or "Failed", evalue=evalue,
                                            traceback=[f"{ename}: {evalue}"]))
        elif i < first_answer and i < len(ref):
            c.outputs = [nbformat.from_dict(o) for o in ref[i]]
        else:
            c.outputs = []
    return nb
