"""5. Misconceptions: every mutant in authoring/<id>/misconceptions.toml, put into the solution, fails some graded test.

Fast path: each notebook is executed once in one kernel at smoke size; for each mutant
only the mutated cell and the cells after it run, stopping at the first failing graded
test cell; then the original cell and the cells that ran are re-executed to restore state.
"""
from __future__ import annotations

import copy

import pytest
from nbclient import NotebookClient
from nbutil import ROOT, is_test_cell, meta, read

from llmcourse.authoring.misconceptions import load as load_misconceptions

MUTANTS = load_misconceptions(ROOT)
ASSIGNMENTS = sorted({m.assignment for m in MUTANTS})


def _failed(cell) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_mutant_is_caught(assignment, capsys):
    src = next((ROOT / "source" / assignment).glob("*.ipynb"))
    nb = read(src)
    for c in nb.cells:
        if "parameters" in c.metadata.get("tags", []):
            c.source += '\nPROFILE = "smoke"\nDEVICE = "cpu"'
    client = NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True,
                            resources={"metadata": {"path": str(src.parent)}})
    code_idx = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    by_id = {meta(c).get("grade_id"): i for i, c in enumerate(nb.cells)}

    originals = {i: nb.cells[i].source for i in code_idx}

    def run(i, source=None):
        # nbclient stores the executed cell back into the notebook: always start from a copy
        cell = copy.deepcopy(nb.cells[i])
        cell.source = originals[i] if source is None else source
        client.execute_cell(cell, i)
        return cell

    report, missed = [], []
    with client.setup_kernel():
        for i in code_idx:
            cell = run(i)
            assert not _failed(cell), f"the reference solution fails in cell {i}: {cell.outputs[-1]}"
        mutants = sorted((m for m in MUTANTS if m.assignment == assignment), key=lambda m: by_id[m.cell])
        for m in mutants:
            start = by_id[m.cell]
            original = originals[start]
            assert original.count(m.old) == 1
            ran, caught_by = [start], None
            run(start, original.replace(m.old, m.new))
            for j in code_idx:
                if j <= start:
                    continue
                ran.append(j)
                cell = run(j)
                if is_test_cell(cell) and _failed(cell):
                    caught_by = meta(cell)["grade_id"]
                    break
            for j in ran:  # restore the reference state
                run(j)
            report.append(f"  {'caught by ' + caught_by if caught_by else 'NOT CAUGHT':<45} {m.models}")
            if caught_by is None:
                missed.append(m.models)
    with capsys.disabled():
        print(f"\n{assignment}: {len(mutants) - len(missed)}/{len(mutants)} misconception mutants caught")
        print("\n".join(report))
    assert not missed, f"mutants not caught by any test: {missed}"
