"""What a cell of a course notebook is, read from nbgrader's metadata and the course's markers.

One definition each, used by the grader, the authoring kit and the tests. Standard library
only, and defensive: the trusted core applies these to cells parsed from a student's file,
whose metadata may be any JSON. nbgrader's own ``nbgrader.utils`` (is_grade, is_solution,
is_locked) does the same on well-formed notebooks where nbgrader is installed anyway.
"""
from __future__ import annotations

import re

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECKS = ("check_close", "check_equal", "check_true", "check_raises", "check_shape")
# a check call and its name: group 1 "f" for an f-string name, group 2 the quote, group 3 the name
CHECK_CALL = re.compile(r"check_(?:close|equal|true|raises|shape)\(\s*(f?)([\"'])([^\"']*)\2")


def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata, {} when absent or not a mapping."""
    m = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    m = m.get("nbgrader", {}) if isinstance(m, dict) else {}
    return m if isinstance(m, dict) else {}


def is_test_cell(cell) -> bool:
    """An autograded test cell: code, graded, not an answer."""
    m = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(m.get("grade")) and not m.get("solution")


def is_answer_cell(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_course_cell(cell) -> bool:
    """A cell whose source is the course's own (not an answer cell, not a cell the student added)."""
    return not is_answer_cell(cell) and not (cell.get("metadata") or {}).get("llmcourse_student_cell")


def hidden_line_ranges(source: str) -> list[tuple[int, int]]:
    """(line of BEGIN, line of END), 1-based, of each closed hidden-test region."""
    ranges, start = [], None
    for i, line in enumerate(source.split("\n"), 1):
        if HIDDEN_BEGIN in line:
            start = i
        elif HIDDEN_END in line and start is not None:
            ranges.append((start, i))
            start = None
    return ranges


def hidden_line_numbers(source: str) -> set[int]:
    """The 1-based numbers of the lines inside hidden-test regions (markers excluded)."""
    return {n for a, b in hidden_line_ranges(source) for n in range(a + 1, b)}


def split_hidden(source: str) -> tuple[str, list[str]]:
    """(visible part, [hidden blocks]) of a test cell."""
    lines = source.split("\n")
    ranges = hidden_line_ranges(source)
    inside = {n for a, b in ranges for n in range(a, b + 1)}
    visible = "\n".join(line for n, line in enumerate(lines, 1) if n not in inside)
    return visible, ["\n".join(lines[a:b - 1]) for a, b in ranges]


def check_names(source: str) -> set[str]:
    return {m.group(3) for m in CHECK_CALL.finditer(source)}
