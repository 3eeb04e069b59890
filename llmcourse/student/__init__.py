"""The student runtime: everything a course notebook imports, and nothing else.

``env`` (setup_notebook: profile, device, seeds), ``corpus`` (the Shakespeare texts),
``plotting`` (the course's figure style, save_if_asked) and ``checks`` (check_close and the
other helpers the notebooks' tests call). Installed by a plain ``pip install .``: no module
here may import a grading or authoring dependency (nbgrader, dask, psycopg, bleach,
playwright, pytest); tests/test_package.py holds it to that.
"""
