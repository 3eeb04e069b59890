"""The translations of the notebooks (fast: no kernel, no execution).

For every notebook and every language that has a catalogue (``authoring/<id>/<nb>.<lang>.po``):

- every English message has a translation, none is stale (fuzzy, or kept for English text
  that is gone): ``python -m llmcourse.authoring.i18n status`` is clean;
- the translated notebook differs from the English one in strings only: the same cells, ids,
  types and nbgrader metadata (grade ids, points), the same code once strings are set aside
  (:func:`llmcourse.authoring.i18n.code_shape`), and in markdown the same math, inline code,
  links, fenced code and solution markers;
- no message uses a rendering that the glossary (``docs/glossary.<lang>.md``, column
  "Không dùng") rules out, such as "độ phức tạp" for perplexity;
- no message is still an English sentence (a heuristic on words, below).

Each check is a function returning a list of problems; the unit tests at the end show that
each one fails on a small made-up notebook and catalogue written to ``tmp_path``.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from llmcourse.authoring import i18n
from llmcourse.authoring.nbbuild import build_notebook

ROOT = Path(__file__).resolve().parent.parent
NBSRCS = sorted((ROOT / "authoring").glob("*/*.nbsrc"))
LANGS = sorted({p.name.split(".")[-2] for p in (ROOT / "authoring").glob("*/*.*.po")})
PAIRS = [(nbsrc, lang) for lang in LANGS for nbsrc in NBSRCS]


def _pair_id(pair):
    nbsrc, lang = pair
    return f"{nbsrc.parent.name}-{lang}"


# --------------------------------------------------------------------------- the checks

def stale_problems(nbsrc: Path, lang: str) -> list[str]:
    """Missing, fuzzy or obsolete messages of one notebook's catalogue."""
    path = i18n.catalogue_path(nbsrc, lang)
    if not path.exists():
        return [f"{path.name}: no catalogue (run `make translations LANG_CODE={lang}` and translate it)"]
    st = i18n.status(nbsrc, lang)
    return ([f"missing: {m[:100]!r}" for m in st.missing]
            + [f"fuzzy (its English changed; review, then clear the flag): {m[:100]!r}" for m in st.fuzzy]
            + [f"obsolete (its English is gone; run `make translations`): {m[:100]!r}" for m in st.obsolete])


def _md_fixed(source: str) -> list[str]:
    """The parts of a markdown cell a translation never touches: fenced code, solution markers."""
    return [text for text, ok in i18n._md_blocks(source) if not ok and text.strip()]


def edition_problems(english, translated) -> list[str]:
    """How two editions of one notebook differ in anything but human-language strings."""
    problems = []
    meta = lambda nb: {k: v for k, v in nb.metadata.items() if k != "language"}   # noqa: E731
    if meta(english) != meta(translated):
        problems.append("notebook metadata differs")
    if [c.id for c in english.cells] != [c.id for c in translated.cells]:
        return problems + ["the cells differ (ids or order)"]
    for en, tr in zip(english.cells, translated.cells, strict=False):
        where = f"cell {en.id}"
        if en.cell_type != tr.cell_type:
            problems.append(f"{where}: {en.cell_type} became {tr.cell_type}")
            continue
        if dict(en.metadata) != dict(tr.metadata):
            problems.append(f"{where}: metadata differs (nbgrader grade id, points, locks or tags)")
        if en.cell_type == "code":
            try:
                same = i18n.code_shape(en.source) == i18n.code_shape(tr.source)
            except SyntaxError as exc:
                problems.append(f"{where}: the translated cell is not valid Python ({exc.msg})")
                continue
            if not same:
                problems.append(f"{where}: the code differs, not only its strings")
        elif en.cell_type == "markdown":
            if i18n._md_invariants(en.source) != i18n._md_invariants(tr.source):
                problems.append(f"{where}: math, inline code or links differ")
            if _md_fixed(en.source) != _md_fixed(tr.source):
                problems.append(f"{where}: fenced code or solution markers differ")
    return problems


def structure_problems(nbsrc: Path, lang: str) -> list[str]:
    """The translated notebook, built from the catalogue, against the English one."""
    try:
        translated = i18n.translate_notebook(nbsrc, lang)
    except i18n.TranslationError as exc:
        return [str(exc)]
    return edition_problems(build_notebook(nbsrc), translated)


def forbidden_renderings(glossary: Path) -> dict[str, str]:
    """{rendering: English term} from the glossary's last column ("Không dùng"), ';'-separated."""
    out = {}
    for line in glossary.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 4 or cells[0] in ("English", "") or set(cells[0]) <= set("-: "):
            continue
        for phrase in filter(None, (p.strip() for p in cells[3].split(";"))):
            out[unicodedata.normalize("NFC", phrase)] = cells[0]
    return out


def glossary_problems(po: Path, lang: str, glossary: Path) -> list[str]:
    bad = {phrase: (re.compile(r"(?<!\w)" + re.escape(phrase.casefold()) + r"(?!\w)"), term)
           for phrase, term in forbidden_renderings(glossary).items()}
    problems = []
    for m in i18n.read_catalogue(po, lang):
        text = unicodedata.normalize("NFC", m.string or "").casefold()
        for phrase, (pattern, term) in bad.items():
            if pattern.search(text):
                problems.append(f"{phrase!r} (the glossary writes {term!r} otherwise) in: {m.string[:100]!r}")
    return problems


# English words that a Vietnamese sentence never needs (the field's terms are nouns, not these).
FUNCTION_WORDS = set("""the an of to is are and or in on for with that this it be not by from as at your you
we our its was were has have can must should each every than then when which what how why if only into
over there these those their they does do""".split())
# Titles cited without a year right before them (see _CITATION for the usual form).
CITED_TITLES = [
    "Journal of the Acoustical Society of America",
    "Theory of Probability and its Applications",
    "An example of statistical investigation of the text *Eugene Onegin* concerning the connection of samples in chains",  # noqa: E501
    "On the Variance of the Adaptive Learning Rate and Beyond",
]
# math, inline code, links, f-string fields, and quoted text (a sample the model wrote, a quoted name)
_NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|`[^`\n]*`|\]\([^)]*\)|https?://\S+|\{[^{}\n]*\}"
                        r"|\"[^\"\n]*\"|“[^”\n]*”", re.S)
# a reference: "Author (2017). Title." or "Author (1964), *Title*": the title after the year stays English
_CITATION = re.compile(r"\((?:1[89]|20)\d\d[a-z]?\)[.,:]?\s+\*?[^.*?\n]+[.*?]")
_TOKEN = re.compile(r"[\w'.\-]+")
_ASCII_WORD = re.compile(r"[A-Za-z]{2,}")


def english_left(msgstr: str) -> str | None:
    """Why a translated message still reads as English, or None.

    Math, inline code, links, f-string fields and quoted text are set aside, and so are cited titles. The
    message is English when it has no Vietnamese letter at all yet four or more English words,
    one of them a function word ("the", "of", "is", ...); and it keeps an English sentence when
    a run of six or more English words holds two or more function words."""
    text = unicodedata.normalize("NFC", msgstr)
    for title in CITED_TITLES:
        text = re.sub(re.escape(title), " ", text, flags=re.I)
    text = _CITATION.sub(" ", text)
    tokens = _TOKEN.findall(_NOT_PROSE.sub(" ", text))
    words = [t for t in tokens if _ASCII_WORD.fullmatch(t)]
    vietnamese = any(not t.isascii() and re.search(r"[^\W\d_]", t) for t in tokens)
    if not vietnamese and len(words) >= 4 and any(w.lower() in FUNCTION_WORDS for w in words):
        return "no Vietnamese word in it"
    run: list[str] = []
    for t in tokens + ["<end>"]:
        if _ASCII_WORD.fullmatch(t):
            run.append(t)
            continue
        if len(run) >= 6 and sum(w.lower() in FUNCTION_WORDS for w in run) >= 2:
            return f"an English sentence in it: {' '.join(run)!r}"
        run = []
    return None


def english_problems(po: Path, lang: str) -> list[str]:
    problems = []
    for m in i18n.read_catalogue(po, lang):
        if m.id and m.string:
            why = english_left(m.string)
            if why:
                problems.append(f"{why}: {m.string[:120]!r}")
    return problems


# --------------------------------------------------------------------------- the course's catalogues

def test_there_is_something_to_check():
    assert NBSRCS and "vi" in LANGS, "expected authoring/*/*.nbsrc with Vietnamese catalogues"


@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_translation_complete_and_current(pair):
    problems = stale_problems(*pair)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])


@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_editions_differ_only_in_strings(pair):
    problems = structure_problems(*pair)
    assert not problems, "\n".join(problems[:30])


@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_no_forbidden_rendering(pair):
    nbsrc, lang = pair
    glossary = ROOT / "docs" / f"glossary.{lang}.md"
    assert glossary.exists(), f"{glossary} is missing"
    assert forbidden_renderings(glossary), "the glossary lists no forbidden rendering: its table did not parse"
    problems = glossary_problems(i18n.catalogue_path(nbsrc, lang), lang, glossary)
    assert not problems, "\n".join(problems[:30])


@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_no_english_left(pair):
    nbsrc, lang = pair
    problems = english_problems(i18n.catalogue_path(nbsrc, lang), lang)
    assert not problems, "\n".join(problems[:30])


# --------------------------------------------------------------------------- each check fails on bad input

TINY_NBSRC = '''%%% md
# Demo

The loss is $-\\log p$; call `f(x)` and read [the docs](https://example.org).

%%% code solution id=f
def f(x):
    """Return twice x."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

%%% code tests id=test_f points=2
from llmcourse.student.checks import check_equal
check_equal("test_f/two", f(1), 2, hint=f"f(1) should be 2, got {f(1)}")
'''

GOOD = {
    "# Demo": "# Ví dụ",
    "The loss is $-\\log p$; call `f(x)` and read [the docs](https://example.org).":
        "Loss bằng $-\\log p$; hãy gọi `f(x)` và đọc [tài liệu](https://example.org).",
    "Return twice x.": "Trả về hai lần x.",
    "f(1) should be 2, got {f(1)}": "f(1) phải bằng 2, nhận được {f(1)}",
}


def _write_po(path: Path, entries: dict, fuzzy=(), extra=()):
    from babel.messages.catalog import Catalog
    cat = Catalog(locale="vi")
    for msgid, msgstr in entries.items():
        cat.add(msgid, msgstr, flags=("fuzzy",) if msgid in fuzzy else ())
    for msgid, msgstr in extra:
        cat.add(msgid, msgstr)
    i18n.write_catalogue(cat, path)


@pytest.fixture
def tiny(tmp_path):
    nbsrc = tmp_path / "authoring" / "99_demo" / "demo.nbsrc"
    nbsrc.parent.mkdir(parents=True)
    nbsrc.write_text(TINY_NBSRC, encoding="utf-8")
    glossary = tmp_path / "glossary.vi.md"
    glossary.write_text("| English | Trong khóa học | Nghĩa | Không dùng |\n|---|---|---|---|\n"
                        "| perplexity | perplexity | exp(cross-entropy) | độ phức tạp; độ bối rối |\n"
                        "| loss function | loss function | hàm cần làm nhỏ nhất | hàm mất mát |\n", encoding="utf-8")
    return nbsrc, i18n.catalogue_path(nbsrc, "vi"), glossary


def test_tiny_good_catalogue_passes_every_check(tiny):
    nbsrc, po, glossary = tiny
    assert [s.msgid for c in build_notebook(nbsrc).cells for s in i18n.segments(c.cell_type, c.source)] \
        == list(GOOD), "the made-up notebook's messages changed: update GOOD"
    _write_po(po, GOOD)
    assert stale_problems(nbsrc, "vi") == []
    assert structure_problems(nbsrc, "vi") == []
    assert glossary_problems(po, "vi", glossary) == []
    assert english_problems(po, "vi") == []


def test_missing_translation_fails(tiny):
    nbsrc, po, _ = tiny
    assert stale_problems(nbsrc, "vi") and "no catalogue" in stale_problems(nbsrc, "vi")[0]
    _write_po(po, {**GOOD, "Return twice x.": ""})
    assert [p for p in stale_problems(nbsrc, "vi") if p.startswith("missing")]
    assert structure_problems(nbsrc, "vi"), "an untranslated message must not build"


def test_fuzzy_translation_fails(tiny):
    nbsrc, po, _ = tiny
    _write_po(po, GOOD, fuzzy={"Return twice x."})
    assert [p for p in stale_problems(nbsrc, "vi") if p.startswith("fuzzy")]


def test_translation_of_changed_english_fails(tiny):
    nbsrc, po, _ = tiny
    _write_po(po, GOOD)
    nbsrc.write_text(TINY_NBSRC.replace("Return twice x.", "Return two times x."), encoding="utf-8")
    problems = stale_problems(nbsrc, "vi")
    assert [p for p in problems if p.startswith("missing") and "two times" in p]
    assert [p for p in problems if p.startswith("obsolete") and "twice" in p]


def test_obsolete_entry_fails(tiny):
    nbsrc, po, _ = tiny
    _write_po(po, GOOD, extra=[("An English sentence that left the notebook.", "Một câu đã rời notebook.")])
    assert [p for p in stale_problems(nbsrc, "vi") if p.startswith("obsolete")]


@pytest.mark.parametrize("msgid,bad", [
    ("The loss is $-\\log p$; call `f(x)` and read [the docs](https://example.org).",
     "Loss bằng $\\log p$; hãy gọi `f(x)` và đọc [tài liệu](https://example.org)."),      # math changed
    ("The loss is $-\\log p$; call `f(x)` and read [the docs](https://example.org).",
     "Loss bằng $-\\log p$; hãy gọi f(x) và đọc [tài liệu](https://example.org)."),       # inline code lost
    ("The loss is $-\\log p$; call `f(x)` and read [the docs](https://example.org).",
     "Loss bằng $-\\log p$; hãy gọi `f(x)` và đọc [tài liệu](https://example.com)."),     # link changed
    ("f(1) should be 2, got {f(1)}", "f(1) phải bằng 2, nhận được {f(2)}"),                # f-string field
    ("f(1) should be 2, got {f(1)}", 'f(1) phải bằng 2", nhận được {f(1)}'),               # breaks the literal
])
def test_translation_that_changes_more_than_strings_fails(tiny, msgid, bad):
    nbsrc, po, _ = tiny
    _write_po(po, {**GOOD, msgid: bad})
    assert structure_problems(nbsrc, "vi")


def test_edition_comparison_sees_code_metadata_and_markdown(tiny):
    nbsrc, po, _ = tiny
    _write_po(po, GOOD)
    english = build_notebook(nbsrc)
    good = i18n.translate_notebook(nbsrc, "vi")
    assert edition_problems(english, good) == []

    def altered(change):
        nb = i18n.translate_notebook(nbsrc, "vi")
        change(nb)
        return edition_problems(english, nb)

    assert altered(lambda nb: setattr(nb.cells[1], "source", nb.cells[1].source.replace("2 * x", "3 * x")))
    assert altered(lambda nb: nb.cells[2].metadata["nbgrader"].update(points=5))
    assert altered(lambda nb: nb.cells[2].metadata["nbgrader"].update(grade_id="test_g"))
    assert altered(lambda nb: setattr(nb.cells[2], "id", "other"))
    assert altered(lambda nb: nb.cells.pop())
    assert altered(lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source + "\n\n```python\nx = 1\n```"))
    assert altered(lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace("$-\\log p$", "$\\log p$")))


def test_forbidden_rendering_fails(tiny):
    nbsrc, po, glossary = tiny
    assert forbidden_renderings(glossary) == {"độ phức tạp": "perplexity", "độ bối rối": "perplexity",
                                              "hàm mất mát": "loss function"}
    _write_po(po, {**GOOD, "Return twice x.": "Trả về hai lần x, Độ phức tạp của mô hình."})
    problems = glossary_problems(po, "vi", glossary)
    assert len(problems) == 1 and "độ phức tạp" in problems[0]
    # decomposed input (NFD) is the same text: it is caught too
    _write_po(po, {**GOOD, "Return twice x.": unicodedata.normalize("NFD", "Trả về hàm mất mát.")})
    assert glossary_problems(po, "vi", glossary)


def test_english_sentence_left_fails(tiny):
    nbsrc, po, _ = tiny
    _write_po(po, {**GOOD, "Return twice x.": "Return twice x, which is the sum of x and x."})
    assert english_problems(po, "vi")
    _write_po(po, {**GOOD, "# Demo": "# Ví dụ: the loss of the model is what we want to make small"})
    assert english_problems(po, "vi")


@pytest.mark.parametrize("text", [
    "Loss bằng $-\\log p$ của token đúng.",
    "P(X2=b | X1=a) = P(X1=a, X2=b) / P(X1=a).",                       # a formula, not a sentence
    "- A. Vaswani et al. (2017). Attention is all you need. arXiv:1706.03762 — về scaled dot-product attention.",
    "Hãy gọi `torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)` ở đây.",
    "E={p['E']:.3f} A={p['A']:8.1f} alpha={p['alpha']:.3f}",
    "perplexity validation của bigram model với add-k smoothing",        # Vinglish: terms, no sentence
])
def test_english_heuristic_lets_vinglish_formulas_and_citations_pass(text):
    assert english_left(text) is None


# --------------------------------------------------------------------------- Vietnamese text in the notebooks

VI_SAMPLE = ROOT / "tests" / "data" / "vi_sample.txt"
# (notebook, the given function that splits text into sentences of words)
WORD_SPLITTERS = [("01_chain_rule/chain_rule.nbsrc", "split_sentences"),
                  ("02_entropy_perplexity/entropy_perplexity.nbsrc", "to_sentences")]


def _given_function(nb, name):
    """Define one function of a notebook's given code, alone (no kernel, no corpus)."""
    import ast
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                namespace = {"re": re, "unicodedata": unicodedata}
                exec(compile(ast.Module([node], []), f"<{name}>", "exec"), namespace)
                return namespace[name]
    raise AssertionError(f"{name} is not defined in the notebook")


@pytest.mark.parametrize("edition", ["en"] + LANGS)
@pytest.mark.parametrize("where,name", WORD_SPLITTERS)
def test_word_splitters_keep_vietnamese_syllables_whole(where, name, edition):
    nbsrc = ROOT / "authoring" / where
    nb = build_notebook(nbsrc) if edition == "en" else i18n.translate_notebook(nbsrc, edition)
    split = _given_function(nb, name)
    sentence = "Tiếng Việt là tiếng mẹ đẻ của học sinh."
    expected = [["tiếng", "việt", "là", "tiếng", "mẹ", "đẻ", "của", "học", "sinh"]]
    for form in ("NFC", "NFD"):   # decomposed input must not split "Tiếng" into "Tie" + "ng"
        got = split(unicodedata.normalize(form, sentence))
        assert got == expected, f"{name} on {form} input: {got}"
    # the test text: every token is one whole syllable, lower-cased, in NFC, and none is lost
    text = VI_SAMPLE.read_text(encoding="utf-8")
    tokens = [w for s in split(unicodedata.normalize("NFD", text)) for w in s]
    syllables = [w for w in re.findall(r"[^\W\d_]+", text.lower())]
    assert tokens == syllables, f"{name}: {len(tokens)} tokens, {len(syllables)} syllables in {VI_SAMPLE.name}"
    assert all(unicodedata.is_normalized("NFC", w) for w in tokens)


@pytest.mark.parametrize("edition", ["en"] + LANGS)
@pytest.mark.parametrize("where", [w for w, _ in WORD_SPLITTERS])
def test_notebooks_that_split_words_say_what_a_vietnamese_word_is(where, edition):
    nbsrc = ROOT / "authoring" / where
    nb = build_notebook(nbsrc) if edition == "en" else i18n.translate_notebook(nbsrc, edition)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert '"học sinh"' in prose and re.search(r"syllable|âm tiết", prose), \
        "say that a Vietnamese 'word' token is a syllable (\"học sinh\" is two)"


def test_display_math_with_a_phrase_in_text_is_a_message():
    """$$...\\text{over all parameters}$$ on its own is translatable; a one-word label is notation."""
    phrase = "$$\\lVert g \\rVert_2 = \\sqrt{\\sum g^2}\\ \\text{over all parameters together.}$$"
    label = "$$\\hat p_{\\text{data}} = \\frac{C}{N}$$"
    assert [s.msgid for s in i18n.segments("markdown", phrase)] == [phrase]
    assert i18n.segments("markdown", label) == []
    vi = phrase.replace("over all parameters together.", "trên mọi tham số gộp chung.")
    assert i18n.translate_cell("markdown", phrase, {phrase: vi}.__getitem__) == vi
    with pytest.raises(i18n.TranslationError):   # the words may change, the math may not
        i18n.translate_cell("markdown", phrase, {phrase: vi.replace("g^2", "g")}.__getitem__)
