"""Keep a slow, unused import out of the grader's processes. Import this before nbformat.

nbformat validates notebooks with jsonschema, and jsonschema imports the optional package
rfc3987_syntax when it is installed (it is, as a dependency of the Jupyter stack), which
builds a parser grammar at import time: about 0.8 s of CPU in every process that imports
nbformat. It only serves jsonschema's "iri" formats, which neither nbformat's nor nbgrader's
schemas use. The grader starts such processes per submission (the sandbox runner) and per
worker (Dask workers, gradebook writers), so this is worth ~0.8 s each. Marking the module as
absent makes jsonschema skip it (it imports it under ``suppress(ImportError)``).
Never imported by the notebooks.
"""
import sys

sys.modules.setdefault("rfc3987_syntax", None)
