"""Tools for the people who write the course, not for students.

``mutation`` (with ``operators`` and ``runner``) mutates the reference solutions of the
source notebooks and measures how many mutants the hidden tests kill; ``contracts``
maps the clauses of each graded function's contract to the hidden checks that test them.
Nothing here contains or reads a solution at import time: the notebooks are read when a
tool runs.
"""
