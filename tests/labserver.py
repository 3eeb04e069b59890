"""A JupyterLab server for browser tests: started on 127.0.0.1 with a known token, stopped for sure.

Used by tests/test_08_browser.py. Everything the server writes (settings, workspaces,
runtime files, kernels' state) goes to folders the caller gives it, never to $HOME.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# JupyterLab settings that keep a headless test quiet and deterministic: no news or
# update checks (nothing outside the machine is contacted), every cell rendered.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """`jupyter lab` serving `root` (and started in `cwd`, where nbgrader looks for its config)."""

    def __init__(self, name: str, root: Path, cwd: Path, env: dict, state: Path, log_dir: Path):
        self.name, self.root, self.cwd, self.env = name, Path(root), Path(cwd), dict(env)
        self.state = Path(state)
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / f"jupyterlab-{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LabServer":
        settings = self.state / "lab-settings"
        for rel, value in LAB_SETTINGS.items():
            f = settings / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value))
        (self.state / "workspaces").mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.open_browser=False", "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={self.state / 'workspaces'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--ServerApp.allow_root=True")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=str(self.cwd), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll /api/status until the server answers (or fail with the end of its log)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab ({self.name}) exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.api_url("/api/status"), timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"JupyterLab ({self.name}) not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def api_url(self, path: str) -> str:
        return f"{self.url}{path}?token={self.token}"

    def lab_url(self) -> str:
        return f"{self.url}/lab?token={self.token}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Shut the server down through its API (which stops its kernels), then signal it if needed."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            req = urllib.request.Request(self.api_url("/api/shutdown"), method="POST", data=b"")
            urllib.request.urlopen(req, timeout=10).close()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        for sig, wait in ((None, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if sig is not None:
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
