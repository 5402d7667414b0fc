#!/usr/bin/env bash
# Dev-only: gradreg's step on the pure-Go backend and on XLA's CPU plugin, each with GoMLX's gradients of
# matrix products and with optimizers/grgrad's (bench -gradients=both), side by side with PyTorch and JAX
# on the CPU: SGD, F-GR, SAM and DB on the MLP 784-256-256-10 (batch 64) and on the dconv CNN (batch 32),
# float32, every framework with all the machine's threads.
#
#   examples/bench/peers/run.sh [BLOCKS [ROUNDS]]     (defaults 3 and 10)
#
# MODELS (default "mlp cnn"), BACKENDS (default go,xla:cpu) and GRADIENTS (default both) narrow the run, e.g.
# MODELS=mlp BACKENDS=xla:cpu GRADIENTS=grgrad for XLA + grgrad alone: interleaved with the pure-Go steps in one
# process XLA's small steps take up to twice as long (docs/benchmarks.md), so compare each backend alone.
#
# One interleaved run: each block runs, for each model, the Go benchmark (pure Go and XLA interleaved
# step by step in one process) and then peers.py (PyTorch and JAX interleaved in one process), ROUNDS
# timed rounds each after 2 warm-up steps, so that a change in the machine's load hits every framework
# alike; the tables report the median over all blocks' rounds of each step's process CPU time (all
# threads) and wall time. The raw per-step times go to $OUT (default /tmp/gradreg-peers.jsonl).
#
# Needs: Go, pip (a venv at $PEERS_VENV, default /tmp/gradreg-peers-venv, from requirements.txt: about 6 GB
# because PyPI's torch brings CUDA libraries), and XLA's CPU plugin (.ci/install-xla-cpu, run here).
set -euo pipefail
cd "$(dirname "$0")/../../.."
blocks=${1:-3}
rounds=${2:-10}
venv=${PEERS_VENV:-/tmp/gradreg-peers-venv}
out=${OUT:-/tmp/gradreg-peers.jsonl}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, jax, optax' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r examples/bench/peers/requirements.txt
fi
eval "$(.ci/install-xla-cpu "${GRADREG_XLA_DIR:-$HOME/.cache/gradreg/xla-cpu}")"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/bench" ./examples/bench
: >"$out"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for block in $(seq "$blocks"); do
  for model in ${MODELS:-mlp cnn}; do
    case $model in
      mlp) args=(-model=mlp -in=784 -hidden=256 -out=10 -batch=64) ;;
      cnn) args=(-model=cnn -out=10 -batch=32) ;;
    esac
    echo "block $block/$blocks, $model: gradreg (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    "$bin/bench" "${args[@]}" -backend="${BACKENDS:-go,xla:cpu}" -only=ForwardDifference,SAM,DoubleBackprop \
      -gradients="${GRADIENTS:-both}" -rounds="$rounds" -warmup=2 -json >>"$out"
    echo "block $block/$blocks, $model: PyTorch, JAX (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    # PASSIVE: PyTorch's OpenMP threads sleep instead of spinning while they wait, so that on a loaded
    # machine its process CPU time counts work, not spinning.
    OMP_WAIT_POLICY=PASSIVE "$venv/bin/python" examples/bench/peers/peers.py --models "$model" \
      --rounds "$rounds" --warmup 2 >>"$out"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$venv/bin/python" examples/bench/peers/peers.py --table "$out"
