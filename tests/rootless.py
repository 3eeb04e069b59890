"""Run a test's child process as an ordinary (throw-away) user, for the rootless grading mode.

The course's Python may live under a folder other users cannot enter (``/root/.pyenv``);
the grading user of a real department installs it where it can read it. For the test, the
child gets a private mount namespace in which such a folder shows only the runtime's folders
(llmcourse.grading.sandbox_launch.make_views, the same views root mode builds), then drops to the user.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def as_user(user: str):
    """A preexec_fn: views of the Python runtime, then the user's uid, gid and groups."""
    from llmcourse.grading import sandbox
    from llmcourse.grading.sandbox_launch import make_views
    pw = pwd.getpwnam(user)
    views = sandbox._views(sandbox._python_runtime())

    def run():
        if views:
            make_views(views)
        os.setgroups([])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    return run


def make_user(prefix: str = "llmc") -> str:
    user = f"{prefix}{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True,
                   capture_output=True)
    return user


def remove_user(user: str) -> None:
    subprocess.run(["userdel", user], check=False, capture_output=True)
