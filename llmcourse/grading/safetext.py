"""Text from submissions, made safe for the places an instructor reads it.

Student-controlled text (folder and file names, exception messages, anything a flag
quotes) reaches three kinds of reader:

- a spreadsheet opening the grader's CSV reports: a cell that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return is a formula there (``=HYPERLINK(...)``), so
  :func:`csv_field` puts a ``'`` in front of it (the usual defence; the text stays
  readable) and writes control characters as escapes;
- a terminal (the grader's summary, collect's report): escape sequences would move the
  cursor, rewrite earlier lines or retitle the window, so :func:`terminal` writes every
  control character (C0, DEL, C1, and the lone surrogates of undecodable file names) as a
  visible escape;
- a browser: HTML is sanitised elsewhere (llmcourse.grading.htmlsafe).
"""
from __future__ import annotations

import csv
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _escape(m: re.Match) -> str:
    ch = m.group(0)
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text) -> str:
    """`text` with every control character written as a visible escape (one line, no ESC)."""
    return _CONTROL.sub(_escape, str(text))


def csv_field(value):
    """A value for a CSV report: numbers as they are, text without formulas or control characters."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return _CONTROL.sub(_escape, text)


class SafeWriter:
    """csv.writer whose every field goes through csv_field."""

    def __init__(self, fh):
        self._w = csv.writer(fh)

    def writerow(self, row) -> None:
        self._w.writerow([csv_field(v) for v in row])
