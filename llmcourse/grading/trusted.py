"""The trusted side of grading: code that reads submissions but never runs them.

- :func:`canonical_notebook` rebuilds what gets executed from the *course's* source
  notebook: every locked cell, test cell and all metadata come from source/, and only
  the student's answer cells (matched by grade id) and their own extra cells come from
  the submission. Deleted, duplicated, reordered or edited test cells, edited points,
  a renamed notebook: none of it changes what runs or what it is worth. What it takes is
  bounded (MAX_CELLS, MAX_CELL_CHARS, MAX_STUDENT_CHARS; over a cap the notebook is
  rejected with the reason), and :func:`prepare` runs it in a child process with its own
  memory and CPU limits, so a hostile notebook cannot exhaust the grader.
- :func:`sandbox_test_sources` rewrites the hidden part of each test cell for the sandboxed
  run, from the course's own cells only: every ``check_close``/``check_equal`` there loses
  its expected value (replaced by ``RECORD_ONLY``) and the statements that only computed
  expected values are removed, so the reference answers never exist in the student's
  process. The checks only record the student's values.
- :func:`decide` compares those records with the reference solution's records (plain
  JSON, no pickle), cell by cell, and says what each test cell scores and which cells
  look tampered with (in-kernel verdict and trusted verdict disagree). Every exception
  of the comparison is that check's verdict ("recorded value unusable").
"""
from __future__ import annotations

import ast
import builtins
import copy
import json
import os
import resource
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..student.checks import NOT_REACHED, compare_entries
from .cells import CHECK_CALL, CHECKS, HIDDEN_BEGIN, hidden_line_ranges, is_course_cell, is_test_cell  # noqa: F401
from .cells import nbgrader_meta as meta
from .flags import Flag, FlagCode

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024   # the submitted file (outputs included)
MAX_CELLS = 2000                        # cells in the submitted notebook
MAX_CELL_CHARS = 64 * 1024              # source of one answer cell or one cell of the student's own
MAX_STUDENT_CHARS = 256 * 1024          # source of all the cells taken from the submission together
PREPARE_MEMORY_MB = 2048                # the process that reads a submission (address space)
PREPARE_CPU_S = 60                      # ... its CPU seconds
PREPARE_WALL_S = 180                    # ... its wall time
VALUE_CHECKS = {"check_close", "check_equal"}
ALL_CHECKS = set(CHECKS)


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} KB"


# --------------------------------------------------------------------------
# reading a submission
# --------------------------------------------------------------------------

class Rejected(ValueError):
    """The submission cannot be read; the message is shown to the instructor and student."""


def open_submission(path: Path) -> int:
    """An fd of the submitted file, opened without following links; Rejected if it is no regular file."""
    try:  # never follow a link: the grader runs as root
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Rejected(f"cannot read {path.name}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Rejected(f"{path.name} is not a regular file")
    return fd


def read_submission(path: Path, fd: int | None = None, name: str | None = None):
    """The submitted notebook as plain data (cells' sources joined), or Rejected with the reason."""
    name = name or Path(path).name
    own = fd is None
    if own:
        fd = open_submission(Path(path))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Rejected(f"{name} is not a regular file")
        if st.st_size == 0:
            raise Rejected(f"{name} is an empty file")
        if st.st_size > MAX_NOTEBOOK_BYTES:
            raise Rejected(f"{name} is {st.st_size / 2**20:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit")
        chunks, left = [], MAX_NOTEBOOK_BYTES + 1
        while left > 0:
            piece = os.read(fd, min(left, 1 << 20))
            if not piece:
                break
            chunks.append(piece)
            left -= len(piece)
        raw = b"".join(chunks)
    finally:
        if own:
            os.close(fd)
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise Rejected(f"{name} is over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"{name} is not UTF-8 text (byte {exc.start})") from None
    del raw
    try:
        data = json.loads(text)
    except RecursionError:
        raise Rejected(f"{name} nests JSON too deeply to be a notebook") from None
    except ValueError as exc:
        msg = getattr(exc, "msg", None)
        where = f", line {exc.lineno}" if hasattr(exc, "lineno") else ""
        raise Rejected(f"{name} is not valid JSON ({msg or type(exc).__name__}{where})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise Rejected(f"{name} is not a Jupyter notebook (no list of cells)")
    if data.get("nbformat") != 4:
        raise Rejected(f"{name} has nbformat {data.get('nbformat')!r}; version 4 is required")
    if len(data["cells"]) > MAX_CELLS:
        raise Rejected(f"{name} has {len(data['cells'])} cells, over the limit of {MAX_CELLS}")
    for i, c in enumerate(data["cells"]):
        if not isinstance(c, dict) or c.get("cell_type") not in ("code", "markdown", "raw"):
            raise Rejected(f"{name}: cell {i} is malformed")
        src = c.get("source", "")
        if isinstance(src, list):
            if not all(isinstance(s, str) for s in src):
                raise Rejected(f"{name}: cell {i} has a malformed source")
            c["source"] = "".join(src)
        elif not isinstance(src, str):
            raise Rejected(f"{name}: cell {i} has a malformed source")
        if not isinstance(c.get("metadata", {}), dict):
            c["metadata"] = {}
    return data


@dataclass
class Canonical:
    nb: "object"                 # nbformat.NotebookNode (plain dict in the preparing process)
    flags: list[Flag] = field(default_factory=list)
    rejected: str | None = None


def _plain_copy(nb) -> dict:
    return copy.deepcopy(nb)


def canonical_notebook(source_nb, release_nb, submission_path: Path | None, fd: int | None = None) -> Canonical:
    """What gets executed: the course's notebook with the student's answers put in (in this process)."""
    import nbformat
    c = canonical_dict(_plain_copy(source_nb), _plain_copy(release_nb), submission_path, fd=fd)
    return Canonical(nb=nbformat.from_dict(c.nb), flags=c.flags, rejected=c.rejected)


def canonical_dict(source_nb: dict, release_nb: dict, submission_path: Path | None, fd: int | None = None,
                   name: str | None = None) -> Canonical:
    """canonical_notebook on plain data (source_nb is modified and returned)."""
    release_cells = {meta(c).get("grade_id"): c for c in release_nb["cells"] if meta(c).get("grade_id")}
    for c in source_nb["cells"]:
        if isinstance(c.get("source"), list):
            c["source"] = "".join(c["source"])
    for c in release_cells.values():
        if isinstance(c.get("source"), list):
            c["source"] = "".join(c["source"])
    flags: list[Flag] = []
    rejected = None
    answers: dict[str, dict] = {}
    extras: dict[str | None, list] = {}
    if submission_path is None and fd is None:
        rejected = "no notebook was submitted"
    else:
        try:
            data = read_submission(submission_path, fd=fd, name=name)
            answers, extras = _take_cells(source_nb, data, flags)
        except Rejected as exc:
            rejected = str(exc)
            answers, extras = {}, {}
    cells = []
    first_solution_seen = False
    for c in source_nb["cells"]:
        m = meta(c)
        gid = m.get("grade_id")
        if m.get("solution"):
            if not first_solution_seen:
                cells.extend(_extra_cells(extras.get(None, [])))
                first_solution_seen = True
            if gid in answers:
                c["source"] = answers[gid].get("source", "")
            elif gid in release_cells:
                c["source"] = release_cells[gid]["source"]
            cells.append(c)
            cells.extend(_extra_cells(extras.get(gid, [])))
        else:
            if c.get("cell_type") == "code":
                c["outputs"] = []
                c["execution_count"] = None
            cells.append(c)
    source_nb["cells"] = cells
    if rejected:  # grade the blank release instead, so the grade is defined (0 on every test)
        return Canonical(nb=_blank(source_nb, release_cells), flags=flags, rejected=rejected)
    return Canonical(nb=source_nb, flags=flags)


def _take_cells(source_nb: dict, data: dict, flags: list[Flag]):
    """The submission's answer cells (by grade id) and its own code cells, within the size caps."""
    src_solution_types = {meta(c)["grade_id"]: c.get("cell_type") for c in source_nb["cells"]
                          if meta(c).get("solution") and meta(c).get("grade_id")}
    answers: dict[str, dict] = {}
    extras: dict[str | None, list] = {}
    total = 0
    last = None
    for i, c in enumerate(data["cells"]):
        gid = meta(c).get("grade_id")
        taken = False
        if gid in src_solution_types:
            if gid in answers:
                flags.append(Flag(FlagCode.ANSWER_DUPLICATE,
                                  f"answer cell {gid!r} appears more than once; the first was graded"))
            elif c.get("cell_type") != src_solution_types[gid]:
                flags.append(Flag(FlagCode.ANSWER_TYPE_CHANGED, f"answer cell {gid!r} changed type; ignored"))
            else:
                answers[gid] = c
                taken = True
            last = gid
        elif gid:
            continue  # a locked or test cell: the course's version is used
        elif c.get("cell_type") == "code" and c.get("source", "").strip():
            extras.setdefault(last, []).append(c)
            taken = True
        if taken:
            size = len(c.get("source", ""))
            if size > MAX_CELL_CHARS:
                what = f"answer cell {gid!r}" if gid else f"cell {i} (a cell of your own)"
                raise Rejected(f"{what} holds {_kb(size)} of text, over the {_kb(MAX_CELL_CHARS)} limit "
                               f"for one cell")
            total += size
            if total > MAX_STUDENT_CHARS:
                raise Rejected(f"the answer cells and cells of your own hold over {_kb(MAX_STUDENT_CHARS)} "
                               f"of text together, over the limit")
    missing = [g for g in src_solution_types if g not in answers]
    if missing and len(missing) == len(src_solution_types):
        flags.append(Flag(FlagCode.NO_ANSWER_CELLS, "no answer cell of this assignment was found in the notebook"))
    elif missing:
        flags.append(Flag(FlagCode.ANSWERS_MISSING, f"answer cells missing (graded as blank): {', '.join(missing)}"))
    return answers, extras


def _blank(nb, release_cells):
    nb["cells"] = [c for c in nb["cells"] if not (c.get("metadata") or {}).get("llmcourse_student_cell")]
    for c in nb["cells"]:
        gid = meta(c).get("grade_id")
        if meta(c).get("solution") and gid in release_cells:
            c["source"] = release_cells[gid]["source"]
    return nb


def _extra_cells(cells):
    out = []
    for c in cells:
        out.append({"cell_type": "code", "execution_count": None, "outputs": [], "source": c.get("source", ""),
                    "metadata": {"llmcourse_student_cell": True}})
    return out


# --------------------------------------------------------------------------
# the same, in a process with its own memory and CPU limits
# --------------------------------------------------------------------------

def prepare(source_path: Path, release_path: Path, submission_path: Path | None, drop_to: int | None = None,
            env: dict | None = None) -> Canonical:
    """canonical_notebook in a child process limited to PREPARE_MEMORY_MB / PREPARE_CPU_S.

    The submission is opened here (no links followed) and handed over as the child's stdin;
    the child reads the course's two notebooks, then (when root) drops to the unprivileged
    uid `drop_to` before it reads the submission. A submission that exhausts the child's
    limits is rejected with a clear message; the grader itself never parses it.
    """
    import nbformat
    name = submission_path.name if submission_path is not None else ""
    fd = None
    if submission_path is not None:
        try:
            fd = open_submission(submission_path)
        except Rejected as exc:
            c = canonical_dict(json.loads(Path(source_path).read_text(encoding="utf-8")),
                               json.loads(Path(release_path).read_text(encoding="utf-8")), None)
            return Canonical(nb=nbformat.from_dict(c.nb), flags=c.flags, rejected=str(exc))
    cmd = [sys.executable, "-m", "llmcourse.grading.trusted", "prepare", str(source_path), str(release_path), name,
           "1" if fd is not None else "0", str(drop_to if drop_to is not None else -1)]

    def limits():
        mem = PREPARE_MEMORY_MB * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (PREPARE_CPU_S, PREPARE_CPU_S))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    child_env = {k: v for k, v in (env or os.environ).items() if k in ("PATH", "LANG", "PYTHONPATH", "HOME")}
    child_env["PYTHONHASHSEED"] = "0"
    try:
        proc = subprocess.run(cmd, stdin=fd if fd is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, preexec_fn=limits, timeout=PREPARE_WALL_S, env=child_env)
    except subprocess.TimeoutExpired:
        proc = None
    finally:
        if fd is not None:
            os.close(fd)
    if proc is None or proc.returncode != 0 or not proc.stdout:
        why = "timed out" if proc is None else f"exit {proc.returncode}"
        tail = "" if proc is None else proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        if proc is not None and proc.returncode != 0 and tail and "MemoryError" not in tail[0] \
                and proc.returncode > 0:
            raise RuntimeError(f"reading {name} failed in the preparing process ({why}): {tail[0][:300]}")
        c = canonical_dict(json.loads(Path(source_path).read_text(encoding="utf-8")),
                           json.loads(Path(release_path).read_text(encoding="utf-8")), None)
        return Canonical(nb=nbformat.from_dict(c.nb), flags=c.flags,
                         rejected=f"{name} could not be read within the grader's limits "
                                  f"({PREPARE_MEMORY_MB} MB of memory, {PREPARE_CPU_S} s of CPU; {why})")
    out = json.loads(proc.stdout)
    return Canonical(nb=nbformat.from_dict(out["nb"]), flags=[Flag.from_json(f) for f in out["flags"]],
                     rejected=out["rejected"])


def _drop_privileges(uid: int) -> None:
    if uid >= 0 and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def _prepare_main(argv: list[str]) -> int:
    source_path, release_path, name, has_fd, drop_to = argv
    source_nb = json.loads(Path(source_path).read_text(encoding="utf-8"))
    release_nb = json.loads(Path(release_path).read_text(encoding="utf-8"))
    _drop_privileges(int(drop_to))
    c = canonical_dict(source_nb, release_nb, None, fd=0 if has_fd == "1" else None, name=name)
    sys.stdout.write(json.dumps({"nb": c.nb, "flags": [f.to_json() for f in c.flags], "rejected": c.rejected}))
    return 0


# --------------------------------------------------------------------------
# the sandbox's version of the test cells
# --------------------------------------------------------------------------

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
            marker = ast.parse("__import__('llmcourse.student.checks', fromlist=['RECORD_ONLY']).RECORD_ONLY",
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
        targets = (n.targets if isinstance(n, ast.Assign)
                   else [n.target] if isinstance(n, (ast.AugAssign, ast.AnnAssign)) else [])
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
    ranges = hidden_line_ranges(source)
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


def _cells(nb) -> list:
    return nb["cells"] if isinstance(nb, dict) else nb.cells


def sandbox_test_sources(nb) -> dict[str, str]:
    """{grade id: source for the sandbox} of every test cell, decided from the course's own cells only.

    A hidden assignment stays only when the test cell itself or a *later course cell* reads
    its name: answer cells and cells the student added are ignored here, so mentioning a
    name in them keeps nothing alive. Each course cell is parsed once; the student's code
    is never parsed on the trusted side.
    """
    with _AST_LOCK:
        code = [c for c in _cells(nb) if c.get("cell_type") == "code" and is_course_cell(c)]
        free: list[set[str]] = []
        for c in code:
            try:
                free.append(_free_names(ast.parse(c.get("source", ""))))
            except SyntaxError:
                free.append(set())
        later: set[str] = set()
        out: dict[str, str] = {}
        for i in range(len(code) - 1, -1, -1):   # walk backwards: `later` = names read after cell i
            c = code[i]
            if is_test_cell(c):
                out[meta(c)["grade_id"]] = sandbox_source(c.get("source", ""), set(later))
            later |= free[i]
        return out


def sandbox_notebook(nb, test_sources: dict[str, str] | None = None):
    """Copy of the canonical notebook whose test cells carry no expected values.

    test_sources: sandbox_test_sources() of the course's notebook (computed once per
    assignment by the grader); computed from `nb`'s own course cells when not given.
    """
    import nbformat
    if test_sources is None:
        test_sources = sandbox_test_sources(nb)
    nb = nbformat.from_dict(copy.deepcopy(nb))
    for c in nb.cells:
        if is_test_cell(c):
            c.source = test_sources[meta(c)["grade_id"]]
    return nb


# --------------------------------------------------------------------------
# deciding the points
# --------------------------------------------------------------------------

@dataclass
class Verdict:
    """The trusted decision on one test cell."""
    grade_id: str
    points: float
    passed: bool
    reason: str = ""                 # the grader's own text, shown in feedback
    tampered: str = ""               # why the in-kernel verdict is not to be trusted, if it is not
    failed_check: str | None = None  # the visible check that failed first, if one did



def visible_check_names(source: str) -> set[str]:
    visible = source.split(HIDDEN_BEGIN)[0]
    return {m.group(3) for m in CHECK_CALL.finditer(visible)}


# Exception names the grader repeats as they are; any other name a test cell raised (a class
# the student made up could be named after anything, e.g. encoded hidden-test text) is "Error".
_RUNNER_ERRORS = {"CheckFailed", "CellTimeoutError", "DeadKernelError", "KernelRestarted"}
_SAFE_ERRORS = {n for n, v in vars(builtins).items()
                if isinstance(v, type) and issubclass(v, BaseException)} | _RUNNER_ERRORS


def _error_name(cell) -> str | None:
    """The (trusted) name of the first error a test cell raised in the sandbox, or None."""
    for o in cell.get("outputs", []):
        if isinstance(o, dict) and o.get("output_type") == "error":
            name = str(o.get("ename", ""))
            return name if name in _SAFE_ERRORS else "Error"
    return None


def _compare(ref_entries, stu_entries) -> str | None:
    try:
        return compare_entries(ref_entries, stu_entries)
    except Exception as exc:  # noqa: BLE001 (never a class-wide failure: this check's verdict)
        return f"recorded value unusable ({type(exc).__name__})"


def decide(canonical_nb, executed_cells: list | None, student_records: dict, reference_records: dict) -> list[Verdict]:
    """Score every test cell from the trusted comparison of records (and whether the cell raised).

    Every reason is the grader's own text: the names of the reference's checks and the
    comparison's findings, plus the name of the error a cell raised when it is a built-in
    one. Nothing the student's process wrote (exception messages, printed text) is quoted.
    """
    verdicts = []
    executed = executed_cells or []
    for idx, cell in enumerate(canonical_nb.cells):
        if not is_test_cell(cell):
            continue
        gid = meta(cell)["grade_id"]
        points = float(meta(cell).get("points", 0))
        ran = executed[idx] if idx < len(executed) else None
        if not isinstance(ran, dict) or ran.get("cell_type") != "code" \
                or "llmcourse_seconds" not in ran.get("metadata", {}):
            verdicts.append(Verdict(gid, points, False, "the cell was not executed (the run stopped before it)"))
            continue
        error = _error_name(ran)
        names = sorted(n for n in reference_records if n.startswith(gid + "/"))
        if not names:
            verdicts.append(Verdict(gid, points, False, "no reference records for this cell (grader error)"))
            continue
        failures = {}
        for n in names:
            problem = _compare(reference_records[n], student_records.get(n, []))
            if problem:
                failures[n] = problem
        visible = visible_check_names(cell.source)
        reached = {n: p for n, p in failures.items() if p != NOT_REACHED}
        tampered = ""
        if error is None and failures:
            vis_fail = {n: p for n, p in reached.items() if n in visible}
            missing = {n for n, p in failures.items() if p == NOT_REACHED}
            if vis_fail:
                n, p = next(iter(vis_fail.items()))
                tampered = f"the kernel reported this cell passing, but check {n} disagrees with the reference: {p}"
            elif missing:
                tampered = f"the kernel reported this cell passing, but {len(missing)} check(s) never recorded a value"
        vis_reached = [n for n in reached if n in visible]
        failed_check = vis_reached[0] if vis_reached else None
        if failed_check is not None:
            reason = f"CheckFailed: [{failed_check}] {reached[failed_check]}"
        elif reached:
            reason = f"CheckFailed: a hidden check failed: {next(iter(reached.values()))}"
        elif error == "NotImplementedError":
            reason = "NotImplementedError: not implemented yet"
        elif error is not None:
            reason = f"{error}: raised while the test cell ran, before all of its checks did"
        elif failures:
            reason = f"Failed: {len(failures)} check(s) of this cell never recorded a value"
        else:
            reason = ""
        verdicts.append(Verdict(gid, points, error is None and not failures, reason, tampered, failed_check))
    return verdicts


def hidden_secrets(nb) -> list[str]:
    """Text that must never reach feedback: hidden-test lines, hidden check names, grader markers."""
    found = {"RECORD_ONLY", "HIDDEN TESTS"}
    for c in nb.cells:
        if not is_test_cell(c):
            continue
        for a, b in hidden_line_ranges(c.source):
            lines = c.source.split("\n")[a:b - 1]
            found |= {ln.strip() for ln in lines if len(ln.strip()) >= 12}
            found |= {m.group(3) for m in CHECK_CALL.finditer("\n".join(lines))}
    return sorted(found)


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        sys.exit(_prepare_main(sys.argv[2:]))
    sys.exit("usage: python -m llmcourse.grading.trusted prepare SOURCE RELEASE NAME HAS_FD UID")
