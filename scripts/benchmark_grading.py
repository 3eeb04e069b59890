"""Benchmark: stock `nbgrader autograde` against the course's sandboxed grader, same submissions.

    make benchmark                       # 40 submissions of 01_chain_rule, 2 workers
    python scripts/benchmark_grading.py --submissions 40 --workers 2 --db postgresql

What it measures, each on a fresh copy of the same scratch course (release generated, the
same N submissions: 40% correct, 40% half done, 20% blank):
  1. a bare Jupyter kernel start (no sandbox) against a one-cell notebook run in the sandbox:
     the sandbox's own cost per submission;
  2. stock `nbgrader autograde --force` over the N submissions (one process, one at a time,
     no sandbox) against the course's grader (`llmcourse grade`: sandboxed, Dask LocalCluster
     of --workers processes), both wall times from the start of the command to the gradebook
     written, the grader's one-off reference run and cluster start included; their ratio;
  3. how the grader's total time grows from 10 to N submissions, and from 1 to --workers workers;
  4. that both give every student the same autograded score.
Writes results.json, results.md and scaling.png into --out. Not a test: timings depend on the
machine; docs/benchmarks.md records runs with the machine named.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmcourse.authoring.sampleclass import build_sample, make_scratch_course  # noqa: E402
from llmcourse.grading import sandbox  # noqa: E402
from llmcourse.grading.course import generate_release, jupyter_env, run_nbgrader, source_notebooks  # noqa: E402


def say(msg: str) -> None:
    print(msg, flush=True)


def bare_kernel_seconds(repeats: int, env: dict) -> list[float]:
    from jupyter_client.manager import start_new_kernel
    old = dict(os.environ)
    os.environ.update(env)
    try:
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            km, kc = start_new_kernel(kernel_name="python3", stdout=open(os.devnull, "w"),
                                      stderr=open(os.devnull, "w"))
            kc.execute_interactive("1 + 1", timeout=30, output_hook=lambda msg: None)
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        os.environ.clear()
        os.environ.update(old)


def sandboxed_trivial_seconds(course_root: Path, assignment: str, env: dict, repeats: int) -> list[float]:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from llmcourse.grading.grader import Grader
    g = Grader(course_root, assignment, workers=1, env=env, progress=False, engine="threads")
    nb = new_notebook(cells=[new_code_cell("1 + 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cells = g.runner.run(nbformat.from_dict(nb)).cells
        out.append(time.perf_counter() - t0)
        if cells is None or cells[0] is None:
            raise SystemExit("the sandboxed one-cell notebook did not run")
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out).resolve()
        self.work = self.out / "work"
        self.a = args.assignment
        self.pg = None
        self.n_db = 0

    def template(self) -> Path:
        """A course with the release generated and N submissions."""
        course = make_scratch_course(self.work / "template", ROOT, [self.a])
        generate_release(course.root, self.a, course.env)
        kinds = ["correct", "partial", "correct", "partial", "blank"]
        for nb in source_notebooks(ROOT, self.a):
            for i in range(self.args.submissions):
                kind = kinds[i % len(kinds)]
                build_sample(course.root, self.a, nb, f"s{i:03d}_{kind}", kind)
        return course.root

    def copy(self, template: Path, name: str, n: int) -> tuple[Path, dict]:
        """A fresh course folder with the first n submissions and its own gradebook."""
        dest = self.work / name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(template, dest, ignore=shutil.ignore_patterns("submitted", ".jupyter-state"))
        students = sorted(p.name for p in (template / "submitted").iterdir())[:n]
        for s in students:
            shutil.copytree(template / "submitted" / s, dest / "submitted" / s)
        env = jupyter_env(dest / ".jupyter-state")
        env["LLMCOURSE_EXCHANGE"] = str(dest / "exchange")
        env.pop("LLMCOURSE_DB_URL", None)
        if self.pg is not None:
            self.n_db += 1
            env["LLMCOURSE_DB_URL"] = self.pg.create_database(f"bench{self.n_db}")
            (dest / "gradebook.db").unlink(missing_ok=True)
            run_nbgrader(["generate_assignment", self.a, "--force"], cwd=dest, env=env)
        return dest, env

    def totals(self, root: Path, env: dict) -> dict[str, float]:
        from nbgrader.api import Gradebook

        from llmcourse.grading.gradebook import db_url
        with Gradebook(db_url(root, env)) as gb:
            return {s.student_id: round(s.code_score, 6) for s in gb.assignment_submissions(self.a)}

    def stock(self, template: Path, n: int) -> tuple[float, dict]:
        root, env = self.copy(template, f"stock-{n}", n)
        t0 = time.perf_counter()
        run_nbgrader(["autograde", self.a, "--force"], cwd=root, env=env)
        secs = time.perf_counter() - t0
        return secs, self.totals(root, env)

    def ours(self, template: Path, n: int, workers: int) -> tuple[float, dict, list]:
        from llmcourse.grading.grader import FlagCode, Grader
        root, env = self.copy(template, f"ours-{n}-w{workers}", n)
        t0 = time.perf_counter()
        outcomes = Grader(root, self.a, workers=workers, env=env, progress=True, engine=self.args.engine).grade_all()
        secs = time.perf_counter() - t0
        bad = [o for o in outcomes if o.has_flag(FlagCode.GRADER_ERROR)]
        if bad:
            raise SystemExit(f"grader errors: {bad[0].flags}")
        return secs, self.totals(root, env), outcomes

    def run(self) -> dict:
        args = self.args
        sandbox.check_available()
        if args.db == "postgresql":
            from llmcourse.authoring.devdb import PostgresServer
            self.pg = PostgresServer().start()
        try:
            return self._run()
        finally:
            if self.pg is not None:
                self.pg.stop()

    def _run(self) -> dict:
        args = self.args
        n, w = args.submissions, args.workers
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        say(f"building a class of {n} submissions of {self.a} ...")
        template = self.template()
        res: dict = {"assignment": self.a, "submissions": n, "workers": w, "engine": args.engine,
                     "gradebook": args.db, "cpu_count": os.cpu_count(), "machine": platform.platform(),
                     "python": platform.python_version()}

        env = jupyter_env(self.work / ".jupyter-bench")
        bare = bare_kernel_seconds(args.repeats, env)
        trivial = sandboxed_trivial_seconds(template, self.a, dict(env, LLMCOURSE_EXCHANGE=str(template / "exchange")),
                                            args.repeats)
        res["bare_kernel_s"] = statistics.median(bare)
        res["sandboxed_one_cell_s"] = statistics.median(trivial)
        res["sandbox_overhead_s"] = res["sandboxed_one_cell_s"] - res["bare_kernel_s"]
        say(f"bare kernel start+stop {res['bare_kernel_s']:.2f} s; one-cell notebook in the sandbox "
            f"{res['sandboxed_one_cell_s']:.2f} s (medians of {args.repeats}); overhead per submission "
            f"{res['sandbox_overhead_s']:.2f} s")

        say(f"stock nbgrader autograde, {n} submissions ...")
        stock_s, stock_totals = self.stock(template, n)
        say(f"  {stock_s:.1f} s")
        say(f"course grader, {n} submissions, {w} workers ...")
        ours_s, ours_totals, outcomes = self.ours(template, n, w)
        say(f"  {ours_s:.1f} s")
        res["stock_s"], res["ours_s"] = stock_s, ours_s
        res["speedup"] = stock_s / ours_s
        res["per_submission"] = {
            "stock_s": stock_s / n, "ours_wall_s": ours_s / n,
            "ours_task_s_median": statistics.median(o.seconds for o in outcomes),
            "ours_sandbox_s_median": statistics.median(o.run_seconds for o in outcomes),
            "ours_record_s_median": statistics.median(o.record_seconds for o in outcomes),
        }
        mismatched = sorted(s for s in stock_totals if stock_totals.get(s) != ours_totals.get(s))
        res["same_scores"] = not mismatched and set(stock_totals) == set(ours_totals)
        res["score_mismatches"] = mismatched

        scaling = {f"{n}@{w}": ours_s}
        if args.scaling:
            for k in sorted({10, n // 2} - {n}):
                if 0 < k < n:
                    say(f"course grader, {k} submissions, {w} workers ...")
                    scaling[f"{k}@{w}"] = self.ours(template, k, w)[0]
            if w > 1:
                say(f"course grader, {n} submissions, 1 worker ...")
                scaling[f"{n}@1"] = self.ours(template, n, 1)[0]
        res["scaling_s"] = scaling
        return res


def report(res: dict, out: Path) -> str:
    n, w = res["submissions"], res["workers"]
    ps = res["per_submission"]
    lines = [
        f"# Grading benchmark: {res['assignment']}, {n} submissions, {res['gradebook']} gradebook",
        "",
        f"Machine: {res['machine']}, {res['cpu_count']} CPUs, Python {res['python']}.",
        "",
        "| | wall time | per submission |",
        "|---|---:|---:|",
        f"| stock `nbgrader autograde` (unsandboxed, one at a time) | {res['stock_s']:.1f} s | {ps['stock_s']:.2f} s |",
        f"| course grader (sandboxed, {res['engine']}, {w} workers) | {res['ours_s']:.1f} s "
        f"| {ps['ours_wall_s']:.2f} s |",
        "",
        f"Speed-up: **{res['speedup']:.2f}x** (goal on 2 cores: 1.8x). Same autograded score for every "
        f"student: {'yes' if res['same_scores'] else 'NO: ' + ', '.join(res['score_mismatches'][:10])}.",
        "",
        f"Per submission in the course grader (medians): task {ps['ours_task_s_median']:.2f} s, of which "
        f"sandboxed run {ps['ours_sandbox_s_median']:.2f} s and gradebook write {ps['ours_record_s_median']:.2f} s.",
        f"Bare kernel start + stop {res['bare_kernel_s']:.2f} s; one-cell notebook in the sandbox "
        f"{res['sandboxed_one_cell_s']:.2f} s: the sandbox costs {res['sandbox_overhead_s']:.2f} s per submission.",
        "",
        "| submissions @ workers | wall time | per submission |",
        "|---|---:|---:|",
    ]
    def by_workers_then_n(kv):
        n, workers = kv[0].split("@")
        return int(workers), int(n)
    for key, secs in sorted(res["scaling_s"].items(), key=by_workers_then_n):
        k = int(key.split("@")[0])
        lines.append(f"| {key} | {secs:.1f} s | {secs / k:.2f} s |")
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from llmcourse.student.plotting import use_course_style
        use_course_style()
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for workers in sorted({int(k.split("@")[1]) for k in res["scaling_s"]}):
            pts = sorted((int(k.split("@")[0]), v) for k, v in res["scaling_s"].items() if k.endswith(f"@{workers}"))
            plural = "s" if workers > 1 else ""
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"course grader, {workers} worker{plural}")
        ax.plot([n], [res["stock_s"]], marker="s", linestyle="none", color="black", label="stock nbgrader autograde")
        ax.set_xlabel("submissions")
        ax.set_ylabel("wall time (s)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.set_title(f"Grading {res['assignment']} ({res['gradebook']}, {res['cpu_count']} CPUs)")
        ax.legend()
        fig.savefig(out / "scaling.png", bbox_inches="tight", dpi=120)
        plt.close(fig)
    except Exception as exc:  # the numbers matter more than the picture
        say(f"(no plot: {exc})")
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assignment", default="01_chain_rule")
    p.add_argument("--submissions", type=int, default=40)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--engine", default="dask", choices=["dask", "threads"])
    p.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    p.add_argument("--repeats", type=int, default=5, help="kernel-start measurements")
    p.add_argument("--no-scaling", dest="scaling", action="store_false", help="skip the 10..N and 1-worker runs")
    p.add_argument("--keep", action="store_true", help="keep the scratch courses under --out/work")
    p.add_argument("--out", default="build/benchmark")
    args = p.parse_args()
    if args.submissions < 1 or args.workers < 1:
        p.error("--submissions and --workers must be positive")
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as exc:
        say(f"error: the benchmark compares sandboxed grading with stock nbgrader: {exc}")
        return 2
    bench = Bench(args)
    bench.out.mkdir(parents=True, exist_ok=True)
    res = bench.run()
    say("")
    say(report(res, bench.out))
    say(f"written: {bench.out}/results.md, results.json, scaling.png")
    if not args.keep:
        shutil.rmtree(bench.work, ignore_errors=True)
    return 0 if res["same_scores"] else 1


if __name__ == "__main__":
    sys.exit(main())
