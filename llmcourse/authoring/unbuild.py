"""Write a notebook edited in Jupyter back to its authoring source (the reverse of nbbuild).

``source/<id>/<nb>.ipynb`` is built from ``authoring/<id>/<nb>.nbsrc``; an author who edits the
notebook in JupyterLab (prose, a solution line, a new test) runs ``make unbuild`` (``llmcourse
nbbuild --reverse``) to turn it back into the ``.nbsrc`` that is reviewed and committed, then
``make notebooks`` to rebuild it. Building and writing back are inverse to the byte: the
``.nbsrc`` written from a freshly built notebook is the file it was built from (tested for every
notebook of the course).

What the ``.nbsrc`` format cannot say is refused with the cell and the reason, and nothing is
written: nbgrader metadata that matches none of its cell kinds (an unlocked test cell, an
autograded answer cell, points that are not a whole number, a grade id used twice, ...), or a
line starting with ``%%%`` inside a cell. The check is done by building the written text again
and comparing every cell's kind, source and nbgrader metadata with the notebook's.
Outputs, execution counts, JupyterLab's own cell metadata (collapsed, scrolled) and the
``cell_type`` that nbgrader's Create Assignment toolbar records are not part of the source and
are dropped, as ``make notebooks`` would drop them.

jupytext's percent format was considered instead: it can carry the nbgrader metadata as JSON on
each ``# %%`` line, but every markdown line becomes a ``#`` comment, the headers grow to a line of
JSON per cell, and the translation catalogues (llmcourse.authoring.i18n) read the ``.nbsrc``
format; a reverse converter of the existing format keeps the reviewed files as they are.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat

from .nbbuild import AuthoringError, build_notebook


def _nbgrader(cell) -> dict | None:
    m = cell.get("metadata", {}).get("nbgrader")
    return dict(m) if isinstance(m, dict) else None


def _where(i: int, cell) -> str:
    first = (cell.get("source") or "").strip().split("\n", 1)[0][:60]
    return f"cell {i + 1} ({cell.get('cell_type')}{': ' + repr(first) if first else ''})"


def _points(i: int, cell, m: dict) -> int:
    p = m.get("points")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or int(p) != p or p < 0:
        raise AuthoringError(f"{_where(i, cell)}: points {p!r} is not a whole number of points")
    return int(p)


def _header(i: int, cell, stem: str, locked_n: int) -> tuple[str, int]:
    """The ``%%%`` line of one cell, and the running count of locked code cells."""
    m = _nbgrader(cell)
    kind = cell.get("cell_type")
    if kind == "markdown":
        if m is None or not (m.get("grade") or m.get("solution") or m.get("locked")):
            return "%%% md", locked_n
        if m.get("grade") and m.get("solution") and not m.get("locked"):
            return f"%%% md answer id={m.get('grade_id')} points={_points(i, cell, m)}", locked_n
        raise AuthoringError(f"{_where(i, cell)}: a markdown cell with nbgrader metadata {m} is neither prose "
                             f"nor a written answer (grade, solution, unlocked)")
    if kind != "code":
        raise AuthoringError(f"{_where(i, cell)}: {kind} cells have no place in an authoring source")
    tags = cell.get("metadata", {}).get("tags") or []
    if m is None:
        if "parameters" in tags:
            raise AuthoringError(f"{_where(i, cell)}: the parameters cell lost its nbgrader metadata (locked)")
        return "%%% code free", locked_n
    grade, solution, locked = bool(m.get("grade")), bool(m.get("solution")), bool(m.get("locked"))
    gid = m.get("grade_id")
    if "parameters" in tags or gid == "parameters":
        if (grade, solution, locked) != (False, False, True) or gid != "parameters" or "parameters" not in tags:
            raise AuthoringError(f"{_where(i, cell)}: the parameters cell must stay locked, with grade id "
                                 f"'parameters' and the papermill tag 'parameters'")
        return "%%% code parameters", locked_n
    if (grade, solution) == (False, True) and not locked:
        return f"%%% code solution id={gid}", locked_n
    if (grade, solution, locked) == (True, False, True):
        return f"%%% code tests id={gid} points={_points(i, cell, m)}", locked_n
    if (grade, solution, locked) == (False, False, True):
        locked_n += 1
        auto = f"{stem}-code-{locked_n:02d}"
        return ("%%% code" if gid == auto else f"%%% code id={gid}"), locked_n
    raise AuthoringError(f"{_where(i, cell)}: nbgrader metadata grade={grade}, solution={solution}, locked={locked} "
                         f"matches no kind of authoring cell (a test cell must stay locked and an answer cell "
                         f"unlocked; autograded answer cells are not used in this course)")


def unbuild(nb, stem: str) -> str:
    """The ``.nbsrc`` text of a notebook (``stem``: the notebook's file name without ``.ipynb``)."""
    parts, locked_n, seen = [], 0, {}
    for i, cell in enumerate(nb.cells):
        head, locked_n = _header(i, cell, stem, locked_n)
        gid = (_nbgrader(cell) or {}).get("grade_id")
        if gid is not None and _nbgrader(cell) and (cell.get("cell_type") == "code" or "answer" in head):
            if not isinstance(gid, str) or not gid or any(ch.isspace() for ch in gid):
                raise AuthoringError(f"{_where(i, cell)}: grade id {gid!r} must be a word without spaces")
            if gid in seen:
                raise AuthoringError(f"{_where(i, cell)}: grade id {gid!r} is used by cell {seen[gid] + 1} too")
            seen[gid] = i
        source = cell.get("source") or ""
        source = "".join(source) if isinstance(source, list) else source
        for n, line in enumerate(source.split("\n"), 1):
            if line.startswith("%%%"):
                raise AuthoringError(f"{_where(i, cell)}, line {n}: a line starting with %%% would open a new "
                                     f"cell in the authoring source")
        parts.append(head + "\n" + source.strip("\n"))
    return "\n\n".join(parts) + "\n"


def _comparable(nb) -> list:
    out = []
    for c in nb.cells:
        src = c.get("source") or ""
        src = "".join(src) if isinstance(src, list) else src
        m = _nbgrader(c)
        if m is not None and c.get("cell_type") == "markdown" and not (m.get("grade") or m.get("solution")
                                                                      or m.get("locked")):
            m = None
        if m is not None:   # what nbgrader's own toolbar adds, and nbbuild writes anyway or never needs
            m.pop("schema_version", None)
            m.pop("cell_type", None)
        tags = sorted(t for t in (c.get("metadata", {}).get("tags") or []) if t == "parameters")
        out.append((c.get("cell_type"), src.strip("\n"), m, tags))
    return out


def check_round_trip(nb, text: str, stem: str) -> None:
    """Build `text` again: every cell's kind, source and nbgrader metadata must be the notebook's."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"{stem}.nbsrc"
        p.write_text(text, encoding="utf-8")
        rebuilt = build_notebook(p)
    want, got = _comparable(nb), _comparable(rebuilt)
    if len(want) != len(got):
        raise AuthoringError(f"writing back would give {len(got)} cells instead of {len(want)}")
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        if w != g:
            what = ["cell type", "source", "nbgrader metadata", "tags"][next(k for k in range(4) if w[k] != g[k])]
            raise AuthoringError(f"{_where(i, nb.cells[i])}: its {what} cannot be written to the authoring "
                                 f"source ({w[2] if what == 'nbgrader metadata' else ''} would come back as "
                                 f"{g[2] if what == 'nbgrader metadata' else 'something else'})")


def write_back(ipynb: Path, nbsrc: Path, check: bool = False) -> bool:
    """Write the notebook `ipynb` back to `nbsrc`; True if the file changed (or would: check=True).

    Nothing is written when the notebook cannot be expressed (AuthoringError)."""
    nb = nbformat.read(str(ipynb), as_version=4)
    text = unbuild(nb, Path(ipynb).stem)
    check_round_trip(nb, text, Path(ipynb).stem)
    current = nbsrc.read_text(encoding="utf-8") if nbsrc.exists() else None
    if current == text:
        return False
    if not check:
        nbsrc.parent.mkdir(parents=True, exist_ok=True)
        nbsrc.write_text(text, encoding="utf-8")
    return True


def write_back_all(root: Path, only: str | None = None, check: bool = False) -> list[str]:
    """Write every source/<id>/<nb>.ipynb (or one assignment's) back to authoring/; the files changed."""
    changed = []
    for ipynb in sorted((root / "source").glob(f"{only or '*'}/*.ipynb")):
        nbsrc = root / "authoring" / ipynb.parent.name / (ipynb.stem + ".nbsrc")
        try:
            if write_back(ipynb, nbsrc, check=check):
                changed.append(str(nbsrc.relative_to(root)))
        except AuthoringError as exc:
            raise AuthoringError(f"{ipynb.relative_to(root)}: {exc}") from None
    return changed


def is_built_from(nbsrc: Path) -> bool:
    """True when building `nbsrc` and writing it back gives the file itself (used by the tests)."""
    text = nbsrc.read_text(encoding="utf-8")
    return unbuild(build_notebook(nbsrc), nbsrc.stem) == text


if __name__ == "__main__":   # python -m llmcourse.authoring.unbuild [--check] [--assignment ID]
    only = sys.argv[sys.argv.index("--assignment") + 1] if "--assignment" in sys.argv else None
    try:
        for f in write_back_all(Path.cwd(), only, check="--check" in sys.argv):
            print(("differs: " if "--check" in sys.argv else "wrote: ") + f)
    except AuthoringError as exc:
        sys.exit(f"error: {exc}")
