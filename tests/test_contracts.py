"""Clause coverage: each clause of each graded function's contract is exercised by a check.

tests/contracts/aNN_name.toml lists the clauses (format: llmcourse/authoring/contracts.py).
The structure test fails when a clause has neither a check nor a `gap` entry, when a check
of the notebook belongs to no clause, when a mapped check does not exist, or when a graded
function is missing. Gaps (clauses no check exercises yet) are allowed and counted: the
summary line per notebook says how many are left.
"""
from __future__ import annotations

import tomllib

import nbformat
import pytest
from nbutil import ROOT, graded_source_nbs

from llmcourse.authoring.contracts import coverage, notebook_checks, without_check

CONTRACTS = ROOT / "tests" / "contracts"
NOTEBOOKS = {p.parent.name: p for p in graded_source_nbs()}


def _contract(name: str):
    return CONTRACTS / f"a{name}.toml"


def test_every_graded_notebook_has_a_contract_file():
    missing = [n for n in NOTEBOOKS if not _contract(n).exists()]
    assert not missing, f"no clause file in tests/contracts/ for {missing}"
    stray = [p.name for p in CONTRACTS.glob("*.toml") if p.stem[1:] not in NOTEBOOKS]
    assert not stray, f"clause files for no graded notebook: {stray}"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_every_clause_has_a_check_and_every_check_a_clause(name, capsys):
    cov = coverage(_contract(name), NOTEBOOKS[name])
    with capsys.disabled():
        print(f"\n{name}: {cov.clauses} clauses, {cov.checks} checks, {cov.gaps} gaps "
              f"({cov.unchecked} clauses with no check at all), {cov.unstated} unstated")
    assert cov.ok, f"{name}: clause coverage problems:\n" + "\n".join(cov.problems)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_deleting_a_clauses_checks_fails(name, tmp_path):
    """The coverage test can fail: drop the checks of one fully covered clause from a copy."""
    with open(_contract(name), "rb") as fh:
        data = tomllib.load(fh)
    clause = next(cl for fn in data["function"] for cl in fn["clause"] if cl.get("checks") and not cl.get("gap"))
    nb = nbformat.read(str(NOTEBOOKS[name]), as_version=4)
    for check in clause["checks"]:
        nb = without_check(nb, check)
    removed = {c.name for c in notebook_checks(nbformat.read(str(NOTEBOOKS[name]), as_version=4))} - \
        {c.name for c in notebook_checks(nb)}
    assert removed == set(clause["checks"]), f"the copy still has {set(clause['checks']) - removed}"
    copy = tmp_path / NOTEBOOKS[name].parent.name / NOTEBOOKS[name].name
    copy.parent.mkdir()
    nbformat.write(nb, str(copy))
    cov = coverage(_contract(name), copy)
    assert not cov.ok
    for check in clause["checks"]:
        assert any(f"check {check!r} does not exist" in p for p in cov.problems), cov.problems


def test_an_unmapped_clause_or_check_fails(tmp_path):
    """A clause with no check and no gap, and a check no clause claims, are both reported."""
    name = sorted(NOTEBOOKS)[0]
    text = _contract(name).read_text(encoding="utf-8")
    first_check = notebook_checks(nbformat.read(str(NOTEBOOKS[name]), as_version=4))[0].name
    # drop the first check from every clause's list, and add a clause nothing covers
    broken = text.replace(f'"{first_check}", ', "").replace(f', "{first_check}"', "").replace(f'"{first_check}"', "")
    broken += '\n[[function.clause]]\ntext = "a promise no check keeps"\n'
    f = tmp_path / "broken.toml"
    f.write_text(broken, encoding="utf-8")
    cov = coverage(f, NOTEBOOKS[name])
    assert any(f"check {first_check!r}" in p and "belongs to no clause" in p for p in cov.problems), cov.problems
    assert any("a promise no check keeps" in p and "not marked as a gap" in p for p in cov.problems), cov.problems
