# flexseg: one-command setup + demo, tests, MLflow UI.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
RUN := $(BIN)/flexseg experiment=demo
# The TensorFlow build (pyproject extras): cuda where nvidia-smi lists a GPU, else cpu. make install TF=cpu|cuda.
TF ?= $(shell nvidia-smi -L 2>/dev/null | grep -q GPU && echo cuda || echo cpu)

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast ui bench-data bench-tiled bench-precision gpu-check reproduce sweep-demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/flexseg: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,$(TF)]"
	@touch $@

install: $(BIN)/flexseg  ## create .venv and install flexseg (TensorFlow build: TF=cpu|cuda, default from nvidia-smi)

demo: install  ## synthetic data -> train -> eval -> infer -> tiled, then where to look
	$(RUN) mode=train
	$(RUN) mode=eval
	$(RUN) mode=infer
	$(RUN) mode=tiled
	@echo
	@echo "Demo done. Outputs (config, checkpoints, epoch images, CSVs, masks, overlays): outputs/demo/<date>_<time>/"
	@ls -d outputs/demo/*/ | tail -n 4 | sed 's/^/  /'
	@echo "Evaluation report:"
	@ls -d $$(ls -d outputs/demo/*/ | tail -n 3 | head -n 1)evaluation.csv $$(ls -d outputs/demo/*/ | tail -n 3 | head -n 1)eval/* | sed 's/^/  /'
	@echo "Runs, per-epoch metrics and images: make ui, then open http://$(HOST):$(PORT)"

test: install  ## the test suite (what CI runs; three workers on 2 cores: much of a test is process start and tracing)
	$(BIN)/python -m pytest -q -n 3 --dist worksteal --durations=25

test-fast: install  ## the suite without the slow end-to-end CLI tests
	$(BIN)/python -m pytest -q -n 3 --dist worksteal -m "not slow"

ui: install  ## MLflow UI on http://127.0.0.1:5000 (HOST=... PORT=... to change)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host $(HOST) --port $(PORT)

.PHONY: server
server: install  ## tracking server (store mlflow.db, artifacts in mlartifacts/); clients: flexseg tracking.uri=http://127.0.0.1:5000 ...
	$(BIN)/mlflow server --backend-store-uri sqlite:///mlflow.db --artifacts-destination ./mlartifacts --host $(HOST) --port $(PORT)

reproduce: install  ## EXP=lizard|lung_tumor|edf_cervical|leukocyte|tiled_cell [ARGS="dataset.root=..."]: train, eval, infer (+ tiled)
	@test -n "$(EXP)" || { echo "usage: make reproduce EXP=lizard [ARGS='dataset.root=path/to/Lizard']"; exit 2; }
	$(BIN)/flexseg experiment=$(EXP) mode=train $(ARGS)
	$(BIN)/flexseg experiment=$(EXP) mode=eval $(ARGS)
	$(BIN)/flexseg experiment=$(EXP) mode=infer $(ARGS)
	@if [ "$(EXP)" = "tiled_cell" ]; then $(BIN)/flexseg experiment=$(EXP) mode=tiled $(ARGS); fi

sweep-demo: install  ## Optuna search on the demo data, 2 trials at a time (6 trials; after make demo)
	$(BIN)/flexseg -m hparams_search=demo_optuna experiment=demo train.epochs=5 hydra/launcher=joblib hydra.launcher.n_jobs=2

bench-data: install  ## data pipeline throughput + peak RSS (plain and augmented), training step rate
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_augment.py

bench-tiled: install  ## tiled inference: seconds, MP/s vs the model's forward-only limit, peak RSS
	$(BIN)/python benchmarks/bench_tiled.py

bench-precision: install  ## training images/s in float32 vs train.precision=auto, two reference configs; auto reaches float32's dice (~9 min on 2 cores)
	$(BIN)/python benchmarks/bench_precision.py
	$(BIN)/python benchmarks/precision_parity.py

.PHONY: bench
bench: install  ## every benchmark figure (machine limits, train GFLOP/s, epoch overhead, predict, race) -> BENCHMARKS.md (< 20 min)
	$(BIN)/python benchmarks/bench.py

ZOO_BUDGET ?= 120
.PHONY: zoo-bench
zoo-bench: install  ## every model=<name> at 256x256: parameters, GFLOP, train images/s, test dice after ZOO_BUDGET=120 s each (~45 min)
	$(BIN)/python benchmarks/bench_zoo.py --budget $(ZOO_BUDGET)

BUDGET ?= 300
.PHONY: race
race: install  ## default recipe vs reference parity, same wall time (BUDGET=300 s each) on lung_tumor_mini + synthetic
	$(BIN)/python benchmarks/race.py --budget $(BUDGET)

gpu-check: install  ## on a GPU machine (make install TF=cuda): mode=info, fp32 vs auto step rate, the demo in auto (< 5 min)
	bash benchmarks/gpu_check.sh

.PHONY: screenshots
screenshots: install  ## the README's MLflow UI screenshots -> docs/images/ (needs chromium: apt-get install chromium; ~6 min)
	$(BIN)/python docs/screenshots.py

clean:  ## remove outputs, the MLflow store and generated data (keeps .venv)
	rm -rf outputs multirun mlflow.db optuna.db mlartifacts data/synthetic
