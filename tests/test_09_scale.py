"""9. Scale: the sandboxed grader on a Dask cluster, with a PostgreSQL gradebook.

A PostgreSQL server from Debian's package (llmcourse.authoring.devdb) is started for this module on a
loopback port, as the `postgres` user when the tests run as root, and stopped afterwards.
A Dask scheduler with three worker processes stands in for a department's cluster: the
grader is given only its address, as it would be in production.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_sandbox
from nbutil import ROOT

A = "01_chain_rule"
NB = "chain_rule.ipynb"
STUDENTS = {"c1": "correct", "c2": "correct", "c3": "correct", "blank": "blank", "p1": "partial", "p2": "partial"}


@pytest.fixture(scope="module")
def pg():
    require_sandbox()
    from llmcourse.authoring.devdb import PostgresServer, PostgresUnavailable
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL unavailable under CI: {exc}")
        pytest.skip(str(exc))
    yield server
    server.stop()


@dataclass
class ClusterRun:
    root: Path
    env: dict
    url: str
    proc: subprocess.CompletedProcess
    seconds: float


def _cli(args, cwd, env, timeout=900):
    env = dict(env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "llmcourse.cli", *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


@pytest.fixture(scope="module")
def cluster_run(pg, tmp_path_factory) -> ClusterRun:
    """Six submissions graded by `llmcourse grade --scheduler <address>` into PostgreSQL."""
    import logging

    from dask.distributed import LocalCluster

    from llmcourse.authoring.sampleclass import build_sample, make_scratch_course
    from llmcourse.grading.course import generate_release
    course = make_scratch_course(tmp_path_factory.mktemp("scale") / "course", ROOT, [A])
    url = pg.create_database("gradebook")
    course.env["LLMCOURSE_DB_URL"] = url
    generate_release(course.root, A, course.env)
    src = ROOT / "source" / A / NB
    for student, kind in STUDENTS.items():
        build_sample(course.root, A, src, student, kind)
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit=0, silence_logs=logging.ERROR) as cluster:
        t0 = time.perf_counter()
        proc = _cli(["grade", "--assignment", A, "--scheduler", cluster.scheduler_address],
                    cwd=course.root, env=course.env)
        secs = time.perf_counter() - t0
    return ClusterRun(root=course.root, env=course.env, url=url, proc=proc, seconds=secs)


def _submissions(url: str) -> dict[str, float]:
    from nbgrader.api import Gradebook
    with Gradebook(url) as gb:
        return {s.student_id: s.score for s in gb.assignment_submissions(A)}


def test_cluster_grades_into_postgresql(cluster_run, graded_course):
    """Same per-cell grades as the SQLite class fixture; one row per student; no SQLite file."""
    from llmcourse.grading.course import cell_scores
    run = cluster_run
    assert run.proc.returncode == 0, run.proc.stdout[-3000:] + run.proc.stderr[-3000:]
    assert not (run.root / "gradebook.db").exists(), "grades went to SQLite, not PostgreSQL"
    scores = cell_scores(run.url, A)
    assert sorted(scores) == sorted(STUDENTS), "a submission is missing from the PostgreSQL gradebook"
    if A not in graded_course.scores:
        pytest.skip(f"{A} not in this run's class fixture")
    ref = graded_course.scores[A]
    same_as = {"c1": "correct", "c2": "correct", "c3": "correct", "blank": "blank", "p1": "partial",
               "p2": "partial"}
    for student, like in same_as.items():
        got = {g: (v["score"], v["max"]) for g, v in scores[student].items() if v["kind"] == "code"}
        want = {g: (v["score"], v["max"]) for g, v in ref[like].items() if v["kind"] == "code"}
        assert got == want, f"{student} graded on the cluster differs from {like} graded locally"
    totals = _submissions(run.url)
    assert totals["c1"] == totals["c2"] == totals["c3"] > totals["p1"] == totals["p2"] > totals["blank"] == 0


def test_cluster_run_reports(cluster_run):
    report = (cluster_run.root / "reports" / A / "lms_grades.csv").read_text().splitlines()
    assert len(report) == 1 + len(STUDENTS)
    assert f"{A}: graded {len(STUDENTS)} submission(s)" in cluster_run.proc.stdout


def _stage_copies(root: Path, template: Path, names: list[str]) -> str:
    """Copies of one decided submission, staged for nbgrader; returns the staging folder (relative)."""
    base = root / ".grader" / A / "concurrent"
    shutil.rmtree(base, ignore_errors=True)
    for n in names:
        shutil.copytree(template, base / n / A)
    return os.path.relpath(base, root)


@pytest.mark.parametrize("db", ["postgresql", "sqlite"])
def test_concurrent_writers_lose_nothing(cluster_run, pg, db):
    """Four writer processes record 24 submissions at once: every one lands, complete and right.

    Each writer reports when its own write started and ended (lock held): on PostgreSQL some
    writes overlap (they really ran at once); on SQLite none do (the lock serialises them)."""
    from llmcourse.grading.course import cell_scores, graded_cells, run_nbgrader
    from llmcourse.grading.gradebook import Writer
    root = cluster_run.root
    env = dict(cluster_run.env)
    if db == "sqlite":
        env.pop("LLMCOURSE_DB_URL")
        url = f"sqlite:///{root / 'gradebook.db'}"
        run_nbgrader(["generate_assignment", A, "--force"], cwd=root, env=env)   # the assignment, in SQLite
    else:
        url = cluster_run.url
    names = [f"w{i:02d}" for i in range(24)]
    rel = _stage_copies(root, root / ".grader" / A / "staged" / "c1" / A, names)
    writers = [Writer(root, env) for _ in range(4)]
    barrier = threading.Barrier(len(writers))
    spans, errors = [], []

    def work(w: Writer, mine: list[str]):
        w.warm()
        barrier.wait()
        for n in mine:
            try:
                spans.append(w.record(A, n, rel))
            except Exception as exc:
                errors.append(f"{n}: {exc}")

    threads = [threading.Thread(target=work, args=(w, names[i::len(writers)])) for i, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    for w in writers:
        w.close()
    assert not errors, errors[:3]
    scores = cell_scores(url, A)
    n_cells = len(graded_cells(ROOT / "source" / A / NB))
    for n in names:
        assert n in scores, f"{n} lost"
        assert len(scores[n]) == n_cells, f"{n}: {len(scores[n])} of {n_cells} grades recorded"
    full = sum(v["max"] for v in scores["w00"].values() if v["kind"] == "code")
    assert all(sum(v["score"] for v in scores[n].values() if v["kind"] == "code") == full for n in names)
    subs = _submissions(url)
    assert set(names) <= set(subs) and len([s for s in subs if s in names]) == len(names)
    spans.sort()
    overlaps = sum(b0 < a1 for (a0, a1), (b0, b1) in zip(spans, spans[1:], strict=False))
    if db == "postgresql":
        assert overlaps > 0, "no two PostgreSQL writes ran at the same time"
    else:
        assert overlaps == 0, f"{overlaps} SQLite writes ran while another held the lock"


def test_unreachable_gradebook_is_a_clear_error(cluster_run):
    from llmcourse.authoring.devdb import free_port
    env = dict(cluster_run.env, LLMCOURSE_DB_URL=f"postgresql://grader:s3cret@127.0.0.1:{free_port()}/gb")
    proc = _cli(["grade", "--assignment", A, "--engine", "threads"], cwd=cluster_run.root, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot open the gradebook postgresql://grader:***@127.0.0.1" in proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr


def test_gradebook_without_the_assignment_is_a_clear_error(cluster_run, pg):
    env = dict(cluster_run.env, LLMCOURSE_DB_URL=pg.create_database("empty"))
    proc = _cli(["grade", "--assignment", A, "--engine", "threads"], cwd=cluster_run.root, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"has no assignment '{A}'" in proc.stderr and "make release" in proc.stderr


def test_sqlite_with_a_cluster_is_refused(cluster_run):
    env = dict(cluster_run.env)
    env.pop("LLMCOURSE_DB_URL", None)
    proc = _cli(["grade", "--assignment", A, "--scheduler", "tcp://127.0.0.1:1"], cwd=cluster_run.root, env=env,
                timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "SQLite gradebook cannot be shared" in proc.stderr


def test_second_grading_run_of_the_same_assignment_is_refused(cluster_run):
    lock = cluster_run.root / ".grader" / A / "grading.lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)   # a grading run in progress
        proc = _cli(["grade", "--assignment", A, "--engine", "threads"], cwd=cluster_run.root,
                    env=cluster_run.env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"another grading run of {A} is in progress" in proc.stderr


def test_a_stuck_gradebook_write_fails_that_submission_and_returns(cluster_run):
    """A lock nobody releases (or a stalled database) stops the write after the timeout."""
    from llmcourse.grading.gradebook import GradebookError, Writer
    env = dict(cluster_run.env, LLMCOURSE_GRADEBOOK_TIMEOUT_S="2")
    env.pop("LLMCOURSE_DB_URL", None)   # SQLite: writers take the lock file
    lock = cluster_run.root / ".grader" / "gradebook.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        writer = Writer(cluster_run.root, env)
        t0 = time.monotonic()
        with pytest.raises(GradebookError, match="waited 2 s for the SQLite gradebook lock|took longer than 2 s"):
            writer.record(A, "c1", os.path.join(".grader", A, "staged"))
        writer.close()
    assert time.monotonic() - t0 < 60
