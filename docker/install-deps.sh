#!/bin/sh
# install-deps.sh - installs the Debian packages explore-attention builds, runs and tests with.
# Usage: docker/install-deps.sh [build|runtime|test|bench]   (default: test; bench = test plus
# PyTorch and Flask, the alternatives `make bench` measures the service against)
# Installs only what is missing; uses sudo when not root.
set -eu

profile=${1:-test}
runtime="libmicrohttpd12 libcjson1 libopenblas0-pthread"
build="gcc make cmake pkg-config libmicrohttpd-dev libcjson-dev libopenblas-dev"
testing="check libcurl4-openssl-dev curl libxml2-utils librsvg2-bin clang libclang-rt-14-dev wrk chromium nodejs"
# the browser tests (tests/e2e) need npm too; a NodeSource nodejs ships its own npm
if ! command -v npm >/dev/null 2>&1; then testing="$testing npm"; fi

case "$profile" in
    runtime) want="$runtime" ;;
    build) want="$runtime $build" ;;
    # unit: build plus what configuring the tests and running the unit tests need (docker/Dockerfile)
    unit) want="$runtime $build check libcurl4-openssl-dev libxml2-utils librsvg2-bin" ;;
    test) want="$runtime $build $testing" ;;
    bench) want="$runtime $build $testing python3-torch python3-flask" ;;
    *) echo "install-deps.sh: unknown profile '$profile' (build|runtime|test|bench)" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
echo "install-deps.sh: installing:$missing" >&2
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
