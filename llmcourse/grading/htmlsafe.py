"""Student-written HTML, neutralised before an instructor's or student's browser renders it.

A markdown answer may hold raw HTML (``<script>``, ``<img onerror=...>``, ``<iframe>``), and
markdown itself makes links (``[x](javascript:...)``). Formgrader renders answers on the
instructor's Jupyter origin, where a script could use the server's API (terminals
included), and feedback pages are opened by students and instructors. So:

- :func:`sanitize_markdown` renders the markdown the way nbconvert's templates do (mistune,
  math left to MathJax) and passes the HTML through bleach (nbconvert's own sanitiser
  dependency, pinned in constraints.txt) with a short allow-list: text formatting, lists,
  tables, code, headings, absolute links to http(s)/mailto, images from http(s) (no
  relative URL: nothing points at the Jupyter server's own API). Everything else is
  shown as text (``&lt;script&gt;``), event-handler, style, class and id attributes are
  dropped (no script, no overlay made of the page's own CSS, no clobbered element ids).
  When that changes nothing, the answer is returned as it was (an untouched answer keeps
  its checksum, which nbgrader uses to give an unchanged answer 0 points); otherwise the
  answer becomes the sanitised HTML on one line inside one ``<div>``, which markdown
  passes through as a single HTML block.
- the grader applies it to every markdown answer before staging (llmcourse.grading.grader), and
  the nbconvert preprocessor ``SanitizeStudentHTML`` (llmcourse.grading.nbgrader_ext, enabled for
  every HTMLExporter by nbgrader_config.py: Formgrader and feedback) applies it to every
  markdown and raw cell again, and drops active outputs (HTML, JavaScript, SVG, widgets).
"""
from __future__ import annotations

import bleach
from bleach.css_sanitizer import CSSSanitizer  # noqa: F401  (bleach[css]: imported to fail early if absent)

TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "del", "dd", "div", "dl", "dt", "em", "h1", "h2", "h3",
        "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"}
ATTRIBUTES = {"a": ["href", "title"], "img": ["src", "alt", "title"], "td": ["align"], "th": ["align"],
              "ol": ["start"], "code": [], "span": []}
PROTOCOLS = {"http", "https", "mailto"}
MARK = "llmcourse-sanitized"
WRAPPER = f'<div class="{MARK}">'


def _allowed(tag: str, name: str, value: str) -> bool:
    if tag == "div" and name == "class":
        return value == MARK
    if name in ("href", "src"):   # absolute http(s)/mailto only: no request to the Jupyter server itself
        v = value.strip().lower()
        return name in ATTRIBUTES.get(tag, ()) and v.startswith(("http://", "https://", "mailto:"))
    return name in ATTRIBUTES.get(tag, ())


def clean_html(html: str) -> str:
    return bleach.clean(html, tags=TAGS, attributes=_allowed, protocols=PROTOCOLS, strip=False,
                        strip_comments=True)


def _render(markdown: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    return markdown2html_mistune(markdown)


def sanitize_markdown(source: str) -> str:
    """The markdown answer itself when it renders to nothing unsafe, else its sanitised HTML."""
    if source.startswith(WRAPPER) and source.endswith("</div>") and "\n" not in source:
        inner = source.replace("&#10;", "\n")
        if clean_html(inner) == inner:
            return source      # already sanitised (the grader did it; the exporter sees it again)
    html = _render(source)
    cleaned = clean_html(html)
    if cleaned == html:
        return source
    # headings' anchor links lose their href and id (ids could clobber the page's own): drop them
    cleaned = cleaned.replace("<a>\u00b6</a>", "").replace("<a>&#182;</a>", "")
    # one line: markdown then passes the whole <div> through as one raw HTML block, untouched
    body = cleaned.replace("\r", "").replace("\n", "&#10;")
    return WRAPPER + body + "</div>"


SAFE_OUTPUT_KEYS = {"text/plain", "image/png", "image/jpeg", "text/latex", "application/json"}


def safe_outputs(outputs: list) -> list:
    """Outputs without active content: text/html, markdown, SVG, JavaScript, widgets are dropped."""
    kept = []
    for o in outputs:
        if o.get("output_type") in ("display_data", "execute_result"):
            data = {k: v for k, v in (o.get("data") or {}).items() if k in SAFE_OUTPUT_KEYS}
            if not data:
                continue
            o["data"] = data
        kept.append(o)
    return kept
