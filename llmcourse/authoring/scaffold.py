"""`make new ASSIGNMENT=NN_name`: a new assignment that passes every structure test from the start.

Writes, for ``NN_name`` (notebook ``name``):

- ``authoring/NN_name/name.nbsrc``: a small, complete notebook to rewrite: the teaching frame
  (time, outcomes, analogy, genealogy, "why this and not that", summary, primary sources), the
  parameters cell, one task (``standardize``) with its contract stated before the solution
  cell, eight test cells (a visible check each, hidden checks whose expected values are
  computed in ``_``-prefixed names), a plot saved with ``save_if_asked`` and a written answer
  with a model answer and a rubric; points sum to 100;
- ``source/NN_name/name.ipynb``: built from it (as ``make notebooks`` does);
- ``authoring/NN_name/misconceptions.toml``: six misconceptions of the task, each caught by a test;
- ``tests/contracts/aNN_name.toml``: every clause of the contract mapped to its checks;
- a row in the README's table of assignments.

``make release ASSIGNMENT=NN_name`` then makes ``release/``. An id that is not ``NN_name``
(two digits, an underscore, lower-case letters, digits and underscores), an id or a number
already used, or a README without the table is refused with the reason, before anything is
written.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from .nbbuild import build_notebook, dumps

ID = re.compile(r"(\d\d)_([a-z][a-z0-9_]*)")
README_ROW = re.compile(r"^\| (\d\d) \| `(\d\d_[a-z0-9_]+)` \| .*\|$")


class ScaffoldError(ValueError):
    pass


def check_id(root: Path, assignment: str) -> tuple[str, str]:
    """(number, notebook name) of a new assignment id, or ScaffoldError saying why it cannot be used."""
    m = ID.fullmatch(assignment or "")
    if not m:
        raise ScaffoldError(f"{assignment!r} is not an assignment id: use NN_name, two digits, an underscore and "
                            f"lower-case letters, digits or underscores (e.g. 07_tokenization)")
    num, name = m.groups()
    for folder in ("authoring", "source", "release"):
        if (root / folder / assignment).exists():
            raise ScaffoldError(f"{folder}/{assignment} already exists: choose another id")
    taken = sorted(p.name for d in ("authoring", "source") if (root / d).is_dir() for p in (root / d).iterdir()
                   if p.is_dir() and p.name.startswith(num + "_"))
    if taken:
        raise ScaffoldError(f"number {num} is already used by {taken[0]}: choose another number")
    return num, name


def _fill(template: str, assignment: str, num: str, name: str) -> str:
    return template.replace("@@ID@@", assignment).replace("@@NUM@@", num).replace("@@NAME@@", name)


def _readme_with_row(readme: str, assignment: str, num: str) -> str:
    lines = readme.split("\n")
    rows = [i for i, ln in enumerate(lines) if README_ROW.match(ln)]
    if not rows:
        raise ScaffoldError("README.md has no table of assignments (rows like | 01 | `01_chain_rule` | ... |)")
    row = f"| {num} | `{assignment}` | (new: say in one line what students build) |"
    after = max((i for i in rows if README_ROW.match(lines[i]).group(1) < num), default=rows[0] - 1)
    lines.insert(after + 1, row)
    return "\n".join(lines)


def new_assignment(root: Path, assignment: str) -> list[Path]:
    """Write the files of a new assignment (module doc); the paths written."""
    root = Path(root)
    num, name = check_id(root, assignment)
    readme_path = root / "README.md"
    readme = _readme_with_row(readme_path.read_text(encoding="utf-8"), assignment, num)
    files = {
        root / "authoring" / assignment / f"{name}.nbsrc": _fill(NBSRC, assignment, num, name),
        root / "authoring" / assignment / "misconceptions.toml": _fill(MISCONCEPTIONS, assignment, num, name),
        root / "tests" / "contracts" / f"a{assignment}.toml": _fill(CONTRACT, assignment, num, name),
    }
    written = []
    for path in files:
        if path.exists():
            raise ScaffoldError(f"{path.relative_to(root)} already exists")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    nbsrc = root / "authoring" / assignment / f"{name}.nbsrc"
    out = root / "source" / assignment / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(build_notebook(nbsrc)), encoding="utf-8")
    written.append(out)
    readme_path.write_text(readme, encoding="utf-8")
    written.append(readme_path)
    return written


NBSRC = r'''%%% md
# @@NUM@@ · Standardising rows (the scaffold of a new assignment: rewrite every part)

**Time:** about 45 minutes of work (every profile runs in seconds on a laptop CPU).

**You will be able to**

1. standardise each row of an array to mean 0 and variance 1, the step inside layer normalisation;
2. say why the small `eps` goes inside the square root, and what a constant row then gives.

**How this notebook works.** Read the story, fill in every cell that says `YOUR CODE HERE`, and run the test cell under it. Visible tests check the shape and one simple value; hidden tests, run when your work is graded, check edge cases and the common mistakes. Cells you cannot edit are restored when grading, so edit only the answer cells. One short written answer is graded by hand.

> **For the author** (delete this note): `make new` wrote this notebook; it passes the structure tests as it is. Keep its shape while you replace the topic: a contract stated before each solution cell, test cells whose check names start with their grade id, hidden checks whose expected values are computed in `_`-prefixed names, one mutant per misconception in `authoring/@@ID@@/misconceptions.toml`, every clause mapped to its checks in `tests/contracts/a@@ID@@.toml`. See docs/authoring.md.

%%% code parameters
# Parameters (papermill). This cell is locked: grading always runs at PROFILE="smoke".
DEVICE = "auto"       # "auto" | "cpu" | "cuda" | "mps"
PROFILE = "default"   # "smoke" (seconds) | "default" (laptop CPU) | "full" (GPU runner)
SEED = 0

%%% code
import matplotlib.pyplot as plt
import numpy as np

from llmcourse import setup_notebook
from llmcourse.student.checks import check_close, check_equal, check_raises, check_shape, check_true
from llmcourse.student.plotting import save_if_asked

cfg = setup_notebook(PROFILE, DEVICE, SEED)
print(cfg)

%%% md
## 1 · Standardising the rows of an array

**Context.** A network's activations drift in scale from layer to layer and from example to example. Layer normalisation rescales each example's vector of features to mean 0 and variance 1 before a learned scale and shift are applied.

**Analogy.** Marks from two teachers, one strict and one generous, become comparable once each teacher's marks are expressed as "how far above or below that teacher's average, in that teacher's spread".

**Genealogy check.** The z-score is old statistics; applying it to every row of a layer's activations is layer normalisation (Ba, Kiros and Hinton, 2016).

**Why this and not that.** Normalising each *row* (one example) rather than each *column* (one feature across the batch, as batch normalisation does) makes the result independent of the other examples in the batch.

### Your task: `standardize`

`standardize(x, eps=1e-5)` takes a 2-D array `x` of shape `(rows, features)` and returns, for each row, the row minus its mean, divided by `sqrt(variance + eps)`:

- the result has the shape of `x` and dtype `float64`, whatever the dtype of `x`;
- each row of the result has mean 0;
- the variance is the biased one (divide by the number of features, as `np.var` does); with `eps=0` each row of the result has variance 1;
- `eps` is added to the variance *inside* the square root;
- a constant row gives a row of zeros, never NaN;
- rows are independent: a row's result does not depend on the other rows;
- an array with zero features raises `ValueError`; a single feature gives 0.

%%% code solution id=standardize
def standardize(x, eps=1e-5):
    """Each row of x minus its mean, divided by sqrt(its biased variance + eps)."""
    ### BEGIN SOLUTION
    x = np.array(x, dtype=np.float64)   # a float64 copy: the caller's array is never changed
    if x.shape[-1] == 0:
        raise ValueError("standardize needs at least one feature per row")
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)
    ### END SOLUTION

%%% code tests id=test_standardize_shape points=10
check_shape("test_standardize_shape/small", standardize(np.ones((2, 3))), (2, 3))
### BEGIN HIDDEN TESTS
_x = np.random.default_rng(1).normal(size=(5, 7))
check_shape("test_standardize_shape/five_by_seven", standardize(_x), (5, 7))
_ref = (_x - _x.mean(axis=1, keepdims=True)) / np.sqrt(_x.var(axis=1, keepdims=True) + 1e-5)
check_close("test_standardize_shape/values", standardize(_x), _ref)
### END HIDDEN TESTS

%%% code tests id=test_standardize_mean points=10
check_close("test_standardize_mean/two_rows", standardize(np.array([[1.0, 2.0, 3.0], [10.0, 0.0, 5.0]])).mean(axis=1),
            [0.0, 0.0], atol=1e-9, hint="subtract each row's own mean (axis=-1, keepdims=True)")
### BEGIN HIDDEN TESTS
_x = np.random.default_rng(2).normal(loc=50.0, scale=4.0, size=(6, 9))
check_close("test_standardize_mean/offset_rows", standardize(_x).mean(axis=1), np.zeros(6), atol=1e-9)
_ref = (_x - _x.mean(axis=1, keepdims=True)) / np.sqrt(_x.var(axis=1, keepdims=True) + 1e-5)
check_close("test_standardize_mean/values", standardize(_x), _ref)
### END HIDDEN TESTS

%%% code tests id=test_standardize_variance points=10
check_close("test_standardize_variance/unit", standardize(np.array([[0.0, 2.0, 4.0]]), eps=0.0).var(axis=1), [1.0],
            hint="the biased variance divides by the number of features")
### BEGIN HIDDEN TESTS
_x = np.random.default_rng(3).normal(scale=3.0, size=(4, 5))
_ref = (_x - _x.mean(axis=1, keepdims=True)) / _x.std(axis=1, keepdims=True)
check_close("test_standardize_variance/biased", standardize(_x, eps=0.0), _ref)
### END HIDDEN TESTS

%%% code tests id=test_standardize_eps points=10
check_close("test_standardize_eps/inside_sqrt", standardize(np.array([[-1.0, 1.0]]), eps=1.0),
            [[-1 / np.sqrt(2.0), 1 / np.sqrt(2.0)]], hint="eps is added to the variance, under the square root")
### BEGIN HIDDEN TESTS
_x = np.array([[-2.0, 2.0], [1.0, 5.0]])
_ref = (_x - _x.mean(axis=1, keepdims=True)) / np.sqrt(_x.var(axis=1, keepdims=True) + 3.0)
check_close("test_standardize_eps/three", standardize(_x, eps=3.0), _ref)
### END HIDDEN TESTS

%%% code tests id=test_standardize_constant points=10
check_close("test_standardize_constant/zeros", standardize(np.full((1, 4), 7.0)), np.zeros((1, 4)))
### BEGIN HIDDEN TESTS
_x = np.array([[3.0, 3.0, 3.0], [1.0, 2.0, 6.0]])
_got = standardize(_x)
check_true("test_standardize_constant/no_nan", not np.isnan(_got).any(), "a constant row must not give NaN")
_ref = (_x - _x.mean(axis=1, keepdims=True)) / np.sqrt(_x.var(axis=1, keepdims=True) + 1e-5)
check_close("test_standardize_constant/mixed", _got, _ref)
### END HIDDEN TESTS

%%% code tests id=test_standardize_rows points=10
_two = np.array([[1.0, 2.0, 4.0], [100.0, -50.0, 3.0]])
check_close("test_standardize_rows/row_alone", standardize(_two)[0], standardize(_two[:1])[0],
            hint="compute the statistics along axis=-1, one row at a time")
### BEGIN HIDDEN TESTS
_x = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [9.0, 0.0, -3.0]])
_ref = (_x[:1] - _x[:1].mean()) / np.sqrt(_x[:1].var() + 1e-5)
check_close("test_standardize_rows/first_row", standardize(_x)[:1], _ref)
check_close("test_standardize_rows/repeated_row", standardize(_x)[1], _ref[0])
### END HIDDEN TESTS

%%% code tests id=test_standardize_dtype points=10
check_equal("test_standardize_dtype/float64", str(standardize(np.ones((2, 2))).dtype), "float64")
### BEGIN HIDDEN TESTS
check_equal("test_standardize_dtype/from_float32", str(standardize(np.ones((2, 3), dtype=np.float32)).dtype),
            "float64")
_x = np.array([[1, 2, 3]])
_ref = (_x - 2.0) / np.sqrt(2.0 / 3.0 + 1e-5)
check_close("test_standardize_dtype/from_int", standardize(_x), _ref)
### END HIDDEN TESTS

%%% code tests id=test_standardize_edges points=10
check_raises("test_standardize_edges/zero_features", ValueError, standardize, np.ones((3, 0)))
### BEGIN HIDDEN TESTS
check_raises("test_standardize_edges/one_row_zero_features", ValueError, standardize, np.ones((1, 0)))
check_close("test_standardize_edges/one_feature", standardize(np.array([[4.0], [-2.0]])), [[0.0], [0.0]])
### END HIDDEN TESTS

%%% md
## 2 · What standardising does to a whole batch

Rows drawn with very different means and spreads all land on the same scale.

%%% code
rng = np.random.default_rng(SEED)
n_rows = cfg.pick(smoke=50, default=500, full=5000)
raw = rng.normal(size=(n_rows, 16)) * rng.uniform(0.5, 5.0, size=(n_rows, 1)) + rng.uniform(-10, 10, size=(n_rows, 1))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(raw.ravel(), bins=60, alpha=0.6, label="raw rows")
ax.hist(standardize(raw).ravel(), bins=60, alpha=0.6, label="standardized rows")
ax.set_xlabel("value")
ax.set_ylabel("count")
ax.set_title("Every row on one scale after standardize")
ax.legend()
save_if_asked(fig, "@@ID@@")
plt.show()

%%% md answer id=answer_eps points=20
### Written answer (20 points)

Why is `eps` added to the variance inside the square root rather than to the standard deviation outside it, and what would a constant row give with `eps = 0`?

### BEGIN SOLUTION
**Model answer.** With `eps = 0` a constant row has variance 0, so the division is 0/0 and gives NaN. Adding `eps` under the root keeps the denominator at least `sqrt(eps)`, so a constant row gives zeros; it also keeps the result a smooth function of the variance (the square root's slope is infinite at 0, which `eps` avoids), which matters when gradients flow through it. Adding it outside, `std + eps`, also avoids the division by zero but changes the scale differently and is not the formula layer normalisation uses.

**Rubric (20 points).** 8: constant row, zero variance, 0/0 = NaN without eps; 6: eps under the root bounds the denominator below by sqrt(eps) and gives zeros; 6: a reason for the position (smooth in the variance, the published formula). Deduct 5 for claiming eps changes non-constant rows noticeably at 1e-5.
### END SOLUTION

%%% md
## Summary

- Standardising a row subtracts its mean and divides by `sqrt(variance + eps)`; each row ends with mean 0 and variance close to 1.
- `eps` under the square root turns a constant row into zeros instead of NaN.
- Statistics along each row make the result independent of the rest of the batch.

## Primary sources

- J. L. Ba, J. R. Kiros, G. E. Hinton (2016), *Layer Normalization*, arXiv:1607.06450.
'''

MISCONCEPTIONS = '''# Misconception mutants of @@ID@@: each known student mistake, written into the reference
# solution (cell: grade id of the solution cell; old: text replaced, exactly once; new: its
# replacement; models: the mistake). Every one must fail some graded test
# (tests/test_05_misconceptions.py); `make demo` grades one submission per mutant.

[[mutant]]
cell = "standardize"
old = "var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)"
new = "var = x.var(axis=-1, ddof=1, keepdims=True)"
models = "the unbiased variance (ddof=1) where the contract asks for the biased one"

[[mutant]]
cell = "standardize"
old = "return (x - mean) / np.sqrt(var + eps)"
new = "return (x - mean) / (np.sqrt(var) + eps)"
models = "eps added to the standard deviation instead of inside the square root"

[[mutant]]
cell = "standardize"
old = "mean = x.mean(axis=-1, keepdims=True)"
new = "mean = x.mean(axis=0, keepdims=True)"
models = "the mean taken over the batch (columns) instead of each row"

[[mutant]]
cell = "standardize"
old = "return (x - mean) / np.sqrt(var + eps)"
new = "return x / np.sqrt(var + eps)"
models = "dividing by the spread without subtracting the mean"

[[mutant]]
cell = "standardize"
old = "x = np.array(x, dtype=np.float64)"
new = "x = np.array(x)"
models = "the input's dtype kept (float32 stays float32) where the contract asks for float64"

[[mutant]]
cell = "standardize"
old = 'raise ValueError("standardize needs at least one feature per row")'
new = "return x"
models = "an empty row passed through instead of refused"
'''

CONTRACT = '''# Clauses of the contracts of @@ID@@, each mapped to the checks that exercise it.
# Format and rules: llmcourse/authoring/contracts.py; checked by tests/test_contracts.py.
notebook = "@@ID@@"

[[function]]
name = "standardize"
cell = "standardize"

[[function.clause]]
text = "the result has the shape of x"
checks = ["test_standardize_shape/small", "test_standardize_shape/five_by_seven"]

[[function.clause]]
text = "each row minus its mean, divided by sqrt(variance + eps)"
checks = ["test_standardize_shape/values", "test_standardize_mean/values"]

[[function.clause]]
text = "dtype float64, whatever the dtype of x"
checks = ["test_standardize_dtype/float64", "test_standardize_dtype/from_float32", "test_standardize_dtype/from_int"]

[[function.clause]]
text = "each row of the result has mean 0"
checks = ["test_standardize_mean/two_rows", "test_standardize_mean/offset_rows"]

[[function.clause]]
text = "the biased variance; with eps=0 each row has variance 1"
checks = ["test_standardize_variance/unit", "test_standardize_variance/biased"]

[[function.clause]]
text = "eps is added to the variance inside the square root"
checks = ["test_standardize_eps/inside_sqrt", "test_standardize_eps/three"]

[[function.clause]]
text = "a constant row gives a row of zeros, never NaN"
checks = ["test_standardize_constant/zeros", "test_standardize_constant/no_nan", "test_standardize_constant/mixed"]

[[function.clause]]
text = "rows are independent"
checks = ["test_standardize_rows/row_alone", "test_standardize_rows/first_row", "test_standardize_rows/repeated_row"]

[[function.clause]]
text = "zero features raise ValueError; a single feature gives 0"
checks = ["test_standardize_edges/zero_features", "test_standardize_edges/one_row_zero_features",
          "test_standardize_edges/one_feature"]
'''


if __name__ == "__main__":   # python -m llmcourse.authoring.scaffold NN_name
    try:
        for p in new_assignment(Path.cwd(), sys.argv[1] if len(sys.argv) > 1 else ""):
            print(f"wrote {p.relative_to(Path.cwd())}")
    except ScaffoldError as exc:
        sys.exit(f"error: {exc}")
