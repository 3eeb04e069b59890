"""Build nbgrader source notebooks from plain-text authoring files.

Notebooks are authored in ``authoring/<assignment>/<notebook>.nbsrc`` so that
reviews read as ordinary diffs; ``make notebooks`` turns each into
``source/<assignment>/<notebook>.ipynb`` with nbgrader metadata and no outputs
(a test checks that the two agree). A line starting with ``%%%`` opens a cell:

    %%% md                               prose (translatable, no metadata)
    %%% md answer id=G points=N          hand-graded written answer; model answer and
                                         rubric between ### BEGIN SOLUTION / ### END SOLUTION
    %%% code parameters                  the locked papermill `parameters` cell
    %%% code                             read-only code (locked; nbgrader restores it when grading)
    %%% code solution id=G               student writes code here (### BEGIN/END SOLUTION)
    %%% code tests id=G points=N         autograded test cell (### BEGIN/END HIDDEN TESTS inside)
    %%% code free                        a scratch cell the student may edit; not graded, not restored

Everything else on a cell's lines is the cell's source.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

HEADER = re.compile(r"^%%%\s+(md|code)\b(.*)$")
KINDS = {"md": {"", "answer"}, "code": {"", "parameters", "solution", "tests", "free"}}


class AuthoringError(ValueError):
    pass


def _parse_header(line: str, lineno: int, path: Path) -> tuple[str, str, dict]:
    m = HEADER.match(line)
    assert m
    cell_type, rest = m.group(1), m.group(2).split()
    kind = ""
    opts: dict[str, str] = {}
    for word in rest:
        if "=" in word:
            k, v = word.split("=", 1)
            opts[k] = v
        elif not kind:
            kind = word
        else:
            raise AuthoringError(f"{path}:{lineno}: unexpected word {word!r} in cell header")
    if kind not in KINDS[cell_type]:
        raise AuthoringError(f"{path}:{lineno}: unknown {cell_type} cell kind {kind!r}")
    if kind in ("answer", "solution", "tests") and "id" not in opts:
        raise AuthoringError(f"{path}:{lineno}: a {kind} cell needs id=")
    if kind in ("answer", "tests") and "points" not in opts:
        raise AuthoringError(f"{path}:{lineno}: a {kind} cell needs points=")
    return cell_type, kind, opts


def build_notebook(path: str | Path) -> nbformat.NotebookNode:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    cells: list[tuple[str, str, dict, list[str], int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("%%%"):
            if not HEADER.match(line):
                raise AuthoringError(f"{path}:{lineno}: bad cell header {line!r}")
            cells.append((*_parse_header(line, lineno, path), [], lineno))
        elif cells:
            cells[-1][3].append(line)
        elif line.strip():
            raise AuthoringError(f"{path}:{lineno}: text before the first %%% cell header")

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    locked_n = 0
    md_n = 0
    seen: set[str] = set()
    for cell_type, kind, opts, lines, lineno in cells:
        source = "\n".join(lines).strip("\n")
        if cell_type == "md":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
        gid = None
        meta = None
        if kind == "answer":
            gid = opts["id"]
            meta = {"grade": True, "solution": True, "locked": False, "points": int(opts["points"])}
        elif kind == "parameters":
            gid = "parameters"
            meta = {"grade": False, "solution": False, "locked": True}
            cell.metadata["tags"] = ["parameters"]
        elif kind == "solution":
            gid = opts["id"]
            meta = {"grade": False, "solution": True, "locked": False}
        elif kind == "tests":
            gid = opts["id"]
            meta = {"grade": True, "solution": False, "locked": True, "points": int(opts["points"])}
        elif cell_type == "code" and kind == "":
            locked_n += 1
            gid = opts.get("id", f"{path.stem}-code-{locked_n:02d}")
            meta = {"grade": False, "solution": False, "locked": True}
        if gid is not None:
            if gid in seen:
                raise AuthoringError(f"{path}:{lineno}: duplicate id {gid!r}")
            seen.add(gid)
            meta.update({"grade_id": gid, "schema_version": 3})
            cell.metadata["nbgrader"] = meta
            cell.id = re.sub(r"[^A-Za-z0-9_-]", "-", gid)[:64]
        else:
            md_n += 1
            cell.id = f"{cell_type}-{md_n:03d}" if cell_type == "md" else f"free-{md_n:03d}"
        if "editable" in cell.metadata:
            del cell.metadata["editable"]
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def build_all(authoring: Path, source: Path, check: bool = False, only: str | None = None) -> list[str]:
    """Build every authoring/*/*.nbsrc into source/; with check=True only report differences."""
    stale = []
    for src in sorted(authoring.glob(f"{only or '*'}/*.nbsrc")):
        out = source / src.parent.name / (src.stem + ".ipynb")
        text = dumps(build_notebook(src))
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current != text:
            stale.append(str(out))
            if not check:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text, encoding="utf-8")
    return stale


if __name__ == "__main__":  # python -m llmcourse.authoring.nbbuild [--check] [--assignment ID]
    root = Path.cwd()
    only = sys.argv[sys.argv.index("--assignment") + 1] if "--assignment" in sys.argv else None
    changed = build_all(root / "authoring", root / "source", check="--check" in sys.argv, only=only)
    for c in changed:
        print(("stale: " if "--check" in sys.argv else "wrote: ") + c)
    sys.exit(1 if changed and "--check" in sys.argv else 0)
