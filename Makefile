# Commands for working on the template. `make help` lists them.
# A fresh machine needs two: `make demo` and `make test`.

PROJECT_DIR := {{cookiecutter.project_slug}}
VENV := .venv
PYTHON := $(VENV)/bin/python
ARGS ?=

# The slug cookiecutter.json derives from the default project_name; `make demo` bakes and trains that project.
DEMO_DIR := build/segmentation_project

# One source of pins: the generated project's constraints for what both use, the template's own for the rest.
CONSTRAINTS := -c '$(PROJECT_DIR)/constraints.txt' -c constraints-template.txt
# The generated project's installer: uv with pip's configuration, else pip (INSTALLER=pip: pip outright).
INSTALLER ?= auto
INSTALL := $(PROJECT_DIR)/tools/install.py

# The install runs again only when one of these files changed since the last successful one.
STAMP := $(VENV)/.installed

# Prints the last runs of experiments.csv: who, how long, and the best metrics.
SHOW_EXPERIMENTS := import pandas as pd; \
    df = pd.read_csv('$(DEMO_DIR)/logs/experiments.csv'); \
    cols = ['run_name', 'routine', 'status', 'epochs_completed', 'duration_s']; \
    cols = [c for c in cols if c in df.columns] + [c for c in df.columns if c.startswith('best_')]; \
    print(df[cols].tail(5).to_string(index=False))

.DEFAULT_GOAL := help
.PHONY: help env demo test lint pins docs bench bench-data bench-thin bench-predict bench-cv clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

env: $(STAMP) ## Create .venv with the template's tools and the project's packages (pinned)

# The installer makes .venv (with python3) where there is none yet.
$(STAMP): requirements-template.txt constraints-template.txt $(PROJECT_DIR)/constraints.txt $(INSTALL)
	python3 '$(INSTALL)' $(VENV) --installer $(INSTALLER) -r requirements-template.txt $(CONSTRAINTS)
	touch $@

demo: env ## Bake the default project into build/, train it on synthetic data, print the experiments table
	$(VENV)/bin/cookiecutter --no-input --default-config -f -o build .
	cd $(DEMO_DIR) && LOG_DIR="$(CURDIR)/$(DEMO_DIR)/logs" WEIGHT_DIR="$(CURDIR)/$(DEMO_DIR)/weights" \
		"$(CURDIR)/$(PYTHON)" train.py $(ARGS)
	@$(PYTHON) -c "$(SHOW_EXPERIMENTS)"

test: env ## Test the template: bake every option combination, lint, run the baked projects' tests
	$(PYTHON) -m pytest tests $(ARGS)

lint: env ## Lint the hooks, tests, benchmarks, scripts and docs hook with ruff
	$(VENV)/bin/ruff check hooks tests benchmarks scripts docs/hooks.py
	$(VENV)/bin/ruff format --check hooks tests benchmarks scripts docs/hooks.py

pins: env ## Resolve both constraint files again with uv, keeping every pin (ARGS='-P ruff': ruff newer; '--upgrade')
	$(PYTHON) scripts/update_pins.py $(ARGS)

docs: env ## Build the template's documentation into build/site (strict: warnings fail)
	$(VENV)/bin/mkdocs build --strict

bench: env ## Time each training routine against a bare loop (about 3 min on 2 CPU cores; ARGS='--rounds 3')
	$(PYTHON) benchmarks/routine_overhead.py $(ARGS)

bench-data: env ## Share of a training epoch waiting for data on a folder of PNG tiles, 0 and 2 workers
	$(PYTHON) benchmarks/data_loading.py $(ARGS)

bench-thin: env ## A thin class (3 % of pixels): its dice per epoch with and without data_report.py's lines (a few min)
	$(PYTHON) benchmarks/thin_class.py $(ARGS)

bench-predict: env ## Tiled prediction: speed and peak memory on 1, 6 and 24 megapixel scenes; an ensemble of 3 and TTA; torch against onnxruntime (6 to 9 min; ARGS='--only onnx': 1 min)
	$(PYTHON) benchmarks/predict_scene.py $(ARGS)

bench-cv: env ## Small data: one model against the 5-fold ensemble, with and without TTA, on held-out images (about 6 min)
	$(PYTHON) benchmarks/cv_ensemble.py $(ARGS)

clean: ## Remove build/ and caches (keeps .venv; rm -rf .venv to rebuild it)
	rm -rf build
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .pytest_cache -o -name .ruff_cache \) \
		-type d -prune -exec rm -rf {} +
