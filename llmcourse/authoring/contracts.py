"""Clause coverage: every clause of a graded function's contract is exercised by a check.

One TOML file per notebook (``tests/contracts/aNN_name.toml``) lists, for each graded
function, the clauses of the contract that the notebook states before the solution cell,
each mapped to the checks that exercise it. A check is named by the first argument of
``check_close`` / ``check_equal`` / ``check_true`` / ``check_shape`` / ``check_raises`` in a
test cell, as written: an f-string name is its template (``test_x/random{_trial}``)::

    notebook = "01_chain_rule"

    [[function]]
    name = "log_prob_of_sequence"            # as defined in the solution cell
    cell = "log_prob_of_sequence"            # grade id of the solution cell

    [[function.clause]]
    text = "returns a Python float"
    checks = ["test_log_prob_of_sequence/is_float"]

    [[function.clause]]
    text = "a zero probability gives -inf without a warning"
    checks = ["test_log_prob_of_sequence/zero"]
    gap = "no check that no warning is raised"     # partial: checked, but not all of it

    [[function.clause]]
    text = "raises ValueError for a non-finite entry"
    gap = "no check passes inf"                    # not checked at all: a known gap

A clause with ``stated = false`` is something a check tests that the contract text does not
say yet: the sentence has to be added to the notebook. :func:`coverage` returns the problems
(a clause with neither check nor gap, a mapped check the notebook lacks, a check of the
notebook that no clause claims, a graded function missing from the file) and counts.
"""
from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..grading.cells import hidden_line_numbers, is_test_cell
from ..grading.cells import nbgrader_meta as _meta

CHECKS = ("check_close", "check_equal", "check_true", "check_shape", "check_raises")


@dataclass(frozen=True)
class Check:
    name: str          # the first argument as written (f-string: its template)
    cell: str          # grade id of the test cell
    hidden: bool
    kind: str          # check_close, ...


@dataclass
class Coverage:
    notebook: str
    problems: list[str] = field(default_factory=list)
    clauses: int = 0
    gaps: int = 0              # clauses with a gap (none or some of it checked)
    unchecked: int = 0         # clauses with no check at all
    unstated: int = 0          # clauses the contract text does not state yet
    checks: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _name_of(arg, source: str) -> str | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr):
        seg = ast.get_source_segment(source, arg) or ""
        i = min(j for j in (seg.find('"'), seg.find("'")) if j >= 0)
        quote = seg[i]
        body = seg[i + 1:]
        return body[: body.rfind(quote)]
    return None


def notebook_checks(nb) -> list[Check]:
    """Every check call of the graded test cells, in order."""
    out = []
    for c in nb.cells:
        if not is_test_cell(c):
            continue
        m = _meta(c)
        src = c.source
        hidden_lines = hidden_line_numbers(src)
        for node in ast.walk(ast.parse(src)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CHECKS
                    and node.args):
                name = _name_of(node.args[0], src)
                if name is not None:
                    out.append(Check(name, m.get("grade_id", ""), node.lineno in hidden_lines, node.func.id))
    out.sort(key=lambda ch: (ch.cell, ch.name))
    return out


def graded_functions(nb) -> dict[str, str]:
    """{function or class name: solution grade id} for what each solution cell defines."""
    out = {}
    for c in nb.cells:
        m = _meta(c)
        if c.cell_type == "code" and m.get("solution"):
            for node in ast.parse(c.source).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    out[node.name] = m.get("grade_id", "")
    return out


def load_contract(path: Path) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def coverage(contract_path: Path, notebook_path: Path) -> Coverage:
    """Check one contract file against one notebook."""
    data = load_contract(contract_path)
    nb = nbformat.read(str(notebook_path), as_version=4)
    cov = Coverage(data.get("notebook", notebook_path.parent.name))
    checks = {ch.name: ch for ch in notebook_checks(nb)}
    cov.checks = len(checks)
    claimed: set[str] = set()
    defined = graded_functions(nb)
    listed = set()
    for fn in data.get("function", []):
        name = fn.get("name", "?")
        listed.add(name)
        if name not in defined:
            cov.problems.append(f"{name}: not a function or class of a solution cell")
        elif fn.get("cell") != defined[name]:
            cov.problems.append(f"{name}: defined in solution cell {defined[name]!r}, the file says {fn.get('cell')!r}")
        clauses = fn.get("clause", [])
        if not clauses:
            cov.problems.append(f"{name}: no clause listed")
        for k, cl in enumerate(clauses, 1):
            cov.clauses += 1
            text = cl.get("text", "").strip()
            label = f"{name} clause {k} ({text[:60]!r})"
            if not text:
                cov.problems.append(f"{label}: no text")
            mapped = cl.get("checks", [])
            for ch in mapped:
                if ch not in checks:
                    cov.problems.append(f"{label}: check {ch!r} does not exist in the notebook")
                claimed.add(ch)
            gap = cl.get("gap")
            if gap is not None and not str(gap).strip():
                cov.problems.append(f"{label}: an empty gap needs its reason")
            if gap:
                cov.gaps += 1
            if not mapped:
                cov.unchecked += 1
                if not gap:
                    cov.problems.append(f"{label}: no check exercises it and it is not marked as a gap")
            if cl.get("stated", True) is False:
                cov.unstated += 1
    for name in sorted(set(defined) - listed):
        cov.problems.append(f"{name}: graded function missing from {contract_path.name}")
    for ch in sorted(set(checks) - claimed):
        cov.problems.append(f"check {ch!r} ({checks[ch].cell}) belongs to no clause")
    return cov


def without_check(nb, name: str):
    """A copy of the notebook whose check calls named `name` are replaced by `pass`."""
    import copy
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        m = _meta(c)
        if c.cell_type != "code" or not m.get("grade") or m.get("solution"):
            continue
        src = c.source
        tree = ast.parse(src)
        lines = src.split("\n")
        hits = []
        for stmt in ast.walk(tree):
            if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                    and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id in CHECKS
                    and stmt.value.args and _name_of(stmt.value.args[0], src) == name):
                hits.append(stmt)
        for stmt in sorted(hits, key=lambda s: s.lineno, reverse=True):
            first, last = stmt.lineno - 1, stmt.end_lineno - 1
            indent = lines[first][: stmt.col_offset]
            lines[first:last + 1] = [indent + "pass"]
        c.source = "\n".join(lines)
    return nb
