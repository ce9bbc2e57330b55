#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests need
# when it can (Debian packages, as root), then runs formatting, vet, the
# cgo-free build check, the RDMA binding's compile check, and every Go test
# under the race detector, including the e2e tests. Services it starts
# (the one-node Slurm cluster) are stopped when it exits, however it exits.
#
#   STRAND_TEST_PKGS="./collective/..." bash scripts/test.sh   # only those packages' tests
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

log() { printf '\n== %s\n' "$*"; }

# Debian packages the tests use. Missing ones make the tests that need them
# skip with a message, so a non-root developer can still run everything else.
need_pkgs=()
command -v ip >/dev/null || need_pkgs+=(iproute2)
[ -e /usr/include/infiniband/verbs.h ] || need_pkgs+=(libibverbs-dev)
command -v srun >/dev/null || need_pkgs+=(slurm-wlm munge)
# PyTorch reads strand's Hugging Face export back (e2e TestExportLoadsInPyTorch)
/usr/bin/python3 -c 'import torch' 2>/dev/null || need_pkgs+=(python3-torch)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "note: not root or no apt-get; tests needing ${need_pkgs[*]} will skip"
  fi
fi

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted:"; echo "$unformatted"; exit 1
fi

log "go mod tidy -diff (go.mod and go.sum list exactly what the code imports)"
go mod tidy -diff

log "go vet"
go vet ./...

log "default build is cgo-free"
CGO_ENABLED=0 go build ./...
log "cross-compile for darwin/arm64 and freebsd/amd64 (no Linux-only call outside a _linux file)"
GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 go build ./...
GOOS=freebsd GOARCH=amd64 CGO_ENABLED=0 go build ./...

if [ -f transport/rdma/ci.sh ]; then
  log "RDMA binding (libibverbs, build tag rdma)"
  bash transport/rdma/ci.sh
fi

if [ -f e2e/ci_slurm.sh ] && [ "$(id -u)" = 0 ]; then
  log "one-node Slurm cluster for the srun e2e test"
  # stop the daemons this run starts (only those) on any exit
  STRAND_SLURM_STATE=$(mktemp /tmp/strand-ci-slurm.XXXXXX)
  export STRAND_SLURM_STATE
  trap 'bash e2e/ci_slurm.sh stop; rm -f "$STRAND_SLURM_STATE"' EXIT
  trap 'exit 130' INT TERM
  bash e2e/ci_slurm.sh || echo "note: Slurm setup failed; the srun e2e test will skip"
fi

log "go test -race ${STRAND_TEST_PKGS:-./...}"
# shellcheck disable=SC2086 # a list of package patterns
go test -race -timeout 20m ${STRAND_TEST_PKGS:-./...}
log "done in $(( $(date +%s) - start ))s"
