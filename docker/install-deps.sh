#!/bin/sh
# install-deps.sh - installs the Debian packages explore-attention builds, runs and tests with.
# Usage: docker/install-deps.sh [build|runtime|test]   (default: test, the superset)
# Installs only what is missing; uses sudo when not root.
set -eu

profile=${1:-test}
runtime="libmicrohttpd12 libcjson1 libopenblas0-pthread"
build="gcc make cmake pkg-config libmicrohttpd-dev libcjson-dev libopenblas-dev"
testing="check libcurl4-openssl-dev curl libxml2-utils librsvg2-bin clang libclang-rt-14-dev wrk"

case "$profile" in
    runtime) want="$runtime" ;;
    build) want="$runtime $build" ;;
    test) want="$runtime $build $testing" ;;
    *) echo "install-deps.sh: unknown profile '$profile' (build|runtime|test)" >&2; exit 2 ;;
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
