"""Unit tests of the bubblewrap command line the sandbox runs (no bwrap needed: the list is inspected)."""
from __future__ import annotations

from pathlib import Path

import pytest

from llmcourse.grading import sandbox

ROOT = Path(__file__).resolve().parents[2]
# bwrap options and how many arguments each takes
ARITY = {"--unshare-user": 0, "--disable-userns": 0, "--uid": 1, "--gid": 1, "--unshare-net": 0,
         "--unshare-pid": 0, "--unshare-ipc": 0, "--unshare-uts": 0, "--unshare-cgroup-try": 0,
         "--die-with-parent": 0, "--new-session": 0, "--cap-drop": 1, "--hostname": 1, "--proc": 1, "--dev": 1,
         "--tmpfs": 1, "--ro-bind": 2, "--symlink": 2, "--seccomp": 1, "--size": 1, "--chdir": 1,
         "--clearenv": 0, "--setenv": 2}


def parse(cmd: list[str]) -> tuple[list[tuple[str, tuple]], list[str]]:
    """([(option, args)], argv after --); an option this test does not know fails it."""
    assert Path(cmd[0]).name == "bwrap"
    opts, i = [], 1
    while cmd[i] != "--":
        opt = cmd[i]
        assert opt in ARITY, f"unexpected bwrap option {opt}"
        opts.append((opt, tuple(cmd[i + 1:i + 1 + ARITY[opt]])))
        i += 1 + ARITY[opt]
    return opts, cmd[i + 1:]


def command(**kw):
    kw.setdefault("env", {"A": "1"})
    return sandbox.bwrap_command(["python", "-m", "x", "--flag"], **kw)


def flags(opts) -> set[str]:
    return {o for o, _ in opts}


def test_every_namespace_is_new_and_no_capability_is_kept():
    opts, _ = parse(command())
    assert {"--unshare-user", "--disable-userns", "--unshare-net", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--die-with-parent", "--new-session"} <= flags(opts)
    assert ("--cap-drop", ("ALL",)) in opts
    assert ("--uid", (str(sandbox.SANDBOX_UID),)) in opts and ("--gid", (str(sandbox.SANDBOX_UID),)) in opts
    assert sandbox.SANDBOX_UID != 0


def test_nothing_is_mounted_writable_from_the_host():
    opts, _ = parse(command(channel_dir=Path("/tmp/chan")))
    assert not {"--bind", "--dev-bind", "--bind-try", "--dev-bind-try"} & flags(opts)
    writable = [a[0] for o, a in opts if o == "--tmpfs"]
    assert sorted(writable) == ["/sandbox", "/tmp"], "only the private /tmp and the work folder are writable"


def test_the_private_tmp_comes_before_every_bind():
    opts, _ = parse(command(ro_files={}, channel_dir=Path("/tmp/chan")))
    tmp = opts.index(("--tmpfs", ("/tmp",)))
    first_bind = min(i for i, (o, _) in enumerate(opts) if o == "--ro-bind")
    assert tmp < first_bind


def test_the_course_itself_is_not_there():
    opts, _ = parse(command())
    bound = [Path(a[0]).resolve() for o, a in opts if o == "--ro-bind"]
    for secret in (ROOT, ROOT / "source", ROOT / "release", ROOT / "tests", ROOT / "authoring"):
        assert not any(secret.is_relative_to(b) for b in bound), f"{secret} is reachable inside the sandbox"
    import llmcourse
    pkg = Path(llmcourse.__file__).resolve().parent
    assert pkg in bound, "the whole course package is bound read-only (the runner and the checks import it)"


def test_ro_files_are_bound_only_when_they_are_regular_files(tmp_path):
    real = tmp_path / "fontlist.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    opts, _ = parse(command(ro_files={"/tmp/mpl/a.json": real, "/tmp/mpl/b.json": link,
                                      "/tmp/mpl/c.json": tmp_path / "missing", "/tmp/mpl/d": tmp_path}))
    binds = [a for o, a in opts if o == "--ro-bind" and a[1].startswith("/tmp/mpl")]
    assert binds == [(str(real), "/tmp/mpl/a.json")]


def test_channel_and_seccomp_are_passed_when_given():
    opts, _ = parse(command(channel_dir=Path("/run/x/chan"), seccomp_fd=7))
    assert ("--ro-bind", ("/run/x/chan", str(Path(sandbox.CHANNEL).parent))) in opts
    assert ("--seccomp", ("7",)) in opts
    opts, _ = parse(command())
    assert "--seccomp" not in flags(opts)
    assert not any(a[1] == str(Path(sandbox.CHANNEL).parent) for o, a in opts if o == "--ro-bind")


@pytest.mark.parametrize("mb", [1, 512])
def test_the_work_folder_is_a_tmpfs_of_the_given_size(mb):
    opts, _ = parse(command(disk_mb=mb))
    i = opts.index(("--tmpfs", ("/sandbox",)))
    assert opts[i - 1] == ("--size", (str(mb * 1024 * 1024),)), "--size applies to the next tmpfs"
    assert ("--chdir", ("/sandbox",)) in opts


def test_the_environment_is_exactly_the_one_given():
    env = {"LLMCOURSE_RECORD": "/sandbox/records.jsonl", "WITH SPACE": "a b", "EMPTY": ""}
    opts, _ = parse(command(env=env))
    clear = opts.index(("--clearenv", ()))
    sets = [(i, a) for i, (o, a) in enumerate(opts) if o == "--setenv"]
    assert dict(a for _, a in sets) == env
    assert all(i > clear for i, _ in sets), "variables are set after the host's are cleared"


def test_the_program_runs_after_the_separator_unchanged():
    _, argv = parse(command())
    assert argv == ["python", "-m", "x", "--flag"]
    cmd = sandbox.bwrap_command(["--uid", "0"], {})
    _, argv = parse(cmd)
    assert argv == ["--uid", "0"], "arguments that look like options are the program's"
