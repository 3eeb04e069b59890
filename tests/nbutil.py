"""Helpers for tests that read notebooks."""
from __future__ import annotations

from pathlib import Path

import nbformat

from llmcourse.grading.cells import CHECK_CALL, is_test_cell, split_hidden  # noqa: F401  (re-exported for the tests)
from llmcourse.grading.cells import nbgrader_meta as meta  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def source_nbs():
    return sorted((ROOT / "source").glob("*/*.ipynb"))


def graded_source_nbs():
    return [p for p in source_nbs() if any(meta(c).get("grade") for c in read(p).cells)]


def read(path):
    return nbformat.read(str(path), as_version=4)


def graded_test_cells(nb):
    return [c for c in nb.cells if is_test_cell(c)]


def solution_bodies(nb) -> list[str]:
    """Lines inside ### BEGIN/END SOLUTION regions (code and markdown)."""
    out, inside = [], False
    for c in nb.cells:
        for line in c.source.split("\n"):
            if "### BEGIN SOLUTION" in line:
                inside = True
            elif "### END SOLUTION" in line:
                inside = False
            elif inside:
                out.append(line)
    return out
