"""How a batch's submissions are spread: threads in this process, or Dask distributed workers.

``threads``: ``grade_one`` per submission in a thread pool. ``dask`` (the default): two
tasks per submission, the sandboxed run and then (given the reference) decide + record, on a
LocalCluster of worker processes on this machine or any running scheduler whose workers see
the same course folder and gradebook. The reference solution runs in this process while the
cluster starts and the first submissions run. Errors become a flagged Outcome, never an
exception: one broken submission never stops the batch.
"""
from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from .results import FlagCode, GraderError, Outcome

ENGINES = ("dask", "threads")


def error_outcome(student: str, assignment: str, exc: BaseException) -> Outcome:
    out = Outcome(student=student, assignment=assignment)
    out.flag(FlagCode.GRADER_ERROR, f"grader error: {type(exc).__name__}: {str(exc)[:500]}")
    return out


# ---------------------------------------------------------------- threads
def run_threads(grader, students: list[str]):
    references = grader.references()

    def safe(student):
        try:
            return grader.pipeline.grade_one(student, references)
        except Exception as exc:
            return error_outcome(student, grader.assignment, exc)

    with ThreadPoolExecutor(max_workers=grader.workers) as pool:
        futures = [pool.submit(safe, s) for s in students]
        for fut in as_completed(futures):
            yield fut.result()


# ---------------------------------------------------------------- dask
class DaskSession:
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


def run_dask(grader, dask: DaskSession, students: list[str]):
    """Two Dask tasks per submission: the sandboxed run, then (given the reference) decide + record.

    The reference solution runs here while the cluster starts and the first submissions
    run; the finish tasks go ahead of runs still queued.
    """
    from dask.distributed import as_completed as dask_completed
    batch = secrets.token_hex(8)
    a = grader.assignment
    args = (batch, str(grader.root), a, grader.env, grader.limits)
    ref_box: dict = {}

    def compute_references():
        try:
            ref_box["value"] = grader.references()
        except BaseException as exc:
            ref_box["error"] = exc

    ref_thread = threading.Thread(target=compute_references, daemon=True)
    ref_thread.start()
    client = dask.client()
    runs = {s: client.submit(execute_task, *args, s, key=f"run-{a}-{s}-{batch}", pure=False) for s in students}
    ref_thread.join()
    if "error" in ref_box:
        client.cancel(list(runs.values()))
        raise ref_box["error"]
    # a list, not the dict: a scattered dict's keys become cluster-wide data keys
    [refs] = client.scatter([ref_box["value"]], broadcast=True, hash=False)
    futures = {client.submit(finish_task, *args, runs[s], refs, key=f"finish-{a}-{s}-{batch}",
                             pure=False, priority=10): s for s in students}
    runs.clear()   # each run's result is released once its finish task has it
    for fut in dask_completed(futures):
        try:
            yield fut.result()
        except Exception as exc:   # a worker lost while grading it (KilledWorker), ...
            yield error_outcome(futures[fut], a, exc)


# One Grader per worker process and batch, so that each worker keeps its own long-lived
# gradebook writer between the tasks of a batch. A long-lived worker (a department's
# cluster) keeps the graders of the two batches it used last; older ones that no task is
# using are closed with their writers.
_WORKER_GRADERS: "OrderedDict[str, list]" = OrderedDict()   # batch -> [grader, tasks using it]
_WORKER_GRADERS_KEPT = 2
_WORKER_LOCK = threading.Lock()


@contextmanager
def _worker_grader(batch: str, root: str, assignment: str, env: dict, limits):
    from .grader import Grader
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


# The tasks Dask workers run (module level: workers import them by name).
def execute_task(batch: str, root: str, assignment: str, env: dict, limits, student: str):
    try:
        with _worker_grader(batch, root, assignment, env, limits) as grader:
            return grader.pipeline.execute(student)
    except Exception as exc:
        return error_outcome(student, assignment, exc)


def finish_task(batch: str, root: str, assignment: str, env: dict, limits, executed, references: dict) -> Outcome:
    if isinstance(executed, Outcome):   # unchanged since the last run, or an error
        return executed
    try:
        with _worker_grader(batch, root, assignment, env, limits) as grader:
            return grader.pipeline.finish(executed, references)
    except Exception as exc:
        return error_outcome(executed.outcome.student, assignment, exc)
