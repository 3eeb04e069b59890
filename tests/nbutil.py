"""Helpers for tests that read notebooks."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CHECK_CALL = re.compile(r"check_(?:close|equal|true|raises|shape)\(\s*(f?)([\"'])([^\"']*)\2")


def source_nbs():
    return sorted((ROOT / "source").glob("*/*.ipynb"))


def graded_source_nbs():
    return [p for p in source_nbs() if any(meta(c).get("grade") for c in read(p).cells)]


def read(path):
    return nbformat.read(str(path), as_version=4)


def meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def graded_test_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and meta(c).get("grade") and not meta(c).get("solution")]


def split_hidden(source: str) -> tuple[str, list[str]]:
    """(visible part, [hidden blocks]) of a test cell."""
    visible, hidden, cur = [], [], None
    for line in source.split("\n"):
        if "### BEGIN HIDDEN TESTS" in line:
            cur = []
        elif "### END HIDDEN TESTS" in line:
            hidden.append("\n".join(cur or []))
            cur = None
        elif cur is not None:
            cur.append(line)
        else:
            visible.append(line)
    return "\n".join(visible), hidden


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
