"""8. The course as people use it: JupyterLab and nbgrader's extensions in a real browser.

Debian's Chromium (headless), driven by Playwright, against two JupyterLab servers that
these tests start on 127.0.0.1 and stop: a student's (root and $HOME = the student's
folder, with a two-line nbgrader_config.py naming the course and the exchange) and the
instructor's (in a scratch course root). The flows run in order and share one module
fixture:

1. student: Assignment List shows the released 01_chain_rule, Fetch, open the notebook,
   Run All (the blank steps raise NotImplementedError), fill in the answers (the
   reference solution is written into the fetched file, then the notebook is reloaded),
   Validate (success dialog), Submit;
2. instructor: collect + the course's grader (what `make autograde` runs; stock nbgrader
   when the sandbox is unavailable), Formgrader lists the assignment and the submission's
   score; feedback generated and released from Formgrader;
3. student: Fetch Feedback; the feedback page shows the score and no hidden test.

The student's written answers carry a hostile payload (a <script>, an <img onerror>, a
javascript: link, each setting window.__pwned): the Formgrader grading page of the
submission and the feedback page must render the answer as text, run none of it (the
flag stays unset) and hold no such element (issue 14).

nbgrader's exchange names a submission by the OS user running the student's JupyterLab
(`root` on a CI runner), so that is the student id; the gradebook calls them Ada Lovelace.

Screenshots of the key screens go to build/test-artifacts/browser/ (with the servers'
logs). The README's screenshots in docs/ are copies of two of them.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import require_system
from labserver import LabServer
from nbutil import ROOT, graded_test_cells, read, split_hidden

from llmcourse.authoring.sampleclass import build_submission, make_scratch_course
from llmcourse.grading.course import cell_scores, copy_nb_without_outputs, generate_release, run_nbgrader
from llmcourse.settings import setting

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

ASSIGNMENT = "01_chain_rule"
NOTEBOOK = "chain_rule.ipynb"
COURSE_ID = "llm-course"
ARTIFACTS = ROOT / "build" / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 60_000          # any single UI step
HOSTILE_ANSWER = ("A written answer, typed by the browser test's student. <script>window.__pwned = 1</script>"
                  '<img src="x" onerror="window.__pwned = 2"> [a link](javascript:window.__pwned=3)')
SLOW_MS = 300_000            # Validate and feedback generation execute / convert the notebook


class Lab:
    """What the flows share: servers, browser pages, the scratch course and the student's folder."""

    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.done: set[str] = set()


# Screenshots that README shows (committed under docs/). To refresh them after a UI change:
# LLMCOURSE_UPDATE_DOCS_SCREENSHOTS=1 make test PYTEST_ARGS=tests/test_08_browser.py
DOCS_SHOTS = {"student-03-validate-success": "student-validate.png",
              "instructor-02-formgrader-scores": "instructor-formgrader.png"}


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled")   # finished transitions, not half-faded dialogs
    if name in DOCS_SHOTS and setting("LLMCOURSE_UPDATE_DOCS_SCREENSHOTS"):
        shutil.copy2(path, ROOT / "docs" / DOCS_SHOTS[name])
    return path


def need(locator, what: str, timeout: float = TIMEOUT_MS, state: str = "visible"):
    """Wait for an element; fail with a sentence that says which one was missing."""
    from playwright.sync_api import TimeoutError as PWTimeout
    try:
        locator.first.wait_for(state=state, timeout=timeout)
    except PWTimeout:
        try:
            locator.page.screenshot(path=str(ARTIFACTS / "FAILED-missing-element.png"))
        except Exception:  # noqa: BLE001 (the screenshot is a courtesy; the failure below is the point)
            pass
        pytest.fail(f"browser: {what} did not appear within {timeout / 1000:.0f} s "
                    f"(screenshots and server logs: {ARTIFACTS})")
    return locator


def menu(page, top: str, label: str) -> None:
    """Click a main-menu entry by the labels a person reads: the top-level menu, then the item."""
    need(page.locator("#jp-MainMenu .lm-MenuBar-itemLabel").get_by_text(top, exact=True),
         f"the {top!r} menu").first.click()
    label_el = page.locator(".lm-Menu-itemLabel").get_by_text(label, exact=True)
    item = page.locator(".lm-Menu .lm-Menu-item:not(.lm-mod-disabled)", has=label_el)
    need(item, f"the menu item {top} > {label} (enabled)").first.click()


def open_lab(page, server: LabServer) -> None:
    page.goto(server.lab_url())
    need(page.locator("#jp-main-dock-panel"), "JupyterLab's main area")
    need(page.locator("#jupyterlab-splash"), "the end of JupyterLab's splash screen", state="detached")
    need(page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text="Nbgrader"),
         "the Nbgrader menu (nbgrader's labextension)")


def tab(page, label: str):
    return page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text=label)


def no_dialog(page, timeout: float = TIMEOUT_MS) -> None:
    """Wait until no modal dialog covers the page (JupyterLab opens some on its own, e.g. while a
    slow kernel starts under load); one that stays is a failure that quotes its text."""
    from playwright.sync_api import TimeoutError as PWTimeout
    dialog = page.locator(".jp-Dialog")
    if not dialog.count():
        return
    text = dialog.first.inner_text()[:500]
    try:
        dialog.first.wait_for(state="detached", timeout=timeout)
    except PWTimeout:
        page.screenshot(path=str(ARTIFACTS / "FAILED-dialog.png"))
        pytest.fail(f"browser: a JupyterLab dialog stayed open for {timeout / 1000:.0f} s: {text!r}")


def wait_kernel_idle(page, timeout: float = TIMEOUT_MS) -> None:
    need(page.locator('.jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status="idle"]'),
         "an idle kernel in the notebook's toolbar", timeout=timeout)


def assert_inert(page, what: str) -> None:
    """The hostile answer's payload did not run and left no live element in `page`."""
    assert page.evaluate("typeof window.__pwned") == "undefined", f"a script of the student's ran in {what}"
    live = page.evaluate("""() => {
        const bad = [];
        for (const el of document.querySelectorAll('*')) {
            if (el.tagName === 'SCRIPT' && el.textContent.includes('__pwned')) bad.push('script');
            for (const a of el.attributes) {
                if (a.name.startsWith('on') && a.value.includes('__pwned')) bad.push(el.tagName + '[' + a.name + ']');
                if ((a.name === 'href' || a.name === 'src') && a.value.toLowerCase().startsWith('javascript:'))
                    bad.push(el.tagName + '[' + a.name + ']');
            }
        }
        return bad;
    }""")
    assert not live, f"{what} holds live elements of the student's answer: {live}"
    assert "<script>window.__pwned = 1</script>" in page.locator("body").inner_text(), \
        f"{what} should show the answer's markup as text"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_system("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*"):
        if old.is_file():
            old.unlink()
    base = tmp_path_factory.mktemp("browser")
    course = make_scratch_course(base / "course", ROOT, [ASSIGNMENT])
    generate_release(course.root, ASSIGNMENT, course.env)
    run_nbgrader(["release_assignment", ASSIGNMENT, "--force"], cwd=course.root, env=course.env)
    exchange = course.root / "exchange"

    from nbgrader.utils import get_username
    student_id = get_username()   # nbgrader's exchange names a submission by the OS user running the lab
    home = base / "home" / student_id
    home.mkdir(parents=True)
    (home / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.Exchange.root = {str(exchange)!r}\n")
    from llmcourse.grading.course import jupyter_env
    student_env = jupyter_env(base / "student-state", base=course.env)
    student_env["HOME"] = str(home)
    student_env.pop("LLMCOURSE_EXCHANGE", None)   # the student's own config names the exchange

    student = LabServer("student", root=home, cwd=home, env=student_env,
                        state=base / "student-lab", log_dir=ARTIFACTS)
    instructor = LabServer("instructor", root=course.root, cwd=course.root, env=course.env,
                           state=base / "instructor-lab", log_dir=ARTIFACTS)
    pw = browser = None
    try:
        student.start()
        instructor.start()
        student.wait_ready()
        instructor.wait_ready()
        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)   # Playwright gives it a fresh, temporary profile
        pages = {}
        for who in ("student", "instructor"):
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            ctx.set_default_timeout(TIMEOUT_MS)
            pages[who] = ctx.new_page()
        yield Lab(course=course, exchange=exchange, home=home, student_id=student_id, student=student,
                  instructor=instructor, student_page=pages["student"], instructor_page=pages["instructor"])
    finally:
        if browser is not None:
            browser.close()
        if pw is not None:
            pw.stop()
        student.stop()
        instructor.stop()


def require_done(lab, step: str) -> None:
    if step not in lab.done:
        pytest.fail(f"this flow needs the {step!r} flow of this module first, in the same process "
                    "(run tests/test_08_browser.py as a whole, without splitting it across workers)")


# ---------------------------------------------------------------------------------- student
def test_student_fetches_runs_validates_and_submits(lab):
    from playwright.sync_api import TimeoutError as PWTimeout
    from playwright.sync_api import expect

    page = lab.student_page
    open_lab(page, lab.student)
    menu(page, "Nbgrader", "Assignment List")
    released = page.locator("#released_assignments_list > .list_item")
    need(released, f"{ASSIGNMENT} under 'Released assignments' in the Assignment List")
    expect(released, "exactly one released assignment").to_have_count(1)
    expect(released.first.locator(".item_name")).to_have_text(ASSIGNMENT)
    expect(released.first.locator(".item_course")).to_have_text(COURSE_ID)
    shot(page, "student-01-assignment-list")

    need(released.first.locator(".item_status button", has_text="Fetch"), "the Fetch button").first.click()
    fetched = page.locator("#fetched_assignments_list a", has_text=ASSIGNMENT)
    need(fetched, f"{ASSIGNMENT} under 'Downloaded assignments' after Fetch")
    fetched_nb = lab.home / ASSIGNMENT / NOTEBOOK
    assert fetched_nb.is_file(), f"Fetch did not put the notebook at {fetched_nb}"

    # expand the fetched assignment and open its notebook from the list
    fetched.first.click()
    nb_link = page.locator("#fetched_assignments_list a", has_text=Path(NOTEBOOK).stem).filter(
        has_not_text=ASSIGNMENT)
    need(nb_link, f"the link to {NOTEBOOK} in the expanded assignment").first.click()
    need(tab(page, NOTEBOOK), f"a tab for {NOTEBOOK}")
    need(page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell"), "the notebook's cells")
    wait_kernel_idle(page, timeout=120_000)

    # blank notebook: Run All stops at the first step with NotImplementedError
    cells = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
    started = page.locator(".jp-NotebookPanel:visible .jp-InputPrompt").filter(
        has_text=re.compile(r"\[(\*|\d+)\]"))
    for _ in range(3):   # the notebook must be the active widget for Run All to apply to it
        no_dialog(page)
        cells.first.click()
        menu(page, "Run", "Run All Cells")
        try:
            started.first.wait_for(timeout=15_000)
            break
        except PWTimeout:
            continue
    need(started, "a cell starting to run after Run > Run All Cells")
    err = page.locator('.jp-NotebookPanel:visible '
                       '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                       has_text="NotImplementedError")
    need(err, "a NotImplementedError output after running the blank notebook", timeout=180_000)
    wait_kernel_idle(page, timeout=120_000)
    err.first.scroll_into_view_if_needed()
    shot(page, "student-02-blank-notebook-not-implemented")

    # save, then fill in every answer on disk and reload the notebook from disk
    menu(page, "File", "Save Notebook")
    need(page.locator("#jp-main-dock-panel .lm-TabBar-tab.jp-mod-current:not(.jp-mod-dirty)"),
         "the notebook saved (tab no longer marked as modified)")
    build_submission(fetched_nb, ROOT / "source" / ASSIGNMENT / NOTEBOOK, fetched_nb, fill="all")
    answered = copy_nb_without_outputs(read(fetched_nb))   # as after the student's edits: no stale errors
    for cell in answered.cells:   # written answers: nbgrader validate rejects an untouched "YOUR ANSWER HERE"
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = HOSTILE_ANSWER
    nbformat.write(answered, str(fetched_nb))
    first_answer = next(c for c in read(fetched_nb).cells
                        if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code")
    marker = next(ln.strip() for ln in first_answer.source.split("\n")
                  if ln.strip() and not ln.strip().startswith(("def ", '"""', "#")))
    menu(page, "File", "Reload Notebook from Disk")
    filled = page.locator(".jp-NotebookPanel:visible .jp-Cell", has_text=marker)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not filled.count() and time.monotonic() < deadline:   # a confirmation dialog may come first
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count():
            accept.first.click()
        time.sleep(0.2)
    need(filled, f"the filled-in answer ({marker!r}) after reloading the notebook")

    # Validate: nbgrader executes the whole notebook and reports success
    need(page.locator(".jp-NotebookPanel:visible .validate-button"), "the Validate button").first.click()
    outcome = page.locator(".nbgrader-SuccessDialog, .nbgrader-ErrorDialog")
    need(outcome, "nbgrader's validation result dialog", timeout=SLOW_MS)
    if page.locator(".nbgrader-ErrorDialog").count():
        shot(page, "student-03-validate-FAILED")
        report = page.locator(".nbgrader-ErrorDialog").first.inner_text()[:3000]
        pytest.fail(f"Validate reported a failure:\n{report}")
    expect(page.locator(".nbgrader-SuccessDialog")).to_contain_text("Success")
    shot(page, "student-03-validate-success")
    page.locator(".nbgrader-SuccessDialog button.jp-Dialog-button").first.click()
    need(page.locator(".nbgrader-SuccessDialog"), "the validation dialog closing", state="detached")

    # Submit from the Assignment List
    tab(page, "Assignments").first.click()
    need(page.locator("#fetched_assignments_list .item_status button", has_text="Submit"),
         "the Submit button").first.click()
    submitted = page.locator("#submitted_assignments_list > .list_item")
    need(submitted, f"{ASSIGNMENT} under 'Submitted assignments' after Submit")
    expect(submitted.first.locator(".item_name").first).to_have_text(ASSIGNMENT)
    shot(page, "student-04-submitted")
    inbound = list((lab.exchange / COURSE_ID / "inbound").glob(f"{lab.student_id}+{ASSIGNMENT}+*"))
    assert inbound, f"no submission of {lab.student_id} in the exchange's inbound folder"
    lab.done.add("student")


# ---------------------------------------------------------------------------------- instructor
def test_instructor_grades_in_formgrader_and_releases_feedback(lab):
    from playwright.sync_api import TimeoutError as PWTimeout
    from playwright.sync_api import expect

    from llmcourse.grading import sandbox

    require_done(lab, "student")
    root, env = lab.course.root, lab.course.env
    run_nbgrader(["db", "student", "add", lab.student_id, "--first-name=Ada", "--last-name=Lovelace"],
                 cwd=root, env=env)
    cli = Path(sys.executable).parent / "llmcourse"
    proc = subprocess.run([str(cli), "collect", "--assignment", ASSIGNMENT], cwd=root, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)   # what `make collect` runs
    assert proc.returncode == 0, f"llmcourse collect failed:\n{proc.stdout[-3000:]}"
    assert (root / "submitted" / lab.student_id / ASSIGNMENT / NOTEBOOK).is_file(), \
        f"collect found no submission:\n{proc.stdout[-3000:]}"
    try:   # what `make autograde` runs: the course's sandboxed grader, or stock nbgrader (UNSAFE=1)
        sandbox.check_available()
        unsafe = []
    except sandbox.SandboxUnavailable:
        unsafe = ["--unsafe"]
    proc = subprocess.run([str(cli), "grade", "--assignment", ASSIGNMENT, "--workers", "1", *unsafe],
                          cwd=root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, f"llmcourse grade failed:\n{proc.stdout[-3000:]}"
    scores = cell_scores(f"sqlite:///{lab.course.db_path}", ASSIGNMENT)[lab.student_id]
    auto = {gid: g for gid, g in scores.items() if g["kind"] == "code"}
    lost = {gid: (g["score"], g["max"]) for gid, g in auto.items() if g["score"] != g["max"]}
    assert not lost, f"the submitted reference solution lost points: {lost}"
    total = sum(g["score"] or 0 for g in scores.values())
    maximum = sum(g["max"] for g in scores.values())

    page = lab.instructor_page
    open_lab(page, lab.instructor)
    menu(page, "Nbgrader", "Formgrader")
    need(tab(page, "Formgrader"), "the Formgrader tab")
    fg = page.frame_locator("#jp-main-dock-panel iframe")
    row = fg.locator("tr", has=fg.locator("td.name", has_text=ASSIGNMENT))
    need(row, f"{ASSIGNMENT} in Formgrader's Manage Assignments")
    expect(row.locator("td.num-submissions"), "one submission counted").to_have_text("1")
    shot(page, "instructor-01-formgrader-assignments")

    row.locator("td.num-submissions a").click()
    sub_row = fg.locator("tr", has=fg.locator("td.student-id", has_text=lab.student_id))
    need(sub_row, f"{lab.student_id}'s submission in Formgrader's Manage Submissions")
    expect(sub_row.locator("td.score"), "the autograded score").to_have_text(f"{total:g} / {maximum:g}")
    shot(page, "instructor-02-formgrader-scores")

    # the grading page of the submission: the hostile written answer is text, nothing of it ran
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{lab.course.db_path}") as gb:
        sub_nb_id = gb.find_submission_notebook(Path(NOTEBOOK).stem, ASSIGNMENT, lab.student_id).id
    grading = page.context.new_page()
    grading.goto(f"{lab.instructor.url}/formgrader/submissions/{sub_nb_id}/?token={lab.instructor.token}")
    answer = need(grading.locator("text=A written answer, typed by the browser test"),
                  "the written answer on the grading page")
    grading.wait_for_load_state("load")
    grading.wait_for_timeout(1000)
    answer.first.scroll_into_view_if_needed()
    shot(grading, "instructor-03a-formgrader-hostile-answer")
    assert_inert(grading, "Formgrader's grading page")
    grading.close()

    # back to the assignments; generate, then release feedback
    need(fg.locator(".breadcrumb a", has_text="Assignments"), "the 'Assignments' breadcrumb").first.click()
    row = fg.locator("tr", has=fg.locator("td.name", has_text=ASSIGNMENT))
    for action, step in (("generate-feedback", "generated"), ("release-feedback", "released")):
        need(row.locator(f"td.{action} a"), f"the {action} link").first.click()
        modal = fg.locator("#success-modal, #error-modal")
        need(modal, f"Formgrader's answer to {action}", timeout=SLOW_MS)
        if fg.locator("#error-modal").count():
            pytest.fail(f"Formgrader {action} failed:\n{fg.locator('#error-modal').first.inner_text()[:3000]}")
        expect(fg.locator("#success-modal .modal-body")).to_contain_text(f"Successfully {step} feedback")
        need(fg.locator("#success-modal.in"), "the success dialog fully shown")
        shot(page, f"instructor-0{3 if step == 'generated' else 4}-feedback-{step}")
        close = fg.locator("#success-modal .modal-footer button")
        for _ in range(5):   # Bootstrap may drop a click made during its fade transition: click again
            if not fg.locator("#success-modal").count():
                break
            if close.count() and close.first.is_visible():
                close.first.click()
            try:
                fg.locator("#success-modal").first.wait_for(state="detached", timeout=5_000)
            except PWTimeout:
                continue
        need(fg.locator("#success-modal"), "the success dialog closing", state="detached")
    assert list((root / "feedback" / lab.student_id / ASSIGNMENT).glob("*.html")), "no feedback HTML generated"
    assert list((lab.exchange / COURSE_ID / "feedback").glob("*.html")), "no feedback released to the exchange"
    lab.done.add("instructor")


# ---------------------------------------------------------------------------------- student again
def test_student_fetches_feedback_without_hidden_tests(lab):
    require_done(lab, "instructor")
    page = lab.student_page
    tab(page, "Assignments").first.click()
    page.locator("#refresh_assignments_list").click()
    need(page.locator("#submitted_assignments_list button", has_text="Fetch Feedback"),
         "the Fetch Feedback button").first.click()
    view = page.locator("#submitted_assignments_list a", has_text="view feedback")
    need(view, "the '(view feedback)' link after fetching feedback")
    shot(page, "student-05-feedback-fetched")
    pages = list((lab.home / ASSIGNMENT / "feedback").glob(f"*/{Path(NOTEBOOK).stem}.html"))
    assert len(pages) == 1, f"expected one feedback page in the student's folder, found {pages}"

    rel = pages[0].relative_to(lab.home).as_posix()
    fb = page.context.new_page()
    fb.goto(f"{lab.student.url}/files/{rel}?token={lab.student.token}")
    need(fb.locator("body"), "the feedback page")
    need(fb.locator("text=Score"), "the score on the feedback page")
    shot(fb, "student-06-feedback-page")
    fb.wait_for_timeout(1000)
    assert_inert(fb, "the feedback page")
    text = fb.locator("body").inner_text()
    fb.close()
    assert "HIDDEN TESTS" not in text
    src = read(ROOT / "source" / ASSIGNMENT / NOTEBOOK)
    hidden = {ln.strip() for c in graded_test_cells(src) for block in split_hidden(c.source)[1]
              for ln in block.split("\n") if len(ln.strip()) > 15}
    shown = sorted(ln for ln in hidden if ln in text)
    assert not shown, f"the feedback page shows hidden test lines: {shown[:3]}"


def test_readme_screenshots_exist():
    """README's student and instructor screenshots are committed PNGs made by these tests."""
    readme = (ROOT / "README.md").read_text()
    for png in DOCS_SHOTS.values():
        assert f"(docs/{png})" in readme, f"README should show docs/{png}"
        data = (ROOT / "docs" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"docs/{png} is not a PNG"
