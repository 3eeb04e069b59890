"""Authoring tools: the .nbsrc <-> .ipynb round trip, and the scaffold of a new assignment."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbutil import ROOT

from llmcourse.authoring.nbbuild import AuthoringError, build_notebook, dumps
from llmcourse.authoring.unbuild import unbuild, write_back, write_back_all

NBSRCS = sorted((ROOT / "authoring").glob("*/*.nbsrc"))


def _built(nbsrc: Path, tmp_path: Path) -> Path:
    """The notebook `make notebooks` builds from `nbsrc`, written where an author would open it."""
    out = tmp_path / "source" / nbsrc.parent.name / (nbsrc.stem + ".ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(build_notebook(nbsrc)), encoding="utf-8")
    return out


@pytest.mark.parametrize("nbsrc", NBSRCS, ids=lambda p: p.parent.name)
def test_nbsrc_to_ipynb_to_nbsrc_is_byte_identical(nbsrc, tmp_path):
    ipynb = _built(nbsrc, tmp_path)
    back = tmp_path / "back.nbsrc"
    assert write_back(ipynb, back) is True
    assert back.read_bytes() == nbsrc.read_bytes()
    assert write_back(ipynb, back) is False, "writing the same notebook back again changes nothing"


def test_every_nbsrc_was_found():
    assert len(NBSRCS) == len(list((ROOT / "source").glob("*/*.ipynb"))) >= 7


def test_the_committed_notebooks_write_back_to_the_committed_sources():
    assert write_back_all(ROOT, check=True) == []


def _cell(nb, pred):
    return next(c for c in nb.cells if pred(c))


def _meta(c):
    return c.metadata.get("nbgrader", {})


def test_an_edit_made_in_jupyter_arrives_in_the_nbsrc(tmp_path):
    nbsrc = ROOT / "authoring" / "01_chain_rule" / "chain_rule.nbsrc"
    ipynb = _built(nbsrc, tmp_path)
    nb = nbformat.read(str(ipynb), 4)
    prose = _cell(nb, lambda c: c.cell_type == "markdown" and "## 1 ·" in c.source)
    old_heading = prose.source.split("\n", 1)[0]
    prose.source = prose.source.replace(old_heading, "## 1 · The chain rule, said again (edited in JupyterLab)")
    sol = _cell(nb, lambda c: _meta(c).get("solution") and c.cell_type == "code" and "### BEGIN SOLUTION" in c.source)
    lines = sol.source.split("\n")
    k = lines.index(next(ln for ln in lines if "### BEGIN SOLUTION" in ln)) + 1
    old_line = lines[k]
    lines[k] = old_line.split("#")[0].rstrip() + "  # edited solution line"
    sol.source = "\n".join(lines)
    # what JupyterLab adds on save: outputs, counts, its own cell metadata; none of it is source
    code = _cell(nb, lambda c: c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="OUTPUT-OF-A-RUN\n")]
    code.execution_count = 3
    code.metadata["collapsed"] = False
    _cell(nb, lambda c: _meta(c).get("grade") and c.cell_type == "code").metadata["nbgrader"]["cell_type"] = "code"
    nbformat.write(nb, str(ipynb))
    out = tmp_path / "edited.nbsrc"
    out.write_bytes(nbsrc.read_bytes())
    assert write_back(ipynb, out) is True
    text = out.read_text(encoding="utf-8")
    assert "## 1 · The chain rule, said again (edited in JupyterLab)" in text and old_heading not in text
    assert lines[k] in text.split("\n")
    before, after = nbsrc.read_text(encoding="utf-8").split("\n"), text.split("\n")
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b]
    assert len(before) == len(after) and len(changed) == 2, "only the two edited lines differ"
    assert "OUTPUT-OF-A-RUN" not in text
    rebuilt = build_notebook(out)
    assert [c.source for c in rebuilt.cells] == [c.source for c in nb.cells]


def _break(nb, how):
    test = _cell(nb, lambda c: _meta(c).get("grade") and not _meta(c).get("solution") and c.cell_type == "code")
    answer = _cell(nb, lambda c: _meta(c).get("solution") and c.cell_type == "code")
    params = _cell(nb, lambda c: "parameters" in c.metadata.get("tags", []))
    md = _cell(nb, lambda c: c.cell_type == "markdown" and "nbgrader" not in c.metadata)
    if how == "unlocked test cell":
        test.metadata["nbgrader"]["locked"] = False
    elif how == "fractional points":
        test.metadata["nbgrader"]["points"] = 2.5
    elif how == "duplicate grade id":
        test.metadata["nbgrader"]["grade_id"] = answer.metadata["nbgrader"]["grade_id"]
    elif how == "parameters tag removed":
        params.metadata["tags"] = []
    elif how == "autograded answer":
        answer.metadata["nbgrader"]["grade"] = True
    elif how == "header line in a cell":
        md.source += "\n%%% code"
    elif how == "grade id with a space":
        answer.metadata["nbgrader"]["grade_id"] = "my answer"
    elif how == "raw cell":
        nb.cells.append(nbformat.v4.new_raw_cell("raw"))
    elif how == "points on an answer cell":
        answer.metadata["nbgrader"]["points"] = 3
    return nb


@pytest.mark.parametrize("how, message", [
    ("unlocked test cell", "matches no kind of authoring cell"),
    ("fractional points", "points 2.5 is not a whole number"),
    ("duplicate grade id", "is used by cell"),
    ("parameters tag removed", "the parameters cell must stay locked"),
    ("autograded answer", "matches no kind of authoring cell"),
    ("header line in a cell", "a line starting with %%% would open a new cell"),
    ("grade id with a space", "must be a word without spaces"),
    ("raw cell", "raw cells have no place"),
    ("points on an answer cell", "its nbgrader metadata cannot be written to the authoring source"),
])
def test_metadata_breaking_edits_are_refused_and_nothing_is_written(how, message, tmp_path):
    nbsrc = ROOT / "authoring" / "01_chain_rule" / "chain_rule.nbsrc"
    ipynb = _built(nbsrc, tmp_path)
    nbformat.write(_break(nbformat.read(str(ipynb), 4), how), str(ipynb))
    out = tmp_path / "kept.nbsrc"
    out.write_bytes(nbsrc.read_bytes())
    with pytest.raises(AuthoringError, match="cell [0-9]+ ") as info:
        write_back(ipynb, out)
    assert message in str(info.value), str(info.value)
    assert out.read_bytes() == nbsrc.read_bytes(), "a refused write-back leaves the source as it was"


def test_unbuild_of_a_small_notebook_names_every_kind():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    nb = new_notebook(cells=[new_markdown_cell("# T"), new_code_cell("import x"), new_code_cell("scratch")])
    nb.cells[1].metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True,
                                        "grade_id": "t-code-01", "schema_version": 3}
    nb.cells.append(new_code_cell("y = 1"))
    nb.cells[3].metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True, "grade_id": "own",
                                        "schema_version": 3}
    assert unbuild(nb, "t") == "%%% md\n# T\n\n%%% code\nimport x\n\n%%% code free\nscratch\n\n%%% code id=own\ny = 1\n"


# ------------------------------------------------------------------ make new
def _course_copy(dest: Path) -> Path:
    """A copy of the course (no virtual environment, no git, no build outputs) the tests can run in."""
    import shutil
    skip = shutil.ignore_patterns(".venv", ".git", "build", "__pycache__", ".pytest_cache", "autograded",
                                  "submitted", "feedback", "reports", ".grader", "gradebook.db", "*.egg-info")
    shutil.copytree(ROOT, dest, ignore=skip, symlinks=True)
    return dest


def test_a_new_assignment_passes_every_structure_test(tmp_path):
    """`make new` in a copy of the course, then the structure and contract tests run there."""
    import subprocess
    import sys

    from llmcourse.authoring.misconceptions import load
    from llmcourse.authoring.scaffold import new_assignment
    copy = _course_copy(tmp_path / "course")
    written = new_assignment(copy, "09_scaffolded")
    assert {p.relative_to(copy).as_posix() for p in written} == {
        "authoring/09_scaffolded/scaffolded.nbsrc", "authoring/09_scaffolded/misconceptions.toml",
        "tests/contracts/a09_scaffolded.toml", "source/09_scaffolded/scaffolded.ipynb", "README.md"}
    assert "| 09 | `09_scaffolded` |" in (copy / "README.md").read_text()
    assert len(load(copy, "09_scaffolded")) >= 6
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_01_structure.py",
                           "tests/test_contracts.py", "-k", "09_scaffolded or built_from_authoring or six_mutants "
                           "or contract_file or mutant_applies"], cwd=copy, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    ran = proc.stdout + proc.stderr
    assert " passed" in ran and "09_scaffolded" in ran, ran[-2000:]


def _tiny_course(root: Path) -> Path:
    (root / "authoring" / "01_one").mkdir(parents=True)
    (root / "source" / "01_one").mkdir(parents=True)
    (root / "tests" / "contracts").mkdir(parents=True)
    (root / "README.md").write_text("| # | assignment | what |\n|---|---|---|\n| 01 | `01_one` | one |\n")
    return root


@pytest.mark.parametrize("bad, message", [
    ("07", "is not an assignment id"), ("7_x", "is not an assignment id"), ("07_X", "is not an assignment id"),
    ("07-x", "is not an assignment id"), ("", "is not an assignment id"), ("07_x/../../etc", "is not an assignment id"),
    ("01_one", "authoring/01_one already exists"), ("01_two", "number 01 is already used by 01_one"),
])
def test_new_refuses_a_bad_or_taken_id_and_writes_nothing(tmp_path, bad, message):
    from llmcourse.authoring.scaffold import ScaffoldError, new_assignment
    root = _tiny_course(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    readme = (root / "README.md").read_text()
    with pytest.raises(ScaffoldError, match=message):
        new_assignment(root, bad)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert (root / "README.md").read_text() == readme


def test_new_puts_the_readme_row_in_order(tmp_path):
    from llmcourse.authoring.scaffold import ScaffoldError, new_assignment
    root = _tiny_course(tmp_path)
    new_assignment(root, "03_three")
    new_assignment(root, "02_two")
    rows = [ln for ln in (root / "README.md").read_text().splitlines() if ln.startswith("| 0")]
    assert [r.split("`")[1] for r in rows] == ["01_one", "02_two", "03_three"]
    (root / "README.md").write_text("no table here\n")
    with pytest.raises(ScaffoldError, match="no table of assignments"):
        new_assignment(root, "04_four")
    assert not (root / "authoring" / "04_four").exists()


def test_cli_nbbuild_both_ways(monkeypatch, capsys, tmp_path):
    from llmcourse.cli import main
    monkeypatch.chdir(ROOT)
    assert main(["nbbuild", "--check"]) == 0
    assert "source/ matches authoring/" in capsys.readouterr().out
    assert main(["nbbuild", "--check", "--reverse", "--assignment", "01_chain_rule"]) == 0
    assert "authoring/ matches source/" in capsys.readouterr().out
    assert main(["nbbuild", "--check", "--assignment", "99_nothing"]) == 2
    copy = _course_copy(tmp_path / "course")
    nb = copy / "source" / "01_chain_rule" / "chain_rule.ipynb"
    nb.write_text(nb.read_text().replace("Every large language model you have heard of",
                                         "Every big language model you know"))
    monkeypatch.chdir(copy)
    assert main(["nbbuild", "--reverse", "--check"]) == 1
    assert main(["nbbuild", "--reverse"]) == 0
    assert "wrote: authoring/01_chain_rule/chain_rule.nbsrc" in capsys.readouterr().out
    nbsrc = copy / "authoring" / "01_chain_rule" / "chain_rule.nbsrc"
    assert "Every big language model you know" in nbsrc.read_text()
    assert main(["nbbuild", "--check"]) == 0, "the rebuilt notebook is the edited one"
