"""Unit tests of the output merge (llmcourse.grading.merge.graded_notebook): the notebook nbgrader records."""
from __future__ import annotations

import json

from nbfactory import answer, copy, error, graded, locked, md, notebook, stream, student, written

from llmcourse.grading.merge import graded_notebook
from llmcourse.grading.trusted import Verdict

LEAK = "LEAK:c2VjcmV0"


def canonical():
    return notebook(
        md("# Title"),                                           # 0
        locked("print('setup')", "setup"),                       # 1  before the first answer
        locked("plot()", "plot"),                                # 2  before the first answer
        answer("f", "def f(x):\n    print('LEAK:' + x)"),        # 3
        graded("test_f", "check_close('test_f/v', f(1), 2)", 3),  # 4
        locked("print('after')", "after"),                       # 5  after the first answer
        graded("test_g", "check_true('test_g/v', True, 'x')", 2), # 6
        written("essay", "My answer <script>alert(1)</script> <img src=x onerror=alert(2)>"),  # 7
    )


REF = [[], [stream("setup done\n")],
       [{"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}}]]


def merge(nb=None, verdicts=None, ref=REF):
    nb = nb or canonical()
    verdicts = verdicts or [Verdict("test_f", 3, False, "CheckFailed: [test_f/v] off by 1"),
                            Verdict("test_g", 2, True)]
    return graded_notebook(nb, verdicts, ref)


def test_nothing_a_run_printed_is_kept():
    """Whatever outputs the notebook carries (a kernel's hook can print anywhere) are dropped."""
    nb = canonical()
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = [stream(LEAK), error("CheckFailed", "[test_f/v] " + LEAK)]
    merged = merge(nb)
    assert LEAK not in json.dumps([c.get("outputs", []) for c in merged.cells])
    assert merged.cells[1].outputs == [stream("setup done\n")], "before the first answer: the reference's"


def test_a_failed_test_cell_shows_the_graders_verdict_only():
    cell = merge().cells[4]
    assert len(cell.outputs) == 1
    out = cell.outputs[0]
    assert (out.output_type, out.ename, out.evalue) == ("error", "CheckFailed", "[test_f/v] off by 1")
    assert out.traceback == ["CheckFailed: [test_f/v] off by 1"]


def test_a_failed_verdict_without_reason_still_shows_a_failure():
    cell = merge(verdicts=[Verdict("test_f", 3, False, ""), Verdict("test_g", 2, True)]).cells[4]
    assert cell.outputs[0].ename == "Failed" and cell.outputs[0].evalue == "the test did not pass"


def test_a_passed_test_cell_has_no_output():
    assert merge().cells[6].outputs == []


def test_course_cells_before_the_first_answer_show_the_reference_run():
    merged = merge()
    assert merged.cells[1].outputs == [stream("setup done\n")]
    assert merged.cells[2].outputs[0]["data"] == {"image/png": "iVBOR"}
    assert merged.cells[5].outputs == [], "after the first answer: no outputs, even of course cells"
    assert merged.cells[3].outputs == [], "answer cells: no outputs"


def test_without_reference_outputs_every_cell_is_empty():
    merged = merge(ref=None)
    assert all(c.outputs == [] for c in merged.cells if c.cell_type == "code" and c is not merged.cells[4])


def test_a_students_cell_ahead_of_the_answers_ends_the_reference_outputs():
    nb = canonical()
    nb.cells.insert(2, student("print('mine')"))
    merged = merge(nb, ref=REF + [[stream("would be shown")]])
    assert merged.cells[1].outputs == [stream("setup done\n")]
    assert merged.cells[2].outputs == [] and merged.cells[3].outputs == []


def test_execution_counts_are_cleared_and_the_input_is_untouched():
    nb = canonical()
    for c in nb.cells:
        if c.cell_type == "code":
            c.execution_count = 5
    before = json.dumps(nb, sort_keys=True)
    merged = merge(nb)
    assert json.dumps(nb, sort_keys=True) == before
    assert all(c.execution_count is None for c in merged.cells if c.cell_type == "code")
    assert [c.source for c in merged.cells if c.cell_type == "code"] == \
        [c.source for c in nb.cells if c.cell_type == "code"], "sources are the canonical ones"


def test_written_answers_are_sanitised_and_lose_attachments():
    nb = canonical()
    nb.cells[7]["attachments"] = {"x.png": {"image/png": "iVBOR"}}
    c = merge(nb).cells[7]
    assert "<script" not in c.source and "onerror" not in c.source and "My answer" in c.source
    assert "attachments" not in c
    plain = copy(canonical())
    plain.cells[7].source = "A plain answer with *emphasis*."
    assert merge(plain).cells[7].source == "A plain answer with *emphasis*.", "an honest answer is kept as it is"
