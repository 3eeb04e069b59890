"""10. The trusted side of grading, piece by piece: small, fast, no sandbox needed.

Each test names the promise of docs/threat-model.md it proves. The whole-class attacks
are in tests/test_07_safety.py; these pin down the pieces they rely on.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbutil import ROOT, meta, read, split_hidden

from llmcourse.grading import htmlsafe, safetext, seccomp, trusted
from llmcourse.student.checks import NOT_REACHED, compare_entries

A = "01_chain_rule"
NB = "chain_rule.ipynb"
SRC = ROOT / "source" / A / NB
REL = ROOT / "release" / A / NB
PAYLOADS = ["<script>window.__pwned = 1</script>", '<img src=x onerror="window.__pwned = 2">',
            "[click](javascript:window.__pwned=3)", '<iframe src="/terminals/1"></iframe>',
            '<a href="/api/contents" style="position:fixed;inset:0">x</a>', "<svg onload=alert(1)>",
            '<div class="llmcourse-sanitized"><script>window.__pwned = 4</script></div>']


def _elements(html: str) -> list[tuple[str, dict]]:
    """(tag, attributes) of every element a browser would build from `html`."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        found: list = []

        def handle_starttag(self, tag, attrs):
            self.found.append((tag, dict(attrs)))
    p = P()
    p.found = []
    p.feed(html)
    return p.found


def _live(html: str) -> list[str]:
    """What in `html` could run script or reach the Jupyter server: the list is empty when safe."""
    bad = []
    for tag, attrs in _elements(html):
        if tag in ("script", "iframe", "svg", "object", "embed", "style", "form", "base", "meta", "link"):
            bad.append(tag)
        for k, v in attrs.items():
            if k.startswith("on") or k in ("style", "id") or (k == "class" and v != htmlsafe.MARK):
                bad.append(f"{tag}[{k}]")
            if k in ("href", "src") and not (v or "").lower().startswith(("http://", "https://", "mailto:")):
                bad.append(f"{tag}[{k}={v}]")
    return bad


def _correct(tmp_path) -> Path:
    from llmcourse.authoring.sampleclass import build_submission
    return build_submission(REL, SRC, tmp_path / NB, fill="all")


def _with_cells(path: Path, cells: list, out: Path) -> Path:
    nb = read(path)
    nb.cells.extend(cells)
    nbformat.write(nb, str(out))
    return out


# ------------------------------------------------------------------ 2. student HTML
@pytest.mark.parametrize("payload", PAYLOADS)
def test_sanitiser_neutralises_script_handlers_and_links(payload):
    out = htmlsafe.sanitize_markdown("My answer. " + payload)
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    html = markdown2html_mistune(out)
    assert not _live(html), (payload, html)
    assert _elements(markdown2html_mistune(payload)), "the payload alone would make elements"
    assert "My answer." in html
    assert htmlsafe.sanitize_markdown(out) == out, "sanitising twice changes nothing"


def test_sanitiser_keeps_an_honest_answer_byte_for_byte():
    for text in ["YOUR ANSWER HERE", "The bigram model assumes $p(w_t | w_{t-1})$, so *order* matters.\n\n- a\n- b",
                 "| N | D |\n|---|---|\n| 1 | 20 |", "Use `x < y` and $a<b$."]:
        assert htmlsafe.sanitize_markdown(text) == text


def test_html_exports_sanitise_every_markdown_cell_and_drop_active_outputs():
    """The exporter preprocessor that nbgrader_config.py enables for Formgrader and feedback."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Answer: " + " ".join(PAYLOADS)),
                nbformat.v4.new_raw_cell("<script>window.__pwned = 5</script>"),
                nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
                    "display_data", data={"text/html": "<img src=x onerror='window.__pwned=6'>",
                                          "application/javascript": "window.__pwned = 7",
                                          "text/plain": "shown"})])]
    c = Config()
    c.HTMLExporter.preprocessors = ["llmcourse.grading.nbgrader_ext.LimitCellSize",
                                    "llmcourse.grading.nbgrader_ext.SanitizeStudentHTML"]
    html, _ = HTMLExporter(config=c).from_notebook_node(nb)
    body = html.split("<body", 1)[1]
    cells = body.split('id="notebook-container"', 1)[-1] if 'id="notebook-container"' in body else body
    for tag, attrs in _elements(cells):
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        assert not (tag == "script" and "__pwned" in json.dumps(attrs))
    scripts = [chunk.split("</script>", 1)[0] for chunk in html.split("<script")[1:]]
    assert not [s for s in scripts if "__pwned" in s], "a payload survived as a script"
    assert "javascript:" not in cells and "shown" in cells


def test_config_enables_the_sanitising_exporter():
    text = (ROOT / "nbgrader_config.py").read_text()
    assert "c.HTMLExporter.preprocessors" in text and "SanitizeStudentHTML" in text and "LimitCellSize" in text


# ------------------------------------------------------------------ 4. bounded trusted-side work
def test_size_caps_reject_with_a_clear_message(tmp_path):
    ok = _correct(tmp_path)
    src, rel = read(SRC), read(REL)
    big_cell = _with_cells(ok, [nbformat.v4.new_code_cell("x = 1\n" * (trusted.MAX_CELL_CHARS // 6 + 10))],
                           tmp_path / "one_big_cell.ipynb")
    c = trusted.canonical_notebook(src, rel, big_cell)
    assert c.rejected and "over the 64 KB limit for one cell" in c.rejected
    many = _with_cells(ok, [nbformat.v4.new_code_cell("y = 2\n" * 10000) for _ in range(6)], tmp_path / "many.ipynb")
    c = trusted.canonical_notebook(src, rel, many)
    assert c.rejected and "256 KB" in c.rejected
    cells = _with_cells(ok, [nbformat.v4.new_markdown_cell("m") for _ in range(trusted.MAX_CELLS)],
                        tmp_path / "cells.ipynb")
    c = trusted.canonical_notebook(src, rel, cells)
    assert c.rejected and "cells, over the limit" in c.rejected
    assert not any(meta(x).get("solution") and "YOUR CODE" not in x.source and x.cell_type == "code"
                   and "raise NotImplementedError" not in x.source for x in c.nb.cells), \
        "a rejected notebook is graded blank"
    assert trusted.canonical_notebook(src, rel, ok).rejected is None


def test_two_megabytes_of_trailing_code_cost_almost_nothing(tmp_path):
    """The red team's attack: 2 MB of trivial code after the last answer (62 s and 1.07 GB before)."""
    ok = _correct(tmp_path)
    trailing = [nbformat.v4.new_code_cell("a = 1\n" * 10000) for _ in range(35)]   # 35 cells of 60 KB
    attack = _with_cells(ok, trailing, tmp_path / "attack.ipynb")
    assert attack.stat().st_size > 2 * 2**20
    t0 = time.perf_counter()
    c = trusted.prepare(SRC, REL, attack)
    secs = time.perf_counter() - t0
    assert c.rejected and "over the limit" in c.rejected
    assert secs < 10, f"preparing took {secs:.1f} s"
    # under the caps, the rewrite never parses a student's code: one parse per course cell
    t0 = time.perf_counter()
    canon = trusted.canonical_notebook(read(SRC), read(REL), ok)
    for _ in range(3):
        trusted.sandbox_notebook(canon.nb, trusted.sandbox_test_sources(read(SRC)))
    assert time.perf_counter() - t0 < 5


def test_html_export_of_a_huge_notebook_is_bounded(tmp_path):
    """`make feedback` / Formgrader on a notebook no grader capped (stock nbgrader's, say): LimitCellSize."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    nb = read(_correct(tmp_path))
    nb.cells += [nbformat.v4.new_code_cell("a = 1\n" * 10000) for _ in range(35)]   # 2.1 MB of code
    nb.cells.append(nbformat.v4.new_code_cell("b = 2\n" * 100000))                 # one 600 KB cell
    c = Config()
    c.HTMLExporter.preprocessors = ["llmcourse.grading.nbgrader_ext.LimitCellSize",
                                    "llmcourse.grading.nbgrader_ext.SanitizeStudentHTML"]
    c.LimitCellSize.max_total_chars = 128 * 1024   # the default is 512 KB; smaller keeps this test fast
    exporter = HTMLExporter(config=c)
    t0 = time.perf_counter()
    html, _ = exporter.from_notebook_node(nb)
    secs = time.perf_counter() - t0
    from llmcourse.grading.nbgrader_ext import LimitCellSize
    limited, _ = LimitCellSize(config=c).preprocess(nb, {})   # what the export above worked on
    total = sum(len(cell.source) for cell in limited.cells)
    assert total < 128 * 1024 + 64 * 1024 + 100 * 36, f"{total} characters left for the export"
    assert len(html) < 40 * 2**20 and secs < 30, f"the export took {secs:.0f} s for {len(html)} bytes"


def test_prepare_is_the_same_rewrite_in_a_limited_process(tmp_path):
    ok = _correct(tmp_path)
    here = trusted.canonical_notebook(read(SRC), read(REL), ok)
    there = trusted.prepare(SRC, REL, ok)
    assert there.rejected is None and there.flags == here.flags
    assert json.loads(json.dumps(there.nb)) == json.loads(json.dumps(here.nb))


def test_prepare_rejects_a_notebook_that_exhausts_its_limits(tmp_path, monkeypatch):
    ok = read(_correct(tmp_path))
    ok.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="z" * (40 * 2**20))] \
        if ok.cells[0].cell_type == "code" else []
    ok.cells.append(nbformat.v4.new_code_cell("pass", outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="z" * (40 * 2**20))]))
    path = tmp_path / "heavy.ipynb"
    nbformat.write(ok, str(path))
    monkeypatch.setattr(trusted, "PREPARE_MEMORY_MB", 150)
    c = trusted.prepare(SRC, REL, path)
    assert c.rejected and "within the grader's limits" in c.rejected, c.rejected


def test_prepare_never_follows_a_link(tmp_path):
    link = tmp_path / NB
    link.symlink_to(SRC)
    c = trusted.prepare(SRC, REL, link)
    assert c.rejected and "cannot read" in c.rejected


# ------------------------------------------------------------------ 3. nothing hidden in the sandbox
def _hidden_assignments(nb) -> list[str]:
    import ast
    names = []
    for c in nb.cells:
        if trusted.is_test_cell(c):
            for block in split_hidden(c.source)[1]:
                try:
                    tree = ast.parse(block)
                except SyntaxError:
                    continue
                names += [t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                          for t in n.targets if isinstance(t, ast.Name)]
    return sorted(set(names))


def test_student_cells_that_mention_hidden_names_keep_nothing_alive(tmp_path):
    src = read(SRC)
    names = _hidden_assignments(src)
    assert names, "01 has hidden assignments to strip"
    mention = "\n".join(f"print({n})" for n in names)
    ok = read(_correct(tmp_path))
    for c in ok.cells:   # every answer cell, and a cell of the student's own at the end, mentions them
        if meta(c).get("solution") and c.cell_type == "code":
            c.source += "\n" + mention
    ok.cells.append(nbformat.v4.new_code_cell(mention))
    path = tmp_path / "mentions.ipynb"
    nbformat.write(ok, str(path))
    canon = trusted.canonical_notebook(src, read(REL), path)
    sent = trusted.sandbox_notebook(canon.nb)
    baseline = trusted.sandbox_test_sources(src)
    for c in sent.cells:
        if trusted.is_test_cell(c):
            assert c.source == baseline[meta(c)["grade_id"]], f"{meta(c)['grade_id']} kept more for this student"
            assert "RECORD_ONLY" in c.source


def test_feedback_outputs_come_from_the_reference_run_only():
    """What the student's run printed never reaches nbgrader: graded_notebook takes no student run, and
    drops every output the notebook it is given carries (here: a leak in every code cell)."""
    from llmcourse.grading.merge import graded_notebook
    from llmcourse.grading.trusted import Verdict
    src = read(SRC)
    for c in src.cells:
        if c.cell_type == "code":
            c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="LEAK:c2VjcmV0")]
    first = next(i for i, c in enumerate(src.cells) if meta(c).get("solution"))
    ref = [[{"output_type": "stream", "name": "stdout", "text": f"reference output {i}\n"}] for i in range(first)]
    verdicts = [Verdict(meta(c)["grade_id"], 1.0, True) for c in src.cells if trusted.is_test_cell(c)]
    merged = graded_notebook(src, verdicts, ref)
    text = json.dumps([c.get("outputs", []) for c in merged.cells if c.cell_type == "code"])
    assert "LEAK" not in text
    code_before = [i for i in range(first) if src.cells[i].cell_type == "code"]
    assert code_before and all(f"reference output {i}" in text for i in code_before)


def test_markdown_answers_are_sanitised_when_staged():
    from llmcourse.grading.merge import graded_notebook
    src = read(SRC)
    for c in src.cells:
        if meta(c).get("solution") and c.cell_type == "markdown":
            c.source = "My answer " + PAYLOADS[0] + PAYLOADS[1]
    merged = graded_notebook(src, [trusted.Verdict(meta(c)["grade_id"], 1.0, False, "x")
                                   for c in src.cells if trusted.is_test_cell(c)])
    answers = [c.source for c in merged.cells if c.cell_type == "markdown" and meta(c).get("solution")]
    assert answers and all("<script" not in a and "onerror" not in a and "My answer" in a for a in answers)


# ------------------------------------------------------------------ 6. the comparison never raises
@pytest.mark.parametrize("value", [10**400, -(10**400), [10**400, 1.0], {"a": 1}, [[1.0], [1.0, 2.0]],
                                   "NaN", None, [[[[]]]]])
def test_an_unusable_recorded_value_is_this_checks_verdict(value):
    ref = [{"name": "t/x", "kind": "close", "value": 1.0, "atol": 1e-6, "rtol": 1e-5}]
    problem = compare_entries(ref, [{"name": "t/x", "kind": "close", "value": value}])
    assert problem and problem != NOT_REACHED


def test_malformed_records_and_huge_numbers_never_stop_decide():
    src = read(SRC)
    refs, stu = {}, {}
    for c in src.cells:
        if trusted.is_test_cell(c):
            gid = meta(c)["grade_id"]
            refs[f"{gid}/a"] = [{"name": f"{gid}/a", "kind": "close", "value": 1.0}]
            refs[f"{gid}/b"] = [{"name": f"{gid}/b", "kind": "equal", "value": [1, 2]}]
            stu[f"{gid}/a"] = [{"name": f"{gid}/a", "kind": "close", "value": 10**400}]
            stu[f"{gid}/b"] = ["not a dict"]
    ran = [{"cell_type": "code", "metadata": {"llmcourse_seconds": 0.0}, "outputs": []}] * len(src.cells)
    verdicts = trusted.decide(src, ran, stu, refs)
    assert verdicts and all(not v.passed and "unusable" in v.reason for v in verdicts)


def test_verdict_texts_are_the_graders_own():
    """An exception a test cell raised is named only when it is a built-in one; its message never."""
    src = read(SRC)
    gid = next(meta(c)["grade_id"] for c in src.cells if trusted.is_test_cell(c))
    refs = {f"{gid}/a": [{"name": f"{gid}/a", "kind": "close", "value": 1.0}]}
    for ename in ("ValueError", "Q0hFQ0s_aGlkZGVu", "=HYPERLINK"):
        ran = [{"cell_type": "code", "metadata": {"llmcourse_seconds": 0.0},
                "outputs": [{"output_type": "error", "ename": ename, "evalue": "[=cmd|' /C calc'!A0] SECRET",
                             "traceback": []}]}] * len(src.cells)
        v = next(v for v in trusted.decide(src, ran, {}, refs) if v.grade_id == gid)
        assert "SECRET" not in v.reason and "=cmd" not in v.reason
        assert v.reason.startswith("ValueError" if ename == "ValueError" else "Error")


def test_a_failed_visible_check_is_named_in_the_verdict_and_a_hidden_one_is_not():
    """The verdict carries the failed check's name as data (reports count it), only for a visible check."""
    src = read(SRC)
    cell = next(c for c in src.cells if trusted.is_test_cell(c) and trusted.visible_check_names(c.source))
    gid = meta(cell)["grade_id"]
    visible = sorted(trusted.visible_check_names(cell.source))[0]
    ran = [{"cell_type": "code", "metadata": {"llmcourse_seconds": 0.0}, "outputs": []}] * len(src.cells)
    assert visible.startswith(gid + "/"), "check names are <test cell>/<check>"
    for name, shown in ((visible, True), (f"{gid}/not_in_the_visible_part", False)):
        refs = {name: [{"name": name, "kind": "close", "value": 1.0, "atol": 0, "rtol": 0}]}
        stu = {name: [{"name": name, "kind": "close", "value": 2.0}]}
        v = next(v for v in trusted.decide(src, ran, stu, refs) if v.grade_id == gid)
        assert not v.passed and v.failed_check == (name if shown else None), v
        assert v.reason.startswith(f"CheckFailed: [{name}]" if shown else "CheckFailed: a hidden check failed")


def test_resume_state_keeps_typed_flags_and_regrades_an_unreadable_one(tmp_path):
    from llmcourse.grading.results import Flag, FlagCode, Outcome
    from llmcourse.grading.state import GRADER_VERSION, ResumeState
    graded = tmp_path / "autograded"
    graded.mkdir()
    state = ResumeState(tmp_path / "state")
    out = Outcome(student="s", assignment=A, score=3.0, failed_checks=["t/x"],
                  flags=[Flag(FlagCode.TAMPERED, "t: disagrees"), Flag(FlagCode.RENAMED, "renamed")])
    state.save("s", "digest", out)
    back = state.unchanged("s", "digest", graded)
    assert back is not None and back.resumed and back.flags == out.flags and back.has_flag(FlagCode.TAMPERED)
    assert state.unchanged("s", "other digest", graded) is None
    (tmp_path / "state" / "done" / "s.json").write_text(json.dumps(
        {"hash": "digest", "version": GRADER_VERSION,
         "outcome": {"student": "s", "assignment": A, "flags": ["untyped"]}}))
    assert state.unchanged("s", "digest", graded) is None, "a state it cannot read is graded again"


# ------------------------------------------------------------------ 7. reports that cannot attack the reader
def test_csv_fields_cannot_be_formulas_and_text_cannot_drive_a_terminal():
    for bad in ["=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)", "\tx", "\rx", "\uff1d1"]:
        assert safetext.csv_field(bad).startswith("'")
    assert safetext.csv_field(3.5) == 3.5 and safetext.csv_field("plain") == "plain"
    shown = safetext.terminal("name\x1b]0;owned\x07\x1b[2J\x9b31m\u202e\udcff")
    assert all(ord(ch) >= 0x20 and not 0x7f <= ord(ch) <= 0x9f for ch in shown) and "\\x1b" in shown


def test_grade_reports_escape_student_text(tmp_path):
    from llmcourse.grading.reports import write_reports
    from llmcourse.grading.results import Flag, FlagCode, Outcome
    out = Outcome(student="=evil", assignment=A, flags=[Flag(FlagCode.RENAMED, "notebook renamed to '\x1b[31mx.ipynb'"),
                                                       Flag(FlagCode.TAMPERED, "=HYPERLINK(1)")],
                  failed_checks=["@x"], cells={"test_a": {"points": 1.0, "passed": False, "reason": "-1"}})
    write_reports(tmp_path, A, [out])
    for f in tmp_path.glob("*.csv"):
        text = f.read_text()
        assert "\x1b" not in text, f.name
        for row in csv.reader(io.StringIO(text)):
            assert not any(cell[:1] in ("=", "+", "-", "@") for cell in row), (f.name, row)


# ------------------------------------------------------------------ 5. the seccomp program
def test_seccomp_program_denies_escapes_and_allows_the_rest():
    prog = seccomp.program("x86_64")
    allow, eperm, enosys = seccomp.RET_ALLOW, 0x00050000 | 1, 0x00050000 | 38
    n = seccomp.X86_64
    for name in ("ptrace", "unshare", "setns", "mount", "bpf", "keyctl", "io_uring_setup", "init_module",
                 "process_vm_readv", "perf_event_open", "userfaultfd", "pivot_root", "kexec_load"):
        assert seccomp.run(prog, n[name]) == eperm, name
    assert seccomp.run(prog, n["clone"], args=(0x10000000, 0, 0, 0, 0, 0)) == eperm   # CLONE_NEWUSER
    assert seccomp.run(prog, n["clone"], args=(0x003D0F00, 0, 0, 0, 0, 0)) == allow   # a thread
    assert seccomp.run(prog, n["clone3"]) == enosys
    assert seccomp.run(prog, n["ioctl"], args=(0, 0x5412, 0, 0, 0, 0)) == eperm       # TIOCSTI
    assert seccomp.run(prog, n["ioctl"], args=(0, 0x5401, 0, 0, 0, 0)) == allow
    for nr in (0, 1, 2, 3, 9, 57, 59, 60, 231):   # read write open close mmap fork execve exit exit_group
        assert seccomp.run(prog, nr) == allow
    assert seccomp.run(prog, 0x40000000 | 1) == enosys                                 # x32 ABI
    assert seccomp.run(prog, 1, arch=0x40000003) == seccomp.RET_KILL_PROCESS          # i386
    assert seccomp.program("aarch64") is None


def test_sandbox_starts_the_interpreter_through_a_linked_venv(tmp_path):
    """.venv as a symbolic link: the sandbox starts <resolved venv>/bin/python, which it binds."""
    link = tmp_path / "venv-link"
    link.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    code = "from llmcourse.grading import sandbox; import sys; print(sandbox.python_executable()); print(sys.prefix)"
    out = subprocess.run([str(link / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    exe, prefix = out.stdout.split()
    assert exe == str(Path(sys.prefix).resolve() / "bin" / "python") and "venv-link" not in exe
    assert "venv-link" in prefix   # the interpreter itself saw the link...
    from llmcourse.grading import sandbox
    assert Path(exe).parent.parent in [p for p in sandbox._python_runtime()] or \
        Path(exe).resolve().parent.parent in sandbox._python_runtime()


# ------------------------------------------------------------------ the lab
def test_make_lab_refuses_root_without_an_account():
    if os.geteuid() != 0:
        pytest.skip("the refusal is for root")
    proc = subprocess.run([sys.executable, "-m", "llmcourse.cli", "lab"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "refusing to serve JupyterLab and Formgrader as root" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "llmcourse.cli", "lab", "--user", "nobody", "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "would serve as nobody (uid 65534)" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "llmcourse.cli", "lab", "--user", "root"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unprivileged" in proc.stderr
