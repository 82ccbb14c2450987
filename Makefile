# metasig: `make run` runs the default study, `make test` runs every test; both bootstrap first.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bootstrapped
PYTHON ?= python3
CORES ?= 8
PORT ?= 8080
ENGINE_ARGS ?=  # e.g. --quick, or --case a --model xgboost (python -m metasig.bench engine --help)

# Command-line tools of the reads path, from Debian's packages (or bioconda with --sdm conda).
TOOLS := salmon fastp mason_frag_sequencing featureCounts prefetch fasterq-dump samtools
DEBIAN_PACKAGES := salmon fastp seqan-apps subread sra-toolkit samtools

.PHONY: bootstrap tools run report test lint format bench serve clean

bootstrap: $(STAMP) tools

# Installs what is missing where it can (root + apt-get); elsewhere says what is missing.
tools:
	@missing=""; for tool in $(TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages for:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; \
	else \
		echo "missing:$$missing. Install the Debian packages $(DEBIAN_PACKAGES) (or run with --sdm conda); until then the reads tests are skipped."; \
	fi

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

# One endpoint for every registered model (V2 inference protocol); see README "Serving".
serve: bootstrap
	$(BIN)/metasig serve --registry results/registry --port $(PORT)

test: bootstrap
	$(BIN)/pytest

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

format: bootstrap
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile rules

bench: bootstrap
	$(BIN)/python -m metasig.bench study
	$(BIN)/python -m metasig.bench reads --cores 2
	$(BIN)/python -m metasig.bench serve --out benchmarks/bench_serve.json
	$(BIN)/python -m metasig.bench dag
	$(BIN)/python -m metasig.bench engine $(ENGINE_ARGS)
	$(BIN)/python -m metasig.bench overhead --cores 2

clean:
	rm -rf results logs benchmarks .snakemake
