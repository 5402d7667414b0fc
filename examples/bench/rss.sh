#!/usr/bin/env bash
# Peak resident memory of each method above SGD's, in units of the parameter bytes: one process per method
# and repetition (bench -rss), median of the repetitions.
#
#   examples/bench/rss.sh [backend] [repetitions] [methods...]
#   examples/bench/rss.sh go 3 ForwardDifference SAM DoubleBackprop
#
# Defaults: backend go, 3 repetitions, ForwardDifference SAM; the MLP 1024-2048-2048-10, batch 64, 1 warm-up
# step and 2 timed steps (BENCH_FLAGS overrides these flags). The peak is taken over the timed steps (VmHWM
# reset after compilation and warm-up); RSS_FIELD=5 takes it over the whole process instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
backend=${1:-go}
reps=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(ForwardDifference SAM)
flags=${BENCH_FLAGS:--in=1024 -hidden=2048 -batch=64 -warmup=1 -rounds=2 -gradients=grgrad}
bin=$(mktemp -d)/bench
go build -o "$bin" ./examples/bench
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field=${RSS_FIELD:-7} # 7: peak during the timed steps (after compilation and warm-up); 5: of the whole process
measure() { # method → median peak RSS in bytes
	for _ in $(seq "$reps"); do
		# shellcheck disable=SC2086
		"$bin" -backend="$backend" $flags -rss="$1" 2>/dev/null | awk -F'\t' -v f="$field" '/^rss/ {sub(/^[a-z_]+=/, "", $f); print $f}'
	done | median
}
params=$("$bin" -backend="$backend" $flags -rss="base (SGD)" 2>/dev/null | awk -F'\t' '/^rss/ {sub("param_bytes=", "", $6); print $6}')
base=$(measure "base (SGD)")
what="peak RSS during the timed steps (after compilation and warm-up)"
[ "$field" = 5 ] && what="peak RSS of the whole process (compilation included)"
echo "backend $backend; $flags; $what; median of $reps processes per method; parameter bytes $params"
echo "| method | peak RSS | above SGD | ÷ parameter bytes |"
echo "|---|---:|---:|---:|"
printf "| base (SGD) | %.1f MiB | | |\n" "$(echo "$base / 1048576" | bc -l)"
for m in "${methods[@]}"; do
	rss=$(measure "$m")
	printf "| %s | %.1f MiB | %.1f MiB | %.2f× |\n" "$m" "$(echo "$rss / 1048576" | bc -l)" \
		"$(echo "($rss - $base) / 1048576" | bc -l)" "$(echo "($rss - $base) / $params" | bc -l)"
done
