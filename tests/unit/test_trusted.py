"""Unit tests of the trusted core: the sandbox's test cells, the canonical notebook, the verdicts.

Each test builds the few cells it is about (nbfactory); no course notebook, no kernel, no root.
"""
from __future__ import annotations

import ast
import json
import os

import pytest

from nbfactory import answer, copy, error, locked, md, notebook, ran, stream, student, graded, write, written

from llmcourse.grading import cells, trusted
from llmcourse.grading.flags import FlagCode
from llmcourse.student.checks import NOT_REACHED

H0, H1 = cells.HIDDEN_BEGIN, cells.HIDDEN_END


def hidden(visible: str, secret: str) -> str:
    return f"{visible}\n{H0}\n{secret}\n{H1}"


def calls(source: str, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def assigned(source: str) -> set[str]:
    return {t.id for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) for t in ast.walk(t)
            if isinstance(t, ast.Name)}


def is_record_only(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "RECORD_ONLY"


# ------------------------------------------------------------------ sandbox_source
def test_a_cell_without_hidden_tests_is_returned_unchanged():
    src = "x = 1\ncheck_close('t/a', f(x), 2.0)  # comment kept"
    assert trusted.sandbox_source(src, set()) == src


def test_hidden_value_checks_lose_their_expected_value_positional_and_keyword():
    src = hidden("check_close('t/v', f(1), 2.0)",
                 "check_close('t/h', f(2), 4.0)\ncheck_equal('t/e', g(3), expected=[1, 2])\n"
                 "check_close('t/k', f(3), expected=9.0, atol=1e-3)")
    out = trusted.sandbox_source(src, set())
    visible, hidden_close_pos, hidden_close_kw = calls(out, "check_close")
    assert isinstance(visible.args[2], ast.Constant) and visible.args[2].value == 2.0, "visible check kept as it is"
    assert is_record_only(hidden_close_pos.args[2])
    assert is_record_only(next(k.value for k in hidden_close_kw.keywords if k.arg == "expected"))
    assert next(k.value.value for k in hidden_close_kw.keywords if k.arg == "atol") == 1e-3, "tolerance kept"
    [eq] = calls(out, "check_equal")
    assert is_record_only(next(k.value for k in eq.keywords if k.arg == "expected"))
    for secret in ("4.0", "9.0", "[1, 2]"):
        assert secret not in out


def test_attribute_calls_and_checks_nested_in_blocks_are_stripped_too():
    src = hidden("import llmcourse.student.checks as ck",
                 "for n in (1, 2):\n    if n:\n        ck.check_close(f't/n{n}', f(n), 123.5)")
    out = trusted.sandbox_source(src, set())
    [c] = calls(out, "check_close")
    assert is_record_only(c.args[2]) and "123.5" not in out


def test_non_value_checks_and_the_actual_argument_are_untouched():
    src = hidden("", "check_true('t/t', f(1) > 0, 'positive')\ncheck_shape('t/s', g(2), (3, 4))\n"
                     "check_close('t/c', f(7), 1.5)")
    out = trusted.sandbox_source(src, set())
    assert "(3, 4)" in out and "f(1) > 0" in out and "f(7)" in out


def test_a_hidden_assignment_only_the_expected_value_reads_is_dropped():
    src = hidden("", "want = 0.6931\ncheck_close('t/h', f(2), want)")
    out = trusted.sandbox_source(src, set())
    assert "want" not in assigned(out) and "0.6931" not in out


def test_chains_of_hidden_assignments_are_dropped_to_the_end():
    src = hidden("", "a = 10.25\nb = a * 2\n(c, d) = (b + 1, b - 1)\ncheck_close('t/h', f(2), c)\n"
                     "check_close('t/i', f(3), expected=d)")
    out = trusted.sandbox_source(src, set())
    assert not assigned(out) & {"a", "b", "c", "d"}, out
    assert "10.25" not in out


def test_a_hidden_assignment_the_student_call_reads_is_kept():
    src = hidden("", "x = [1.0, 2.0]\nwant = 3.0\ncheck_close('t/h', f(x), want)")
    out = trusted.sandbox_source(src, set())
    assert "x" in assigned(out), "the input of the student's function must stay"
    assert "want" not in assigned(out)


def test_a_hidden_assignment_a_later_course_cell_reads_is_kept():
    src = hidden("", "shared = 5.5\ncheck_close('t/h', f(2), shared)")
    assert "shared" in assigned(trusted.sandbox_source(src, {"shared"}))
    assert "shared" not in assigned(trusted.sandbox_source(src, {"other"}))


def test_assignments_outside_the_hidden_region_are_never_dropped():
    src = hidden("unused_visible = 1", "want = 2\ncheck_close('t/h', f(2), want)")
    assert "unused_visible" in assigned(trusted.sandbox_source(src, set()))


def test_a_block_left_empty_gets_a_pass():
    src = hidden("", "if True:\n    want = 2.5\ncheck_close('t/h', f(2), 1.0)")
    out = trusted.sandbox_source(src, set())
    ast.parse(out)
    assert "2.5" not in out and "pass" in out


def test_subscript_writes_do_not_count_as_reads():
    src = hidden("", "table = {}\ntable['k'] = 7.75\ncheck_close('t/h', f(2), table['k'])")
    out = trusted.sandbox_source(src, set())
    assert "7.75" not in out and "table" not in assigned(out)


# ------------------------------------------------------------------ sandbox_test_sources
def _course_with_hidden_name():
    return notebook(
        locked("import numpy as np", "setup"),
        answer("f", "def f(x):\n    return x"),
        graded("test_f", hidden("check_close('test_f/v', f(1), 1)", "expected = 42.125\n"
                                                                   "check_close('test_f/h', f(2), expected)")),
    )


def test_a_hidden_assignment_is_dropped_even_if_a_later_student_cell_names_it():
    nb = _course_with_hidden_name()
    nb.cells.append(student("print(expected)"))
    nb.cells.append(answer("g", "def g():\n    return expected"))
    src = trusted.sandbox_test_sources(nb)["test_f"]
    assert "expected" not in assigned(src) and "42.125" not in src


def test_a_hidden_assignment_a_later_course_cell_reads_stays():
    nb = _course_with_hidden_name()
    nb.cells.append(locked("print(expected)", "later"))
    assert "expected" in assigned(trusted.sandbox_test_sources(nb)["test_f"])


def test_a_course_cell_before_the_test_cell_keeps_nothing_alive():
    nb = _course_with_hidden_name()
    nb.cells.insert(0, locked("expected = None\nprint(expected)", "before"))
    assert "expected" not in assigned(trusted.sandbox_test_sources(nb)["test_f"])


def test_a_course_cell_that_does_not_parse_is_ignored():
    nb = _course_with_hidden_name()
    nb.cells.append(locked("%%time\nprint(expected", "magic"))
    out = trusted.sandbox_test_sources(nb)
    assert set(out) == {"test_f"} and "42.125" not in out["test_f"]


def test_sandbox_notebook_replaces_only_the_test_cells():
    nb = _course_with_hidden_name()
    before = json.dumps(nb, sort_keys=True)
    sent = trusted.sandbox_notebook(nb)
    assert json.dumps(nb, sort_keys=True) == before, "the course's notebook is not modified"
    assert "42.125" not in sent.cells[2].source and "RECORD_ONLY" in sent.cells[2].source
    assert [c.source for c in sent.cells[:2]] == [c.source for c in nb.cells[:2]]


# ------------------------------------------------------------------ read_submission
def _write_bytes(tmp_path, data: bytes, name="sub.ipynb"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _nb_json(cells) -> bytes:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}).encode()


def test_a_good_notebook_is_read_with_list_sources_joined(tmp_path):
    p = _write_bytes(tmp_path, _nb_json([{"cell_type": "code", "source": ["a = 1\n", "b = 2"], "metadata": {}},
                                         {"cell_type": "markdown", "source": "text", "metadata": "junk"}]))
    data = trusted.read_submission(p)
    assert data["cells"][0]["source"] == "a = 1\nb = 2"
    assert data["cells"][1]["metadata"] == {}, "metadata that is no dict becomes empty"


@pytest.mark.parametrize("raw, reason", [
    (b"", "is an empty file"),
    (b"\xff\xfe\x00garbage", "is not UTF-8 text (byte 0)"),
    (b'{"cells": [1, 2', "is not valid JSON ("),
    (b"[" * 100_000 + b"]" * 100_000, "nests JSON too deeply"),
    (b"[1, 2]", "is not a Jupyter notebook"),
    (b'{"nbformat": 4, "cells": {}}', "is not a Jupyter notebook"),
    (b'{"nbformat": 3, "cells": []}', "has nbformat 3; version 4 is required"),
    (_nb_json(["not a dict"]), "cell 0 is malformed"),
    (_nb_json([{"cell_type": "widget", "source": ""}]), "cell 0 is malformed"),
    (_nb_json([{"cell_type": "code", "source": ["a", 1]}]), "cell 0 has a malformed source"),
    (_nb_json([{"cell_type": "code", "source": "ok"}, {"cell_type": "code", "source": 7}]),
     "cell 1 has a malformed source"),
])
def test_bad_input_is_rejected_with_the_reason(tmp_path, raw, reason):
    p = _write_bytes(tmp_path, raw, "mine.ipynb")
    with pytest.raises(trusted.Rejected) as info:
        trusted.read_submission(p)
    assert str(info.value).startswith("mine.ipynb") and reason in str(info.value), str(info.value)


def test_invalid_json_names_the_line(tmp_path):
    p = _write_bytes(tmp_path, b'{\n"cells": [\n}')
    with pytest.raises(trusted.Rejected, match=r"line 3\)"):
        trusted.read_submission(p)


def test_caps_on_size_and_cells(tmp_path, monkeypatch):
    p = _write_bytes(tmp_path, _nb_json([{"cell_type": "code", "source": "x"}] * 4))
    monkeypatch.setattr(trusted, "MAX_CELLS", 3)
    with pytest.raises(trusted.Rejected, match="has 4 cells, over the limit of 3"):
        trusted.read_submission(p)
    monkeypatch.setattr(trusted, "MAX_CELLS", 4)
    assert len(trusted.read_submission(p)["cells"]) == 4
    monkeypatch.setattr(trusted, "MAX_NOTEBOOK_BYTES", p.stat().st_size - 1)
    with pytest.raises(trusted.Rejected, match="limit"):
        trusted.read_submission(p)


def test_links_fifos_and_folders_are_refused(tmp_path):
    good = _write_bytes(tmp_path, _nb_json([]), "good.ipynb")
    link = tmp_path / "link.ipynb"
    link.symlink_to(good)
    with pytest.raises(trusted.Rejected, match="cannot read link.ipynb"):
        trusted.read_submission(link)
    fifo = tmp_path / "pipe.ipynb"
    os.mkfifo(fifo)
    with pytest.raises(trusted.Rejected, match="pipe.ipynb is not a regular file"):
        trusted.read_submission(fifo)
    (tmp_path / "dir.ipynb").mkdir()
    with pytest.raises(trusted.Rejected, match="not a regular file"):
        trusted.read_submission(tmp_path / "dir.ipynb")


def test_an_open_descriptor_is_read_under_the_given_name(tmp_path):
    p = _write_bytes(tmp_path, b"{", "real.ipynb")
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(trusted.Rejected, match="^shown.ipynb is not valid JSON"):
            trusted.read_submission(p, fd=fd, name="shown.ipynb")
    finally:
        os.close(fd)


# ------------------------------------------------------------------ canonical_notebook
def course():
    """source (with solutions and hidden tests) and release (stubs) of a two-task notebook."""
    src = notebook(
        md("# Title"),
        locked("import math", "setup"),
        answer("f", "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
        graded("test_f", hidden("check_close('test_f/v', f(1), 2)", "check_close('test_f/h', f(3), 6)"), points=3),
        answer("g", "def g():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
        graded("test_g", "check_equal('test_g/v', g(), 1)", points=2),
        written("essay", "### BEGIN SOLUTION\nmodel answer\n### END SOLUTION", points=4),
    )
    rel = copy(src)
    rel.cells[2].source = "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    rel.cells[3].source = "check_close('test_f/v', f(1), 2)"
    rel.cells[4].source = "def g():\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    rel.cells[6].source = "YOUR ANSWER HERE"
    return src, rel


def submission(rel, tmp_path, edit=None, name="sub.ipynb"):
    nb = copy(rel)
    nb.cells[2].source = "def f(x):\n    return x + x"
    nb.cells[4].source = "def g():\n    return 1"
    nb.cells[6].source = "my essay"
    if edit:
        edit(nb)
    path = tmp_path / name
    write(nb, path)
    return path


def flagged(c, code: FlagCode) -> list[str]:
    """The messages of the canonical notebook's flags with this code."""
    return [f.message for f in c.flags if f.code is code]


def by_id(nb) -> dict:
    return {trusted.meta(c).get("grade_id"): c for c in nb.cells if trusted.meta(c).get("grade_id")}


def test_answers_come_from_the_submission_everything_else_from_the_source(tmp_path):
    src, rel = course()

    def tamper(nb):
        nb.cells[3].source = "pass"                                     # gut a test cell
        nb.cells[3].metadata["nbgrader"]["points"] = 100                # inflate its points
        nb.cells[1].source = "import os; os.system('evil')"             # edit a locked cell
        nb.cells[0].source = "# my title"
        del nb.cells[5]                                                 # delete another test cell
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, tamper))
    assert c.rejected is None
    got = by_id(c.nb)
    assert got["f"].source == "def f(x):\n    return x + x" and got["g"].source == "def g():\n    return 1"
    assert got["essay"].source == "my essay"
    for gid in ("setup", "test_f", "test_g"):
        assert got[gid].source == by_id(src)[gid].source, f"{gid} is the course's own"
    assert got["test_f"].metadata["nbgrader"]["points"] == 3
    assert c.nb.cells[0].source == "# Title", "markdown of the course, not the student's"
    assert [trusted.meta(x).get("grade_id") for x in c.nb.cells] == [trusted.meta(x).get("grade_id") for x in src.cells]


def test_a_reordered_submission_runs_in_the_course_order(tmp_path):
    src, rel = course()
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, lambda nb: nb.cells.reverse()))
    assert [x.source for x in c.nb.cells if not trusted.meta(x).get("solution")] == \
        [x.source for x in src.cells if not trusted.meta(x).get("solution")]


def test_the_inputs_are_not_modified(tmp_path):
    src, rel = course()
    before = json.dumps([src, rel], sort_keys=True)
    trusted.canonical_notebook(src, rel, submission(rel, tmp_path))
    assert json.dumps([src, rel], sort_keys=True) == before


def test_outputs_of_course_cells_are_cleared(tmp_path):
    src, rel = course()
    src.cells[1].outputs = [stream("from the author's run")]
    src.cells[1].execution_count = 7

    def with_outputs(nb):
        nb.cells[3].outputs = [stream("forged: all passed")]
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, with_outputs))
    for x in c.nb.cells:
        if x.cell_type == "code" and not trusted.meta(x).get("solution"):
            assert x.outputs == [] and x.execution_count is None


def test_a_duplicated_answer_cell_grades_the_first(tmp_path):
    src, rel = course()

    def dup(nb):
        second = copy(nb).cells[2]
        second.source = "def f(x):\n    return 'second'"
        second.id = "second-copy"
        nb.cells.insert(3, second)
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, dup))
    assert by_id(c.nb)["f"].source == "def f(x):\n    return x + x"
    assert flagged(c, FlagCode.ANSWER_DUPLICATE) == ["answer cell 'f' appears more than once; the first was graded"]


def test_an_answer_cell_that_changed_type_is_ignored(tmp_path):
    src, rel = course()

    def retype(nb):
        nb.cells[2].cell_type = "markdown"
        del nb.cells[2]["outputs"], nb.cells[2]["execution_count"]
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, retype))
    assert flagged(c, FlagCode.ANSWER_TYPE_CHANGED) == ["answer cell 'f' changed type; ignored"]
    assert by_id(c.nb)["f"].source == rel.cells[2].source and by_id(c.nb)["f"].cell_type == "code"


def test_missing_answer_cells_are_graded_as_the_release_stub(tmp_path):
    src, rel = course()

    def rename(nb):
        nb.cells[4].metadata["nbgrader"]["grade_id"] = "my_g"
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, rename))
    assert by_id(c.nb)["g"].source == rel.cells[4].source
    assert flagged(c, FlagCode.ANSWERS_MISSING) == ["answer cells missing (graded as blank): g"]
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, lambda nb: nb.cells.clear()))
    assert flagged(c, FlagCode.NO_ANSWER_CELLS) == ["no answer cell of this assignment was found in the notebook"]


def test_cells_of_the_students_own_follow_the_answer_they_followed(tmp_path):
    src, rel = course()

    def extras(nb):
        nb.cells.insert(3, nbformat_code("helper = 1"))     # after answer f
        nb.cells.insert(4, nbformat_code("   \n"))         # blank: dropped
        nb.cells.insert(5, md("my notes"))                  # markdown of their own: dropped
        nb.cells.insert(0, nbformat_code("early = 1"))      # before every answer
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, extras))
    srcs = [x.source for x in c.nb.cells]
    assert "   \n" not in srcs and "my notes" not in srcs
    i_f, i_helper, i_early = srcs.index(by_id(c.nb)["f"].source), srcs.index("helper = 1"), srcs.index("early = 1")
    assert i_early == i_f - 1 and i_helper == i_f + 1
    own = [x for x in c.nb.cells if x.metadata.get("llmcourse_student_cell")]
    assert {x.source for x in own} == {"helper = 1", "early = 1"}
    assert all("nbgrader" not in x.metadata and x.outputs == [] for x in own)


def nbformat_code(source):
    from nbformat.v4 import new_code_cell
    return new_code_cell(source)


def test_no_submission_and_an_unreadable_one_are_graded_as_the_blank_release(tmp_path):
    src, rel = course()
    for path, why in ((None, "no notebook was submitted"), (_write_bytes(tmp_path, b"{oops"), "not valid JSON")):
        c = trusted.canonical_notebook(src, rel, path)
        assert c.rejected and why in c.rejected
        got = by_id(c.nb)
        assert got["f"].source == rel.cells[2].source and got["essay"].source == "YOUR ANSWER HERE"
        assert got["test_f"].source == src.cells[3].source
        assert not any(x.metadata.get("llmcourse_student_cell") for x in c.nb.cells)


def test_size_caps_reject_one_big_cell_and_too_much_in_all(tmp_path, monkeypatch):
    src, rel = course()
    monkeypatch.setattr(trusted, "MAX_CELL_CHARS", 100)
    monkeypatch.setattr(trusted, "MAX_STUDENT_CHARS", 150)
    big = submission(rel, tmp_path, lambda nb: setattr(nb.cells[2], "source", "x = 1\n" * 20), "big.ipynb")
    c = trusted.canonical_notebook(src, rel, big)
    assert c.rejected and "answer cell 'f' holds" in c.rejected and "for one cell" in c.rejected
    own = submission(rel, tmp_path, lambda nb: nb.cells.append(nbformat_code("y = 2\n" * 20)), "own.ipynb")
    assert "(a cell of your own)" in trusted.canonical_notebook(src, rel, own).rejected

    def many(nb):
        for i in range(3):
            nb.cells.append(nbformat_code(f"v{i} = '" + "z" * 60 + "'"))
    c = trusted.canonical_notebook(src, rel, submission(rel, tmp_path, many, "many.ipynb"))
    assert c.rejected and "together, over the limit" in c.rejected
    assert by_id(c.nb)["f"].source == rel.cells[2].source, "over a cap: graded as the blank release"


# ------------------------------------------------------------------ decide
def graded_nb():
    return notebook(
        locked("import math", "setup"),
        answer("f"),
        graded("test_f", hidden("check_close('test_f/v', f(1), 2)", "check_close('test_f/h', f(3), 6)"), points=3),
        graded("test_fb", "check_close('test_fb/v', f(0), 0)", points=2),
    )


def rec(name, value, kind="close"):
    e = {"name": name, "kind": kind, "value": value}
    if kind == "close":
        e.update(atol=1e-6, rtol=1e-5)
    return e


REF = {"test_f/v": [rec("test_f/v", 2.0)], "test_f/h": [rec("test_f/h", 6.0)], "test_fb/v": [rec("test_fb/v", 0.0)]}


def run_all(nb, outputs_by_gid=None):
    out = outputs_by_gid or {}
    return [ran(out.get(trusted.meta(c).get("grade_id"), [])) if c.cell_type == "code" else None for c in nb.cells]


def verdicts(nb, executed, stu, ref=REF):
    return {v.grade_id: v for v in trusted.decide(nb, executed, stu, ref)}


def test_matching_records_pass_with_the_cells_points():
    nb = graded_nb()
    v = verdicts(nb, run_all(nb), dict(REF))
    assert list(v) == ["test_f", "test_fb"], "one verdict per test cell, in order"
    assert v["test_f"].passed and v["test_f"].points == 3.0 and v["test_f"].reason == "" and not v["test_f"].tampered
    assert v["test_f"].failed_check is None
    assert v["test_fb"].passed and v["test_fb"].points == 2.0


def test_a_cell_that_never_ran_fails():
    nb = graded_nb()
    executed = run_all(nb)
    executed[3] = None
    v = verdicts(nb, executed, dict(REF))
    assert not v["test_fb"].passed and "was not executed" in v["test_fb"].reason
    executed[3] = {"cell_type": "code", "outputs": [], "metadata": {}}   # no run time: not from the runner
    assert not verdicts(nb, executed, dict(REF))["test_fb"].passed
    assert all(not x.passed for x in verdicts(nb, None, dict(REF)).values())
    assert all(not x.passed for x in verdicts(nb, run_all(nb)[:2], dict(REF)).values())


def test_no_reference_records_is_a_grader_error_not_a_pass():
    nb = graded_nb()
    v = verdicts(nb, run_all(nb), dict(REF), ref={"test_f/v": REF["test_f/v"], "test_f/h": REF["test_f/h"],
                                                  "test_fbx/v": REF["test_fb/v"]})
    assert not v["test_fb"].passed and "(grader error)" in v["test_fb"].reason
    assert v["test_f"].passed, "records of another cell whose id starts alike are not this cell's"


def test_a_failed_visible_check_is_named_a_failed_hidden_one_is_not():
    nb = graded_nb()
    stu = dict(REF, **{"test_f/v": [rec("test_f/v", 2.5)]})
    err = {"test_f": [error("CheckFailed", "[test_f/v] off")]}
    v = verdicts(nb, run_all(nb, err), stu)["test_f"]
    assert not v.passed and v.reason.startswith("CheckFailed: [test_f/v] ") and v.failed_check == "test_f/v"
    stu = dict(REF, **{"test_f/h": [rec("test_f/h", 7.0)]})
    v = verdicts(nb, run_all(nb, err), stu)["test_f"]
    assert not v.passed and v.reason.startswith("CheckFailed: a hidden check failed: ")
    assert "test_f/h" not in v.reason and "6.0" not in v.reason and v.failed_check is None


def test_the_kernels_own_pass_is_overruled_and_flagged():
    nb = graded_nb()
    stu = dict(REF, **{"test_f/v": [rec("test_f/v", 99.0)]})
    v = verdicts(nb, run_all(nb), stu)["test_f"]          # no error in the run: the kernel said "passed"
    assert not v.passed and "disagrees with the reference" in v.tampered and "test_f/v" in v.tampered
    stu = {k: x for k, x in REF.items() if k != "test_f/h"}
    v = verdicts(nb, run_all(nb), stu)["test_f"]
    assert not v.passed and "never recorded a value" in v.tampered
    assert v.reason == "Failed: 1 check(s) of this cell never recorded a value"


def test_a_cell_that_raised_before_its_checks_is_not_tampering():
    nb = graded_nb()
    v = verdicts(nb, run_all(nb, {"test_f": [error("NotImplementedError")]}), {})["test_f"]
    assert not v.passed and v.reason == "NotImplementedError: not implemented yet" and v.tampered == ""
    v = verdicts(nb, run_all(nb, {"test_f": [error("ZeroDivisionError", "SECRET")]}), {})["test_f"]
    assert v.reason.startswith("ZeroDivisionError: raised while the test cell ran") and "SECRET" not in v.reason


def test_an_error_name_the_student_made_up_is_not_repeated():
    nb = graded_nb()
    for ename in ("aGlkZGVuIHRlc3Q", "CheckFailed2", "=HYPERLINK"):
        v = verdicts(nb, run_all(nb, {"test_f": [error(ename, "text")]}), {})["test_f"]
        assert v.reason.startswith("Error: ") and ename not in v.reason


def test_extra_or_unusable_records_fail_that_check_only():
    nb = graded_nb()
    stu = dict(REF, **{"test_f/v": [rec("test_f/v", 2.0), rec("test_f/v", 2.0)]})
    v = verdicts(nb, run_all(nb, {"test_f": [error("CheckFailed")]}), stu)
    assert not v["test_f"].passed and "recorded more values" in v["test_f"].reason
    assert v["test_fb"].passed
    stu = dict(REF, **{"test_fb/v": [rec("test_fb/v", 10**400)]})
    v = verdicts(nb, run_all(nb, {"test_fb": [error("CheckFailed")]}), stu)
    assert not v["test_fb"].passed and "unusable" in v["test_fb"].reason and v["test_f"].passed
    stu = dict(REF, **{"test_fb/v": "garbage"})
    assert "unusable" in verdicts(nb, run_all(nb), stu)["test_fb"].reason


def test_not_reached_is_not_a_reached_failure():
    nb = graded_nb()
    stu = {k: x for k, x in REF.items() if k != "test_f/h"}
    v = verdicts(nb, run_all(nb, {"test_f": [error("ValueError")]}), stu)["test_f"]
    assert v.reason.startswith("ValueError: ") and NOT_REACHED not in v.reason


def test_hidden_secrets_lists_hidden_lines_and_check_names():
    nb = graded_nb()
    nb.cells[2].source = hidden("check_close('test_f/v', f(1), 2)",
                                "short = 1\nwant_value = 6.000001\ncheck_close('test_f/secret_name', f(3), want_value)")
    found = trusted.hidden_secrets(nb)
    assert "want_value = 6.000001" in found and "test_f/secret_name" in found
    assert "RECORD_ONLY" in found and "HIDDEN TESTS" in found
    assert "short = 1" not in found, "lines under 12 characters are too common to search for"
    assert "test_f/v" not in found, "visible check names are not secret"
