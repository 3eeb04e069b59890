"""`llmcourse`: the command line behind the Makefile.

    llmcourse release   [--assignment ID|all]                 nbgrader generate_assignment into release/
    llmcourse execute   [--assignment] [--profile] [--device] [--out DIR]   papermill, never writes into source/
    llmcourse validate  [--assignment]                        nbgrader validate the source notebooks
    llmcourse grade     [--assignment] [--workers N] [--engine dask|threads] [--scheduler ADDR] [--students]
                                                              sandboxed autograding (llmcourse.grading.grader)
    llmcourse nbgrader SUBCOMMAND [--assignment]              any per-assignment nbgrader step, for each assignment
    llmcourse collect   [--assignment] [--update] | --zip FILE --lms canvas|moodle
                                                              submissions from the exchange (llmcourse.grading.collect)
                                                              or an LMS zip
    llmcourse lab       [--user NAME]                         JupyterLab + Formgrader on 127.0.0.1, never as root
    llmcourse export    [--out grades.csv]                    grades CSV + per-test failure summary
    llmcourse demo      [--out build/demo]                    the whole pipeline on a sample class, in a scratch dir
    llmcourse nbbuild   [--assignment] [--check] [--reverse]  authoring/*.nbsrc -> source/*.ipynb; --reverse writes
                                                              notebooks edited in Jupyter back to authoring/
    llmcourse new       NN_name                               scaffold a new assignment (llmcourse.authoring.scaffold)
    llmcourse doctor                                          what isolation this machine gives the grader
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from .authoring.misconceptions import load as load_misconceptions
from .authoring.sampleclass import SAMPLE_KINDS, Mutation, build_sample, make_scratch_course
from .grading.course import (
    CourseError,
    cell_scores,
    execute_notebook,
    find_root,
    generate_release,
    list_assignments,
    run_nbgrader,
    source_notebooks,
    write_failure_summary,
)
from .grading.gradebook import db_url
from .grading.safetext import terminal

PER_ASSIGNMENT = {"release_assignment", "collect", "autograde", "generate_feedback", "release_feedback",
                  "generate_solution", "generate_assignment"}


def _say(msg: str) -> None:
    print(msg, flush=True)


def cmd_release(args) -> int:
    root = find_root()
    for a in list_assignments(root, args.assignment):
        generate_release(root, a, env=None)
        _say(f"release/{a}: generated from source/{a}")
    return 0


def cmd_execute(args) -> int:
    root = find_root()
    out = Path(args.out).resolve()
    if out == (root / "source").resolve() or (root / "source").resolve() in out.parents:
        raise CourseError("--out must not be inside source/")
    failures = []
    for a in list_assignments(root, args.assignment):
        for nb in source_notebooks(root, a):
            dest = out / a / nb.name
            try:
                secs = execute_notebook(nb, dest, profile=args.profile, device=args.device, seed=args.seed,
                                        env_dir=out / ".jupyter-state")
                _say(f"executed {a}/{nb.name} (PROFILE={args.profile}, DEVICE={args.device}) in {secs:.1f} s -> {dest}")
            except CourseError as exc:
                failures.append(str(exc))
                _say(f"FAILED {a}/{nb.name}: {exc}")
    if failures:
        _say(f"{len(failures)} notebook(s) failed")
        return 1
    return 0


def cmd_validate(args) -> int:
    root = find_root()
    bad = 0
    for a in list_assignments(root, args.assignment, graded_only=True):
        for nb in source_notebooks(root, a):
            proc = run_nbgrader(["validate", str(nb)], cwd=root, check=False)
            ok = "Success! Your notebook passes all the tests." in proc.stdout
            _say(f"{'ok    ' if ok else 'FAILED'} {a}/{nb.name}")
            if not ok:
                bad += 1
                _say(proc.stdout[-3000:])
    return 1 if bad else 0


def cmd_nbgrader(args) -> int:
    root = find_root()
    sub = args.subcommand
    if sub not in PER_ASSIGNMENT:
        raise CourseError(f"unsupported nbgrader step {sub!r}; one of {sorted(PER_ASSIGNMENT)}")
    graded_only = sub not in ("release_assignment", "generate_assignment", "collect")
    for a in list_assignments(root, args.assignment, graded_only=graded_only):
        extra = ["--force"] if sub in ("generate_feedback", "generate_solution", "generate_assignment") else []
        proc = run_nbgrader([sub, a, *extra, *args.extra], cwd=root, check=False)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            _say(f"nbgrader {sub} {a} failed (exit {proc.returncode})")
            return proc.returncode
    return 0


def cmd_grade(args) -> int:
    """Sandboxed, trusted, parallel, resumable autograding (llmcourse.grading.grader)."""
    import os

    from .grading import cgroups, sandbox
    from .grading.grader import FlagCode, grade_assignment

    root = find_root()
    if args.limits == "rlimits-only":
        os.environ["LLMCOURSE_NO_CGROUP"] = "1"
    m = sandbox.mode()
    if m.usable and m.needs_scope and shutil.which("bwrap"):
        # a user systemd delegates a cgroup to a transient scope: grade again inside one
        _say("grading mode: rootless; re-running in a systemd user scope with a delegated cgroup")
        sys.stdout.flush()
        os.execvp("systemd-run", cgroups.in_scope_argv([sys.executable, "-m", "llmcourse.cli", *sys.argv[1:]]))
    try:
        _say(f"grading mode: {sandbox.check_available().describe()}")
    except sandbox.SandboxUnavailable as exc:
        if not args.unsafe:
            raise CourseError(f"{exc}. Refusing to run student code unsandboxed (`make doctor` explains this "
                              f"machine); pass --unsafe (make autograde UNSAFE=1) to use stock nbgrader "
                              f"instead.") from None
        _say(f"grading mode: UNSAFE, stock nbgrader: {exc}; student code runs unsandboxed as you")
    only = [s for s in (args.students or "").replace(",", " ").split() if s]
    status = 0
    for a in list_assignments(root, args.assignment, graded_only=True):
        t0 = time.perf_counter()
        run = grade_assignment(root, a, allow_stock=args.unsafe, only=only or None, workers=args.workers,
                               engine=args.engine, scheduler=args.scheduler or None)
        secs = time.perf_counter() - t0
        if not run.sandboxed:
            _say(f"WARNING: {run.stock_reason}; {a} graded by stock nbgrader in {secs:.0f} s, student code ran "
                 f"unsandboxed as you")
            continue
        outcomes = run.outcomes
        flagged = [o for o in outcomes if o.flags]
        _say(f"{a}: graded {len(outcomes)} submission(s) in {secs:.0f} s "
             f"({sum(o.resumed for o in outcomes)} unchanged since the last run); {len(flagged)} flagged")
        for o in outcomes:
            flag = "FLAGGED: " + terminal(o.flags[0].message) if o.flags else ""
            _say(f"  {terminal(o.student):<32} {o.score:>5g} / {o.max_score:<5g} {flag}")
        _say(f"  reports: {run.reports}")
        if any(o.has_flag(FlagCode.GRADER_ERROR) for o in outcomes):
            status = 1
    return status


LMS_PATTERNS = {
    # Canvas: <name>_[LATE_]<user id>_<submission id>_<original file name>
    "canvas": r".*/(?P<student_id>[^/_]+)_(?:LATE_)?\d+_\d+_(?P<file_id>[^/]+\.ipynb)$",
    # Moodle: "<Full Name>_<id>_assignsubmission_file_<file>" or the same as a folder
    "moodle": r".*/(?P<student_id>[^/_]+)_\d+_assignsubmission_file_/?(?P<file_id>[^/]+\.ipynb)$",
}


def cmd_collect(args) -> int:
    """Collect submissions: from nbgrader's exchange, or from an LMS download (zip)."""
    root = find_root()
    if not args.zip:
        return _collect_exchange(root, args)
    assignments = list_assignments(root, args.assignment, graded_only=True)
    if len(assignments) != 1:
        raise CourseError("collecting an LMS zip needs one assignment: ASSIGNMENT=<id>")
    a = assignments[0]
    zpath = Path(args.zip).resolve()
    if not zpath.is_file():
        raise CourseError(f"no such file: {zpath}")
    regexp = args.regexp or LMS_PATTERNS.get(args.lms)
    if not regexp:
        raise CourseError(f"unknown LMS {args.lms!r}: one of {sorted(LMS_PATTERNS)}, or give --regexp")
    archive = root / "downloaded" / a / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    shutil.copy2(zpath, archive / zpath.name)
    proc = run_nbgrader(["zip_collect", a, "--force", f"--FileNameCollectorPlugin.named_regexp={regexp}"],
                        cwd=root, check=False)
    print(proc.stdout, end="")
    if proc.returncode != 0:
        return proc.returncode
    got = sorted(p.parent.parent.name for p in (root / "submitted").glob(f"*/{a}/*.ipynb"))
    more = " ..." if len(got) > 20 else ""
    _say(f"collected {len(got)} notebook(s) for {a} into submitted/: {', '.join(got[:20])}{more}")
    return 0


def _collect_exchange(root: Path, args) -> int:
    """The course's own collect (llmcourse.grading.collect): verified owners, no links followed, unprivileged reads."""
    from .grading.collect import CollectError, collect, exchange_settings
    from .grading.safetext import SafeWriter
    exchange, course_id = exchange_settings(root)
    status = 0
    for a in list_assignments(root, args.assignment, graded_only=True):
        try:
            rep = collect(root, exchange, course_id, a, update=args.update)
        except CollectError as exc:
            _say(f"{a}: {terminal(exc)}")
            status = 1
            continue
        _say(f"{a}: collected {len(rep.collected)} submission(s) into submitted/"
             + (f"; {len(rep.skipped)} already collected (--update / UPDATE=1 takes newer ones)"
                if rep.skipped else ""))
        for what, why in rep.refused:
            _say(f"  REFUSED {terminal(what)}: {terminal(why)}")
        if rep.refused:
            out = root / "reports" / a
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "collect_refused.csv", "w", newline="") as fh:
                w = SafeWriter(fh)
                w.writerow(["inbound_entry_or_file", "reason"])
                for what, why in rep.refused:
                    w.writerow([what, why])
            _say(f"  refused entries and files: {out / 'collect_refused.csv'}")
    return status


def cmd_lab(args) -> int:
    """JupyterLab with nbgrader's extensions on 127.0.0.1: refused as root unless --user drops to an account."""
    import os
    import pwd
    jupyter = str(Path(sys.executable).parent / "jupyter")
    cmd = [jupyter, "lab", "--ip=127.0.0.1", "--no-browser"]
    if os.geteuid() != 0:
        if args.user:
            raise CourseError("--user needs root (it drops from root to that account)")
        os.execv(jupyter, cmd)
    if not args.user:
        raise CourseError("refusing to serve JupyterLab and Formgrader as root: a page it renders runs with the "
                          "server's rights (its terminals included). Run `make lab` as the course's owner, or as "
                          "root with LAB_USER=<account> (make lab LAB_USER=instructor) to serve it as that account.")
    try:
        acct = pwd.getpwnam(args.user)
    except KeyError:
        raise CourseError(f"no account named {args.user!r}") from None
    if acct.pw_uid == 0:
        raise CourseError(f"{args.user!r} is root; name an unprivileged account")
    root = find_root()
    if not os.access(root, os.R_OK | os.X_OK):
        raise CourseError(f"cannot read {root}")
    env = dict(os.environ, HOME=acct.pw_dir, USER=acct.pw_name, LOGNAME=acct.pw_name)
    os.initgroups(acct.pw_name, acct.pw_gid)
    os.setresgid(acct.pw_gid, acct.pw_gid, acct.pw_gid)
    os.setresuid(acct.pw_uid, acct.pw_uid, acct.pw_uid)
    if os.geteuid() == 0 or os.getuid() == 0:
        raise CourseError("could not drop root")
    if args.dry_run:
        _say(f"would serve as {acct.pw_name} (uid {os.getuid()}): {' '.join(cmd)}")
        return 0
    os.execve(jupyter, cmd, env)
    return 0


def cmd_export(args) -> int:
    root = find_root()
    out = Path(args.out).resolve()
    run_nbgrader(["export", "--to", str(out)], cwd=root)
    db = db_url(root)
    summary = out.with_name(out.stem + "_tests.csv")
    rows = {}
    for a in list_assignments(root, graded_only=True):
        rows[a] = cell_scores(db, a)
    write_failure_summary(summary, rows)
    _say(f"grades: {out}\nper-test failure summary: {summary}")
    return 0


def cmd_demo(args) -> int:
    """Release, execute, build a sample class, autograde, feedback, export, print a grade table."""
    t0 = time.perf_counter()
    root = find_root()
    out = Path(args.out).resolve()
    assignments = list_assignments(root, args.assignment)
    course = make_scratch_course(out, root, assignments)
    _say(f"[1/6] scratch course at {out} (SQLite gradebook, own exchange)")

    for a in assignments:
        generate_release(course.root, a, course.env)
    _say(f"[2/6] nbgrader generate_assignment: {', '.join(assignments)}")

    n_exec = 0
    for a in assignments:
        for nb in source_notebooks(root, a):
            secs = execute_notebook(nb, out / "executed" / a / nb.name, profile="smoke", device="cpu",
                                    env_dir=out / ".jupyter-state")
            n_exec += 1
            _say(f"      papermill {a}/{nb.name}: all cells and tests pass ({secs:.1f} s)")
    _say(f"[3/6] executed {n_exec} source notebook(s) at PROFILE=smoke")

    mutants = load_misconceptions(root)
    sandboxed, reasons = True, []
    graded = list_assignments(course.root, args.assignment, graded_only=True)
    roster: dict[str, dict[str, str]] = {}
    for a in graded:
        students: dict[str, tuple[str, Mutation | None, str]] = {k: (k, None, k) for k in SAMPLE_KINDS}
        for m in mutants:
            if m.assignment == a:
                students[f"mutant-{m.slug}"] = ("correct", Mutation(m.cell, m.old, m.new), m.models)
        for nb in source_notebooks(root, a):
            for student, (kind, mut, _) in students.items():
                build_sample(course.root, a, nb, student, kind, mutation=mut)
        roster[a] = {student: note for student, (_, _, note) in students.items()}
    n_subs = sum(len(v) for v in roster.values())
    _say(f"[4/6] sample class: {n_subs} submissions (correct, blank, partial, one per misconception)")

    from .authoring.sampleclass import grade_class
    for a in graded:
        t = time.perf_counter()
        why = grade_class(course.root, a, course.env)
        sandboxed = sandboxed and why is None
        reasons += [why] if why else []
        _say(f"      autograded {a}: {len(roster[a])} submissions in {time.perf_counter() - t:.1f} s "
             f"({'sandboxed, trusted records' if why is None else 'stock nbgrader, NOT sandboxed: ' + why})")
        run_nbgrader(["generate_feedback", a, "--force"], cwd=course.root, env=course.env)
    _say("[5/6] autograde + feedback done")

    grades_csv = out / "grades.csv"
    run_nbgrader(["export", "--to", str(grades_csv)], cwd=course.root, env=course.env)
    db = f"sqlite:///{course.db_path}"
    all_scores = {a: cell_scores(db, a) for a in graded}
    write_failure_summary(out / "grades_tests.csv", all_scores)
    _say(f"[6/6] exported {grades_csv} and {out / 'grades_tests.csv'}\n")

    caught = total_mut = 0
    correct_ok = blank_ok = True
    for a in graded:
        scores = all_scores[a]
        _say(f"{a}")
        _say(f"  {'student':<40} {'autograded':>11}  note")
        for student in roster[a]:
            per = scores.get(student, {})
            auto = sum(g["auto"] or 0 for g in per.values() if g["kind"] == "code")
            mx = sum(g["max"] for g in per.values() if g["kind"] == "code")
            note = ""
            if student.startswith("mutant-"):
                total_mut += 1
                lost = auto < mx
                caught += lost
                note = ("caught: " if lost else "NOT CAUGHT: ") + roster[a][student]
            elif student == "correct":
                correct_ok &= auto == mx
            elif student == "blank":
                blank_ok &= auto == 0
            _say(f"  {student:<40} {auto:>5g} / {mx:<4g}  {note}")
        _say("")
    secs = time.perf_counter() - t0
    ok = correct_ok and blank_ok and caught == total_mut
    _say(f"demo {'OK' if ok else 'FAILED'}: {n_exec} notebooks executed, {n_subs} submissions graded "
         f"(correct {'full marks' if correct_ok else 'LOST POINTS'}, blank {'0' if blank_ok else 'SCORED'}, "
         f"misconceptions caught {caught}/{total_mut}) in {secs:.0f} s; files in {out} "
         f"(grades.csv, grades_tests.csv, feedback/, autograded/, executed/)")
    if sandboxed:
        from .grading.sandbox import mode
        _say(f"grading was SANDBOXED: {mode().describe()}")
    else:
        _say(f"grading was NOT SANDBOXED (stock nbgrader, student code ran as you): {reasons[0]}; "
             f"`make doctor` says what this machine lacks")
    return 0 if ok else 1


def cmd_nbbuild(args) -> int:
    from .authoring.nbbuild import AuthoringError, build_all
    from .authoring.unbuild import write_back_all
    root = find_root()
    only = None if args.assignment == "all" else args.assignment
    if only and not (root / ("source" if args.reverse else "authoring") / only).is_dir():
        raise CourseError(f"unknown assignment {only!r}")
    try:
        if args.reverse:
            changed = write_back_all(root, only, check=args.check)
        else:
            changed = [str(Path(c).resolve().relative_to(root)) for c in
                       build_all(root / "authoring", root / "source", check=args.check, only=only)]
    except AuthoringError as exc:
        raise CourseError(str(exc)) from None
    verb = "differs: " if args.check else "wrote: "
    for c in changed:
        _say(verb + c)
    if not changed:
        _say("nothing to write: " + ("authoring/ matches source/" if args.reverse else "source/ matches authoring/"))
    return 1 if changed and args.check else 0


def cmd_new(args) -> int:
    from .authoring.scaffold import ScaffoldError, new_assignment
    root = find_root()
    try:
        written = new_assignment(root, args.id)
    except ScaffoldError as exc:
        raise CourseError(str(exc)) from None
    for p in written:
        _say(f"wrote {p.relative_to(root)}")
    _say(f"next: edit authoring/{args.id}/, then `make release ASSIGNMENT={args.id}` and "
         f"`make test PYTEST_ARGS=\"--assignment {args.id}\"`")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="llmcourse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_assignment(sp):
        sp.add_argument("--assignment", default="all", help="assignment id(s), comma-separated, or 'all'")
        return sp

    with_assignment(sub.add_parser("release")).set_defaults(func=cmd_release)
    ex = with_assignment(sub.add_parser("execute"))
    ex.add_argument("--profile", default="default", choices=["smoke", "default", "full"])
    ex.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--out", default="build/executed")
    ex.set_defaults(func=cmd_execute)
    with_assignment(sub.add_parser("validate")).set_defaults(func=cmd_validate)
    nbg = with_assignment(sub.add_parser("nbgrader"))
    nbg.add_argument("subcommand")
    nbg.add_argument("extra", nargs="*")
    nbg.set_defaults(func=cmd_nbgrader)
    gr = with_assignment(sub.add_parser("grade"))
    gr.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: CPU cores)")
    gr.add_argument("--engine", default="dask", choices=["dask", "threads"],
                    help="dask: the submissions' tasks on a Dask cluster (default); threads: in this process")
    gr.add_argument("--scheduler", default="", help="address of a running Dask scheduler (tls://host:8786); "
                    "default: a LocalCluster of --workers processes on this machine")
    gr.add_argument("--students", default="", help="only these students (comma-separated)")
    gr.add_argument("--unsafe", action="store_true", help="no sandbox available: fall back to stock nbgrader")
    gr.add_argument("--limits", default="cgroup", choices=["cgroup", "rlimits-only"],
                    help="rlimits-only: no cgroup can be had; grade in the sandbox without memory, process "
                         "and CPU-share limits (every report says so)")
    gr.set_defaults(func=cmd_grade)
    col = with_assignment(sub.add_parser("collect"))
    col.add_argument("--zip", default="", help="an LMS download (zip) instead of nbgrader's exchange")
    col.add_argument("--lms", default="canvas", help="file naming of the zip: canvas or moodle")
    col.add_argument("--regexp", default="", help="nbgrader named_regexp with student_id and file_id groups")
    col.add_argument("--update", action="store_true", help="replace a collected submission by a newer one")
    col.set_defaults(func=cmd_collect)
    lab = sub.add_parser("lab")
    lab.add_argument("--user", default="", help="when root: serve as this (unprivileged) account")
    lab.add_argument("--dry-run", action="store_true", help="check and drop privileges, then stop (for tests)")
    lab.set_defaults(func=cmd_lab)
    exp = sub.add_parser("export")
    exp.add_argument("--out", default="grades.csv")
    exp.set_defaults(func=cmd_export)
    demo = with_assignment(sub.add_parser("demo"))
    demo.add_argument("--out", default="build/demo")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("doctor").set_defaults(func=lambda a: __import__("llmcourse.grading.doctor").grading.doctor.main())

    nbb = with_assignment(sub.add_parser("nbbuild", help="build source/ from authoring/ (or back, --reverse)"))
    nbb.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything differs")
    nbb.add_argument("--reverse", action="store_true",
                     help="write source/<id>/<nb>.ipynb (edited in Jupyter) back to authoring/<id>/<nb>.nbsrc")
    nbb.set_defaults(func=cmd_nbbuild)
    new = sub.add_parser("new", help="scaffold a new assignment NN_name")
    new.add_argument("id", help="the new assignment's id, e.g. 07_tokenization")
    new.set_defaults(func=cmd_new)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
