"""Unit tests of what keeps hidden tests out of feedback.

- ``ScrubHiddenTestOutputs`` (nbgrader's GenerateFeedback, before ClearHiddenTests): every output
  of a cell with a hidden-test region becomes one short line of the grader's own.
- ``shown_outputs`` (llmcourse.grading.merge): which outputs of the reference run feedback may show at all.
"""
from __future__ import annotations

import base64
import json

import pytest
from nbfactory import error, graded, stream
from nbformat.v4 import new_code_cell, new_output

from llmcourse.grading import trusted
from llmcourse.grading.merge import shown_outputs as _shown_outputs
from llmcourse.grading.nbgrader_ext import ScrubHiddenTestOutputs

SECRET_LINE = 'check_close("test_f/edge", f([1e308, 1e308]), 710.4758600739439)'
SECRET_VALUE = "710.4758600739439"


def hidden_cell(outputs):
    c = graded("test_f", f"check_close('test_f/v', f(1), 2)\n### BEGIN HIDDEN TESTS\n{SECRET_LINE}\n"
                        f"### END HIDDEN TESTS")
    c.outputs = list(outputs)
    return c


def scrub(cell):
    out, _ = ScrubHiddenTestOutputs().preprocess_cell(cell, {}, 0)
    return out


def shown_text(cell) -> str:
    return json.dumps(cell.outputs)


LEAKS = [
    stream(SECRET_LINE),
    stream(base64.b64encode(SECRET_LINE.encode()).decode()),
    stream(SECRET_VALUE, name="stderr"),
    new_output("display_data", data={"text/plain": SECRET_VALUE, "text/html": f"<b>{SECRET_LINE}</b>"}),
    new_output("execute_result", data={"text/plain": repr(SECRET_LINE)}, execution_count=3),
    error("AssertionError", SECRET_LINE),
]


@pytest.mark.parametrize("leak", LEAKS, ids=["stream", "base64", "stderr", "display", "result", "traceback"])
def test_every_output_of_a_hidden_test_cell_is_replaced_by_one_line(leak):
    cell = scrub(hidden_cell([stream("visible part ok\n"), leak]))
    assert len(cell.outputs) == 1 and cell.outputs[0].output_type == "stream"
    text = shown_text(cell)
    b64 = base64.b64encode(SECRET_LINE.encode()).decode()
    assert SECRET_VALUE not in text and "test_f/edge" not in text and b64[:16] not in text


def test_a_passing_cell_says_so_and_nothing_else():
    cell = scrub(hidden_cell([stream(SECRET_LINE)]))
    assert cell.outputs[0].text == "All tests in this cell passed (hidden test details are not shown).\n"


def test_a_course_check_failure_shows_its_first_line_only_capped():
    msg = "[test_f/v] off by 0.5 (you returned 2.5; tolerance 1e-06)\nHint: " + SECRET_LINE
    cell = scrub(hidden_cell([error("CheckFailed", msg)]))
    assert cell.outputs[0].text == "A test failed: [test_f/v] off by 0.5 (you returned 2.5; tolerance 1e-06)\n"
    long = scrub(hidden_cell([error("CheckFailed", "[test_f/v] " + "x" * 1000)]))
    assert len(long.outputs[0].text) == len("A test failed: \n") + 300


def test_other_failures_show_only_the_exception_type():
    for ename, evalue in (("CheckFailed", "no bracket " + SECRET_LINE), ("AssertionError", SECRET_LINE),
                          ("ValueError", SECRET_VALUE)):
        text = scrub(hidden_cell([error(ename, evalue)])).outputs[0].text
        assert text == f"A test failed with {ename} (hidden test details are not shown).\n"
    text = scrub(hidden_cell([error("NotImplementedError", SECRET_LINE)])).outputs[0].text
    assert text == "A test failed: the function is not implemented yet (NotImplementedError).\n"


def test_the_first_error_decides_the_line():
    cell = scrub(hidden_cell([error("NotImplementedError"), error("ValueError", SECRET_VALUE)]))
    assert "not implemented yet" in cell.outputs[0].text


def test_cells_without_hidden_tests_keep_their_outputs():
    c = new_code_cell("print('hello')")
    c.outputs = [stream("hello\n")]
    assert scrub(c).outputs == [stream("hello\n")]
    m = graded("test_v", "check_true('test_v/a', True, 'ok')")
    m.outputs = [error("CheckFailed", "[test_v/a] ok")]
    assert scrub(m).outputs[0].ename == "CheckFailed", "a visible-only test cell is nbgrader's as it is"


# ------------------------------------------------------------------ the reference run's outputs
SECRETS = [SECRET_LINE, "test_f/edge", "RECORD_ONLY", "HIDDEN TESTS", "naïve_sum = ½ · total"]


def test_reference_outputs_that_quote_a_secret_are_dropped_in_any_json_escaping():
    leaks = [stream(f"echo: {SECRET_LINE}\n"),                           # quotes: escaped by json.dumps
             stream("unicode: naïve_sum = ½ · total\n"),                 # non-ASCII: escaped by json.dumps
             new_output("display_data", data={"text/plain": f"'{SECRET_LINE}'"}),
             new_output("execute_result", data={"text/plain": "RECORD_ONLY"}, execution_count=1),
             stream("tab\tand test_f/edge"),
             new_output("error", ename="ValueError", evalue=f"while checking {SECRET_VALUE}: {SECRET_LINE}",
                        traceback=[]),
             stream(["list ", "of ", "test_f/", "edge"])]
    assert _shown_outputs(leaks, SECRETS) == []


def test_reference_outputs_keep_only_text_and_png():
    outs = [stream("loss 0.5\n"),
            new_output("display_data", data={"image/png": "iVBOR", "text/html": "<script>x</script>",
                                             "text/plain": "<Figure>"}),
            new_output("display_data", data={"application/javascript": "alert(1)"}),
            new_output("error", ename="ValueError", evalue="v" * 1000, traceback=["t" * 50]),
            "not a dict"]
    kept = _shown_outputs(outs, SECRETS)
    assert kept[0] == {"output_type": "stream", "name": "stdout", "text": "loss 0.5\n"}
    assert kept[1] == {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"},
                       "metadata": {}}
    assert kept[2]["ename"] == "ValueError" and len(kept[2]["evalue"]) == 300 and kept[2]["traceback"] == []
    assert len(kept) == 3


def test_reference_outputs_are_capped():
    kept = _shown_outputs([stream("a" * 30000)] * 60, [])
    assert len(kept) == 50 and all(len(o["text"]) == 20000 for o in kept)
    assert _shown_outputs([stream("x", name="weird")], [])[0]["name"] == "stderr"


def test_the_secrets_of_a_course_notebook_cover_its_hidden_lines():
    from nbfactory import notebook
    nb = notebook(hidden_cell([]))
    found = trusted.hidden_secrets(nb)
    assert SECRET_LINE in found and "test_f/edge" in found
    assert _shown_outputs([stream(SECRET_LINE)], found) == []
