"""Check helpers of the course's test contract.

Every test cell in every assignment uses these instead of bare ``assert`` on
``numpy.allclose``. In a student's kernel they behave like asserts whose
messages say *what* is wrong (shape, which entry, by how much) without
printing the expected answer. When trusted grading asks for it (environment
variable ``LLMCOURSE_RECORD`` names a file), each check also appends one JSON
line with the student's value as plain data (numbers, lists, strings, never
pickles) under the check's name. A separate process that never runs student
code can then compare those values with the ones the reference solution
records for the same seeded inputs (:func:`compare_records`), so a submission
that monkeypatches ``numpy.allclose`` or ``torch.allclose`` gains nothing.

Check names are ``"<grade_id>/<what>"``: the part before the slash is the
nbgrader grade id of the test cell the check lives in (a structure test
enforces this), so a failed comparison can be charged to the right cell.

The comparisons here use plain Python arithmetic on float64 copies, not
``numpy.allclose``, so patching numpy's comparison functions does not even
change the in-kernel verdict.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Iterable

from ..settings import setting

__all__ = [
    "CheckFailed",
    "check_close",
    "check_equal",
    "check_true",
    "check_raises",
    "check_shape",
    "compare_records",
    "load_records",
    "RECORD_ENV",
]

RECORD_ENV = "LLMCOURSE_RECORD"


class _RecordOnly:
    """Stands in for the expected value in the sandboxed grading run: record, do not compare."""

    def __repr__(self) -> str:
        return "RECORD_ONLY"


RECORD_ONLY = _RecordOnly()
_MAX_RECORD_ITEMS = 100_000


class CheckFailed(AssertionError):
    """Raised by a failing check. An AssertionError, so nbgrader scores it as a failure."""


# --------------------------------------------------------------------------
# conversion to plain data
# --------------------------------------------------------------------------

def _to_plain(value: Any) -> Any:
    """Convert tensors / arrays / numpy scalars to nested Python lists and numbers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    # torch tensors (imported lazily: the helpers must work without torch)
    if type(value).__module__.startswith("torch"):
        try:
            value = value.detach().cpu()
            if getattr(value, "dtype", None) is not None and "bfloat16" in str(value.dtype):
                value = value.float()
            return _to_plain(value.numpy())
        except Exception:  # not a tensor after all (e.g. torch.Size)
            pass
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return repr(value)


def _shape(value: Any) -> tuple[int, ...] | None:
    """Shape of nested lists (None when ragged or not a list)."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    subs = [_shape(v) for v in value]
    if any(s is None for s in subs) or len(set(subs)) != 1:
        return None
    return (len(value),) + subs[0]


def _flatten(value: Any) -> list:
    if isinstance(value, list):
        out: list = []
        for v in value:
            out.extend(_flatten(v))
        return out
    return [value]


def _index_of(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    idx = []
    for dim in reversed(shape):
        idx.append(flat_index % dim if dim else 0)
        flat_index //= dim if dim else 1
    return tuple(reversed(idx))


def _as_float(x: Any) -> float:
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, complex):
        raise TypeError("complex numbers are not supported")
    raise TypeError(f"not a number: {x!r}")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _describe(value: Any) -> str:
    t = type(value)
    if t.__module__.startswith("torch") and hasattr(value, "shape"):
        return f"torch tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{t.__module__.split('.')[0]} array of shape {tuple(value.shape)} and dtype {value.dtype}"
    return t.__name__


# --------------------------------------------------------------------------
# recording
# --------------------------------------------------------------------------

def _record(name: str, kind: str, value: Any, **extra: Any) -> None:
    path = setting(RECORD_ENV)
    if not path:
        return
    entry = {"name": name, "kind": kind, "value": value}
    entry.update(extra)
    try:
        line = json.dumps(entry, allow_nan=True)
    except (TypeError, ValueError):
        entry["value"] = repr(value)
        line = json.dumps(entry)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or "/" not in name:
        raise ValueError(
            f"check name {name!r} must look like '<grade_id>/<what>' (course test contract)"
        )


def _fail(name: str, message: str, hint: str) -> None:
    text = f"[{name}] {message}"
    if hint:
        text += f"\nHint: {hint}"
    raise CheckFailed(text)


# --------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------

def _close_problem(actual_plain: Any, expected_plain: Any, atol: float, rtol: float) -> str | None:
    """Return a description of the first way ``actual`` is not close to ``expected``, or None."""
    a_shape, e_shape = _shape(actual_plain), _shape(expected_plain)
    if e_shape is None:
        raise ValueError("expected value is ragged")
    if a_shape != e_shape:
        return f"expected shape {e_shape}, got {a_shape if a_shape is not None else 'a ragged list'}"
    a_flat, e_flat = _flatten(actual_plain), _flatten(expected_plain)
    worst = None  # (excess, flat index, actual, expected)
    n_bad = 0
    for i, (a, e) in enumerate(zip(a_flat, e_flat, strict=False)):
        try:
            af = _as_float(a)
        except TypeError:
            return f"entry {_index_of(i, e_shape) if e_shape else ''} is not a number ({type(a).__name__})"
        ef = _as_float(e)
        if math.isnan(ef):
            if not math.isnan(af):
                n_bad += 1
                worst = worst or (math.inf, i, af, ef)
            continue
        if math.isnan(af):
            n_bad += 1
            if worst is None or worst[0] != math.inf:
                worst = (math.inf, i, af, ef)
            continue
        if math.isinf(ef) or math.isinf(af):
            if af != ef:
                n_bad += 1
                if worst is None or worst[0] != math.inf:
                    worst = (math.inf, i, af, ef)
            continue
        diff = abs(af - ef)
        tol = atol + rtol * abs(ef)
        if diff > tol:
            n_bad += 1
            excess = diff - tol
            if worst is None or (worst[0] != math.inf and excess > worst[0]):
                worst = (excess, i, af, ef)
    if worst is None:
        return None
    _, i, af, ef = worst
    where = f" at index {_index_of(i, e_shape)}" if e_shape else ""
    total = len(e_flat)
    if math.isnan(af):
        what = f"got NaN{where}"
    elif math.isinf(af) or math.isinf(ef):
        what = f"got {af}{where}, which is not the expected {'finite value' if not math.isinf(ef) else 'infinity'}"
    elif math.isnan(ef):
        what = f"got {_fmt(af)}{where} where NaN was expected"
    else:
        what = f"off by {_fmt(abs(af - ef))}{where} (you returned {_fmt(af)}; tolerance {_fmt(atol + rtol * abs(ef))})"
    count = f"{n_bad} of {total} entries differ; worst: " if total > 1 else ""
    return count + what


def check_close(name: str, actual: Any, expected: Any, *, atol: float = 1e-6,
                rtol: float = 1e-5, hint: str = "") -> None:
    """Check that ``actual`` is numerically close to ``expected`` (same shape).

    Works for Python numbers, nested lists, numpy arrays and torch tensors.
    The message names the shape mismatch or the worst entry and how far off it
    is; it never prints the expected value.
    """
    _check_name(name)
    actual_plain = _to_plain(actual)
    _record(name, "close", actual_plain, atol=atol, rtol=rtol)
    if expected is RECORD_ONLY:
        return
    expected_plain = _to_plain(expected)
    if isinstance(actual_plain, str):
        _fail(name, f"expected a number or an array, got {_describe(actual)}", hint)
    problem = _close_problem(actual_plain, expected_plain, atol, rtol)
    if problem is not None:
        _fail(name, problem, hint)


def check_equal(name: str, actual: Any, expected: Any, *, hint: str = "") -> None:
    """Check exact equality (after converting arrays/tensors to plain lists)."""
    _check_name(name)
    actual_plain = _to_plain(actual)
    _record(name, "equal", actual_plain)
    if expected is RECORD_ONLY:
        return
    expected_plain = _to_plain(expected)
    if actual_plain == expected_plain and type(actual_plain) is type(expected_plain):
        return
    if isinstance(expected_plain, bool) or isinstance(actual_plain, bool):
        if actual_plain == expected_plain and isinstance(actual_plain, bool) == isinstance(expected_plain, bool):
            return
    elif isinstance(expected_plain, (int, float)) and isinstance(actual_plain, (int, float)):
        if actual_plain == expected_plain:
            return
    if isinstance(expected_plain, list):
        a_shape, e_shape = _shape(actual_plain), _shape(expected_plain)
        if a_shape != e_shape:
            got = a_shape if a_shape is not None else _describe(actual)
            _fail(name, f"expected shape/length {e_shape}, got {got}", hint)
        a_flat, e_flat = _flatten(actual_plain), _flatten(expected_plain)
        bad = [i for i, (a, e) in enumerate(zip(a_flat, e_flat, strict=False)) if a != e]
        if bad:
            i = bad[0]
            _fail(name, f"{len(bad)} of {len(e_flat)} entries differ; first at index "
                        f"{_index_of(i, e_shape)} (you returned {a_flat[i]!r})", hint)
        return
    if type(expected_plain) is not type(actual_plain) and not (
        isinstance(expected_plain, (int, float)) and isinstance(actual_plain, (int, float))
    ):
        _fail(name, f"expected a value of type {type(expected_plain).__name__}, got {_describe(actual)}", hint)
    _fail(name, f"wrong value (you returned {actual_plain!r})", hint)


def check_true(name: str, condition: Any, message: str, *, hint: str = "") -> None:
    """Check a condition; ``message`` says what was wrong when it fails."""
    _check_name(name)
    ok = bool(condition)
    _record(name, "true", ok)
    if not ok:
        _fail(name, message, hint)


def check_shape(name: str, actual: Any, shape: Iterable[int], *, hint: str = "") -> None:
    """Check the ``.shape`` of an array/tensor (or the nested-list shape)."""
    _check_name(name)
    want = tuple(int(s) for s in shape)
    got = getattr(actual, "shape", None)
    if got is None:
        got = _shape(_to_plain(actual))
    got = tuple(int(s) for s in got) if got is not None else None
    _record(name, "shape", list(got) if got is not None else None)
    if got != want:
        _fail(name, f"expected shape {want}, got {got if got is not None else _describe(actual)}", hint)


def check_raises(name: str, exceptions: type[BaseException] | tuple, func: Callable, *args: Any,
                 hint: str = "", **kwargs: Any) -> None:
    """Check that ``func(*args, **kwargs)`` raises one of ``exceptions``."""
    _check_name(name)
    if not isinstance(exceptions, tuple):
        exceptions = (exceptions,)
    wanted = " or ".join(e.__name__ for e in exceptions)
    try:
        func(*args, **kwargs)
    except exceptions as exc:
        _record(name, "raises", type(exc).__name__)
        return
    except NotImplementedError:
        _record(name, "raises", "NotImplementedError")
        raise
    except Exception as exc:  # wrong exception type
        _record(name, "raises", type(exc).__name__)
        _fail(name, f"expected {wanted}, but {type(exc).__name__} was raised: {exc}", hint)
    _record(name, "raises", None)
    _fail(name, f"expected {wanted} to be raised, but the call returned normally", hint)


# --------------------------------------------------------------------------
# out-of-kernel comparison (trusted side)
# --------------------------------------------------------------------------

def parse_records(text: str) -> dict[str, list[dict]]:
    """Record lines into {name: [entries in order]}. Malformed lines are ignored."""
    out: dict[str, list[dict]] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        out.setdefault(entry["name"], []).append(entry)
    return out


def load_records(path: str | os.PathLike) -> dict[str, list[dict]]:
    """Read a record file (see parse_records); a missing file gives {}."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return parse_records(fh.read())
    except FileNotFoundError:
        return {}


NOT_REACHED = "did not run to this check"


def compare_entries(ref_entries: list[dict], stu_entries: list[dict]) -> str | None:
    """None if the student's entries for one check agree with the reference's, else why not.

    Tolerances come from the *reference* entries (trusted), never from the student's. A
    recorded value the comparison cannot handle (10**400, a ragged or deeply nested list, a
    value of the wrong kind) is a failed check with the reason "recorded value unusable",
    never an exception: one student's strange value cannot stop the grading of the class.
    """
    try:
        if not isinstance(stu_entries, list) or not all(isinstance(e, dict) for e in stu_entries):
            return "recorded value unusable (malformed record)"
        if len(stu_entries) < len(ref_entries):
            return NOT_REACHED
        if len(stu_entries) > len(ref_entries):
            return "recorded more values than the test makes (records written by other code)"
        for ref, stu in zip(ref_entries, stu_entries, strict=False):   # fewer: the rest never ran
            if ref.get("kind") == "close":
                problem = _close_problem(stu.get("value"), ref.get("value"),
                                         float(ref.get("atol", 1e-6)), float(ref.get("rtol", 1e-5)))
                if problem:
                    return problem
            elif stu.get("kind") != ref.get("kind") or not _same(stu.get("value"), ref.get("value")):
                return "value differs from the reference solution's"
        return None
    except Exception as exc:  # noqa: BLE001 (any failure of the comparison is this check's verdict)
        return f"recorded value unusable ({type(exc).__name__})"


def _same(a: Any, b: Any) -> bool:
    """Exact equality of two plain values, with the types of numbers kept apart from bools."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def compare_records(student: dict[str, list[dict]], reference: dict[str, list[dict]]) -> dict[str, str | None]:
    """{check name: None if the student's records agree with the reference's, else a short reason}.

    A check the reference recorded but the student did not is a failure.
    """
    return {name: compare_entries(ref, student.get(name, [])) for name, ref in reference.items()}
