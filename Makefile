# lica -- `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= dev,jax

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0   # the CPU build where it lies on disk; plain PyPI elsewhere
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP) ## create/update the virtual environment (.venv) and install lica
	@echo "lica installed in $(VENV)"

TRAIN_STEPS ?= 100000
train: $(STAMP) ## train LICA on Cooperative Navigation (n=3), default config, TRAIN_STEPS env steps (~3 min)
	$(PY) -m lica.train trainer.max_env_steps=$(TRAIN_STEPS) $(ARGS)

TEST_WORKERS ?= auto
test: $(STAMP) ## run the test suite on TEST_WORKERS processes (starts and stops the bundled SLURM cluster itself)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(ARGS)

bench: $(STAMP) ## throughput benchmark: env limit vs rollout vs training, env-steps/s (outputs/bench/)
	$(PY) -m lica.bench $(ARGS)

bench-gpu: $(STAMP) ## learner on GPU vs CPU side by side: spread, jax_spread, smax_5m_vs_6m (minutes; needs a CUDA GPU)
	$(PY) -m lica.bench --envs spread,jax_spread,smax_5m_vs_6m --workers 2 --reps 2 --accelerators cpu,gpu \
		--out outputs/bench/bench_gpu.json $(ARGS)

plot: $(STAMP) ## paper-style figures of a multirun: make plot RUNS=outputs/multiruns/<date>/<time>_<name>
	@test -n "$(RUNS)" || { echo "usage: make plot RUNS=<multirun folder> [ARGS='--metric policy_entropy']"; exit 2; }
	$(PY) -m lica.plot $(RUNS) $(ARGS)

dashboard: $(STAMP) ## W&B report of a multirun's variants: make dashboard ENTITY=e PROJECT=p RUNS=<multirun folder> (needs network)
	@test -n "$(RUNS)" || { echo "usage: make dashboard ENTITY=e PROJECT=p RUNS=<multirun folder> [ARGS=--dry-run]"; exit 2; }
	$(PY) -m lica.dashboard --entity "$(ENTITY)" --project "$(PROJECT)" --runs $(RUNS) $(ARGS)

traffic-junction: $(STAMP) ## the 1-step Traffic Junction study (Fig. 5), LICA vs COMA, 20000 initialisations
	$(PY) -m lica.analysis.traffic_junction --n-inits 20000 --out outputs/traffic_junction $(ARGS)

slurm-up: ## install (Debian packages) and start the bundled single-node SLURM cluster
	bash slurm/install.sh && bash slurm/up.sh

slurm-down: ## stop the bundled SLURM cluster (exactly the daemons slurm-up started)
	bash slurm/down.sh

sc2: ## install StarCraft II 4.10, the SMAC maps and SMAC (needs the internet; not on CI)
	source $(VENV)/bin/activate && bash slurm/install_sc2.sh

clean: ## remove run outputs (keeps the venv)
	rm -rf outputs/runs outputs/multiruns

.PHONY: help install train test clean slurm-up slurm-down sc2 bench bench-gpu plot dashboard traffic-junction
