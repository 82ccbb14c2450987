# metasig: `make run` runs the default study, `make test` runs every test; both bootstrap first.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bootstrapped
PYTHON ?= python3
CORES ?= 8

.PHONY: bootstrap run report test lint format bench clean

bootstrap: $(STAMP)

# Pinned dependencies into .venv, then this package (editable) on top.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

run: bootstrap
	$(BIN)/snakemake --profile profiles/default --cores $(CORES)
	$(BIN)/snakemake --profile profiles/default --report results/report.html
	@echo "Report: results/report.html   Leaderboard: results/leaderboard.tsv"

test: bootstrap
	$(BIN)/pytest

lint: bootstrap
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

format: bootstrap
	$(BIN)/snakefmt Snakefile rules

bench: bootstrap
	$(BIN)/python -m metasig.bench

clean:
	rm -rf results logs benchmarks .snakemake
