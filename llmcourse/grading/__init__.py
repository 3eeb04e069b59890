"""The instructor's room: grading a class (``pip install .[grader]``).

``grader`` (the batch: resume state, sandboxed runs, trusted decisions, nbgrader's gradebook,
reports), ``trusted`` (rebuilding a submission from the course's source, deciding test cells),
``sandbox`` with ``sandbox_launch``, ``sandbox_runner`` and ``seccomp`` (where student code
runs), ``collect`` (submissions from the exchange), ``gradebook`` (the writer process),
``htmlsafe`` / ``safetext`` (what a browser, a terminal or a spreadsheet shows),
``nbgrader_ext`` (nbconvert preprocessors named in nbgrader_config.py) and ``course``
(finding the course, running nbgrader and papermill, grade tables). Never imported by a
student's notebook; it imports the student runtime only for the check records' format.
"""
from . import fastimport  # noqa: F401  (first, before any module here imports nbformat: see its docstring)
