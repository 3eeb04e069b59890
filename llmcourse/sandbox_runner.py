"""Executes one notebook inside the grading sandbox (python -m llmcourse.sandbox_runner).

Reads the notebook JSON from stdin (so it never lies in the submission's folder), runs
every code cell in a fresh kernel, and writes the executed notebook to /sandbox/out.ipynb
after each cell (so a run killed at the wall-time limit still has its finished cells).

Survives what student cells do to their own kernel: a cell past the time limit is
interrupted; if the kernel ignores the interrupt (a cell that swallows KeyboardInterrupt)
or dies (sys.exit in a thread, os._exit, a memory bomb killed by the cgroup, killing
itself), every other process in the sandbox is killed, a fresh kernel is started, the
cells that ran before are replayed, the offending cell is marked with an error, and
grading goes on. Output beyond a per-cell budget is dropped with a note.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_output

OUT = os.environ.get("LLMCOURSE_RUNNER_OUT", "/sandbox/out.ipynb")


class CappedClient(NotebookClient):
    max_cell_output = 256 * 1024

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._used: dict[int, int] = {}

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = self._used.get(cell_index, 0) + size
        self._used[cell_index] = used
        if used > self.max_cell_output:
            if used - size <= self.max_cell_output:
                outs.append(new_output("stream", name="stderr",
                                       text=f"\n[output beyond {self.max_cell_output // 1024} KB dropped by the grader]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)


def _error(cell, ename: str, evalue: str) -> None:
    cell.outputs.append(new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))


def _kill_others() -> None:
    """Inside the sandbox's own PID namespace: kill everything but ourselves and its init."""
    if os.environ.get("LLMCOURSE_IN_SANDBOX") != "1":
        return
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, me):
            try:
                os.kill(int(name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _save(nb) -> None:
    tmp = OUT + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        nbformat.write(nb, fh)
    os.replace(tmp, OUT)


def main() -> int:
    if os.environ.get("LLMCOURSE_RUNNER_DEBUG"):
        import logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    nb = nbformat.reads(sys.stdin.read(), as_version=4)
    cell_timeout = int(os.environ.get("LLMCOURSE_CELL_TIMEOUT", "60"))
    client = CappedClient(nb, kernel_name="python3", timeout=cell_timeout, interrupt_on_timeout=True,
                          raise_on_iopub_timeout=False, allow_errors=True, iopub_timeout=4,
                          startup_timeout=120, record_timing=False,
                          error_on_timeout={"ename": "CellTimeoutError",
                                            "evalue": f"cell ran past the {cell_timeout} s limit and was interrupted",
                                            "traceback": [f"CellTimeoutError: cell ran past the {cell_timeout} s limit"]})
    client.max_cell_output = int(os.environ.get("LLMCOURSE_CELL_OUTPUT_KB", "256")) * 1024
    last_reply: dict = {}
    client.on_cell_executed = lambda cell, cell_index, execute_reply: last_reply.update(reply=execute_reply)
    ran: list[int] = []
    bad: set[int] = set()   # cells that killed or hung the kernel: never replayed

    def run_detached(cell, index):
        """Execute a cell that must not replace the notebook's cell at `index` (nbclient stores it)."""
        keep = nb.cells[index]
        try:
            client.execute_cell(cell, index)
        finally:
            nb.cells[index] = keep

    def fresh_kernel():
        _kill_others()
        try:
            client.kc.stop_channels()
        except Exception:
            pass
        client.km = None
        client.kc = None
        client.create_kernel_manager()
        client.start_new_kernel()
        client.start_new_kernel_client()
        for j in ran:  # replay the cells that ran before (not test cells), quietly
            if j in bad or nb.cells[j].get("metadata", {}).get("nbgrader", {}).get("grade"):
                continue
            replay = nbformat.from_dict(json.loads(json.dumps(nb.cells[j])))
            try:
                run_detached(replay, j)
            except Exception:
                pass

    def timed_out() -> bool:
        reply = last_reply.pop("reply", None) or {}
        return (reply.get("content") or {}).get("ename") == "CellTimeoutError"

    def responsive() -> bool:
        probe = nbformat.v4.new_code_cell("pass")
        saved = client.timeout
        client.timeout = 5
        try:
            run_detached(probe, 0)
            return not timed_out()
        except Exception:
            return False
        finally:
            client.timeout = saved

    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t0 = time.perf_counter()
            try:
                last_reply.clear()
                client.execute_cell(cell, i)
                if timed_out():
                    bad.add(i)
                    _error(cell, "CellTimeoutError", f"the cell ran past the {cell_timeout} s limit and was interrupted")
                    if not responsive():
                        bad.add(i)
                        _error(cell, "KernelRestarted", "the kernel ignored the interrupt; a fresh kernel was "
                                                        "started and the cells before this one were run again")
                        fresh_kernel()
            except DeadKernelError:
                bad.add(i)
                _error(cell, "DeadKernelError", "the kernel died while running this cell; a fresh kernel was "
                                                "started and the cells before this one were run again")
                fresh_kernel()
            except Exception as exc:  # anything else nbclient raises: record, go on
                bad.add(i)
                _error(cell, type(exc).__name__, str(exc)[:500])
                try:
                    fresh_kernel()
                except Exception:
                    pass
            cell.metadata["llmcourse_seconds"] = round(time.perf_counter() - t0, 3)
            ran.append(i)
            _save(nb)
    _save(nb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
