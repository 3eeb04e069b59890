"""Grade a whole class safely: sandboxed, tamper-proof, parallel, resumable.

For each submission ``submitted/<student>/<assignment>/``:

1. trusted: rebuild the notebook from the course's source (llmcourse.grading.trusted.prepare: in a
   child process with its own memory and CPU limits); only the notebook is taken from the
   submission folder, nothing that lies beside it; an unreadable or oversized notebook gets
   a clear message and is graded as the blank release (0 points);
2. sandboxed: run it in bubblewrap + cgroups (llmcourse.grading.sandbox) with the hidden checks
   recording the student's values only (no expected values in the student's process);
3. trusted: compare the records with the reference solution's (run the same way, once per
   assignment, cached), decide every test cell, flag cells whose in-kernel and trusted
   verdicts disagree;
4. nbgrader: hand the decided, already executed notebook to nbgrader's autograde (with
   execution switched off, LLMCOURSE_PRE_EXECUTED=1) so the gradebook, formgrader, feedback
   and export work as usual (llmcourse.grading.gradebook: a long-lived writer process per grading
   process; SQLite writes take turns, PostgreSQL writes run concurrently).

Steps 1-2 and 3-4 are two tasks per submission (``execute`` and ``finish``) on a Dask
distributed cluster (``engine="dask"``, the default): a LocalCluster of ``workers`` processes
on this machine, or any running scheduler (``scheduler="tcp://host:8786"``) whose workers see
the same course folder and gradebook. The reference solution runs in this process while the
cluster starts and the first submissions run. ``engine="threads"`` runs ``grade_one`` per
submission in a thread pool inside this process instead.

State lives in ``<course>/.grader/<assignment>/`` (never visible inside a sandbox): a
submission is re-graded only if its files changed or its state is missing, so a batch
killed half-way resumes and ends with the grades an uninterrupted run gives.
Reports go to ``<course>/reports/<assignment>/``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import fastimport  # noqa: F401  (before nbformat: see its docstring)

import nbformat  # noqa: E402
from nbformat.v4 import new_output  # noqa: E402

from . import sandbox  # noqa: E402
from ..student.checks import parse_records  # noqa: E402
from .course import CourseError, jupyter_env, run_nbgrader, source_notebooks  # noqa: E402
from .gradebook import Writer, check_gradebook, db_url, file_lock, is_sqlite  # noqa: E402
from .htmlsafe import sanitize_markdown  # noqa: E402
from .safetext import SafeWriter  # noqa: E402
from .trusted import (Canonical, decide, hidden_secrets, is_test_cell, meta, prepare,  # noqa: E402
                      sandbox_notebook, sandbox_test_sources)

MAX_RECORD_BYTES = 32 * 1024 * 1024
GRADER_VERSION = "3"
ENGINES = ("dask", "threads")


class GraderError(CourseError):
    pass


@dataclass
class Outcome:
    student: str
    assignment: str
    score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0
    flags: list[str] = field(default_factory=list)
    rejected: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    cells: dict = field(default_factory=dict)   # grade_id -> {"points", "passed", "reason"}
    resumed: bool = False
    run_seconds: float = 0.0      # in the sandbox (kernel start and cells)
    record_seconds: float = 0.0   # recording in the gradebook


def _hash_files(folder: Path) -> str:
    """Hash of a submission folder's names and regular files; links are hashed, never followed."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*"), key=lambda q: os.fsencode(q)):
        if ".ipynb_checkpoints" in p.parts:
            continue
        h.update(os.fsencode(p.relative_to(folder)) + b"\0")
        try:
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                h.update(b"link:" + os.fsencode(os.readlink(p)))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()


def _regular(path: Path) -> bool:
    """A regular file, not a link (the grader runs as root: it never follows a student's links)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _course_cell(cell) -> bool:
    return not meta(cell).get("solution") and not cell.get("metadata", {}).get("llmcourse_student_cell")


def _shown_outputs(outputs: list, secrets_: list[str]) -> list:
    """Outputs of the reference run that feedback may show: text and PNG, quoting no hidden test."""
    keep = []
    for o in outputs[:50]:
        if not isinstance(o, dict):
            continue
        text = json.dumps(o.get("text", "")) + json.dumps((o.get("data") or {}).get("text/plain", ""))
        if any(sec in text for sec in secrets_):
            continue
        kind = o.get("output_type")
        if kind == "stream" and isinstance(o.get("text"), str):
            keep.append({"output_type": "stream", "name": "stdout" if o.get("name") == "stdout" else "stderr",
                         "text": o["text"][:20000]})
        elif kind in ("display_data", "execute_result"):
            data = {k: v for k, v in (o.get("data") or {}).items() if k in ("image/png", "text/plain")
                    and isinstance(v, str)}
            if data:
                keep.append({"output_type": "display_data", "data": data, "metadata": {}})
        elif kind == "error":
            keep.append({"output_type": "error", "ename": str(o.get("ename", "Error"))[:100],
                         "evalue": str(o.get("evalue", ""))[:300], "traceback": []})
    return keep


def _read_json_capped(path: Path, cap: int):
    try:
        if not path.is_file() or path.stat().st_size > cap:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


@dataclass
class Executed:
    """A submission run in the sandbox and not yet decided: what a run task hands a finish task."""
    outcome: Outcome
    digest: str
    runs: list          # per notebook: (name, canonical notebook, executed cells, records)
    seconds: float


class Grader:
    def __init__(self, root: Path, assignment: str, workers: int | None = None,
                 limits: sandbox.Limits | None = None, env: dict | None = None, progress: bool = True,
                 engine: str = "dask", scheduler: str | None = None):
        if engine not in ENGINES:
            raise GraderError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")
        if scheduler and engine != "dask":
            raise GraderError("a scheduler address needs engine='dask'")
        self.mode = sandbox.check_available()
        sandbox.remove_stale_cgroups()
        self.root = Path(root).resolve()
        self.assignment = assignment
        self.workers = workers or max(1, (os.cpu_count() or 2))
        self.limits = limits or sandbox.Limits.from_env()
        self.env = dict(env or jupyter_env(self.root / ".grader" / ".jupyter-state"))
        self.progress = progress
        self.engine = engine
        self.scheduler = scheduler
        self.state = self.root / ".grader" / assignment
        self.reports = self.root / "reports" / assignment
        self.writer = Writer(self.root, self.env)
        self._fonts: dict | None = None
        self._test_sources: dict[str, dict] = {}
        self.notebooks = source_notebooks(self.root, assignment)
        if not self.notebooks:
            raise GraderError(f"no source notebooks for {assignment}")
        release = self.root / "release" / assignment
        missing = [nb.name for nb in self.notebooks if not (release / nb.name).is_file()]
        if missing:
            raise GraderError(f"release/{assignment} lacks {missing}: run `make release` first")

    # ------------------------------------------------------------------ one sandboxed run
    def test_sources(self, nb_path: Path) -> dict:
        """The sandbox's version of each test cell of a course notebook (computed once)."""
        key = str(nb_path)
        if key not in self._test_sources:
            self._test_sources[key] = sandbox_test_sources(nbformat.read(str(nb_path), 4))
        return self._test_sources[key]

    def _run(self, canonical_nb, workdir: Path | None = None, test_sources: dict | None = None):
        """Execute in the sandbox; return (sandbox result, executed cells by index or None, records).

        Nothing of the submission but its notebook enters the sandbox (`workdir` is unused:
        the sandbox's work folder is a fresh tmpfs)."""
        key = secrets.token_bytes(32)
        payload = key.hex().encode() + b"\n" + nbformat.writes(sandbox_notebook(canonical_nb, test_sources)).encode()
        env = {"LLMCOURSE_RECORD": "/sandbox/records.jsonl", "NBGRADER_EXECUTION": "autograde",
               "LLMCOURSE_CELL_TIMEOUT": str(self.limits.cell_timeout_s),
               "LLMCOURSE_CELL_OUTPUT_KB": str(self.limits.cell_output_kb)}
        python = sandbox.python_executable()
        res = sandbox.run(None, [python, "-m", "llmcourse.grading.sandbox_runner"], self.limits, env=env,
                          stdin_bytes=payload, ro_files=self._font_cache(),
                          diagnose=[python, "-c", "import llmcourse.grading.sandbox_runner"])
        cells: list = [None] * len(canonical_nb.cells)
        record_text = []
        seen_any = False
        for line in res.lines or []:
            mac, _, body = line.rstrip(b"\n").partition(b" ")
            if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).hexdigest().encode()):
                continue  # not from the runner: forged by student code, or broken
            try:
                msg = json.loads(body)
                if "fatal" in msg:
                    res.stderr_tail = str(msg["fatal"])[-4000:]
                    continue
                idx = int(msg["index"])
                outputs = [o for o in msg.get("outputs", []) if isinstance(o, dict)][:50]
                seconds = float(msg.get("seconds", 0))
                rec = str(msg.get("records", ""))
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
            if 0 <= idx < len(cells) and canonical_nb.cells[idx].cell_type == "code":
                cells[idx] = {"cell_type": "code", "outputs": outputs, "metadata": {"llmcourse_seconds": seconds}}
                record_text.append(rec)
                seen_any = True
        records = parse_records("".join(record_text)) if seen_any else {}
        return res, (cells if seen_any else None), records

    def _font_cache(self) -> dict:
        """matplotlib's font list, built once, read-only in every sandbox (else each kernel
        rebuilds it in its empty MPLCONFIGDIR: ~0.25 s per submission)."""
        if self._fonts is None:
            self._fonts = {}
            d = self.root / ".grader" / "mplconfig"
            try:
                found = sorted(d.glob("fontlist-*.json"))
                if not found:
                    d.mkdir(parents=True, exist_ok=True)
                    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], timeout=120,
                                   env=dict(self.env, MPLCONFIGDIR=str(d)), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, check=True)
                    found = sorted(d.glob("fontlist-*.json"))
                if found:
                    self._fonts = {f"/tmp/mpl/{found[-1].name}": found[-1]}
            except (OSError, subprocess.SubprocessError):
                pass
        return self._fonts

    # ------------------------------------------------------------------ reference
    def reference_records(self, nb_path: Path) -> dict:
        return self.reference(nb_path)["records"]

    def reference(self, nb_path: Path) -> dict:
        """The reference solution's run in the sandbox (cached): {"records", "outputs"}.

        "outputs": the outputs of the course's cells before the first answer cell, the only
        outputs feedback shows besides the verdicts (they depend on no answer, and no
        student code ran when they were made)."""
        src = nbformat.read(str(nb_path), 4)
        key = hashlib.sha256((nbformat.writes(src) + GRADER_VERSION).encode()).hexdigest()[:16]
        cache = self.state / "reference" / f"{nb_path.stem}-{key}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        res, cells, records = self._run(src, None, self.test_sources(nb_path))
        problems = []
        if cells is None:
            problems.append(f"the run produced no results ({'timed out' if res.timed_out else res.stderr_tail[-500:]})")
        else:
            for i, (c, ran) in enumerate(zip(src.cells, cells)):
                err0 = next((o for o in (ran or {}).get("outputs", []) if o.get("output_type") == "error"), None)
                if err0 and not is_test_cell(c) and not problems:   # the cause, when a setup cell failed
                    problems.append(f"cell {i}: {err0.get('ename')}: {str(err0.get('evalue'))[:200]}")
                if is_test_cell(c):
                    gid = meta(c)["grade_id"]
                    err = next((o for o in (ran or {}).get("outputs", []) if o.get("output_type") == "error"), None)
                    if ran is None:
                        problems.append(f"{gid}: not executed")
                    elif err:
                        problems.append(f"{gid}: {err.get('ename')}: {err.get('evalue')}")
                    elif not any(n.startswith(gid + "/") for n in records):
                        problems.append(f"{gid}: recorded no checks")
        if problems:
            raise GraderError(f"the reference solution of {self.assignment}/{nb_path.name} does not pass in the "
                              f"sandbox: " + "; ".join(problems[:5]))
        first_answer = next((i for i, c in enumerate(src.cells) if meta(c).get("solution")), len(src.cells))
        secrets_ = hidden_secrets(src)
        outputs = [_shown_outputs((cells[i] or {}).get("outputs", []), secrets_) if src.cells[i].cell_type == "code"
                   else [] for i in range(first_answer)]
        value = {"records": records, "outputs": outputs}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(value))
        return value

    # ------------------------------------------------------------------ one submission
    def grade_one(self, student: str, references: dict) -> Outcome:
        ex = self.execute(student)
        return ex if isinstance(ex, Outcome) else self.finish(ex, references)

    def execute(self, student: str) -> "Executed | Outcome":
        """Run a submission in the sandbox (no reference needed); an unchanged one returns its Outcome."""
        t0 = time.perf_counter()
        sub_dir = self.root / "submitted" / student / self.assignment
        digest = _hash_files(sub_dir)
        state_file = self.state / "done" / f"{student}.json"
        prior = _read_json_capped(state_file, 1 << 20)
        if prior and prior.get("hash") == digest and prior.get("version") == GRADER_VERSION \
                and (self.root / "autograded" / student / self.assignment).is_dir():
            out = Outcome(**{k: v for k, v in prior["outcome"].items() if k in Outcome.__dataclass_fields__})
            out.resumed = True
            return out
        self.writer.warm()   # starts while the sandbox runs
        outcome = Outcome(student=student, assignment=self.assignment)
        if self.mode.unenforced:
            outcome.flags.append(f"graded {self.mode.name}: limits NOT enforced: {', '.join(self.mode.unenforced)}")
        runs = []
        links = sorted(p.name for p in sub_dir.iterdir() if p.is_symlink())
        if links:
            outcome.flags.append(f"symbolic links in the submission were ignored: {', '.join(links[:5])}")
        present = sorted(p for p in sub_dir.glob("*.ipynb") if _regular(p))
        expected_names = {nb.name for nb in self.notebooks}
        for nb_path in self.notebooks:
            sub_nb = sub_dir / nb_path.name
            if not _regular(sub_nb):
                others = [p for p in present if p.name not in expected_names]
                if len(self.notebooks) == 1 and len(others) == 1:
                    outcome.flags.append(f"notebook renamed to {others[0].name!r}; graded as {nb_path.name}")
                    sub_nb = others[0]
                else:
                    sub_nb = None
            canon: Canonical = prepare(nb_path, self.root / "release" / self.assignment / nb_path.name, sub_nb,
                                       drop_to=sandbox.SANDBOX_HOST_UID, env=self.env)
            outcome.flags.extend(canon.flags)
            if canon.rejected:
                outcome.rejected = canon.rejected
                outcome.flags.append(f"rejected: {canon.rejected}; graded as the blank notebook")
            t_run = time.perf_counter()
            res, cells, records = self._run(canon.nb, None, self.test_sources(nb_path))
            outcome.run_seconds += round(time.perf_counter() - t_run, 2)
            if res.timed_out:
                outcome.flags.append(f"the run hit the {self.limits.wall_s} s wall-time limit and was killed")
            if res.oom_killed:
                outcome.flags.append(f"a process hit the {self.limits.memory_mb} MB memory limit and was killed")
            if cells is None:
                outcome.flags.append("the sandboxed run left no usable notebook; every test cell scores 0")
            runs.append((nb_path.name, canon.nb, cells, records))
        return Executed(outcome=outcome, digest=digest, runs=runs, seconds=time.perf_counter() - t0)

    def finish(self, ex: "Executed", references: dict) -> Outcome:
        """Decide the test cells against the reference, stage the notebook, record it in the gradebook."""
        t0 = time.perf_counter()
        outcome, student = ex.outcome, ex.outcome.student
        sub_dir = self.root / "submitted" / student / self.assignment
        staged = self.state / "staged" / student / self.assignment
        if staged.exists():
            shutil.rmtree(staged)
        staged.mkdir(parents=True)
        for name, canon_nb, cells, records in ex.runs:
            verdicts = decide(canon_nb, cells, records, references[name]["records"])
            for v in verdicts:
                outcome.cells[v.grade_id] = {"points": v.points, "passed": v.passed, "reason": v.reason}
                if v.tampered:
                    outcome.flags.append(f"{v.grade_id}: {v.tampered}")
                if not v.passed and v.reason.startswith("CheckFailed: ["):
                    outcome.failed_checks.append(v.reason.split("[", 1)[1].split("]", 1)[0])
            graded_nb = self._merge(canon_nb, cells, verdicts, references[name]["outputs"])
            nbformat.write(graded_nb, str(staged / name))
        # nbgrader's own small files: the timestamp, and the exchange's submission secret
        # (release_feedback / `make return` refuses a feedback folder without it).
        for name in ("timestamp.txt", "submission_secret.txt"):
            f = sub_dir / name
            if _regular(f) and f.stat().st_size < 1000:
                shutil.copy2(f, staged / name)
        t_rec = time.perf_counter()
        self.writer.record(self.assignment, student, os.path.relpath(self.state / "staged", self.root))
        outcome.record_seconds = round(time.perf_counter() - t_rec, 2)
        outcome.score = sum(c["points"] for c in outcome.cells.values() if c["passed"])
        outcome.max_score = sum(c["points"] for c in outcome.cells.values())
        outcome.seconds = round(ex.seconds + time.perf_counter() - t0, 2)
        state_file = self.state / "done" / f"{student}.json"
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"hash": ex.digest, "version": GRADER_VERSION, "outcome": asdict(outcome)}))
        os.replace(tmp, state_file)
        return outcome

    @staticmethod
    def _merge(canonical_nb, cells, verdicts, reference_outputs: list | None = None):
        """The notebook nbgrader records: course sources, trusted verdicts, outputs of no student run.

        - test cells: only the grader's verdict (its own text, llmcourse.grading.trusted.decide);
        - the course's cells before the first answer cell: their outputs from the *reference*
          run (text and PNG only), which depend on no answer and ran no student code;
        - every other cell: no outputs. Whatever the student's run printed or displayed (a
          hook in the kernel sees every test cell sent to it and could print it) is dropped;
        - markdown answers: student-written HTML sanitised (llmcourse.grading.htmlsafe).
        `cells` (the student's run) is used for nothing but the verdicts it was decided from.
        """
        nb = nbformat.from_dict(json.loads(json.dumps(canonical_nb)))
        by_id = {v.grade_id: v for v in verdicts}
        first_answer = next((i for i, c in enumerate(nb.cells) if not _course_cell(c)), len(nb.cells))
        ref = reference_outputs or []
        for i, c in enumerate(nb.cells):
            if c.cell_type == "markdown" and meta(c).get("solution"):
                c.source = sanitize_markdown(c.source)
                c.pop("attachments", None)
                continue
            if c.cell_type != "code":
                continue
            c.execution_count = None
            gid = meta(c).get("grade_id")
            if is_test_cell(c):
                v = by_id[gid]
                c.outputs = []
                if not v.passed:
                    ename, _, evalue = (v.reason or "Failed: the test did not pass").partition(": ")
                    c.outputs.append(new_output("error", ename=ename or "Failed", evalue=evalue,
                                                traceback=[f"{ename}: {evalue}"]))
            elif i < first_answer and i < len(ref):
                c.outputs = [nbformat.from_dict(o) for o in ref[i]]
            else:
                c.outputs = []
        return nb

    # ------------------------------------------------------------------ the batch
    def students(self) -> list[str]:
        base = self.root / "submitted"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / self.assignment).is_dir())

    def grade_all(self, only: list[str] | None = None) -> list[Outcome]:
        url = db_url(self.root, self.env)
        if self.scheduler and is_sqlite(url):
            raise GraderError("a SQLite gradebook cannot be shared by a cluster's workers (its lock works on "
                              "one machine only): set LLMCOURSE_DB_URL to a PostgreSQL database, or grade "
                              "without SCHEDULER= on this machine")
        check_gradebook(url, self.assignment)
        with file_lock(self.state / "grading.lock", 0,
                       f"another grading run of {self.assignment} is in progress in {self.root}", GraderError):
            return self._grade_all(only)

    def _grade_all(self, only: list[str] | None) -> list[Outcome]:
        students = [s for s in self.students() if not only or s in only]
        outcomes: list[Outcome] = []
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(students), desc=f"grading {self.assignment}", unit="submission")
        dask = _DaskSession(self.scheduler, min(self.workers, len(students))) \
            if self.engine == "dask" and students else None
        try:
            run = self._run_threads(students) if dask is None else self._run_dask(dask, students)
            for outcome in run:
                outcomes.append(outcome)
                if bar:
                    bar.update(1)
        finally:
            self.writer.close()
            if dask is not None:
                dask.close()
            if bar:
                bar.close()
        outcomes.sort(key=lambda o: o.student)
        self.write_reports(outcomes)
        return outcomes

    def references(self) -> dict:
        return {nb.name: self.reference(nb) for nb in self.notebooks}

    def _run_threads(self, students):
        references = self.references()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self._safe_grade, s, references) for s in students]
            for fut in as_completed(futures):
                yield fut.result()

    def _run_dask(self, dask: "_DaskSession", students):
        """Two Dask tasks per submission: the sandboxed run, then (given the reference) decide + record.

        The reference solution runs here while the cluster starts and the first submissions
        run; the finish tasks go ahead of runs still queued.
        """
        from dask.distributed import as_completed as dask_completed
        batch = secrets.token_hex(8)
        args = (batch, str(self.root), self.assignment, self.env, self.limits)
        ref_box: dict = {}

        def compute_references():
            try:
                ref_box["value"] = self.references()
            except BaseException as exc:
                ref_box["error"] = exc

        ref_thread = threading.Thread(target=compute_references, daemon=True)
        ref_thread.start()
        client = dask.client()
        runs = {s: client.submit(_execute_task, *args, s, key=f"run-{self.assignment}-{s}-{batch}", pure=False)
                for s in students}
        ref_thread.join()
        if "error" in ref_box:
            client.cancel(list(runs.values()))
            raise ref_box["error"]
        # a list, not the dict: a scattered dict's keys become cluster-wide data keys
        [refs] = client.scatter([ref_box["value"]], broadcast=True, hash=False)
        futures = {client.submit(_finish_task, *args, runs[s], refs, key=f"finish-{self.assignment}-{s}-{batch}",
                                 pure=False, priority=10): s for s in students}
        runs.clear()   # each run's result is released once its finish task has it
        for fut in dask_completed(futures):
            try:
                yield fut.result()
            except Exception as exc:   # a worker lost while grading it (KilledWorker), ...
                yield _error_outcome(futures[fut], self.assignment, exc)

    def _safe_grade(self, student, references) -> Outcome:
        try:
            return self.grade_one(student, references)
        except Exception as exc:  # one broken submission never stops the batch
            return _error_outcome(student, self.assignment, exc)

    # ------------------------------------------------------------------ reports
    def write_reports(self, outcomes: list[Outcome]) -> Path:
        r = self.reports
        r.mkdir(parents=True, exist_ok=True)
        mode = getattr(self, "mode", None)     # (reports written for a test without a grader have none)
        if mode is not None:
            (r / "grading_mode.txt").write_text(mode.describe() + "\n")
        with open(r / "lms_grades.csv", "w", newline="") as fh:
            w = SafeWriter(fh)
            w.writerow(["student_id", "assignment", "autograded_points", "autograded_max", "flagged"])
            for o in outcomes:
                w.writerow([o.student, o.assignment, o.score, o.max_score, "yes" if o.flags else ""])
        with open(r / "flagged.csv", "w", newline="") as fh:
            w = SafeWriter(fh)
            w.writerow(["student_id", "reason"])
            for o in outcomes:
                for f in o.flags:
                    w.writerow([o.student, f])
        with open(r / "timing.csv", "w", newline="") as fh:
            w = SafeWriter(fh)
            w.writerow(["student_id", "seconds", "resumed"])
            for o in outcomes:
                w.writerow([o.student, o.seconds, o.resumed])
        cell_ids = sorted({g for o in outcomes for g in o.cells})
        fails = {g: sum(1 for o in outcomes if g in o.cells and not o.cells[g]["passed"]) for g in cell_ids}
        with open(r / "test_cells.csv", "w", newline="") as fh:
            w = SafeWriter(fh)
            w.writerow(["test_cell", "students_failing", "students_graded"])
            for g in cell_ids:
                w.writerow([g, fails[g], sum(1 for o in outcomes if g in o.cells)])
        checks: dict[str, int] = {}
        for o in outcomes:
            for n in o.failed_checks:
                checks[n] = checks.get(n, 0) + 1
        with open(r / "failed_checks.csv", "w", newline="") as fh:
            w = SafeWriter(fh)
            w.writerow(["check", "students_failing_first_here"])
            for n, k in sorted(checks.items(), key=lambda kv: -kv[1]):
                w.writerow([n, k])
        if cell_ids and outcomes:
            try:
                import matplotlib
                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
                from ..student.plotting import use_course_style
                use_course_style()
                fig, ax = plt.subplots(figsize=(7, 0.35 * len(cell_ids) + 1.5))
                share = [100 * fails[g] / max(1, len(outcomes)) for g in cell_ids]
                ax.barh(cell_ids, share)
                ax.set_xlim(0, 100)
                ax.set_xlabel("% of the class failing this test cell")
                ax.set_title(f"{self.assignment}: where the class loses points ({len(outcomes)} submissions)")
                ax.invert_yaxis()
                fig.savefig(r / "test_cells.png", bbox_inches="tight")
                plt.close(fig)
            except Exception:
                pass
        return r


class _DaskSession:
    """A Dask client: to the scheduler at `scheduler`, or to a LocalCluster started in the background."""

    def __init__(self, scheduler: str | None, n_workers: int):
        self.scheduler = scheduler
        self._cluster = self._client = self._error = None
        self._thread = None
        if not scheduler:
            self._thread = threading.Thread(target=self._start_local, args=(max(1, n_workers),), daemon=True)
            self._thread.start()

    def _start_local(self, n_workers: int) -> None:
        from distributed import LocalCluster, Security
        try:
            # Worker processes on loopback, one task at a time each; no dashboard; Dask's
            # memory manager off (the sandbox's cgroup limits each submission's memory).
            # TLS with a throw-away CA: the workers run as root and unpickle what they are
            # sent, so no other local user may talk to them.
            self._cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                         host="127.0.0.1", dashboard_address=None, memory_limit=0,
                                         silence_logs=logging.ERROR, security=Security.temporary())
        except BaseException as exc:
            self._error = exc

    def client(self):
        from dask.distributed import Client
        if self._client is None:
            if self._thread is not None:
                self._thread.join()
                if self._error is not None:
                    raise GraderError(f"could not start a local Dask cluster: {self._error}") from self._error
                self._client = Client(self._cluster)
            else:
                try:
                    self._client = Client(self.scheduler, timeout="30s")
                except OSError as exc:
                    raise GraderError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}") from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._thread is not None:
            self._thread.join()
        if self._cluster is not None:
            self._cluster.close()


# One Grader per worker process and batch, so that each worker keeps its own long-lived
# gradebook writer between the tasks of a batch. A long-lived worker (a department's
# cluster) keeps the graders of the two batches it used last; older ones that no task is
# using are closed with their writers.
_WORKER_GRADERS: "OrderedDict[str, list]" = OrderedDict()   # batch -> [grader, tasks using it]
_WORKER_GRADERS_KEPT = 2
_WORKER_LOCK = threading.Lock()


@contextmanager
def _worker_grader(batch: str, root: str, assignment: str, env: dict, limits):
    with _WORKER_LOCK:
        entry = _WORKER_GRADERS.get(batch)
        if entry is None:
            entry = _WORKER_GRADERS[batch] = [Grader(Path(root), assignment, workers=1, limits=limits, env=env,
                                                     progress=False, engine="threads"), 0]
        _WORKER_GRADERS.move_to_end(batch)
        entry[1] += 1
    try:
        yield entry[0]
    finally:
        idle = []
        with _WORKER_LOCK:
            entry[1] -= 1
            for key in list(_WORKER_GRADERS)[:-_WORKER_GRADERS_KEPT]:
                if _WORKER_GRADERS[key][1] == 0:
                    idle.append(_WORKER_GRADERS.pop(key)[0])
        for grader in idle:
            grader.writer.close()


# The tasks Dask workers run (module level: workers import them by name). Errors become a
# flagged Outcome, never an exception: one broken submission never stops the batch.

def _execute_task(batch: str, root: str, assignment: str, env: dict, limits, student: str):
    try:
        with _worker_grader(batch, root, assignment, env, limits) as grader:
            return grader.execute(student)
    except Exception as exc:
        return _error_outcome(student, assignment, exc)


def _finish_task(batch: str, root: str, assignment: str, env: dict, limits, executed, references: dict) -> Outcome:
    if isinstance(executed, Outcome):   # unchanged since the last run, or an error
        return executed
    try:
        with _worker_grader(batch, root, assignment, env, limits) as grader:
            return grader.finish(executed, references)
    except Exception as exc:
        return _error_outcome(executed.outcome.student, assignment, exc)


def _error_outcome(student: str, assignment: str, exc: BaseException) -> Outcome:
    out = Outcome(student=student, assignment=assignment)
    out.flags.append(f"grader error: {type(exc).__name__}: {str(exc)[:500]}")
    return out
