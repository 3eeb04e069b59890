"""The check helpers of the test contract: messages, recording, out-of-kernel comparison."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmcourse.student import checks
from llmcourse.student.checks import (
    CheckFailed,
    check_close,
    check_equal,
    check_raises,
    check_shape,
    check_true,
    compare_records,
    load_records,
)


def _msg(fn, *args, **kw) -> str:
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kw)
    return str(info.value)


def test_close_passes_and_is_an_assertion():
    check_close("t/a", np.array([1.0, 2.0]), [1.0, 2.0 + 1e-9])
    check_close("t/b", torch.tensor([[1.0]]), [[1.0]])
    assert issubclass(CheckFailed, AssertionError)


def test_close_message_names_shape_index_and_size_but_not_the_answer():
    msg = _msg(check_close, "t/shape", np.zeros((3, 2)), np.zeros((2, 3)))
    assert "expected shape (2, 3), got (3, 2)" in msg
    msg = _msg(check_close, "t/value", [0.0, 5.0, 1.0], [0.0, 7.25, 1.0], hint="look at row 1")
    assert "index (1,)" in msg and "off by 2.25" in msg and "you returned 5" in msg and "Hint: look at row 1" in msg
    assert "7.25" not in msg
    assert "NaN" in _msg(check_close, "t/nan", [float("nan")], [1.0])
    assert "not a number" in _msg(check_close, "t/none", [None], [1.0])


def test_equal_true_shape_raises():
    check_equal("t/eq", np.array([1, 2]), [1, 2])
    check_equal("t/int", 3, 3)
    assert "first at index (1,)" in _msg(check_equal, "t/eq2", [1, 5], [1, 2])
    assert "msg here" in _msg(check_true, "t/true", False, "msg here")
    check_shape("t/shape", np.zeros((2, 3)), (2, 3))
    assert "(3, 2)" in _msg(check_shape, "t/shape2", np.zeros((3, 2)), (2, 3))
    check_raises("t/raises", ValueError, int, "x")
    assert "returned normally" in _msg(check_raises, "t/raises2", ValueError, int, "3")
    assert "TypeError" in _msg(check_raises, "t/raises3", ValueError, len, 3)
    with pytest.raises(NotImplementedError):
        check_raises("t/raises4", ValueError, lambda: (_ for _ in ()).throw(NotImplementedError()))


def test_names_must_carry_the_cell():
    with pytest.raises(ValueError):
        check_true("no_slash", True, "x")


def test_patching_numpy_allclose_changes_nothing(monkeypatch):
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    with pytest.raises(CheckFailed):
        check_close("t/patched", np.zeros(3), np.ones(3))


def test_recording_and_comparison(tmp_path, monkeypatch):
    ref_file, stu_file = tmp_path / "ref.jsonl", tmp_path / "stu.jsonl"
    monkeypatch.setenv(checks.RECORD_ENV, str(ref_file))
    check_close("cell_a/x", np.array([1.0, 2.0]), [1.0, 2.0], atol=1e-3)
    check_equal("cell_a/n", 4, 4)
    check_raises("cell_b/r", ValueError, int, "x")
    # a student who patched the in-kernel comparison: the checks "pass" in-kernel,
    # but the recorded values are their own wrong ones
    monkeypatch.setenv(checks.RECORD_ENV, str(stu_file))
    monkeypatch.setattr(checks, "_close_problem", lambda *a, **k: None)
    check_close("cell_a/x", np.array([1.0, 2.5]), [1.0, 2.0])
    monkeypatch.undo()
    lines = [json.loads(ln) for ln in stu_file.read_text().splitlines()]
    assert lines == [{"name": "cell_a/x", "kind": "close", "value": [1.0, 2.5], "atol": 1e-6, "rtol": 1e-5}]
    verdict = compare_records(load_records(stu_file), load_records(ref_file))
    assert verdict["cell_a/x"] and "off by 0.5" in verdict["cell_a/x"]
    assert verdict["cell_a/n"] and verdict["cell_b/r"], "checks the student never reached fail"
    same = compare_records(load_records(ref_file), load_records(ref_file))
    assert all(v is None for v in same.values())


def test_load_records_ignores_garbage(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('not json\n{"name": 3}\n{"name": "a/b", "kind": "true", "value": true}\n')
    assert list(load_records(f)) == ["a/b"]
    assert load_records(tmp_path / "missing.jsonl") == {}
