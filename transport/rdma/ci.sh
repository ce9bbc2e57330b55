#!/bin/sh
# CI for the RDMA transport's real libibverbs binding.
#
# Installs libibverbs-dev (rdma-core) so that the cgo binding behind the
# `rdma` build tag compiles, vets it, and runs the tests that make sense on
# a CI machine without RDMA hardware: the no-device path of the binding
# (ibv_get_device_list fails with ENOSYS or finds no device) and the whole
# transport suite over the software provider, built with the tag. Finally
# it checks that the default build stays cgo-free.
#
# Usage: transport/rdma/ci.sh   (from anywhere inside the repository; root
# or sudo is needed only when libibverbs-dev is missing)
set -eu
cd "$(dirname "$0")/../.."

if [ ! -e /usr/include/infiniband/verbs.h ]; then
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	$SUDO apt-get update -qq
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libibverbs-dev
fi

echo "== go vet -tags rdma ./transport/rdma/..."
CGO_ENABLED=1 go vet -tags rdma ./transport/rdma/...

echo "== no-device unit tests and enum checks with the real binding"
CGO_ENABLED=1 go test -tags rdma -count=1 -run 'TestDevicesOrNoDevice|TestConstantsMatchVerbsH|TestAvailable' -v ./transport/rdma/ibverbs/ ./transport/rdma/

echo "== transport suite over the soft provider, -race, built with -tags rdma"
CGO_ENABLED=1 go test -tags rdma -race -count=1 ./transport/rdma/...

echo "== default build is cgo-free"
CGO_ENABLED=0 go build ./...
CGO_ENABLED=0 go vet ./transport/rdma/...
echo "ok"
