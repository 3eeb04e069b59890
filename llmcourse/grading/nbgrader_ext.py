"""nbgrader and nbconvert preprocessors used by the course configuration.

``SanitizeStudentHTML`` and ``LimitCellSize`` (end of this file) run in every HTML export:
Formgrader's pages and feedback (see their docstrings).

``ScrubHiddenTestOutputs`` runs in ``GenerateFeedback`` *before* nbgrader's
``ClearHiddenTests``. ClearHiddenTests removes the hidden-test source from a
cell, but the cell's outputs (a traceback quoting the hidden line, anything a
hidden test printed) would still reach the student. This preprocessor replaces
every output of a cell that contains a hidden-test region with one short,
safe line: whether the cell passed, and for a failed check of the course's
helpers only its own message (written by the course to be safe to show),
otherwise only the exception's type.
"""
from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, Unicode


class ScrubHiddenTestOutputs(NbGraderPreprocessor):
    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS").tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or self.begin_test_delimeter not in cell.source:
            return cell, resources
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            text = "All tests in this cell passed (hidden test details are not shown)."
        else:
            err = errors[0]
            ename = str(err.get("ename", "Error"))
            evalue = str(err.get("evalue", ""))
            if ename == "CheckFailed" and evalue.startswith("["):
                # The course's check helpers write messages meant for students.
                first = evalue.splitlines()[0][:300]
                text = f"A test failed: {first}"
            elif ename == "NotImplementedError":
                text = "A test failed: the function is not implemented yet (NotImplementedError)."
            else:
                text = f"A test failed with {ename} (hidden test details are not shown)."
        cell.outputs = [new_output("stream", name="stdout", text=text + "\n")]
        return cell, resources


class SanitizeStudentHTML(Preprocessor):
    """Neutralise HTML in what a browser renders (llmcourse.grading.htmlsafe): every markdown and raw
    cell is rendered and sanitised (unchanged when already safe), active outputs dropped.

    Enabled for every HTMLExporter by nbgrader_config.py, so it runs in Formgrader's pages
    and in `make feedback`, whatever notebook they are given (also stock nbgrader's)."""

    def preprocess_cell(self, cell, resources, cell_index):
        from .htmlsafe import safe_outputs, sanitize_markdown
        if cell.cell_type in ("markdown", "raw"):
            cell.source = sanitize_markdown(cell.source)
            cell.pop("attachments", None)
            if cell.cell_type == "raw":
                cell.metadata.pop("format", None)
                cell.metadata.pop("raw_mimetype", None)
        elif cell.cell_type == "code":
            cell.outputs = safe_outputs(cell.get("outputs", []))
        return cell, resources


class LimitCellSize(Preprocessor):
    """Bound what the HTML export works on: a cell's source over MAX_CELL_CHARS, text outputs
    beyond it, and every source past 512 KB in all are cut with a note (pygments and mistune
    time grows with the text).

    Runs first in every HTMLExporter (nbgrader_config.py); the grader already rejects
    submissions over these sizes, so this matters for notebooks graded some other way."""

    # all sources together: the course's notebooks hold under 100 KB, the grader takes at most
    # 256 KB from a submission, so a notebook it staged is never cut
    max_total_chars = Integer(512 * 1024).tag(config=True)

    def preprocess(self, nb, resources):
        from .trusted import MAX_CELL_CHARS, MAX_CELLS
        note = f"\n[... cut: more than {MAX_CELL_CHARS // 1024} KB ...]\n"
        if len(nb.cells) > MAX_CELLS:
            nb.cells = nb.cells[:MAX_CELLS]
        total = 0
        for cell in nb.cells:
            if len(cell.source) > MAX_CELL_CHARS:
                cell.source = cell.source[:MAX_CELL_CHARS] + note
            total += len(cell.source)
            if total > self.max_total_chars:
                cell.source = f"[... cut: the notebook holds more than {self.max_total_chars // 1024} KB of text ...]"
            for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
                if isinstance(o.get("text"), str) and len(o["text"]) > MAX_CELL_CHARS:
                    o["text"] = o["text"][:MAX_CELL_CHARS] + note
                if isinstance(o.get("traceback"), list):
                    o["traceback"] = [str(t)[:4000] for t in o["traceback"][:50]]
                data = o.get("data") or {}
                for k, v in list(data.items()):
                    if isinstance(v, str) and len(v) > 8 * MAX_CELL_CHARS:
                        data.pop(k)
        return nb, resources
