#!/usr/bin/env bash
# GPU check for issue 5: ResNet-20 on synthetic CIFAR-shaped batches of 128 — median step time of SGD,
# F-GR, B-GR, SAM and DB-GR, each relative to SGD with the same convolution, and the peak GPU memory of
# each run (nvidia-smi, with XLA's up-front 75% reservation disabled: GRADREG_XLA_PREALLOCATE=false).
#
# Runs the binaries built beforehand on a machine with Go (no Go needed here):
#   CGO_ENABLED=1 go build -ldflags="-s -w" -o examples/cifar/gpu/bin/cifar ./examples/cifar
#   go test -c -ldflags="-s -w" -o examples/cifar/gpu/bin/dconv.test ./examples/cifar/dconv   # optional
# (bin/ is git-ignored: carry it to the GPU machine.)
# and uses jax's CUDA PJRT plugin, found from python3 (pip install "jax[cuda12]").
#
#   examples/cifar/gpu/check.sh            # on the GPU machine
#   DRYRUN=1 examples/cifar/gpu/check.sh   # anywhere: pure-Go backend, -model=mlp, 2 steps (tests the script)
set -u
cd "$(dirname "$0")/../../.."
BIN=examples/cifar/gpu/bin
STEPS=${STEPS:-40}
BUDGET=${BUDGET:-400} # seconds: later runs are skipped past this

if [[ -n "${DRYRUN:-}" ]]; then
  export GOMLX_BACKEND=go
  MODEL=mlp; BATCH=8; STEPS=2
else
  MODEL=resnet20; BATCH=128
  echo "== card"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
  # The CUDA PJRT plugin: jax's (jax_plugins.xla_cuda12), else any installed one.
  PLUGIN=""
  for mod in jax_plugins.xla_cuda12 jax_plugins.xla_cuda13 jax_cuda12_plugin; do
    d=$(python3 -c "import importlib, os; m = importlib.import_module('$mod'); print(os.path.dirname(m.__file__))" 2>/dev/null) || continue
    f=$(ls "$d"/*.so 2>/dev/null | grep -i -E 'xla_cuda_plugin|pjrt.*cuda' | head -1)
    if [[ -n "$f" ]]; then PLUGIN=$f; break; fi
  done
  if [[ -z "$PLUGIN" ]]; then
    PLUGIN=$(find / -xdev \( -name 'xla_cuda_plugin.so' -o -name 'pjrt_c_api_cuda_plugin.so' \) 2>/dev/null | head -1)
  fi
  if [[ -z "$PLUGIN" ]]; then echo "no CUDA PJRT plugin found (pip install 'jax[cuda12]')"; exit 1; fi
  echo "plugin: $PLUGIN"
  export GOMLX_BACKEND="xla:$PLUGIN" GRADREG_XLA_PREALLOCATE=false GOPJRT_CUDA_CHECKS=0 TF_CPP_MIN_LOG_LEVEL=2
  # CUDA libraries and ptxas/libdevice from the nvidia pip packages next to jax, if there.
  SITE=$(dirname "$(dirname "$(dirname "$PLUGIN")")")
  for nv in "$SITE/nvidia" "$(dirname "$(dirname "$PLUGIN")")/nvidia"; do
    if [[ -d "$nv" ]]; then
      for lib in "$nv"/*/lib; do LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"; done
      export LD_LIBRARY_PATH
      if [[ -d "$nv/cuda_nvcc" ]]; then
        export XLA_FLAGS="--xla_gpu_cuda_data_dir=$nv/cuda_nvcc ${XLA_FLAGS:-}" PATH="$nv/cuda_nvcc/bin:$PATH"
      fi
      break
    fi
  done
fi

peak_mem() { # samples nvidia-smi memory.used (MiB) into $1 until killed
  local max=0 v
  while true; do
    v=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -d ' ')
    [[ "$v" =~ ^[0-9]+$ ]] && (( v > max )) && max=$v && echo "$max" > "$1"
    sleep 0.2
  done
}

declare -A STEP
echo "== runs: $MODEL, batch $BATCH, $STEPS steps, synthetic data"
printf "%-6s %-9s %10s %9s %12s  %s\n" conv method step_ms vs_sgd peak_MiB note
for conv in dconv gomlx; do
  for method in sgd forward backward sam db; do
    [[ $conv == gomlx && $method == db ]] && continue # GoMLX's convolution gradient is not differentiable
    if (( SECONDS > BUDGET )); then printf "%-6s %-9s skipped (time budget)\n" $conv $method; continue; fi
    memfile=$(mktemp); echo 0 > "$memfile"; pid=""
    if [[ -z "${DRYRUN:-}" ]]; then peak_mem "$memfile" & pid=$!; fi
    out=$(timeout 150 "$BIN/cifar" -synthetic -model=$MODEL -conv=$conv -method=$method -batch=$BATCH \
      -steps=$STEPS -eval_every=1000000 -plot= -quiet 2>&1)
    rc=$?
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    ms=$(grep -o 'step_ms=[0-9.]*' <<<"$out" | cut -d= -f2)
    mem=$(cat "$memfile"); rm -f "$memfile"
    if [[ $rc -ne 0 || -z "$ms" ]]; then
      printf "%-6s %-9s FAILED rc=%d\n" $conv $method $rc; tail -5 <<<"$out"; continue
    fi
    [[ $method == sgd ]] && STEP[$conv]=$ms
    ratio=$(awk -v a="$ms" -v b="${STEP[$conv]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    printf "%-6s %-9s %10s %9s %12s\n" $conv $method "$ms" "$ratio" "$mem"
  done
done

if [[ -z "${DRYRUN:-}" ]] && (( SECONDS < BUDGET + 60 )) && [[ -x "$BIN/dconv.test" ]]; then
  echo "== dconv tests on this backend (Conv2D vs GoMLX's convolution, forward and gradient; HVP vs finite differences)"
  (cd examples/cifar/dconv && timeout 90 "../../../$BIN/dconv.test" -test.v -test.count=1 2>&1 | grep -E '^(---|PASS|FAIL|ok)|differs|not buildable' | head -20)
fi
echo "== done in ${SECONDS}s"
