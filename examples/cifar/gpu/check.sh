#!/usr/bin/env bash
# The prepared GPU check: one command, ≤ 5 minutes on one H100, everything built beforehand.
#
#   examples/cifar/gpu/build.sh            # on a machine with Go: bin/bundle.tar.xz (binaries + MNIST files)
#   examples/cifar/gpu/check.sh            # on the GPU machine (carry examples/cifar/gpu/bin): no Go needed
#   DRYRUN=1 examples/cifar/gpu/check.sh   # anywhere: every part on the pure-Go backend with tiny sizes,
#                                          # PyTorch on the CPU where installed (proves the script)
#
# Parts (each prints what it measures; a part is skipped, with the reason, past its time budget):
#   1. Gradient-equivalence tests on the XLA CUDA PJRT backend: the prebuilt test binaries of optimizers/gr,
#      optimizers/grgrad (grgrad's gradients per op to second order, DB against central differences through
#      GoMLX's layers), regularizers/ and examples/cifar/dconv with GOMLX_BACKEND=xla:<jax's CUDA plugin>;
#      pass/fail per package; a failing test is rerun with XLA's deterministic ops to tell a determinism
#      need from a bug.
#   2. ResNet-20, synthetic CIFAR-shaped batches of 128, no augmentation, SGD + momentum 0.9 + weight decay
#      5e-4, cosine lr 0.1: mean step time and peak GPU memory (nvidia-smi, sampled every 0.2 s, both
#      frameworks alike) of GoMLX's SGD, F-GR, B-GR, SAM, DB-GR on GoMLX's own layers (native convolution,
#      batchnorm.New; DB-GR through grgrad's gradients), SGD and DB-GR on dconv (im2col) for comparison,
#      F-GR Every(5), F-GR Groups(4) (when the build has gr_groups), and of the same step in PyTorch (resnet20_torch.py: SGD, F-GR, SAM, DB-GR by
#      double backprop; eager, and torch.compile where it works). Table: GoMLX/PyTorch time ratio per method.
#   3. One (two) step(s) of F-GR, SAM and DB-GR through trainer.DistributedTrainStep (AutoSharding, 1-device
#      mesh) vs the plain TrainStep: equal weights within the stated tolerance (distcheck).
#   4. GPU evidence: MNIST, 40 % label noise, 2000-image subset, SGD vs F-GR over 5 seeds with the paired
#      95 % interval (examples/mnist -compare -seeds), if the build has -label_noise and time is left.
#   5. examples/vit (SGD, F-GR, SAM, DB-GR on MNIST, one seed, 600 steps), if the build has it and time is left.
#
# Environment: DRYRUN=1; BUDGET (seconds, default 285: parts starting later are skipped); STEPS (GoMLX and
# PyTorch timed steps, default 40); PYTHON (an interpreter with torch; default: the first of python3 and
# /usr/bin/python3 that imports it); MNIST_COMPARE (default sgd,forward), MNIST_SEEDS (default 5; DRYRUN 2).
set -u
cd "$(dirname "$0")/../../.."
GPU=examples/cifar/gpu
BUDGET=${BUDGET:-285}
STEPS=${STEPS:-40}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gradreg-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say() { printf '%s\n' "$*"; }
elapsed() { printf '[%3ds]' "$SECONDS"; }

# ---- the bundle
BIN=$WORK/bin
mkdir -p "$BIN"
if [[ ! -f $GPU/bin/bundle.tar.xz ]]; then
  say "no $GPU/bin/bundle.tar.xz: run examples/cifar/gpu/build.sh on a machine with Go first"; exit 1
fi
if ! tar -C "$BIN" -xJf "$GPU/bin/bundle.tar.xz" 2>/dev/null; then
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$GPU/bin/bundle.tar.xz" "$BIN" ||
    { say "cannot unpack $GPU/bin/bundle.tar.xz (no xz, no python3)"; exit 1; }
fi
say "== bundle: $(stat -c %s "$GPU/bin/bundle.tar.xz") bytes, unpacked $(du -sb "$BIN" | cut -f1) bytes"
sed 's/^/   /' "$BIN/BUILD"

# ---- backend and sizes
ORIG_LD=${LD_LIBRARY_PATH:-}
if [[ -n "${DRYRUN:-}" ]]; then
  export GOMLX_BACKEND=go
  MODEL=mlp BATCH=8 STEPS=4 TORCH_STEPS=2 TORCH_WARMUP=1 TORCH_DEVICE=cpu
  say "== DRYRUN: pure-Go backend, GoMLX -model=mlp, PyTorch --model=mlp on the CPU, batch $BATCH, tiny MNIST"
else
  MODEL=resnet20 BATCH=128 TORCH_STEPS=$STEPS TORCH_WARMUP=5 TORCH_DEVICE=cuda
  say "== card"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || say "nvidia-smi failed"
  # The CUDA PJRT plugin: jax's (jax_plugins.xla_cuda12/13), else any installed one.
  PLUGIN=""
  for mod in jax_plugins.xla_cuda13 jax_plugins.xla_cuda12 jax_cuda12_plugin; do
    d=$(python3 -c "import importlib, os; m = importlib.import_module('$mod'); print(os.path.dirname(m.__file__))" 2>/dev/null) || continue
    f=$(ls "$d"/*.so 2>/dev/null | grep -i -E 'xla_cuda_plugin|pjrt.*cuda' | head -1)
    if [[ -n "$f" ]]; then PLUGIN=$f; break; fi
  done
  if [[ -z "$PLUGIN" ]]; then
    PLUGIN=$(find / -xdev \( -name 'xla_cuda_plugin.so' -o -name 'pjrt_c_api_cuda_plugin.so' \) 2>/dev/null | head -1)
  fi
  if [[ -z "$PLUGIN" ]]; then say "no CUDA PJRT plugin found (pip install 'jax[cuda12]')"; exit 1; fi
  say "plugin: $PLUGIN"
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
PYTHON=${PYTHON:-}
if [[ -z "$PYTHON" ]]; then
  for py in python3 /usr/bin/python3; do
    if LD_LIBRARY_PATH=$ORIG_LD "$py" -c "import torch" 2>/dev/null; then PYTHON=$py; break; fi
  done
fi
HELP_CIFAR=$("$BIN/cifar" -h 2>&1)
HELP_MNIST=$("$BIN/mnist" -h 2>&1)
has_flag() { grep -q -E -- "^ +-$2( |$)" <<<"$1"; } # help text, flag name

peak_mem() { # samples nvidia-smi memory.used (MiB) into $1 until killed
  local max=0 v
  while true; do
    v=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -d ' ')
    [[ "$v" =~ ^[0-9]+$ ]] && (( v > max )) && max=$v && echo "$max" > "$1"
    sleep 0.2
  done
}
# measure KEY TIMEOUT CMD...: runs CMD with the memory sampler; sets MS[KEY] (step_ms=… of its output),
# MEM[KEY] (peak MiB, "-" without nvidia-smi) and prints one line; on failure the output's tail.
declare -A MS MEM NOTE
measure() {
  local key=$1 limit=$2; shift 2
  local memfile out rc pid="" start=$SECONDS
  memfile=$(mktemp -p "$WORK"); echo "-" > "$memfile"
  if [[ -z "${DRYRUN:-}" ]]; then peak_mem "$memfile" & pid=$!; fi
  out=$(timeout "$limit" "$@" 2>&1); rc=$?
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  MEM[$key]=$(cat "$memfile")
  MS[$key]=$(grep -o 'step_ms=[0-9.]*' <<<"$out" | tail -1 | cut -d= -f2)
  if [[ $rc -ne 0 || -z "${MS[$key]}" ]]; then
    MS[$key]=""
    printf '%s %-28s FAILED rc=%d%s after %ds\n' "$(elapsed)" "$key" "$rc" "$([[ $rc == 124 ]] && echo ' (timeout)')" \
      $((SECONDS - start))
    tail -4 <<<"$out" | cut -c1-300 | sed 's/^/      /'
    return 1
  fi
  printf '%s %-28s step %9s ms   peak %6s MiB   (%ds)\n' "$(elapsed)" "$key" "${MS[$key]}" "${MEM[$key]}" $((SECONDS - start))
}
over() { (( SECONDS > $1 )); } # past this many seconds of the run

# ---- part 1
say ""
say "== part 1: gradient-equivalence tests on $GOMLX_BACKEND (prebuilt test binaries)"
declare -A P1
for pkg in optimizers/gr optimizers/grgrad regularizers examples/cifar/dconv; do
  name=$(basename "$pkg")
  limit=$([[ $name == gr ]] && echo 75 || echo 30)
  if over $((BUDGET * 30 / 100)); then P1[$name]="skipped (time budget)"; say "$(elapsed) $name: skipped (time budget)"; continue; fi
  start=$SECONDS
  out=$(cd "$pkg" && timeout "$limit" "$BIN/$name.test" -test.v -test.count=1 2>&1); rc=$?
  pass=$(grep -c -E '^\s*--- PASS' <<<"$out"); skip=$(grep -c -E '^\s*--- SKIP' <<<"$out")
  fails=$(grep -E '^--- FAIL' <<<"$out" | awk '{print $3}' | sort -u | tr '\n' ' ')
  if [[ $rc -eq 0 ]]; then
    P1[$name]="PASS ($pass passed, $skip skipped)"
  elif [[ $rc -eq 124 ]]; then
    P1[$name]="TIMEOUT after ${limit}s ($pass passed so far; failed: ${fails:-none})"
  else
    P1[$name]="FAIL ($pass passed, $skip skipped; failed: ${fails:-see output})"
  fi
  say "$(elapsed) $name: ${P1[$name]} in $((SECONDS - start))s"
  grep -E '^\s*--- SKIP' -B1 <<<"$out" | grep -v -E '^\s*--- SKIP|^--$|^=== ' | sed 's/^ */      skip: /' | sort -u | head -5
  if [[ -n "$fails" ]]; then
    for t in $fails; do
      awk -v t="$t" '$0 ~ "^=== RUN   "t"$" {on=1; next} /^=== RUN/ {on=0} on' <<<"$out" | head -4 | cut -c1-300 | sed "s/^/      $t: /"
    done
    if [[ -z "${DRYRUN:-}" ]] && ! over $((BUDGET * 35 / 100)); then
      # A test that passes with XLA's deterministic implementations needs determinism, which the default
      # GPU kernels (atomics in scatter, reductions) do not give; one that still fails is a real failure.
      re="^($(tr ' ' '|' <<<"${fails% }"))\$"
      out2=$(cd "$pkg" && XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_exclude_nondeterministic_ops=true" \
        timeout 60 "$BIN/$name.test" -test.v -test.count=1 -test.run "$re" 2>&1); rc2=$?
      if [[ $rc2 -eq 0 ]]; then
        say "      rerun with --xla_gpu_exclude_nondeterministic_ops=true: PASS — these tests need determinism"
      else
        say "      rerun with --xla_gpu_exclude_nondeterministic_ops=true: still failing (rc=$rc2)"
        grep -E '^--- FAIL|Unknown flag|not supported|Float64' <<<"$out2" | head -4 | cut -c1-300 | sed 's/^/      /'
      fi
    fi
  fi
done

# ---- part 3 (quick, run before the long part 2 so that it always gets its turn)
say ""
say "== part 3: one step of F-GR, SAM, DB-GR through DistributedTrainStep (AutoSharding, 1-device mesh) vs TrainStep"
if over $((BUDGET * 45 / 100)); then
  say "skipped (time budget)"
else
  timeout 60 "$BIN/distcheck" -steps=2 2>&1 | grep -v '^gradreg: backend' | cut -c1-400
  say "$(elapsed) distcheck rc=${PIPESTATUS[0]}"
fi

# ---- part 2
say ""
say "== part 2: $MODEL, batch $BATCH, $STEPS steps, synthetic data, no augmentation, SGD+momentum+wd, γ=ε=ρ=0.05"
[[ -n "${DRYRUN:-}" ]] && say "(DRYRUN: CPU numbers of -model=mlp on a shared machine; they only show that every row runs)"
CIFAR_ARGS=(-synthetic -model=$MODEL -batch=$BATCH -steps=$STEPS -eval_every=1000000 -augment=false -quiet)
# DRYRUN's MLP on random labels: with the GPU's lr 0.1, DB-GR's loss diverged in 2 of 3 dry runs of it (the
# runner then exits non-zero); the dry run only shows that every row runs.
[[ -n "${DRYRUN:-}" ]] && CIFAR_ARGS+=(-lr=0.01)
has_flag "$HELP_CIFAR" plot && CIFAR_ARGS+=(-plot=)
has_flag "$HELP_CIFAR" out && CIFAR_ARGS+=(-out="$WORK/cifar-out")
RUNNER=""; has_flag "$HELP_CIFAR" compare && RUNNER=1
if [[ -n $RUNNER ]]; then
  say "GoMLX step time: the runner's mean over all steps but the first two (Every(k) via gr.EveryDataset)"
else
  say "GoMLX step time: this build's cifar reports the median step (its -set does not know gr_every: no Every(5) row)"
fi
GROUPS_OK=""; grep -a -q 'gr_groups' "$BIN/cifar" && GROUPS_OK=1
TORCH_VERSION=""
if [[ -z "$PYTHON" ]]; then
  say "PyTorch: not installed (no python3 imports torch): PyTorch rows skipped"
else
  TORCH_VERSION=$(LD_LIBRARY_PATH=$ORIG_LD "$PYTHON" -c "import torch; print(torch.__version__, 'compile' if hasattr(torch, 'compile') else 'no-compile')" 2>&1 | tail -1)
  say "PyTorch $TORCH_VERSION ($PYTHON): mean of $TORCH_STEPS steps after $TORCH_WARMUP untimed"
fi
# Jobs in priority order: the GoMLX/PyTorch pairs first, then the GoMLX-only rows, then torch.compile.
JOBS=("gomlx sgd" "gomlx forward" "gomlx sam" "gomlx db" "torch-eager sgd" "torch-eager forward" "torch-eager sam"
  "torch-eager db" "gomlx sgd-dconv" "gomlx db-dconv" "gomlx backward" "gomlx every5" "gomlx groups4" "torch-compiled sgd"
  "torch-compiled forward"
  "torch-compiled sam" "torch-compiled db")
for key in "${JOBS[@]}"; do
  kind=${key% *} m=${key#* }
  case $kind in
    gomlx)
      cutoff=$((BUDGET * 75 / 100)) args=(-method=$m)
      case $m in
        sgd-dconv | db-dconv)
          [[ $MODEL == mlp ]] && { NOTE[$key]="the MLP has no convolution"; say "$(elapsed) $key: skipped (${NOTE[$key]})"; continue; }
          args=(-method=${m%-dconv} -conv=dconv) ;; # dconv's SGD is the base of its DB-GR
        every5)
          [[ -z $RUNNER ]] && { NOTE[$key]="needs the shared runner's -set"; say "$(elapsed) $key: skipped (${NOTE[$key]})"; continue; }
          args=(-method=forward -set=gr_every=5) ;;
        groups4)
          [[ -z $GROUPS_OK ]] && { NOTE[$key]="this build has no gr_groups"; say "$(elapsed) $key: skipped (${NOTE[$key]})"; continue; }
          args=(-method=forward -set=gr_groups=4) ;;
      esac
      if over $cutoff; then NOTE[$key]="skipped (time budget)"; say "$(elapsed) $key: ${NOTE[$key]}"; continue; fi
      measure "$key" 60 "$BIN/cifar" "${CIFAR_ARGS[@]}" "${args[@]}" ;;
    torch-*)
      mode=${kind#torch-}
      [[ -z "$TORCH_VERSION" ]] && { NOTE[$key]="no PyTorch"; continue; }
      if [[ $mode == compiled ]]; then
        [[ $m == db ]] && { NOTE[$key]="double backward cannot be compiled"; continue; }
        [[ $TORCH_VERSION != *" compile" ]] && { NOTE[$key]="no torch.compile"; continue; }
      fi
      cutoff=$((BUDGET * 75 / 100)); [[ $mode == compiled ]] && cutoff=$((BUDGET * 82 / 100))
      if over $cutoff; then NOTE[$key]="skipped (time budget)"; say "$(elapsed) $key: ${NOTE[$key]}"; continue; fi
      measure "$key" $([[ $mode == compiled ]] && echo 90 || echo 45) env LD_LIBRARY_PATH="$ORIG_LD" "$PYTHON" \
        "$GPU/resnet20_torch.py" --model=$MODEL --method=$m --batch=$BATCH --steps=$TORCH_STEPS \
        --warmup=$TORCH_WARMUP --device=$TORCH_DEVICE --compile=$([[ $mode == compiled ]] && echo on || echo off) ;;
  esac
done
if [[ -n "${DRYRUN:-}" && -n "$TORCH_VERSION" ]]; then # the GPU's model, once per method, to prove it runs
  for m in sgd forward sam db; do
    LD_LIBRARY_PATH=$ORIG_LD "$PYTHON" "$GPU/resnet20_torch.py" --model=resnet20 --method=$m --batch=4 --steps=1 \
      --warmup=0 --device=cpu --compile=off 2>&1 | tail -1 | sed 's/^/   resnet20 smoke: /'
  done
fi

# The table.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "-" }'; }
say ""
say "GoMLX ($MODEL; conv auto = GoMLX's own layers, DB-GR included (grgrad); × SGD against SGD with the same conv):"
say "| method | conv | step (ms) | × SGD | peak GPU memory (MiB) |"
say "|---|---|---:|---:|---:|"
for row in sgd forward backward sam db every5 groups4 sgd-dconv db-dconv; do
  k="gomlx $row" conv=gomlx base="${MS[gomlx sgd]:-}"
  [[ $row == *-dconv ]] && conv=dconv base="${MS[gomlx sgd-dconv]:-}"
  [[ $MODEL == mlp ]] && conv=-
  if [[ -z "${MS[$k]:-}" ]]; then say "| $row | $conv | ${NOTE[$k]:-failed} | - | - |"; continue; fi
  say "| $row | $conv | ${MS[$k]} | $(ratio "${MS[$k]}" "$base") | ${MEM[$k]} |"
done
say ""
say "GoMLX vs PyTorch, same model and step (GoMLX's DB-GR on its native convolution with grgrad's gradients;"
say "PyTorch's DB-GR is cuDNN with autograd double backward):"
say "| method | GoMLX (ms) | PyTorch eager (ms) | PyTorch compiled (ms) | GoMLX / eager | GoMLX / compiled | GoMLX MiB | eager MiB | compiled MiB |"
say "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for m in sgd forward sam db; do
  g=${MS[gomlx $m]:-}; e=${MS[torch-eager $m]:-}; c=${MS[torch-compiled $m]:-}
  say "| $m | ${g:--} | ${e:--} | ${c:-${NOTE[torch-compiled $m]:--}} | $(ratio "$g" "$e") | $(ratio "$g" "$c") |" \
    "${MEM[gomlx $m]:--} | ${MEM[torch-eager $m]:--} | ${MEM[torch-compiled $m]:--} |"
done

# ---- part 4
say ""
say "== part 4: MNIST label-noise evidence (examples/mnist)"
if ! has_flag "$HELP_MNIST" label_noise; then
  say "skipped: this build's mnist has no -label_noise flag"
elif over $((BUDGET - 40)); then
  say "skipped (time budget: $SECONDS s used of $BUDGET)"
else
  MN_ARGS=(-data="$BIN/mnist-data" -compare="${MNIST_COMPARE:-sgd,forward}" -label_noise=0.4 -gamma=0.05 -epsilon=0.05
    -quiet)
  has_flag "$HELP_MNIST" out && MN_ARGS+=(-out="$WORK/mnist-out")
  if [[ -n "${DRYRUN:-}" ]]; then
    MN_ARGS+=(-seeds="${MNIST_SEEDS:-2}" -train_size=256 -hidden=32 -steps=8 -batch=32)
  else
    MN_ARGS+=(-seeds="${MNIST_SEEDS:-5}") # the label-noise setting: MLP 784-256-256-10, momentum 0.9, lr 0.05 cosine, 30 epochs of 2000 images, batch 64
    MN_ARGS+=(-train_size=2000 -hidden=256,256 -base=momentum -momentum=0.9 -lr=0.05 -schedule=cosine -epochs=30 -batch=64)
  fi
  left=$((BUDGET + 10 - SECONDS))
  say "mnist ${MN_ARGS[*]}   (timeout ${left}s)"
  timeout "$left" "$BIN/mnist" "${MN_ARGS[@]}" 2>&1 | grep -v -E '^gradreg: backend' | tail -30
  say "$(elapsed) mnist rc=${PIPESTATUS[0]}"
fi

# ---- part 5
if [[ -x "$BIN/vit" ]]; then
  say ""
  say "== part 5: examples/vit (ViT on MNIST, the example's defaults: Adam lr 0.01, batch 64, 10,000 images)"
  if over $((BUDGET - 20)); then
    say "skipped (time budget: $SECONDS s used of $BUDGET)"
  else
    VIT_ARGS=(-data="$BIN/mnist-data" -seeds=1 -quiet -out="$WORK/vit-out")
    if [[ -n "${DRYRUN:-}" ]]; then
      VIT_ARGS+=(-compare=sgd,forward -steps=4 -train_size=256)
    else
      VIT_ARGS+=(-compare=sgd,forward,sam,db -steps=600)
    fi
    left=$((BUDGET + 15 - SECONDS))
    say "vit ${VIT_ARGS[*]}   (timeout ${left}s)"
    timeout "$left" "$BIN/vit" "${VIT_ARGS[@]}" 2>&1 | grep -v -E '^gradreg: backend' | tail -12
    say "$(elapsed) vit rc=${PIPESTATUS[0]}"
  fi
fi

say ""
say "== summary"
for name in gr grgrad regularizers dconv; do say "part 1 $name: ${P1[$name]:-not run}"; done
say "== done in ${SECONDS}s (budget ${BUDGET}s)"
