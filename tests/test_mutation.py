"""The mutation engine (llmcourse/authoring): operators, stable ids, the forked runner, the lists.

Fast tests use a small synthetic notebook (no torch); one slow test runs the hand-written
misconception mutants of one assignment through the engine and expects every one killed,
as tests/test_05_misconceptions.py finds with a Jupyter kernel.
"""
from __future__ import annotations

import tomllib

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbutil import ROOT, graded_source_nbs

from llmcourse.authoring import mutation
from llmcourse.authoring.operators import OPERATORS, mutate_cell, solution_regions
from llmcourse.authoring.runner import analyse_cell, cells_to_run

EVERY_OPERATOR = '''\
import math
import numpy as np

def f(x, axis=-1, flag=True, scale=2.0):
    """Covers every operator at least once."""
    ### BEGIN SOLUTION
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError("bad x")
    if scale < 0:
        raise TypeError("scale")
    x = np.asarray(x, dtype=np.float64)
    ok = True
    y = np.asarray(x)
    m = x.max(axis=axis, keepdims=True)
    s = np.sum(x - m, axis=1)
    t = x.sum()
    z = x[:, 1:] * scale + math.sqrt(2.0)
    w = -x[0] if flag else x.T
    q = np.where(x > 0, x, 0.0)
    r = np.sort(x, kind="stable", axis=0)
    n = float(t) + int(s[0]) + np.exp(1.0)
    u = x.astype(np.float32).reshape(-1)
    with np.errstate(divide="ignore"):
        v = np.log(np.abs(x))
    total = 0
    for i in range(3):
        total += i
    if total > 1 and flag is not None:
        total = total // 2
    else:
        total = total @ total
    a, b = total, s
    x = x + 1
    return a, b, z, w, q, r, n, u, v, y, ok, np.searchsorted(s, 0.5, side="right")
    ### END SOLUTION
'''


def _notebook(tmp_path, solution: str, tests: list[str], extra: list[str] = ()):
    cells = [new_markdown_cell("# synthetic"),
             new_code_cell('PROFILE = "default"\nDEVICE = "auto"', metadata={"tags": ["parameters"]}),
             new_code_cell("from llmcourse.student.checks import check_equal, check_true\nimport time")]
    cells.append(new_code_cell(solution, metadata={"nbgrader": {"solution": True, "grade": False,
                                                                "grade_id": "sol", "locked": False}}))
    for i, t in enumerate(tests):
        cells.append(new_code_cell(t, metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": f"test_{i}",
                                                             "points": 1, "locked": True}}))
    for e in extra:
        cells.append(new_code_cell(e))
    path = tmp_path / "99_synthetic" / "synthetic.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def test_every_operator_fires():
    found = {m.operator for m in mutate_cell("x", 0, "f", EVERY_OPERATOR)}
    assert found == set(OPERATORS), f"never produced: {set(OPERATORS) - found}; unknown: {found - set(OPERATORS)}"


def test_mutants_compile_and_stay_inside_the_solution_regions():
    for nb_path in graded_source_nbs():
        nb = nbformat.read(str(nb_path), as_version=4)
        for i, c in enumerate(nb.cells):
            if c.cell_type != "code" or not c.metadata.get("nbgrader", {}).get("solution"):
                continue
            inside = {n for a, b in solution_regions(c.source) for n in range(a, b + 1)}
            orig = c.source.split("\n")
            for m in mutate_cell(nb_path.parent.name, i, c.metadata["nbgrader"]["grade_id"], c.source):
                compile(m.source, m.id, "exec")
                new = m.source.split("\n")
                assert m.source != c.source
                # lines before the first region and after the last are unchanged (except a
                # default_arg mutant, which edits the signature of the function holding the region)
                first, last = min(inside), max(inside)
                head, tail = orig[: first - 1], orig[last:]
                if m.operator != "default_arg":
                    assert new[: first - 1] == head, (m.id, m.operator, m.after)
                assert new[len(new) - len(tail):] == tail, (m.id, m.operator, m.after)


def test_mutant_ids_are_unique_and_survive_unrelated_edits():
    first = mutate_cell("x", 0, "f", EVERY_OPERATOR)
    ids = [m.id for m in first]
    assert len(ids) == len(set(ids))
    # an unrelated edit: a comment and a new statement elsewhere in the region, the cell moved
    edited = EVERY_OPERATOR.replace("    total = 0\n", "    # a comment\n    total = 0\n    unused = 41\n")
    again = {m.id for m in mutate_cell("x", 7, "f", edited)}
    assert set(ids) <= again


def test_observer_analysis():
    cells = ["import numpy as np",
             "def f(x):\n    return x + 1",            # 1: the mutated cell
             "y = f(2)",                                # reads f
             "z = 3",                                   # unrelated
             "def g():\n    return f(0)",              # late binding: calling g calls f
             "w = g()",
             "data = [1]",                              # unrelated, but cell 7 needs data
             "data.append(y)",                          # reads y: may change data in place
             "print(data)",                             # so this one observes too
             "_t = z * 2\nfor _i in range(2):\n    _r = _i\n_r + 1"]   # binds _r before reading it
    names = [analyse_cell(c) for c in cells]
    assert cells_to_run(names, 1, rng_cells=set()) == [2, 4, 5, 6, 7, 8]
    # a cell that moves the global random generators runs too, so later cells see the same draws
    assert cells_to_run(names, 1, rng_cells={3}) == [2, 3, 4, 5, 6, 7, 8]
    assert cells_to_run(names, 1, rng_cells=set(), mode="all") == list(range(2, 10))


def test_runner_kills_survives_and_times_out(tmp_path):
    solution = ("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\n\n\n"
                "def clip(x):\n    ### BEGIN SOLUTION\n    if x < 0:\n        return 0\n    return x\n"
                "    ### END SOLUTION\n\n\n"
                "def count(n):\n    ### BEGIN SOLUTION\n    i = 0\n    while i < n:\n        i += 1\n    return i\n"
                "    ### END SOLUTION\n")
    tests = ['check_equal("test_0/add", add(2, 3), 5)',
             'check_equal("test_1/clip", [clip(-1), clip(2)], [0, 2])',
             'check_equal("test_2/count", count(3), 3)']
    path = _notebook(tmp_path, solution, tests, extra=["unrelated = 1"])
    mutants = {(m.function, m.operator, m.after.strip()): m for m in mutation.notebook_mutants(path)}
    pick = [mutants[("add", "arith", "return a - b")],
            mutants[("clip", "compare", "if x <= 0:")],        # equivalent: clip(0) is 0 either way
            mutants[("count", "arith", "i -= 1")]]             # never ends
    out = mutation.run_notebook(path, pick, jobs=2, timeout_factor=1.0, timeout_grace=8.0)
    res = out["results"]
    assert res[pick[0].id]["status"] == "killed" and res[pick[0].id]["by"] == "test_0"
    assert "CheckFailed" in res[pick[0].id]["error"]
    assert res[pick[1].id]["status"] == "survived"
    assert res[pick[1].id]["ran"] == ["test_0", "test_1", "test_2"]   # the solution cell defines all three
    assert res[pick[2].id]["status"] == "killed" and res[pick[2].id]["reason"] == "timeout"
    # deterministic: the same verdicts again
    again = mutation.run_notebook(path, pick, jobs=1, timeout_factor=1.0, timeout_grace=8.0)["results"]
    def verdicts(results):
        return {k: (v["status"], v.get("by")) for k, v in results.items()}
    assert verdicts(again) == verdicts(res)


def test_a_broken_reference_is_an_error(tmp_path):
    path = _notebook(tmp_path, "def one():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n",
                     ['check_equal("test_0/one", one(), 2)'])
    with pytest.raises(RuntimeError, match="reference fails"):
        mutation.run_notebook(path, mutation.notebook_mutants(path)[:1], jobs=1)


def test_sample_is_deterministic_and_covers_functions():
    path = next(p for p in graded_source_nbs() if p.parent.name == "01_chain_rule")
    mutants = mutation.notebook_mutants(path)
    a, b = mutation.sample(mutants, 16), mutation.sample(list(reversed(mutants)), 16)
    assert [m.id for m in a] == [m.id for m in b] and len(a) == 16
    assert {m.function for m in a} == {m.function for m in mutants}


@pytest.mark.parametrize("name,table", [("equivalent.toml", "equivalent"), ("survivors.toml", "survivor")])
def test_mutant_lists_are_well_formed(name, table):
    path = ROOT / "tests" / "mutation" / name
    entries = mutation.load_list(path, table)      # raises on a missing or repeated id
    notebooks = {p.parent.name for p in graded_source_nbs()}
    for mid, e in entries.items():
        assert e.get("notebook") in notebooks, f"{name}: {mid} names no graded notebook"
        if table == "equivalent":
            assert str(e.get("reason", "")).strip(), f"{name}: {mid} needs a one-line reason"
    with open(path, "rb") as fh:
        assert isinstance(tomllib.load(fh), dict)


@pytest.mark.slow
def test_engine_kills_every_misconception_mutant():
    from llmcourse.authoring.misconceptions import load as load_misconceptions
    name = "02_entropy_perplexity"
    path = next(p for p in graded_source_nbs() if p.parent.name == name)
    hand = mutation.text_mutants(path, [(m.cell, m.old, m.new, m.slug) for m in load_misconceptions(ROOT, name)])
    res = mutation.run_notebook(path, hand, jobs=2)["results"]
    missed = [m.function for m in hand if res[m.id]["status"] != "killed"]
    assert not missed, f"misconception mutants that the engine did not see killed: {missed}"
