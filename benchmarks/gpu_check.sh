#!/usr/bin/env bash
# GPU check (issue 13): what TensorFlow sees, the training step rate in float32 vs train.precision=auto,
# and the demo trained in auto precision with its test dice. Under 5 minutes on one recent GPU.
#   make install TF=cuda && bash benchmarks/gpu_check.sh        (or: make gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
COMMON=(experiment=demo "tracking.uri=sqlite:///$WORK/mlflow.db" "dataset.root=$WORK/synthetic"
        "dataset.synthetic.cache_root=$WORK/synthetic")

echo "== flexseg mode=info =="
"$BIN/flexseg" mode=info "hydra.run.dir=$WORK/info"
echo "== training step rate: float32 vs auto (512x512, batch 4) =="
"$BIN/python" benchmarks/bench_precision.py --steps 10 --batch 4
echo "== the demo in train.precision=auto, then eval =="
start=$(date +%s)
"$BIN/flexseg" "${COMMON[@]}" mode=train "hydra.run.dir=$WORK/train" 2>&1 | grep -E "precision|results|error" || true
"$BIN/flexseg" "${COMMON[@]}" mode=eval "hydra.run.dir=$WORK/eval" 2>&1 | grep -E "precision|results|error" || true
echo "demo train + eval: $(( $(date +%s) - start )) s"
