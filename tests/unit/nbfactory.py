"""Small made-up notebooks for the unit tests: a few cells with nbgrader metadata, built in the test.

Nothing here reads the course's notebooks; every test states the cells it is about.
"""
from __future__ import annotations

import json

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output


def _nbg(cell, **m):
    m.setdefault("schema_version", 3)
    cell.metadata["nbgrader"] = m
    return cell


def locked(source: str, gid: str | None = None):
    c = new_code_cell(source)
    return _nbg(c, grade=False, solution=False, locked=True, grade_id=gid) if gid else c


def answer(gid: str, source: str = "raise NotImplementedError()"):
    return _nbg(new_code_cell(source), grade=False, solution=True, locked=False, grade_id=gid)


def written(gid: str, source: str = "YOUR ANSWER HERE", points: int = 2):
    return _nbg(new_markdown_cell(source), grade=True, solution=True, locked=False, grade_id=gid, points=points)


def graded(gid: str, source: str, points: int = 1):
    return _nbg(new_code_cell(source), grade=True, solution=False, locked=True, grade_id=gid, points=points)


def md(source: str):
    return new_markdown_cell(source)


def student(source: str):
    """A code cell the student added (as canonical_notebook marks it)."""
    c = new_code_cell(source)
    c.metadata["llmcourse_student_cell"] = True
    return c


def notebook(*cells):
    nb = new_notebook()
    nb.cells = list(cells)
    return nb


def copy(nb):
    return nbformat.from_dict(json.loads(json.dumps(nb)))


def ran(outputs=None, seconds: float = 0.01) -> dict:
    """One executed cell as the grader's protocol reader builds it."""
    return {"cell_type": "code", "outputs": list(outputs or []), "metadata": {"llmcourse_seconds": seconds}}


def error(ename: str, evalue: str = ""):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def stream(text: str, name: str = "stdout"):
    return new_output("stream", name=name, text=text)


def write(nb, path) -> None:
    nbformat.write(nb, str(path))
