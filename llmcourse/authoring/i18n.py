"""Translations of the notebooks: gettext catalogues keyed by the English text.

One catalogue per notebook, ``authoring/<id>/<notebook>.<lang>.po``, next to the English
authoring source it translates. Messages are gettext's own: the *message id* is the English
text of one segment and the message string its translation, so a translation follows its
English text wherever the cell moves, and a changed English sentence shows up at once as
a missing translation (plus an obsolete entry) instead of silently keeping the old one.
The ``#:`` reference of each entry names the notebook cell (its id) for the translator.

What is a segment (:func:`segments`):

- markdown: each block between blank lines, outside fenced code, that has words once its
  math (``$...$``), inline code and URLs are set aside; nbgrader's solution markers and
  fenced code stay as they are;
- code: every string literal that carries human language (the argument of ``print``, of a
  plot label or title, a ``hint=``/``label=``/``title=``... keyword, the message of a check or
  an exception, a docstring, or any literal with two or more words), adjacent literals
  joined into one message, f-strings with their ``{...}`` fields; and every comment (runs of
  full-line comments as one message). The check names (first argument of the check
  helpers) and nbgrader's ``###`` markers are never segments.

:func:`translate_cell` puts the translations back. Only literals and comments change, so
the translated cell has the same syntax tree once strings are set aside
(:func:`code_shape`); a translation whose f-string fields, math or inline code differ from
the English is refused (:class:`TranslationError`).
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from ..grading.cells import hidden_line_numbers

CHECKS = {"check_close", "check_equal", "check_true", "check_shape", "check_raises"}
HUMAN_KEYWORDS = {"hint", "label", "title", "xlabel", "ylabel", "desc", "message", "msg", "help", "text"}
# keyword arguments whose string is a setting, however many words it has (loc="upper left")
SETTING_KEYWORDS = {"loc", "color", "c", "colors", "linestyle", "ls", "marker", "cmap", "fmt", "dtype", "device",
                    "mode", "kind", "ha", "va", "align", "layout", "bbox_inches", "encoding", "errors"}
HUMAN_CALLS = {"print", "set_title", "set_xlabel", "set_ylabel", "suptitle", "text", "annotate", "figtext",
               "warn", "write", "tqdm", "trange"}
MARKER = re.compile(r"^\s*###\s*(BEGIN|END) (SOLUTION|HIDDEN TESTS)")
_WORD = re.compile(r"[^\W\d_]{2,}")
_LETTER = re.compile(r"[^\W\d_]")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_URL = re.compile(r"\]\([^)]*\)|https?://\S+")


class TranslationError(ValueError):
    """A translation is missing, or does not fit the English it translates."""


@dataclass(frozen=True)
class Segment:
    msgid: str
    where: str        # cell id, for the translator


# --------------------------------------------------------------------------- markdown

def _md_blocks(source: str) -> list[tuple[str, bool]]:
    """[(text, translatable)], which joined with the separators in between gives back source."""
    blocks: list[tuple[str, bool]] = []
    current: list[str] = []
    fence = False

    def flush():
        if current:
            text = "\n".join(current)
            blocks.append((text, _md_has_words(text)))
            current.clear()

    for line in source.split("\n"):
        if line.lstrip().startswith("```"):
            if not fence:
                flush()
                fence = True
                current.append(line)
                continue
            current.append(line)
            blocks.append(("\n".join(current), False))
            current.clear()
            fence = False
            continue
        if fence:
            current.append(line)
        elif MARKER.match(line) or not line.strip():
            flush()
            blocks.append((line, False))
        else:
            current.append(line)
    if fence:   # an unclosed fence: keep it as it is
        blocks.append(("\n".join(current), False))
        current.clear()
    flush()
    return blocks


def _md_has_words(text: str) -> bool:
    rest = _URL.sub(" ", _INLINE_CODE.sub(" ", _MATH.sub(" ", text)))
    return bool(_LETTER.search(rest))


_MATH_WORDS = re.compile(r"\\(text|textrm|textit|mathrm)\{[^{}]*\}")


def _md_invariants(text: str) -> dict:
    """What a translation of a markdown block must keep: its math (words in \\text{...} may be
    translated), inline code and link targets."""
    math = sorted(_MATH_WORDS.sub(r"\\\1{}", m) for m in _MATH.findall(text))
    return {"math": math, "code": sorted(_INLINE_CODE.findall(text)),
            "links": sorted(_URL.findall(text))}


# --------------------------------------------------------------------------- code

@dataclass
class _Piece:
    start: int          # offsets into the source
    end: int
    msgid: str
    kind: str           # "string" or "comment"
    prefix: str = ""
    quote: str = ""
    indent: str = ""
    full_line: bool = False


def _offsets(source: str) -> list[int]:
    starts, pos = [0], 0
    for line in source.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def _split_literal(token: str) -> tuple[str, str, str]:
    """(prefix, quote, body) of a string token, e.g. ('f', '"', 'x = {x}')."""
    m = re.match(r"(?is)^([rbuf]*)('''|\"\"\"|'|\")(.*)\2$", token)
    if not m:
        raise TranslationError(f"not a string literal: {token!r}")
    return m.group(1), m.group(2), m.group(3)


def _literal_text(token: str) -> str:
    """The words a reader sees in a literal (f-string fields removed)."""
    try:
        node = ast.parse(token, mode="eval").body
    except SyntaxError:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return ""


def _string_roles(tree: ast.AST) -> dict[tuple[int, int], str]:
    """(line, col) of string constants -> 'name' (a check name: never translated),
    'human' (an argument whose job is to be read), or 'doc' (a docstring)."""
    roles: dict[tuple[int, int], str] = {}

    def mark(node, role):
        if isinstance(node, (ast.Constant, ast.JoinedStr)):
            roles[(node.lineno, node.col_offset)] = role

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in CHECKS and node.args:
                mark(node.args[0], "name")
                if name == "check_true" and len(node.args) > 2:
                    mark(node.args[2], "human")
            if name in HUMAN_CALLS or name.endswith(("Error", "Exception", "Warning")):
                for a in node.args:
                    mark(a, "human")
            for kw in node.keywords:
                if kw.arg in HUMAN_KEYWORDS:
                    mark(kw.value, "human")
                elif kw.arg in SETTING_KEYWORDS:
                    mark(kw.value, "name")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                mark(body[0].value, "doc")
    return roles


def _code_pieces(source: str) -> list[_Piece]:
    tree = ast.parse(source)
    roles = _string_roles(tree)
    hidden = hidden_line_numbers(source)
    for node in ast.walk(tree):   # hidden tests: their literals are test data unless they are meant to be read
        if isinstance(node, (ast.Constant, ast.JoinedStr)) and getattr(node, "lineno", 0) in hidden \
                and roles.get((node.lineno, node.col_offset)) is None:
            roles[(node.lineno, node.col_offset)] = "name"
    starts = _offsets(source)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    pieces: list[_Piece] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == tokenize.COMMENT:
            text = tok.string
            if MARKER.match(text) or text.startswith("###") or text.lstrip("#").strip().startswith("noqa") \
                    or not _LETTER.search(text):
                i += 1
                continue
            line_text = tok.line
            full_line = line_text[:tok.start[1]].strip() == ""
            start = starts[tok.start[0] - 1] + tok.start[1]
            end = starts[tok.end[0] - 1] + tok.end[1]
            body = [re.sub(r"^#\s?", "", text)]
            j = i + 1
            if full_line:   # a run of full-line comments in the same column reads as one paragraph
                while j + 1 < len(tokens) and tokens[j].type == tokenize.NL and tokens[j + 1].type == tokenize.COMMENT \
                        and tokens[j + 1].start[1] == tok.start[1] \
                        and tokens[j + 1].line[:tokens[j + 1].start[1]].strip() == "" \
                        and not tokens[j + 1].string.startswith("###"):
                    nxt = tokens[j + 1]
                    body.append(re.sub(r"^#\s?", "", nxt.string))
                    end = starts[nxt.end[0] - 1] + nxt.end[1]
                    j += 2
            pieces.append(_Piece(start, end, "\n".join(body), "comment", indent=" " * tok.start[1],
                                 full_line=full_line))
            i = j
            continue
        if tok.type == tokenize.STRING:
            group = [tok]
            j = i + 1
            while j < len(tokens) and tokens[j].type in (tokenize.STRING, tokenize.NL):
                if tokens[j].type == tokenize.STRING:
                    group.append(tokens[j])
                j += 1
            i = j
            role = roles.get(group[0].start)
            if role == "name":
                continue
            kinds = {(_split_literal(t.string)[1], "r" in _split_literal(t.string)[0].lower()) for t in group}
            # adjacent literals read as one sentence; mixed quotes or raw-ness stay separate messages
            for g in ([group] if len(kinds) == 1 else [[t] for t in group]):
                piece = _string_piece(g, roles.get(g[0].start) or role, starts)
                if piece is not None:
                    pieces.append(piece)
            continue
        i += 1
    return pieces


def _string_piece(group, role, starts) -> _Piece | None:
    parts = [_split_literal(t.string) for t in group]
    if role == "name" or any("b" in p.lower() for p, _, _ in parts):
        return None
    raw = "r" in parts[0][0].lower()
    text = " ".join(_literal_text(t.string) for t in group)
    if not _LETTER.search(text):
        return None
    if role is None and (raw or " " not in text.strip() or not _WORD.search(text)):
        return None   # one word, or a raw string: a name, a colour, a regular expression
    fstr = any("f" in p.lower() for p, _, _ in parts)
    bodies = []
    for p, _, b in parts:
        if fstr and "f" not in p.lower():   # a plain piece joined to an f-string: its braces are literal
            b = b.replace("{", "{{").replace("}", "}}")
        bodies.append(b)
    start = starts[group[0].start[0] - 1] + group[0].start[1]
    end = starts[group[-1].end[0] - 1] + group[-1].end[1]
    return _Piece(start, end, "".join(bodies), "string", prefix=("r" if raw else "") + ("f" if fstr else ""),
                  quote=parts[0][1])


def _fields(literal: str) -> list[str]:
    """The {...} fields of an f-string literal, as source, sorted (a translation may reorder them)."""
    node = ast.parse(literal, mode="eval").body
    if not isinstance(node, ast.JoinedStr):
        return []
    return sorted(ast.dump(v) for v in node.values if isinstance(v, ast.FormattedValue))


def _render_string(piece: _Piece, msgstr: str) -> str:
    literal = f"{piece.prefix}{piece.quote}{msgstr}{piece.quote}"
    english = f"{piece.prefix}{piece.quote}{piece.msgid}{piece.quote}"
    try:
        node = ast.parse(literal, mode="eval").body
    except SyntaxError as exc:
        raise TranslationError(f"translation of {piece.msgid!r} is not a valid literal: {exc.msg}") from None
    if not isinstance(node, (ast.Constant, ast.JoinedStr)):
        raise TranslationError(f"translation of {piece.msgid!r} is not one string literal")
    if _fields(literal) != _fields(english):
        raise TranslationError(f"translation of {piece.msgid!r} must keep its {{...}} fields exactly")
    return literal


def _render_comment(piece: _Piece, msgstr: str) -> str:
    lines = msgstr.split("\n")
    if not piece.full_line and len(lines) > 1:
        raise TranslationError(f"translation of the trailing comment {piece.msgid!r} must be one line")
    return ("\n" + piece.indent).join("# " + ln if ln else "#" for ln in lines)


# --------------------------------------------------------------------------- public API

def segments(cell_type: str, source: str, where: str = "") -> list[Segment]:
    """The messages of one cell, in order (duplicates kept)."""
    if cell_type == "markdown":
        return [Segment(t, where) for t, ok in _md_blocks(source) if ok]
    return [Segment(p.msgid, where) for p in _code_pieces(source)]


def translate_cell(cell_type: str, source: str, lookup) -> str:
    """The cell with every message replaced by ``lookup(msgid)`` (which raises KeyError if missing)."""
    if cell_type == "markdown":
        out = []
        for text, ok in _md_blocks(source):
            if not ok:
                out.append(text)
                continue
            new = _lookup(lookup, text)
            if _md_invariants(new) != _md_invariants(text):
                raise TranslationError(f"translation must keep the math, inline code and links of: {text[:120]!r}")
            out.append(new)
        return "\n".join(out)
    pieces = _code_pieces(source)
    out, pos = [], 0
    for p in pieces:
        out.append(source[pos:p.start])
        msgstr = _lookup(lookup, p.msgid)
        out.append(_render_string(p, msgstr) if p.kind == "string" else _render_comment(p, msgstr))
        pos = p.end
    out.append(source[pos:])
    new = "".join(out)
    if code_shape(new) != code_shape(source):
        raise TranslationError("the translated cell's code differs from the English one")
    return new


def _lookup(lookup, msgid: str) -> str:
    try:
        value = lookup(msgid)
    except KeyError:
        raise TranslationError(f"no translation for {msgid[:160]!r}") from None
    if not value:
        raise TranslationError(f"empty translation for {msgid[:160]!r}")
    return value


class _Blank(ast.NodeTransformer):
    def visit_Constant(self, node):
        return ast.Constant("") if isinstance(node.value, str) else node

    def visit_JoinedStr(self, node):
        # a translation may move the fields within its sentence: compare them as a sorted list
        fields = sorted((self.visit(v) for v in node.values if isinstance(v, ast.FormattedValue)), key=ast.dump)
        return ast.JoinedStr(fields)


def code_shape(source: str) -> str:
    """The cell's syntax tree with every string emptied: equal for the two editions of a cell."""
    return ast.dump(_Blank().visit(ast.parse(source)))


# --------------------------------------------------------------------------- catalogues

LANGUAGES = {"vi": "Tiếng Việt"}


def catalogue_path(nbsrc: Path, lang: str) -> Path:
    """authoring/<id>/<notebook>.<lang>.po, next to the English source it translates."""
    return nbsrc.with_name(f"{nbsrc.stem}.{lang}.po")


def template(nbsrc: Path):
    """A Babel catalogue of every message of one notebook (English, no translations)."""
    from babel.messages.catalog import Catalog

    from .nbbuild import build_notebook
    cat = Catalog(project=f"llmcourse {nbsrc.parent.name}", version="1", fuzzy=False, header_comment=_HEADER,
                  creation_date=_FIXED_DATE)
    for cell in build_notebook(nbsrc).cells:
        for seg in segments(cell.cell_type, cell.source, cell.id):
            if seg.msgid in cat:
                cat[seg.msgid].locations.append((seg.where, 0))
            else:
                cat.add(seg.msgid, locations=[(seg.where, 0)])
    return cat


# catalogues are committed: a fixed date keeps `make translations` from rewriting unchanged files
_FIXED_DATE = __import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").timezone.utc)
_HEADER = ("# Translation of one course notebook (gettext). The English text is the message id;\n"
           "# write the translation in msgstr. `make translations` adds new English text and marks\n"
           "# translations whose English changed as fuzzy; the tests fail until each is reviewed.")


def read_catalogue(path: Path, lang: str):
    from babel.messages.pofile import read_po
    with open(path, "rb") as fh:
        return read_po(fh, locale=lang)


def write_catalogue(cat, path: Path) -> None:
    from babel.messages.pofile import write_po
    with open(path, "wb") as fh:
        write_po(fh, cat, width=0, ignore_obsolete=True, include_previous=True, sort_output=False)


def update_catalogue(nbsrc: Path, lang: str) -> Path:
    """Bring a notebook's catalogue up to date with its English source (new: empty; changed: fuzzy)."""
    from babel.messages.catalog import Catalog
    path = catalogue_path(nbsrc, lang)
    tmpl = template(nbsrc)
    if path.exists():
        cat = read_catalogue(path, lang)
    else:
        cat = Catalog(locale=lang, project=tmpl.project, version="1", header_comment=_HEADER, fuzzy=False,
                      creation_date=_FIXED_DATE, revision_date=_FIXED_DATE)
    cat.update(tmpl, update_header_comment=True)
    cat.fuzzy = False
    write_catalogue(cat, path)
    return path


@dataclass
class Status:
    missing: list[str]      # English messages with no translation
    fuzzy: list[str]        # translations whose English changed since (review them)
    obsolete: list[str]     # translations of English text that is gone

    @property
    def complete(self) -> bool:
        return not (self.missing or self.fuzzy)


def status(nbsrc: Path, lang: str) -> Status:
    path = catalogue_path(nbsrc, lang)
    tmpl = template(nbsrc)
    if not path.exists():
        return Status([m.id for m in tmpl if m.id], [], [])
    cat = read_catalogue(path, lang)
    missing, fuzzy = [], []
    for m in tmpl:
        if not m.id:
            continue
        t = cat.get(m.id)
        if t is None or not t.string:
            missing.append(m.id)
        elif t.fuzzy:
            fuzzy.append(m.id)
    wanted = {m.id for m in tmpl}
    obsolete = [m.id for m in cat if m.id and m.id not in wanted]
    return Status(missing, fuzzy, obsolete)


def translate_notebook(nbsrc: Path, lang: str, partial: bool = False):
    """The notebook of one edition: the English build with every message translated.

    partial=True keeps the English of messages not translated yet (a translator's preview)."""
    from .nbbuild import build_notebook
    nb = build_notebook(nbsrc)
    cat = read_catalogue(catalogue_path(nbsrc, lang), lang)

    def lookup(msgid: str) -> str:
        t = cat.get(msgid)
        if t is None or not t.string or t.fuzzy:
            if partial:
                return msgid
            raise KeyError(msgid)
        return t.string

    for cell in nb.cells:
        try:
            cell.source = translate_cell(cell.cell_type, cell.source, lookup)
        except TranslationError as exc:
            raise TranslationError(f"{catalogue_path(nbsrc, lang).name}, cell {cell.id}: {exc}") from None
    nb.metadata["language"] = lang
    return nb


def main(argv: list[str] | None = None) -> int:
    """python -m llmcourse.authoring.i18n {update,status,preview} [--lang vi] [--assignment ID] [--out DIR]"""
    import argparse
    p = argparse.ArgumentParser(prog="python -m llmcourse.authoring.i18n", description=main.__doc__)
    p.add_argument("action", choices=["update", "status", "preview"])
    p.add_argument("--out", default="build/preview", help="preview: where the translated notebooks go")
    p.add_argument("--lang", default="vi", choices=sorted(LANGUAGES))
    p.add_argument("--assignment", default="all")
    p.add_argument("--root", default=".")
    args = p.parse_args(argv)
    root = Path(args.root)
    pattern = "*" if args.assignment in ("all", "") else args.assignment
    incomplete = 0
    for nbsrc in sorted((root / "authoring").glob(f"{pattern}/*.nbsrc")):
        if args.action == "update":
            update_catalogue(nbsrc, args.lang)
        if args.action == "preview":
            import nbformat
            dest = Path(args.out) / args.lang / nbsrc.parent.name / f"{nbsrc.stem}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(translate_notebook(nbsrc, args.lang, partial=True), str(dest))
            print(f"preview: {dest}")
        st = status(nbsrc, args.lang)
        incomplete += not st.complete
        print(f"{catalogue_path(nbsrc, args.lang)}: {len(st.missing)} missing, {len(st.fuzzy)} fuzzy"
              + (f", {len(st.obsolete)} obsolete (dropped by update)" if st.obsolete else ""))
    return 1 if incomplete and args.action == "status" else 0


if __name__ == "__main__":
    raise SystemExit(main())
