"""Run the mutants of one notebook: the notebook once, each mutant in a fork of its state.

The runner is one process (started by ``mutation.py`` with a clean environment: one BLAS /
OpenMP thread, ``PYTHONHASHSEED=0``, matplotlib's Agg backend). It executes the notebook's
code cells in an in-process IPython shell, the way a kernel would, at PROFILE=smoke,
DEVICE=cpu. Just before a solution cell that has mutants it forks one child per mutant
(``jobs`` at a time). A child starts from exactly the state the notebook had at that point
(same objects, same random-number generator states), runs the mutated cell and then the
later cells that can observe it, and stops at the first graded test cell that fails. The
parent then runs the original cell and goes on. Nothing is restored by re-running cells
and no kernel is started per mutant, so one mutant costs only the cells it needs.

Which later cells can observe a mutated cell ("observers" mode, the default) is found
from the names each cell binds and reads (Python's ``ast``):

- a cell that reads a name bound by the mutated cell, or by an earlier observer, is an
  observer; so is a cell that calls a function (defined anywhere) whose body reads one;
- an observer may change in place any object it reads, so the data names it reads count
  as changed too (names bound by def, class and import do not);
- a skipped cell would leave the global random generators (Python, NumPy, torch) in a
  different state for the cells after it: every cell whose run changes them (measured on
  the reference run) is run as well;
- a cell that is run needs the names it reads: a skipped cell that binds one of them
  (after the mutated cell) is run too.

``mode="all"`` runs every later cell instead; the docs compare the two on real notebooks.

A mutant is killed when a graded test cell fails (an error output, as nbgrader scores it)
or when it runs past its time limit (reason "timeout"); a child that dies without a result
(a crash of the interpreter) is killed with reason "crash". An error in a cell that is not
graded does not kill by itself: nbgrader executes past it too (``allow_errors``), so only a
failing test cell costs the student points. Such errors are listed with the survivor.
"""
from __future__ import annotations

import ast
import builtins
import ctypes
import hashlib
import json
import os
import resource
import select
import signal
import sys
import time
from dataclasses import dataclass, field

BUILTINS = set(dir(builtins)) | {"get_ipython", "display", "__name__"}


# ---------------------------------------------------------------------------- name analysis
@dataclass
class CellNames:
    free: set = field(default_factory=set)      # names read before the cell binds them
    stores: set = field(default_factory=set)    # names the cell binds at top level
    code: set = field(default_factory=set)      # names bound by def / class / import
    late: dict = field(default_factory=dict)    # function or class name -> names its body reads
    parsed: bool = True


def _scope_free(node) -> set[str]:
    """Names a function / lambda / class / comprehension body reads that it does not bind."""
    loads, local = set(), set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = node.args
        local |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
        local |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    body = node.body if isinstance(node.body, list) else [node.body]
    for stmt in body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name):
                (loads if isinstance(n.ctx, ast.Load) else local).add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                local.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                local |= {(al.asname or al.name).split(".")[0] for al in n.names}
            elif isinstance(n, ast.arg):
                local.add(n.arg)
    return loads - local


def _top_stores(stmt) -> set[str]:
    out = set()
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(al.asname or al.name).split(".")[0] for al in stmt.names if al.name != "*"}
    stack = [stmt]
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
            continue
        if isinstance(n, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            out |= {(al.asname or al.name).split(".")[0] for al in n.names}
        stack.extend(ast.iter_child_nodes(n))
    return out


def _loads(stmt) -> set[str]:
    out = set()
    stack = [stmt]
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                          ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            out |= _scope_free(n) if not isinstance(n, (ast.ListComp, ast.SetComp, ast.DictComp,
                                                        ast.GeneratorExp)) else _comp_free(n)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for d in n.args.defaults + [d for d in n.args.kw_defaults if d] + n.decorator_list:
                    out |= _loads(d)
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            out.add(n.id)
        stack.extend(ast.iter_child_nodes(n))
    return out


def _comp_free(node) -> set[str]:
    targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loads - targets


def _seq_free(stmts, bound: set) -> tuple[set, set]:
    """Names read before being bound by a statement list (flow-sensitive, roughly)."""
    free = set()
    for stmt in stmts:
        f, bound = _stmt_free(stmt, bound)
        free |= f
    return free, bound


def _stmt_free(stmt, bound: set) -> tuple[set, set]:
    after = bound | _top_stores(stmt)
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        free = _loads(stmt.iter) - bound
        inner = bound | {n.id for n in ast.walk(stmt.target) if isinstance(n, ast.Name)}
        f1, inner = _seq_free(stmt.body, inner)
        f2, _ = _seq_free(stmt.orelse, inner)
        return free | f1 | f2, after
    if isinstance(stmt, (ast.While, ast.If)):
        free = _loads(stmt.test) - bound
        f1, _ = _seq_free(stmt.body, set(bound))
        f2, _ = _seq_free(stmt.orelse, set(bound))
        return free | f1 | f2, after
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        free = set()
        inner = set(bound)
        for item in stmt.items:
            free |= _loads(item.context_expr) - inner
            if item.optional_vars is not None:
                inner |= {n.id for n in ast.walk(item.optional_vars) if isinstance(n, ast.Name)}
        f1, _ = _seq_free(stmt.body, inner)
        return free | f1, after
    if isinstance(stmt, ast.Try):
        f1, inner = _seq_free(stmt.body, set(bound))
        free = f1
        for h in stmt.handlers:
            hb = set(bound) | ({h.name} if h.name else set())
            free |= (_loads(h.type) - bound if h.type is not None else set()) | _seq_free(h.body, hb)[0]
        free |= _seq_free(stmt.orelse, inner)[0] | _seq_free(stmt.finalbody, set(bound))[0]
        return free, after
    return _loads(stmt) - bound, after


def analyse_cell(source: str) -> CellNames:
    try:
        tree = ast.parse(source)
    except SyntaxError:      # magics or shell escapes: treat as reading and binding anything
        return CellNames(parsed=False)
    names = CellNames()
    for stmt in tree.body:
        free, _ = _stmt_free(stmt, set(names.stores))
        names.free |= free
        st = _top_stores(stmt)
        names.stores |= st
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.code.add(stmt.name)
            names.late[stmt.name] = _scope_free(stmt) if not isinstance(stmt, ast.ClassDef) else _loads(stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.code |= st
    names.free -= BUILTINS
    return names


def cells_to_run(names: list[CellNames | None], s: int, rng_cells: set[int], mode: str = "observers") -> list[int]:
    """Indices of the code cells after cell `s` that a mutant of `s` must re-run (in order)."""
    later = [j for j in range(s + 1, len(names)) if names[j] is not None]
    if mode == "all":
        return later
    if any(not names[j].parsed for j in later + [s]):
        return later
    code_names = set().union(*(n.code for n in names if n is not None))
    tainted = set(names[s].stores)
    changed = True
    while changed:                         # functions defined anywhere that read a changed name
        changed = False
        for n in names:
            if n is None:
                continue
            for fname, body in n.late.items():
                if fname not in tainted and body & tainted:
                    tainted.add(fname)
                    changed = True
    run = set()
    for j in later:
        n = names[j]
        if n.free & tainted:
            run.add(j)
            tainted |= n.stores | (n.free - code_names)
            for fname in n.late:
                tainted.add(fname)
    run |= {j for j in later if j in rng_cells}
    # every name a run cell reads must be current: run the skipped cells that bind it
    pending = sorted(run)
    while pending:
        k = pending.pop()
        for name in names[k].free:
            for j in reversed(range(s + 1, k)):
                if names[j] is not None and name in names[j].stores:
                    if j not in run:
                        run.add(j)
                        pending.append(j)
                    break
    return sorted(run)


# ---------------------------------------------------------------------------- execution
def _rng_fingerprint() -> str:
    h = hashlib.sha1()
    import random
    h.update(repr(random.getstate()).encode())
    np = sys.modules.get("numpy")
    if np is not None:
        st = np.random.get_state()
        h.update(st[1].tobytes() + repr(st[2:]).encode())
    torch = sys.modules.get("torch")
    if torch is not None:
        h.update(torch.get_rng_state().numpy().tobytes())
    return h.hexdigest()


def _describe(exc) -> str:
    if exc is None:
        return ""
    text = f"{type(exc).__name__}: {exc}"
    first = text.strip().split("\n")[0]
    return first[:300]


class Runner:
    """Executes one notebook and its mutants. ``emit`` receives one dict per event."""

    def __init__(self, job: dict, emit):
        self.job = job
        self.emit = emit
        self.cells: list[str | None] = job["cells"]            # source per cell (None: not code)
        self.kinds: list[str] = job["kinds"]                   # code | solution | test | markdown
        self.grade_ids: list[str | None] = job["grade_ids"]
        self.mutants: dict[int, list[dict]] = {}
        for m in job["mutants"]:
            self.mutants.setdefault(m["cell"], []).append(m)
        self.jobs = max(1, int(job.get("jobs", 2)))
        self.mode = job.get("mode", "observers")
        self.factor = float(job.get("timeout_factor", 5.0))
        self.grace = float(job.get("timeout_grace", 20.0))
        self.memory = int(job.get("memory_bytes", 0))
        self.names = [analyse_cell(src) if src is not None else None for src in self.cells]
        self.durations: dict[int, float] = {}
        self.rng_cells: set[int] = set()

    # -- the shell
    def start_shell(self):
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
        c = Config()
        c.HistoryManager.enabled = False
        c.InteractiveShell.colors = "nocolor"
        c.InteractiveShell.xmode = "Plain"
        self.shell = InteractiveShell.instance(config=c)

    def run_cell(self, source: str):
        result = self.shell.run_cell(source, store_history=False)
        exc = result.error_in_exec or result.error_before_exec
        return exc is None, exc

    # -- one pass
    def execute(self) -> None:
        os.chdir(self.job["cwd"])
        self.start_shell()
        t0 = time.monotonic()
        first = min(self.mutants) if self.mutants else None
        last = max(self.mutants) if self.mutants else -1
        code_cells = [i for i, src in enumerate(self.cells) if src is not None]
        for i in code_cells:
            if i == first:
                self.probe(i)
            if i in self.mutants:
                self.run_mutants(i)
            if i >= last:
                break
            t = time.monotonic()
            ok, exc = self.run_cell(self.cells[i])
            if not ok and self.kinds[i] in ("test", "solution"):
                self.emit({"event": "error", "message": f"the reference fails in cell {i} "
                           f"({self.grade_ids[i]}): {_describe(exc)}"})
                return
            self.durations.setdefault(i, time.monotonic() - t)
        self.emit({"event": "done", "wall_s": round(time.monotonic() - t0, 2)})

    def probe(self, start: int) -> None:
        """Run the rest of the notebook once in a fork: durations, RNG use, reference verdicts."""
        def body():
            out = {}
            for j in range(start, len(self.cells)):
                if self.cells[j] is None:
                    continue
                before = _rng_fingerprint()
                t = time.monotonic()
                ok, exc = self.run_cell(self.cells[j])
                out[j] = {"s": round(time.monotonic() - t, 4), "ok": ok, "rng": _rng_fingerprint() != before,
                          "error": _describe(exc)}
            return out
        result = self.fork_and_wait(body, timeout=3600)
        if result is None or "value" not in result:
            raise RuntimeError(f"the reference run of the notebook died: {result}")
        table = {int(k): v for k, v in result["value"].items()}
        bad = [(j, v["error"]) for j, v in table.items() if not v["ok"] and self.kinds[j] in ("test", "solution")]
        if bad:
            j, err = bad[0]
            raise RuntimeError(f"the reference fails in cell {j} ({self.grade_ids[j]}): {err}")
        self.durations = {j: v["s"] for j, v in table.items()}
        self.rng_cells = {j for j, v in table.items() if v["rng"]}
        self.emit({"event": "probe", "cells": {str(j): v["s"] for j, v in table.items()},
                   "rng_cells": sorted(self.rng_cells)})

    # -- forking
    def _child_setup(self, wfd: int) -> None:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)          # PR_SET_PDEATHSIG: die with the runner
        except OSError:
            pass
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        if self.memory:   # address space: what the state already maps, plus a margin
            try:
                with open("/proc/self/status") as fh:
                    size = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
                resource.setrlimit(resource.RLIMIT_AS, (size + self.memory, size + self.memory))
            except (OSError, StopIteration, ValueError):
                pass

    def spawn(self, body, running: dict, timeout: float, tag) -> None:
        """Fork a child that runs body() and writes its JSON result into a pipe."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            self._child_setup(w)
            try:
                payload = {"value": body()}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                payload = {"exception": _describe(exc)}
            data = json.dumps(payload).encode()
            while data:
                data = data[os.write(w, data):]
            os._exit(0)
        os.close(w)
        os.set_blocking(r, False)
        running[pid] = [r, time.monotonic() + timeout, tag, bytearray()]

    @staticmethod
    def _drain(entry) -> None:
        while True:
            try:
                chunk = os.read(entry[0], 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            entry[3] += chunk

    def wait_any(self, running: dict, on_done) -> None:
        """Block until at least one child has finished or passed its deadline."""
        while True:
            select.select([e[0] for e in running.values()], [], [], 0.05)
            now = time.monotonic()
            finished = []
            for pid, entry in list(running.items()):
                self._drain(entry)
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    self._drain(entry)
                    try:
                        payload = json.loads(bytes(entry[3]).decode() or "null")
                    except ValueError:
                        payload = None
                    reason = None if payload is not None else "crash"
                elif now > entry[1]:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    payload, reason = None, "timeout"
                else:
                    continue
                os.close(entry[0])
                del running[pid]
                finished.append(pid)
                on_done(pid, entry[2], payload, reason)
            if finished:
                return

    def fork_and_wait(self, body, timeout: float):
        running, box = {}, {}
        self.spawn(body, running, timeout, None)
        self.wait_any(running, lambda pid, tag, payload, reason: box.update(payload=payload, reason=reason))
        return box["payload"] if box["payload"] is not None else {"reason": box["reason"]}

    def run_mutants(self, s: int) -> None:
        run = cells_to_run(self.names, s, self.rng_cells, self.mode)
        budget = self.durations.get(s, 0.0) + sum(self.durations.get(j, 0.0) for j in run)
        timeout = self.grace + self.factor * budget
        tests_run = [self.grade_ids[j] for j in run if self.kinds[j] == "test"]
        queue = list(self.mutants[s])
        running: dict = {}

        def body_for(m):
            def body():
                errors = []
                ok, exc = self.run_cell(m["source"])
                if not ok:
                    errors.append(f"cell {s}: {_describe(exc)}")
                ran = []
                for j in run:
                    ok, exc = self.run_cell(self.cells[j])
                    if self.kinds[j] == "test":
                        ran.append(self.grade_ids[j])
                        if not ok:
                            return {"status": "killed", "reason": "test", "by": self.grade_ids[j],
                                    "error": _describe(exc), "ran": ran}
                    elif not ok:
                        errors.append(f"cell {j}: {_describe(exc)}")
                return {"status": "survived", "ran": ran, "errors": errors[:5]}
            return body

        def done(pid, m, payload, reason):
            if reason == "timeout":
                res = {"status": "killed", "reason": "timeout", "by": None, "error": f"over {timeout:.0f} s"}
            elif reason == "crash" or payload is None:
                res = {"status": "killed", "reason": "crash", "by": None, "error": "the process died"}
            elif "exception" in payload:
                res = {"status": "killed", "reason": "crash", "by": None, "error": payload["exception"]}
            else:
                res = payload["value"]
            res.update({"event": "result", "id": m["id"], "cells_run": len(run), "tests_planned": tests_run})
            self.emit(res)

        while queue or running:
            while queue and len(running) < self.jobs:
                m = queue.pop(0)
                self.spawn(body_for(m), running, timeout, m)
            self.wait_any(running, done)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(open(argv[0], encoding="utf-8").read())
    out_fd = int(argv[1])
    out = os.fdopen(out_fd, "w", buffering=1)
    # the notebook prints; keep our own channel clean
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)

    def emit(event: dict) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    try:
        Runner(job, emit).execute()
    except Exception as exc:  # noqa: BLE001 - reported to the driver
        emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
