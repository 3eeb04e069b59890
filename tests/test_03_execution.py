"""3. Execution: every source notebook runs headless with papermill at smoke size; all its tests pass."""
from __future__ import annotations

import pytest
from nbutil import ROOT, read, source_nbs

from llmcourse.grading.course import execute_notebook


@pytest.mark.slow
@pytest.mark.parametrize("src", source_nbs(), ids=lambda p: p.parent.name)
def test_source_notebook_runs_at_smoke(src, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    monkeypatch.setenv("LLMCOURSE_FIGURES", str(figures))
    out = tmp_path / src.name
    secs = execute_notebook(src, out, profile="smoke", device="cpu", env_dir=tmp_path / "state")
    assert secs < 60, f"smoke run took {secs:.0f} s; the course asks for seconds"
    nb = read(out)
    errors = [c for c in nb.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)]
    assert not errors
    assert list(figures.glob("*.png")), "the notebook saved no figure"
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs), \
        "the executed copy holds no figure"
    assert "smoke" in "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_execute_refuses_to_write_into_source(tmp_path):
    from llmcourse.cli import main
    assert main(["execute", "--assignment", "00_setup", "--out", str(ROOT / "source" / "x")]) == 2
    assert not (ROOT / "source" / "x").exists()
