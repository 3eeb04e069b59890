"""Authoring tools: the .nbsrc <-> .ipynb round trip, and the scaffold of a new assignment."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from nbutil import ROOT

from llmcourse.authoring.unbuild import unbuild, write_back, write_back_all
from llmcourse.authoring.nbbuild import AuthoringError, build_notebook, dumps

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
    nbformat.write(nb, str(ipynb))
    out = tmp_path / "edited.nbsrc"
    out.write_bytes(nbsrc.read_bytes())
    assert write_back(ipynb, out) is True
    text = out.read_text(encoding="utf-8")
    assert "## 1 · The chain rule, said again (edited in JupyterLab)" in text and old_heading not in text
    assert lines[k] in text.split("\n")
    before, after = nbsrc.read_text(encoding="utf-8").split("\n"), text.split("\n")
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
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
