"""Mutation testing of the reference solutions: ``make mutation [ASSIGNMENT=<id>]``.

For each graded source notebook, every mutant of every solution cell (``operators.py``)
is run against the notebook's own test cells (``runner.py``); a mutant that no graded
test cell fails survives. The results go to ``build/mutation/<id>.json`` and, for all
notebooks measured so far, to ``docs/mutation-report.md``.

Two checked-in files classify survivors (both TOML, keyed by the stable mutant id):

- ``tests/mutation/equivalent.toml``: mutants that cannot be killed because they behave
  like the reference on every input the contract allows, each with a one-line reason.
  They are counted apart and left out of the kill rate.
- ``tests/mutation/survivors.toml``: survivors measured before the hidden tests were
  strengthened, not yet killed. The list may only shrink; it ends empty.

``--sample N`` runs a deterministic sample of N mutants per notebook (each function
first, then by id) and ``--check`` makes the run fail on a sampled survivor that neither
file lists, or on a listed mutant that is now killed (the list is stale): CI runs this as
``make mutation-sample``.

Usage: python -m llmcourse.authoring.mutation [--assignment ID] [--jobs N] [--sample N]
       [--check] [--only ID,...] [--function NAME] [--list] [--update-survivors]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat

from ..grading.cells import nbgrader_meta as _meta
from .operators import OPERATORS, Mutant, mutate_cell

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EQUIVALENT = Path("tests/mutation/equivalent.toml")
DEFAULT_SURVIVORS = Path("tests/mutation/survivors.toml")
DEFAULT_JSON_DIR = Path("build/mutation")
DEFAULT_REPORT = Path("docs/mutation-report.md")


# ---------------------------------------------------------------------------- notebooks
def graded_notebooks(root: Path = ROOT, assignment: str = "all") -> list[Path]:
    out = []
    for p in sorted((root / "source").glob("*/*.ipynb")):
        if assignment not in ("all", "", None) and p.parent.name != assignment:
            continue
        nb = nbformat.read(str(p), as_version=4)
        if any(_meta(c).get("solution") and c.cell_type == "code" for c in nb.cells):
            out.append(p)
    return out


def cell_table(nb) -> tuple[list, list, list]:
    """(source or None per cell, kind per cell, grade id per cell); smoke/cpu parameters."""
    sources, kinds, ids = [], [], []
    for c in nb.cells:
        m = _meta(c)
        if c.cell_type != "code":
            sources.append(None)
            kinds.append("markdown")
            ids.append(m.get("grade_id"))
            continue
        src = c.source
        if "parameters" in c.get("metadata", {}).get("tags", []):
            src += '\nPROFILE = "smoke"\nDEVICE = "cpu"'
        sources.append(src)
        kinds.append("solution" if m.get("solution") else "test" if m.get("grade") else "code")
        ids.append(m.get("grade_id"))
    return sources, kinds, ids


def notebook_mutants(path: Path) -> list[Mutant]:
    nb = nbformat.read(str(path), as_version=4)
    out = []
    for i, c in enumerate(nb.cells):
        m = _meta(c)
        if c.cell_type == "code" and m.get("solution"):
            out.extend(mutate_cell(path.parent.name, i, m.get("grade_id", f"cell{i}"), c.source))
    return out


def text_mutants(path: Path, replacements: list[tuple[str, str, str, str]]) -> list[Mutant]:
    """Hand-written mutants: (solution grade id, text in the cell, replacement, label) each.

    The label becomes the mutant's function name; the operator is "hand-written". This lets
    the misconception table (authoring/<id>/misconceptions.toml) run through the same engine."""
    from .operators import Edit, _changed_lines, _Source, mutant_id
    nb = nbformat.read(str(path), as_version=4)
    by_id = {_meta(c).get("grade_id"): (i, c.source) for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and _meta(c).get("solution")}
    out = []
    for k, (grade_id, old, new, label) in enumerate(replacements):
        index, source = by_id[grade_id]
        if source.count(old) != 1:
            raise ValueError(f"{grade_id}: the text to replace occurs {source.count(old)} times: {old!r}")
        start = source.index(old)
        line, before, after = _changed_lines(_Source(source), [Edit(start, start + len(old), new)])
        mid = mutant_id(path.parent.name, label, "hand-written", before, after, k)
        out.append(Mutant(mid, path.parent.name, index, grade_id, label, "hand-written", line, before, after,
                          source.replace(old, new)))
    return out


def sample(mutants: list[Mutant], n: int) -> list[Mutant]:
    """n mutants: first one per function (round robin, smallest id first), deterministic."""
    by_fn: dict[str, list[Mutant]] = {}
    for m in sorted(mutants, key=lambda m: m.id):
        by_fn.setdefault(m.function, []).append(m)
    picked, rnd = [], 0
    while len(picked) < min(n, len(mutants)):
        for fn in sorted(by_fn):
            if rnd < len(by_fn[fn]) and len(picked) < n:
                picked.append(by_fn[fn][rnd])
        rnd += 1
    return sorted(picked, key=lambda m: (m.cell, m.line, m.id))


# ---------------------------------------------------------------------------- the lists
def load_list(path: Path, table: str) -> dict[str, dict]:
    """{id: entry} from a TOML file of [[table]] entries with an `id` each."""
    if not path.exists():
        return {}
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    out = {}
    for entry in data.get(table, []):
        if "id" not in entry:
            raise ValueError(f"{path}: an [[{table}]] entry has no id: {entry}")
        if entry["id"] in out:
            raise ValueError(f"{path}: id {entry['id']} is listed twice")
        out[entry["id"]] = entry
    return out


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)


def write_survivors(path: Path, keep: dict[str, dict], new: list[dict], notebooks: set[str]) -> None:
    """Rewrite the survivors list: entries of other notebooks kept, these notebooks' replaced."""
    entries = [e for e in keep.values() if e.get("notebook") not in notebooks] + new
    entries.sort(key=lambda e: (e["notebook"], e.get("function", ""), e["id"]))
    lines = [
        "# Survivors of the mutation run (make mutation) that no hidden check kills yet.",
        "# Measured before the hidden tests were strengthened (issue 15, phase 1): phase 2 kills",
        "# each one with a new hidden check (or moves it, with a reason, to equivalent.toml) and",
        "# removes it here. This list may only shrink; it must end empty.",
        "# make mutation-sample fails on a sampled survivor that is in neither file, and on an",
        "# entry here that a run now kills (remove it).",
        "",
    ]
    for e in entries:
        lines += ["[[survivor]]", f"id = {_toml_str(e['id'])}", f"notebook = {_toml_str(e['notebook'])}",
                  f"function = {_toml_str(e['function'])}", f"operator = {_toml_str(e['operator'])}",
                  f"change = {_toml_str(e['change'])}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def change_text(before: str, after: str, width: int = 160) -> str:
    def one(block):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        text = " / ".join(lines)
        return text if len(text) <= width else text[: width - 1] + "…"
    return f"{one(before)}  ->  {one(after)}"


# ---------------------------------------------------------------------------- running
def runner_env() -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS"):
        env[var] = "1"     # forking after a multi-threaded OpenMP region hangs the child
    env.update({"PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"})
    for var in ("LLMCOURSE_RECORD", "LLMCOURSE_FIGURES", "NBGRADER_EXECUTION"):
        env.pop(var, None)
    return env


def run_notebook(path: Path, mutants: list[Mutant], jobs: int, mode: str = "observers",
                 progress=None, timeout_factor: float = 5.0, memory_gib: float = 6.0,
                 timeout_grace: float = 20.0) -> dict:
    """Run `mutants` of one notebook; {id: result} plus timing. Raises on a broken reference."""
    nb = nbformat.read(str(path), as_version=4)
    sources, kinds, ids = cell_table(nb)
    job = {"cells": sources, "kinds": kinds, "grade_ids": ids, "cwd": str(path.parent),
           "jobs": jobs, "mode": mode, "timeout_factor": timeout_factor, "timeout_grace": timeout_grace,
           "memory_bytes": int(memory_gib * 2 ** 30),
           "mutants": [{"id": m.id, "cell": m.cell, "source": m.source} for m in mutants]}
    results, info = {}, {}
    with tempfile.TemporaryDirectory(prefix="llmcourse-mutation-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job), encoding="utf-8")
        env = runner_env()
        env["IPYTHONDIR"] = str(Path(tmp) / "ipython")
        env["MPLCONFIGDIR"] = str(Path(tmp) / "mpl")
        r, w = os.pipe()
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "llmcourse.authoring.runner", str(job_file), str(w)],
                                pass_fds=(w,), env=env, cwd=str(path.parent),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(w)
        error = None
        try:
            with os.fdopen(r, "r") as events:
                for line in events:
                    ev = json.loads(line)
                    if ev["event"] == "result":
                        results[ev["id"]] = ev
                        if progress:
                            progress(ev)
                    elif ev["event"] == "probe":
                        info["probe"] = ev
                    elif ev["event"] == "error":
                        error = ev["message"]
                    elif ev["event"] == "done":
                        info["runner_wall_s"] = ev["wall_s"]
        except BaseException:
            proc.kill()
            raise
        finally:
            stderr = proc.communicate()[1].decode(errors="replace")
        if error or proc.returncode != 0:
            raise RuntimeError(f"{path.parent.name}: {error or 'the runner failed'}\n{stderr[-2000:]}")
        info["wall_s"] = round(time.monotonic() - t0, 1)
    missing = [m.id for m in mutants if m.id not in results]
    if missing:
        raise RuntimeError(f"{path.parent.name}: no result for {len(missing)} mutants, e.g. {missing[:3]}")
    return {"results": results, "info": info}


def classify(mutants: list[Mutant], results: dict, equivalent: dict, survivors: dict) -> list[dict]:
    rows = []
    for m in mutants:
        r = results[m.id]
        row = m.summary()
        row.update({"status": r["status"], "reason": r.get("reason"), "killed_by": r.get("by"),
                    "error": r.get("error"), "tests_run": r.get("ran", []), "errors": r.get("errors", []),
                    "change": change_text(m.before, m.after)})
        row["equivalent"] = equivalent[m.id].get("reason", "") if m.id in equivalent else None
        row["listed_survivor"] = m.id in survivors
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    def stats(rs):
        eq = [r for r in rs if r["equivalent"] is not None]
        rest = [r for r in rs if r["equivalent"] is None]
        killed = [r for r in rest if r["status"] == "killed"]
        out = {"mutants": len(rs), "equivalent": len(eq), "killed": len(killed),
               "survived": len(rest) - len(killed),
               "timeouts": sum(r["reason"] == "timeout" for r in killed),
               "kill_rate": round(len(killed) / len(rest), 4) if rest else 1.0}
        return out
    fns = {}
    for r in rows:
        fns.setdefault(r["function"], []).append(r)
    ops = {}
    for r in rows:
        ops.setdefault(r["operator"], []).append(r)
    return {"total": stats(rows), "functions": {f: stats(rs) for f, rs in fns.items()},
            "operators": {o: stats(rs) for o, rs in sorted(ops.items())}}


# ---------------------------------------------------------------------------- report
def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def reclassify(json_dir: Path, equivalent: dict, survivors: dict) -> None:
    """Apply the current lists to the stored results (after marking an equivalent mutant)."""
    for p in sorted(json_dir.glob("*.json")):
        d = json.loads(p.read_text(encoding="utf-8"))
        for r in d["mutants"]:
            r["equivalent"] = equivalent[r["id"]].get("reason", "") if r["id"] in equivalent else None
            r["listed_survivor"] = r["id"] in survivors
        d["summary"] = summarise(d["mutants"])
        p.write_text(json.dumps(d, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def stale_entries(json_dir: Path, lists: dict[str, dict]) -> list[str]:
    """Entries of the lists whose id no full run of their notebook produced (the code changed)."""
    seen, measured = set(), set()
    for p in sorted(json_dir.glob("*.json")):
        d = json.loads(p.read_text(encoding="utf-8"))
        if d.get("sample") is None and not d.get("partial"):
            measured.add(d["notebook"])
            seen |= {r["id"] for r in d["mutants"]}
    out = []
    for name, entries in lists.items():
        for mid, e in entries.items():
            if e.get("notebook") in measured and mid not in seen:
                out.append(f"{name}: {mid} ({e.get('notebook')} {e.get('function', '')}) is no mutant any more")
    return out


def write_report(json_dir: Path, report: Path, stale: list[str] = ()) -> None:
    data = []
    for p in sorted(json_dir.glob("*.json")):
        d = json.loads(p.read_text(encoding="utf-8"))
        if d.get("sample") is None:
            data.append(d)
    lines = ["# Mutation testing report", "",
             "Written by `make mutation` (`llmcourse/authoring/mutation.py`; how it works and how to use it:",
             "[mutation.md](mutation.md)). Each mutant is one small change to a reference solution; it is",
             "killed when a graded test cell of the notebook fails. The kill rate leaves out the mutants",
             "listed as equivalent in `tests/mutation/equivalent.toml`. Survivors are listed per notebook",
             "below; those not yet killed are also in `tests/mutation/survivors.toml`.", "",
             "| notebook | mutants | equivalent | killed | survived | kill rate | timeouts | wall time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    tot = {"mutants": 0, "equivalent": 0, "killed": 0, "survived": 0, "timeouts": 0}
    for d in data:
        t = d["summary"]["total"]
        for k in tot:
            tot[k] += t[k]
        lines.append(f"| {d['notebook']} | {t['mutants']} | {t['equivalent']} | {t['killed']} | {t['survived']} | "
                     f"{100 * t['kill_rate']:.1f}% | {t['timeouts']} | {d['timing']['wall_s']:.0f} s |")
    if data:
        rate = tot["killed"] / max(1, tot["killed"] + tot["survived"])
        wall = sum(d["timing"]["wall_s"] for d in data)
        lines.append(f"| **all** | {tot['mutants']} | {tot['equivalent']} | {tot['killed']} | {tot['survived']} | "
                     f"{100 * rate:.1f}% | {tot['timeouts']} | {wall:.0f} s |")
    lines += ["", "Wall time: one `make mutation ASSIGNMENT=<id>` run with "
              f"{data[0]['jobs'] if data else 2} workers on the 2-core development machine (it varies with load; "
              "everything else in this report is deterministic).", ""]
    # operators over all notebooks
    ops: dict[str, dict] = {}
    for d in data:
        for op, s in d["summary"]["operators"].items():
            o = ops.setdefault(op, {"mutants": 0, "killed": 0, "survived": 0})
            for k in o:
                o[k] += s[k]
    if ops:
        lines += ["## By operator (all notebooks)", "", "| operator | mutants | killed | survived | kill rate |",
                  "|---|---:|---:|---:|---:|"]
        for op in sorted(ops, key=lambda o: (-ops[o]["survived"], o)):
            o = ops[op]
            n = o["killed"] + o["survived"]
            lines.append(f"| {op} | {o['mutants']} | {o['killed']} | {o['survived']} | "
                         f"{100 * o['killed'] / n if n else 100:.0f}% |")
        lines.append("")
    for d in data:
        total = d["summary"]["total"]["mutants"]
        lines += [f"## {d['notebook']}", "", f"Source: `{d['source']}`, {total} mutants.", "",
                  "| function | mutants | equivalent | killed | survived | kill rate |",
                  "|---|---:|---:|---:|---:|---:|"]
        for fn, s in d["summary"]["functions"].items():
            lines.append(f"| `{fn}` | {s['mutants']} | {s['equivalent']} | {s['killed']} | {s['survived']} | "
                         f"{100 * s['kill_rate']:.1f}% |")
        surv = [r for r in d["mutants"] if r["status"] == "survived" and r["equivalent"] is None]
        lines += ["", f"### Survivors of {d['notebook']} ({len(surv)})", ""]
        if surv:
            lines += ["| id | function | operator | change (original -> mutant) | test cells run |",
                      "|---|---|---|---|---|"]
            for r in surv:
                tests = ", ".join(t.removeprefix("test_") for t in r["tests_run"]) or "none"
                note = f" (error: {_md(r['errors'][0])[:120]})" if r["errors"] else ""
                lines.append(f"| `{r['id']}` | `{r['function']}` | {r['operator']} | `{_md(r['change'])}`{note} "
                             f"| {tests} |")
        killed_eq = [r for r in d["mutants"] if r["equivalent"] is not None and r["status"] == "killed"]
        if killed_eq:
            lines += ["", "Listed as equivalent but killed (remove them from equivalent.toml): "
                      + ", ".join(f"`{r['id']}`" for r in killed_eq)]
        lines.append("")
    if stale:
        lines += ["## Stale list entries", "", "These ids are in a list but no longer produced by the engine "
                  "(the solution changed): remove them, and classify the new mutants.", ""]
        lines += [f"- {s}" for s in stale] + [""]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmcourse.authoring.mutation", description=__doc__.split("\n")[0])
    ap.add_argument("--assignment", default="all", help="assignment id, or all (default)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants run at once (default: CPUs)")
    ap.add_argument("--sample", type=int, default=None, help="run N mutants per notebook (deterministic)")
    ap.add_argument("--check", action="store_true", help="fail on an unlisted survivor or a stale list entry")
    ap.add_argument("--only", default="", help="comma-separated mutant ids")
    ap.add_argument("--function", default="", help="only mutants of this function (qualified name)")
    ap.add_argument("--operator", default="", help="only mutants of this operator")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit (nothing runs)")
    ap.add_argument("--cells", choices=["observers", "all"], default="observers",
                    help="after the mutated cell run only the cells that can observe it (default) or all")
    ap.add_argument("--timeout-factor", type=float, default=5.0)
    ap.add_argument("--equivalent", type=Path, default=DEFAULT_EQUIVALENT)
    ap.add_argument("--survivors", type=Path, default=DEFAULT_SURVIVORS)
    ap.add_argument("--update-survivors", action="store_true",
                    help="rewrite these notebooks' entries of the survivors list from this full run")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from the stored results with the current lists (nothing runs)")
    ap.add_argument("--json-dir", type=Path, default=DEFAULT_JSON_DIR)
    ap.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    ap.add_argument("--root", type=Path, default=ROOT)
    args = ap.parse_args(argv)

    root = args.root.resolve()
    rel = lambda p: p if p.is_absolute() else root / p  # noqa: E731
    equivalent = load_list(rel(args.equivalent), "equivalent")
    survivors = load_list(rel(args.survivors), "survivor")
    if args.report_only:
        json_dir = rel(args.json_dir)
        reclassify(json_dir, equivalent, survivors)
        write_report(json_dir, rel(args.report),
                     stale_entries(json_dir, {args.equivalent.name: equivalent, args.survivors.name: survivors}))
        print(f"report: {args.report}")
        return 0
    notebooks = graded_notebooks(root, args.assignment)
    if not notebooks:
        print(f"no graded notebook matches {args.assignment!r}", file=sys.stderr)
        return 2
    only = {x for x in args.only.split(",") if x}
    partial = bool(only or args.function or args.operator or args.sample is not None)
    if args.update_survivors and partial:
        print("--update-survivors needs a full run (no --sample/--only/--function/--operator)", file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    failures, checked, new_survivors, done_notebooks = [], 0, [], set()
    for path in notebooks:
        name = path.parent.name
        mutants = notebook_mutants(path)
        if only:
            mutants = [m for m in mutants if m.id in only]
        if args.function:
            mutants = [m for m in mutants if m.function == args.function]
        if args.operator:
            mutants = [m for m in mutants if m.operator == args.operator]
        if args.sample is not None:
            mutants = sample(mutants, args.sample)
        if args.list:
            for m in mutants:
                tag = " [equivalent]" if m.id in equivalent else " [listed survivor]" if m.id in survivors else ""
                print(f"{m.id}  {name}  {m.function:30} {m.operator:15} {change_text(m.before, m.after, 110)}{tag}")
            continue
        if not mutants:
            continue
        bar = tqdm(total=len(mutants), desc=name, unit="mutant", dynamic_ncols=True)
        counts = {"killed": 0, "survived": 0}

        def progress(ev, bar=bar, counts=counts):
            counts[ev["status"]] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)
        try:
            out = run_notebook(path, mutants, args.jobs, args.cells, progress, args.timeout_factor)
        finally:
            bar.close()
        rows = classify(mutants, out["results"], equivalent, survivors)
        rows.sort(key=lambda r: (r["grade_id"] or "", r["line"], r["id"]))
        order = {m.id: k for k, m in enumerate(mutants)}
        rows.sort(key=lambda r: order[r["id"]])
        summary = summarise(rows)
        doc = {"notebook": name, "source": str(path.relative_to(root)), "mode": args.cells,
               "sample": args.sample, "jobs": args.jobs, "partial": partial, "operators": OPERATORS,
               "summary": summary, "mutants": rows,
               "timing": {"wall_s": out["info"]["wall_s"], "probe_cells_s": out["info"].get("probe", {}).get("cells")}}
        t = summary["total"]
        print(f"{name}: {t['killed']}/{t['mutants'] - t['equivalent']} killed ({100 * t['kill_rate']:.1f}%), "
              f"{t['survived']} survived, {t['equivalent']} equivalent, {out['info']['wall_s']:.0f} s")
        if not partial:
            json_dir = rel(args.json_dir)
            json_dir.mkdir(parents=True, exist_ok=True)
            (json_dir / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
            done_notebooks.add(name)
        for r in rows:
            checked += 1
            survived = r["status"] == "survived"
            if survived and r["equivalent"] is None:
                new_survivors.append({"id": r["id"], "notebook": name, "function": r["function"],
                                      "operator": r["operator"], "change": r["change"]})
            if not args.check:
                continue
            if survived and r["equivalent"] is None and not r["listed_survivor"]:
                failures.append(f"SURVIVED {r['id']} {name} {r['function']} [{r['operator']}] {r['change']}"
                                f" (test cells run: {', '.join(r['tests_run']) or 'none'})")
            elif not survived and r["equivalent"] is not None:
                failures.append(f"KILLED BUT LISTED AS EQUIVALENT {r['id']} {name} {r['function']} "
                                f"by {r['killed_by'] or r['reason']}: remove it from {args.equivalent}")
            elif not survived and r["listed_survivor"]:
                failures.append(f"KILLED BUT LISTED AS SURVIVOR {r['id']} {name} {r['function']} "
                                f"by {r['killed_by'] or r['reason']}: remove it from {args.survivors}")
    if args.list:
        return 0
    if args.update_survivors:
        write_survivors(rel(args.survivors), survivors, new_survivors, done_notebooks)
        print(f"{args.survivors}: {len(new_survivors)} survivors of {', '.join(sorted(done_notebooks))}")
        survivors = load_list(rel(args.survivors), "survivor")
    if done_notebooks:
        json_dir = rel(args.json_dir)
        reclassify(json_dir, equivalent, survivors)
        write_report(json_dir, rel(args.report),
                     stale_entries(json_dir, {args.equivalent.name: equivalent, args.survivors.name: survivors}))
        print(f"report: {args.report} (JSON in {args.json_dir}/)")
    if args.check:
        for f in failures:
            print(f)
        print(f"mutation: {checked - len(failures)} passed, {len(failures)} failed")
        return 1 if failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
