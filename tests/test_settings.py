"""Settings: every LLMCOURSE_* variable is listed once, read through one accessor, documented in the README."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from nbutil import ROOT

from llmcourse import settings
from llmcourse.settings import SETTINGS, SettingError, setting

BEGIN, END = "<!-- settings:begin (python -m llmcourse.settings --markdown) -->", "<!-- settings:end -->"
NAME = re.compile(r"\bLLMCOURSE_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
# direct reads of the environment: os.environ.get("LLMCOURSE_..."), env.get(...), os.environ["..."], os.getenv
DIRECT_READ = re.compile(r"""(?:\.get|getenv)\(\s*f?["']LLMCOURSE_"""
                         r"""|environ\[\s*["']LLMCOURSE_[A-Z_]+["']\s*\](?!\s*=[^=])""")


def _code_files():
    files = [*sorted((ROOT / "llmcourse").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py")),
             *sorted((ROOT / "scripts").glob("*.py")), ROOT / "nbgrader_config.py", ROOT / "Makefile"]
    return [f for f in files if f.name != "settings.py" and f.name != "test_settings.py"]


def test_the_readme_table_is_the_settings_module():
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme, "README needs the settings table between its markers"
    table = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert table == settings.markdown(), \
        "README's settings table is stale: paste `python -m llmcourse.settings --markdown`"
    out = subprocess.run([sys.executable, "-m", "llmcourse.settings", "--markdown"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == settings.markdown()


def test_every_variable_the_code_names_is_a_setting():
    known = set(SETTINGS) | {old for s in SETTINGS.values() for old in s.deprecated}
    named = {}
    for f in _code_files():
        for m in NAME.finditer(f.read_text()):
            named.setdefault(m.group(0), f.relative_to(ROOT))
    named.pop("LLMCOURSE_LIMIT", None)   # the prefix of LLMCOURSE_LIMIT_<FIELD>, in text
    assert len(named) > 15, "the scan must find the variables the code uses"
    unknown = {n: str(f) for n, f in named.items() if n not in known}
    assert not unknown, f"not in llmcourse/settings.py: {unknown}"


def test_code_reads_settings_only_through_the_accessor():
    # test_07's attack payloads read the sandbox's variables the way a student's code would: not course code
    files = [f for f in _code_files() if f.name != "test_07_safety.py"]
    direct = [f"{f.relative_to(ROOT)}:{i}" for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
              if DIRECT_READ.search(line)]
    assert not direct, f"read through llmcourse.settings.setting() instead: {direct}"
    assert DIRECT_READ.search('x = os.environ.get("LLMCOURSE_DB_URL")')
    assert DIRECT_READ.search('os.environ["LLMCOURSE_CHANNEL"]')
    assert not DIRECT_READ.search('env["LLMCOURSE_EXCHANGE"] = x')


def test_values_are_typed_and_a_bad_one_is_a_clear_error():
    assert setting("LLMCOURSE_LIMIT_WALL_S", {}) == 600
    assert setting("LLMCOURSE_LIMIT_WALL_S", {"LLMCOURSE_LIMIT_WALL_S": " 90 "}) == 90
    assert setting("LLMCOURSE_LIMIT_CPU_CORES", {"LLMCOURSE_LIMIT_CPU_CORES": "0.5"}) == 0.5
    assert setting("LLMCOURSE_PRE_EXECUTED", {"LLMCOURSE_PRE_EXECUTED": "1"}) is True
    assert setting("LLMCOURSE_PRE_EXECUTED", {}) is False
    assert setting("LLMCOURSE_DB_URL", {"LLMCOURSE_DB_URL": ""}) is None, "empty means unset"
    with pytest.raises(SettingError, match="LLMCOURSE_LIMIT_MEMORY_MB='4G': expected an integer"):
        setting("LLMCOURSE_LIMIT_MEMORY_MB", {"LLMCOURSE_LIMIT_MEMORY_MB": "4G"})
    with pytest.raises(SettingError, match="unknown setting"):
        setting("LLMCOURSE_NO_SUCH_THING", {})


def test_the_old_cell_timeout_name_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="LLMCOURSE_CELL_TIMEOUT is deprecated"):
        assert setting("LLMCOURSE_LIMIT_CELL_TIMEOUT_S", {"LLMCOURSE_CELL_TIMEOUT": "45"}) == 45
    both = {"LLMCOURSE_CELL_TIMEOUT": "45", "LLMCOURSE_LIMIT_CELL_TIMEOUT_S": "30"}
    assert setting("LLMCOURSE_LIMIT_CELL_TIMEOUT_S", both) == 30, "the new name wins"


def test_sandbox_limits_come_from_the_settings(monkeypatch):
    from llmcourse.grading.sandbox import Limits
    monkeypatch.setenv("LLMCOURSE_LIMIT_CPU_CORES", "0.5")
    monkeypatch.setenv("LLMCOURSE_LIMIT_PIDS", "77")
    lim = Limits.from_env(wall_s=5)
    assert (lim.cpu_cores, lim.pids, lim.wall_s, lim.memory_mb) == (0.5, 77, 5, 4096)
    for name in SETTINGS:
        if name.startswith("LLMCOURSE_LIMIT_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LLMCOURSE_CELL_TIMEOUT", raising=False)
    assert Limits.from_env() == Limits(), "the settings' defaults are the dataclass's"
