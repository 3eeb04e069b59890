"""Executes one notebook inside the grading sandbox (python -m llmcourse.grading.sandbox_runner).

Protocol with the grader (llmcourse.grading.protocol, which both ends use), over the Unix
socket at LLMCOURSE_CHANNEL (llmcourse.grading.sandbox: this process connects first, then the
grader stops listening):
  in : one line with a hex key, then the notebook JSON, then end of input;
  out: after every code cell, one signed line with the cell's index, its (capped) outputs,
       its run time and the check records the kernel wrote meanwhile; a runner that fails
       sends ``{"fatal": ...}`` the same way.
The key and the connection never leave this process (made non-dumpable before it connects,
so the student's kernel cannot read its memory or file descriptors; the socket is not
inherited by the kernel), and everyone's stdout/stderr is /dev/null: a line the kernel
forges fails the HMAC and is dropped. Nothing is written where the kernel could read it
back except the records file the checks append to.

Survives what student cells do to their own kernel: a cell past the time limit is
interrupted; if the kernel ignores the interrupt (a cell that swallows KeyboardInterrupt)
or dies (os._exit, a memory bomb killed by the cgroup, killing itself), every other
process in the sandbox is killed, a fresh kernel is started, the cells that ran before
(except test cells and the offending ones) are replayed, the offending cell is marked
with an error, and grading goes on. Output beyond a per-cell budget is dropped with a note.
"""
from __future__ import annotations

import copy
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback

# isort: off
from . import fastimport  # noqa: F401  (before nbformat: see its docstring)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import DeadKernelError  # noqa: E402
from nbformat.v4 import new_output  # noqa: E402
# isort: on

from ..settings import setting  # noqa: E402
from . import protocol  # noqa: E402
from .cells import nbgrader_meta  # noqa: E402

WORK = setting("LLMCOURSE_RUNNER_WORK")
RECORDS = os.path.join(WORK, "records.jsonl")
MAX_RECORD_BYTES_PER_CELL = 4 * 1024 * 1024


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
                                       text=f"\n[output beyond {self.max_cell_output // 1024} KB dropped "
                                            f"by the grader]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)


def _error(cell, ename: str, evalue: str) -> None:
    cell.outputs.append(new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))


def _kill_others() -> None:
    """Inside the sandbox's own PID namespace: kill everything but ourselves and its init."""
    if not setting("LLMCOURSE_IN_SANDBOX"):
        return
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, me):
            try:
                os.kill(int(name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _not_dumpable() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:
        pass


def _prepare_workdir() -> None:
    """No records yet (the work folder is a fresh tmpfs; nothing of the submission but its notebook)."""
    try:
        os.remove(RECORDS)
    except OSError:
        pass


def connect() -> socket.socket:
    """The connection to the grader (the first one to the channel socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(setting("LLMCOURSE_CHANNEL"))
    return sock


def read_input(sock: socket.socket) -> tuple[bytes, str]:
    chunks = []
    while True:
        piece = sock.recv(1 << 20)
        if not piece:
            break
        chunks.append(piece)
    return protocol.decode_request(b"".join(chunks))


class Emitter:
    def __init__(self, key: bytes, sock: socket.socket):
        self.key = key
        self.out = sock.makefile("wb", buffering=0)
        self.records_pos = 0

    def new_records(self) -> str:
        try:
            with open(RECORDS, "rb") as fh:
                fh.seek(self.records_pos)
                data = fh.read(MAX_RECORD_BYTES_PER_CELL)
                self.records_pos = fh.tell()
            return data.decode("utf-8", "replace")
        except OSError:
            return ""

    def emit(self, payload: dict) -> None:
        self.out.write(protocol.sign(self.key, payload))


def main() -> int:
    if setting("LLMCOURSE_RUNNER_DEBUG"):
        import logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _not_dumpable()
    sock = connect()
    key, text = read_input(sock)
    emitter = Emitter(key, sock)
    try:
        return run(emitter, nbformat.reads(text, as_version=4))
    except BaseException:
        emitter.emit({"fatal": traceback.format_exc()[-3000:]})
        raise


def run(emitter: Emitter, nb) -> int:
    _prepare_workdir()

    cell_timeout = setting("LLMCOURSE_LIMIT_CELL_TIMEOUT_S")
    client = CappedClient(nb, kernel_name="python3", timeout=cell_timeout, interrupt_on_timeout=True,
                          raise_on_iopub_timeout=False, allow_errors=True, iopub_timeout=4,
                          startup_timeout=120, record_timing=False, shutdown_kernel="immediate",
                          error_on_timeout={"ename": "CellTimeoutError",
                                            "evalue": f"cell ran past the {cell_timeout} s limit and was interrupted",
                                            "traceback": [f"CellTimeoutError: cell ran past the {cell_timeout} s "
                                                          f"limit"]},
                          resources={"metadata": {"path": WORK}})
    client.max_cell_output = setting("LLMCOURSE_LIMIT_CELL_OUTPUT_KB") * 1024
    kernel_io = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
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
        client.start_new_kernel(**kernel_io)
        client.start_new_kernel_client()
        for j in ran:  # replay the cells that ran before (not test cells), quietly
            if j in bad or nbgrader_meta(nb.cells[j]).get("grade"):
                continue
            replay = copy.deepcopy(nb.cells[j])
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

    with client.setup_kernel(**kernel_io):
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t0 = time.perf_counter()
            try:
                last_reply.clear()
                client.execute_cell(cell, i)
                if timed_out():
                    bad.add(i)
                    _error(cell, "CellTimeoutError",
                           f"the cell ran past the {cell_timeout} s limit and was interrupted")
                    if not responsive():
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
            ran.append(i)
            emitter.emit({"index": i, "seconds": round(time.perf_counter() - t0, 3),
                          "outputs": cell.get("outputs", []), "records": emitter.new_records()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
