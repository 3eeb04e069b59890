"""nbgrader configuration of the course (read from the course root, the folder this file is in).

Environment variables (all optional; every one, with its default: llmcourse/settings.py, README "Settings"):
  LLMCOURSE_DB_URL                SQLAlchemy URL of the gradebook (default: sqlite:///<root>/gradebook.db),
                                  e.g. postgresql://user:pass@host/gradebook
  LLMCOURSE_EXCHANGE              nbgrader exchange folder (default: /srv/nbgrader/exchange)
  LLMCOURSE_LIMIT_CELL_TIMEOUT_S  seconds one cell may run while grading (default: 60; the sandboxed
                                  grader's limit too; the old name LLMCOURSE_CELL_TIMEOUT still works)

Do not pass --config= on the command line: nbgrader 0.9.6 ignores it. Edit this file.
"""
import os

from llmcourse.settings import setting

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "llm-course"
c.CourseDirectory.root = ROOT
c.CourseDirectory.db_url = setting("LLMCOURSE_DB_URL") or "sqlite:///" + os.path.join(ROOT, "gradebook.db")
c.Exchange.root = setting("LLMCOURSE_EXCHANGE")

# Never ship anything but a stub where a solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Execution while validating / autograding. Notebooks run at PROFILE=smoke under
# nbgrader (NBGRADER_EXECUTION is set), so one cell should take seconds.
c.Execute.timeout = setting("LLMCOURSE_LIMIT_CELL_TIMEOUT_S")
c.Execute.interrupt_on_timeout = True
# A student cell that swallows KeyboardInterrupt must not abort grading of the
# submission: without this, nbclient raises on the iopub timeout that follows.
c.Execute.raise_on_iopub_timeout = False
c.Execute.execute_retries = 0
# Bound what a runaway cell can print into the graded notebook.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 50

# Feedback: never show hidden tests (source, output or traceback lines).
# ScrubHiddenTestOutputs must run before ClearHiddenTests (it finds the hidden
# regions by their markers); it needs the course package installed (make install).
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

from llmcourse.grading.nbgrader_ext import ScrubHiddenTestOutputs  # noqa: E402

c.GenerateFeedback.preprocessors = [
    GetGrades,
    ScrubHiddenTestOutputs,
    ClearHiddenTests,
    CSSHTMLHeaderPreprocessor,
]
c.ClearHiddenTests.enforce_metadata = False

# Every HTML page made from a notebook (Formgrader's grading pages, feedback): bounded in size,
# student-written HTML rendered inert (script, event handlers, javascript: links, active outputs).
c.HTMLExporter.preprocessors = ["llmcourse.grading.nbgrader_ext.LimitCellSize",
                                "llmcourse.grading.nbgrader_ext.SanitizeStudentHTML"]

# Students' own files that never belong in a graded copy.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

# The course's sandboxed grader (llmcourse.grading.grader, `make autograde`) executes each
# submission itself, in a sandbox, and decides the test cells from trusted records.
# It then hands nbgrader the finished notebook with LLMCOURSE_PRE_EXECUTED=1, so
# nbgrader only records grades: no clearing of outputs, no execution.
if setting("LLMCOURSE_PRE_EXECUTED"):
    from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
    from nbgrader.preprocessors import (  # noqa: E402
        AssignLatePenalties,
        CheckCellMetadata,
        DeduplicateIds,
        IgnorePattern,
        LimitOutput,
        OverwriteCells,
        OverwriteKernelspec,
        SaveAutoGrades,
    )

    c.Autograde.sanitize_preprocessors = [DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata]
    c.Autograde.autograde_preprocessors = [IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                           SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
