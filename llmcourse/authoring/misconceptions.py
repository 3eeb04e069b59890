"""The misconception table: each known student mistake, written into the reference solution.

One file per assignment, ``authoring/<id>/misconceptions.toml``, next to the notebook source
whose solutions its snippets come from (they are pieces of the solutions: they live with
the authoring sources, never in the installed package). Each ``[[mutant]]`` names the
solution cell (grade id), the text replaced (it must occur exactly once), its replacement
(empty: a deletion) and what it models. tests/test_05_misconceptions.py proves that every mutant makes at least
one graded test cell fail; `make demo` grades one submission per mutant.
"""
from __future__ import annotations

import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "misconceptions.toml"
FIELDS = ("cell", "old", "new", "models")


class MisconceptionError(ValueError):
    pass


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


def read_table(path: Path, assignment: str) -> list[Mutant]:
    """The mutants of one misconceptions.toml; a clear error for a missing or misspelt field."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MisconceptionError(f"{path}: {exc}") from None
    found = []
    for i, entry in enumerate(data.get("mutant", []), 1):
        if not isinstance(entry, dict) or set(entry) != set(FIELDS) \
                or not all(isinstance(entry[k], str) for k in FIELDS) \
                or not all(entry[k] for k in ("cell", "old", "models")):
            raise MisconceptionError(f"{path}: mutant #{i} needs exactly the text fields {', '.join(FIELDS)} "
                                     f"(only new may be empty: a deletion)")
        found.append(Mutant(assignment, *(entry[k] for k in FIELDS)))
    return found


def load(root: Path, assignment: str | None = None) -> list[Mutant]:
    """Every assignment's mutants (or one assignment's), in assignment order then file order."""
    authoring = Path(root) / "authoring"
    paths = sorted(authoring.glob(f"{assignment or '*'}/{FILE_NAME}"))
    return [m for p in paths for m in read_table(p, p.parent.name)]
