"""The trusted side of grading: code that reads submissions but never runs them.

- :func:`canonical_notebook` rebuilds what gets executed from the *course's* source
  notebook: every locked cell, test cell and all metadata come from source/, and only
  the student's answer cells (matched by grade id) and their own extra cells come from
  the submission. Deleted, duplicated, reordered or edited test cells, edited points,
  a renamed notebook: none of it changes what runs or what it is worth.
- :func:`sandbox_sources` rewrites the hidden part of each test cell for the sandboxed
  run: every ``check_close``/``check_equal`` there loses its expected value (replaced by
  ``RECORD_ONLY``) and the statements that only computed expected values are removed, so
  the reference answers never exist in the student's process. The checks only record the
  student's values.
- :func:`decide` compares those records with the reference solution's records (plain
  JSON, no pickle), cell by cell, and says what each test cell scores and which cells
  look tampered with (in-kernel verdict and trusted verdict disagree).
"""
from __future__ import annotations

import ast
import json
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .checks import NOT_REACHED, compare_entries

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
VALUE_CHECKS = {"check_close", "check_equal"}
ALL_CHECKS = {"check_close", "check_equal", "check_true", "check_shape", "check_raises"}
CHECK_NAME = re.compile(r"check_(?:close|equal|true|raises|shape)\(\s*f?([\"'])([^\"']*)\1")
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_test_cell(cell) -> bool:
    m = meta(cell)
    return cell.get("cell_type") == "code" and bool(m.get("grade")) and not m.get("solution")


# --------------------------------------------------------------------------
# reading a submission
# --------------------------------------------------------------------------

class Rejected(ValueError):
    """The submission cannot be read; the message is shown to the instructor and student."""


def read_submission(path: Path):
    try:  # never follow a link: the grader runs as root
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise Rejected(f"cannot read {path.name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Rejected(f"{path.name} is not a regular file")
        if st.st_size == 0:
            raise Rejected(f"{path.name} is an empty file")
        if st.st_size > MAX_NOTEBOOK_BYTES:
            raise Rejected(f"{path.name} is {st.st_size / 2**20:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit")
        raw = fh.read(MAX_NOTEBOOK_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"{path.name} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise Rejected(f"{path.name} nests JSON too deeply to be a notebook") from None
    except ValueError as exc:
        raise Rejected(f"{path.name} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise Rejected(f"{path.name} is not a Jupyter notebook (no list of cells)")
    if data.get("nbformat") != 4:
        raise Rejected(f"{path.name} has nbformat {data.get('nbformat')!r}; version 4 is required")
    for i, c in enumerate(data["cells"]):
        if not isinstance(c, dict) or c.get("cell_type") not in ("code", "markdown", "raw"):
            raise Rejected(f"{path.name}: cell {i} is malformed")
        src = c.get("source", "")
        if isinstance(src, list):
            if not all(isinstance(s, str) for s in src):
                raise Rejected(f"{path.name}: cell {i} has a malformed source")
            c["source"] = "".join(src)
        elif not isinstance(src, str):
            raise Rejected(f"{path.name}: cell {i} has a malformed source")
        if not isinstance(c.get("metadata", {}), dict):
            c["metadata"] = {}
    return data


@dataclass
class Canonical:
    nb: nbformat.NotebookNode
    flags: list[str] = field(default_factory=list)
    rejected: str | None = None


def canonical_notebook(source_nb, release_nb, submission_path: Path | None) -> Canonical:
    """What gets executed: the course's notebook with the student's answers put in."""
    source_nb = nbformat.from_dict(json.loads(json.dumps(source_nb)))
    release_cells = {meta(c).get("grade_id"): c for c in release_nb.cells if meta(c).get("grade_id")}
    flags: list[str] = []
    rejected = None
    answers: dict[str, dict] = {}
    extras: dict[str | None, list] = {}
    if submission_path is None:
        rejected = "no notebook was submitted"
    else:
        try:
            data = read_submission(submission_path)
        except Rejected as exc:
            rejected = str(exc)
            data = None
        if data is not None:
            src_solution_types = {meta(c)["grade_id"]: c.cell_type for c in source_nb.cells
                                  if meta(c).get("solution") and meta(c).get("grade_id")}
            last = None
            for c in data["cells"]:
                gid = meta(c).get("grade_id") if isinstance(meta(c), dict) else None
                if gid in src_solution_types:
                    if gid in answers:
                        flags.append(f"answer cell {gid!r} appears more than once; the first was graded")
                    elif c.get("cell_type") != src_solution_types[gid]:
                        flags.append(f"answer cell {gid!r} changed type; ignored")
                    else:
                        answers[gid] = c
                    last = gid
                elif gid:
                    continue  # a locked or test cell: the course's version is used
                elif c.get("cell_type") == "code" and c.get("source", "").strip():
                    extras.setdefault(last, []).append(c)
            missing = [g for g in src_solution_types if g not in answers]
            if missing and len(missing) == len(src_solution_types):
                flags.append("no answer cell of this assignment was found in the notebook")
            elif missing:
                flags.append(f"answer cells missing (graded as blank): {', '.join(missing)}")
    cells = []
    first_solution_seen = False
    for c in source_nb.cells:
        m = meta(c)
        gid = m.get("grade_id")
        if m.get("solution"):
            if not first_solution_seen:
                cells.extend(_extra_cells(extras.get(None, [])))
                first_solution_seen = True
            if gid in answers:
                c.source = answers[gid].get("source", "")
            elif gid in release_cells:
                c.source = release_cells[gid].source
            cells.append(c)
            cells.extend(_extra_cells(extras.get(gid, [])))
        else:
            if c.cell_type == "code":
                c.outputs = []
                c.execution_count = None
            cells.append(c)
    source_nb.cells = cells
    if rejected:  # grade the blank release instead, so the grade is defined (0 on every test)
        return Canonical(nb=_blank(source_nb, release_cells), flags=flags, rejected=rejected)
    return Canonical(nb=source_nb, flags=flags)


def _blank(nb, release_cells):
    nb.cells = [c for c in nb.cells if not c.metadata.get("llmcourse_student_cell")]
    for c in nb.cells:
        gid = meta(c).get("grade_id")
        if meta(c).get("solution") and gid in release_cells:
            c.source = release_cells[gid].source
    return nb


def _extra_cells(cells):
    out = []
    for c in cells:
        new = nbformat.v4.new_code_cell(c.get("source", ""))
        new.metadata = {"llmcourse_student_cell": True}
        out.append(new)
    return out


# --------------------------------------------------------------------------
# the sandbox's version of the test cells
# --------------------------------------------------------------------------

def _hidden_line_ranges(source: str) -> list[tuple[int, int]]:
    ranges, start = [], None
    for i, line in enumerate(source.split("\n"), 1):
        if HIDDEN_BEGIN in line:
            start = i
        elif HIDDEN_END in line and start is not None:
            ranges.append((start, i))
            start = None
    return ranges


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


class _StripExpected(ast.NodeTransformer):
    def __init__(self, ranges):
        self.ranges = ranges

    def _hidden(self, node) -> bool:
        return any(a <= node.lineno <= b for a, b in self.ranges)

    def visit_Call(self, node: ast.Call):
        self.generic_visit(node)
        if _call_name(node) in VALUE_CHECKS and self._hidden(node):
            marker = ast.parse("__import__('llmcourse.checks', fromlist=['RECORD_ONLY']).RECORD_ONLY",
                               mode="eval").body
            if len(node.args) >= 3:
                node.args[2] = marker
            for kw in node.keywords:
                if kw.arg == "expected":
                    kw.value = marker
        return node


def _root_name(node) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _loads(tree) -> set[str]:
    """Names read anywhere, except the object being written by `x[i] = ...` / `x.a += ...`."""
    skip: set[int] = set()
    for n in ast.walk(tree):
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            node = t
            while isinstance(node, (ast.Subscript, ast.Attribute)):
                node = node.value
            if isinstance(node, ast.Name) and node is not t:
                skip.add(id(node))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            and id(n) not in skip}


def _free_names(tree) -> set[str]:
    """Names a cell reads without ever binding them itself (what it needs from earlier cells)."""
    stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    stored |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return _loads(tree) - stored


def _target_names(targets) -> set[str] | None:
    """Names written by assignment targets (x, (a, b), x[i], x.attr), or None if unusual."""
    names: set[str] = set()
    for t in targets:
        if isinstance(t, (ast.Tuple, ast.List)):
            sub = _target_names(t.elts)
            if sub is None:
                return None
            names |= sub
        else:
            root = _root_name(t)
            if root is None:
                return None
            names.add(root)
    return names


def _prune(body: list, ranges, used: set[str]) -> tuple[list, bool]:
    changed = False
    out = []
    for stmt in body:
        hidden = any(a <= getattr(stmt, "lineno", 0) <= b for a, b in ranges)
        for attr in ("body", "orelse", "finalbody"):
            sub = getattr(stmt, attr, None)
            if isinstance(sub, list) and sub and isinstance(sub[0], ast.stmt):
                new, ch = _prune(sub, ranges, used)
                changed |= ch
                setattr(stmt, attr, new or ([ast.Pass()] if attr == "body" else []))
        if hidden and isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = _target_names(targets)
            if names is not None and not (names & used):
                changed = True
                continue
        out.append(stmt)
    return out, changed


def sandbox_source(source: str, used_elsewhere: set[str]) -> str:
    """The hidden part of a test cell without expected values (see module doc)."""
    ranges = _hidden_line_ranges(source)
    if not ranges:
        return source
    tree = ast.parse(source)
    tree = _StripExpected(ranges).visit(tree)
    while True:
        used = _loads(tree) | used_elsewhere
        body, changed = _prune(tree.body, ranges, used)
        tree.body = body
        if not changed:
            break
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


# CPython 3.11's AST constructor is not safe to use from several threads at once
# ("SystemError: AST constructor recursion depth mismatch"); the grader's workers are threads.
_AST_LOCK = threading.Lock()


def sandbox_notebook(nb) -> nbformat.NotebookNode:
    """Copy of the canonical notebook whose test cells carry no expected values."""
    with _AST_LOCK:
        return _sandbox_notebook(nb)


def _sandbox_notebook(nb) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, c in enumerate(code_cells):
        if is_test_cell(c):
            later = set()
            for other in code_cells[i + 1:]:
                try:
                    later |= _free_names(ast.parse(other.source))
                except SyntaxError:
                    pass
            c.source = sandbox_source(c.source, later)
    return nb


# --------------------------------------------------------------------------
# deciding the points
# --------------------------------------------------------------------------

@dataclass
class CellVerdict:
    grade_id: str
    points: float
    passed: bool
    reason: str = ""
    tampered: str = ""


def visible_check_names(source: str) -> set[str]:
    visible = source.split(HIDDEN_BEGIN)[0]
    return {m.group(2) for m in CHECK_NAME.finditer(visible)}


def _first_error(cell) -> str | None:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            ev = str(o.get("evalue", "")).splitlines()
            return f"{o.get('ename', 'Error')}: {ev[0][:300] if ev else ''}"
    return None


def decide(canonical_nb, executed_cells: list | None, student_records: dict, reference_records: dict) -> list[CellVerdict]:
    """Score every test cell from the executed outputs and the trusted comparison of records."""
    verdicts = []
    executed = executed_cells or []
    for idx, cell in enumerate(canonical_nb.cells):
        if not is_test_cell(cell):
            continue
        gid = meta(cell)["grade_id"]
        points = float(meta(cell).get("points", 0))
        ran = executed[idx] if idx < len(executed) else None
        if ran is None or ran.get("cell_type") != "code" or "llmcourse_seconds" not in ran.get("metadata", {}):
            verdicts.append(CellVerdict(gid, points, False, "the cell was not executed (the run stopped before it)"))
            continue
        error = _first_error(ran)
        names = [n for n in reference_records if n.startswith(gid + "/")]
        if not names:
            verdicts.append(CellVerdict(gid, points, False, "no reference records for this cell (grader error)"))
            continue
        failures = {}
        for n in names:
            problem = compare_entries(reference_records[n], student_records.get(n, []))
            if problem:
                failures[n] = problem
        visible = visible_check_names(cell.source)
        tampered = ""
        if error is None and failures:
            vis_fail = {n: p for n, p in failures.items() if n in visible}
            missing = {n for n, p in failures.items() if p == NOT_REACHED}
            if vis_fail:
                n, p = next(iter(vis_fail.items()))
                tampered = f"the kernel reported this cell passing, but check {n} disagrees with the reference: {p}"
            elif missing:
                tampered = f"the kernel reported this cell passing, but {len(missing)} check(s) never recorded a value"
        if error is not None:
            reason = error
        elif failures:
            n, p = next(iter(sorted(failures.items())))
            reason = f"CheckFailed: [{n}] {p}" if n in visible else f"CheckFailed: a hidden check failed: {p}"
        else:
            reason = ""
        verdicts.append(CellVerdict(gid, points, error is None and not failures, reason, tampered))
    return verdicts


def hidden_secrets(nb) -> list[str]:
    """Text that must never reach feedback: hidden-test lines, hidden check names, grader markers."""
    found = {"RECORD_ONLY", "HIDDEN TESTS"}
    for c in nb.cells:
        if not is_test_cell(c):
            continue
        for a, b in _hidden_line_ranges(c.source):
            lines = c.source.split("\n")[a:b - 1]
            found |= {ln.strip() for ln in lines if len(ln.strip()) >= 12}
            found |= {m.group(2) for m in CHECK_NAME.finditer("\n".join(lines))}
    return sorted(found)
