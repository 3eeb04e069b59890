"""The misconception table: each known student mistake, written into the reference solution.

tests/test_05_misconceptions.py proves that every mutant makes at least one graded
test cell fail; `make demo` grades one submission per mutant. One module per
assignment (``a01_chain_rule.py`` ...) defines ``MUTANTS``; this package collects them.
It lives in tests/, not in the course package, because its snippets are pieces of
the solutions.

Fields: assignment id, solution cell (grade id), text replaced, replacement, what it models.
"""
from __future__ import annotations

import importlib
import pkgutil
import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    assignment: str
    cell: str
    old: str
    new: str
    models: str

    @property
    def slug(self) -> str:
        return f"{self.cell}-{zlib.crc32((self.old + chr(0) + self.new).encode()) % 10_000:04d}"


def _collect() -> list[Mutant]:
    found: list[Mutant] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("a"):
            found.extend(importlib.import_module(f"{__name__}.{info.name}").MUTANTS)
    return found


MUTANTS: list[Mutant] = _collect()


def mutants_for(assignment: str) -> list[Mutant]:
    return [m for m in MUTANTS if m.assignment == assignment]
