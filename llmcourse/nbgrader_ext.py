"""nbgrader preprocessors used by the course configuration.

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

from nbformat.v4 import new_output
from traitlets import Unicode

from nbgrader.preprocessors import NbGraderPreprocessor


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
