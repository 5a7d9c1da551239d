#!/bin/sh
# run.sh - the explorer's browser tests, as CTest runs them: installs playwright-core from
# tests/e2e/package-lock.json (npm ci) when it is missing, then runs explorer.test.mjs with
# node's test runner against the given server binary and Debian's Chromium.
# Usage: tests/e2e/run.sh SERVER_BIN [ARTIFACTS_DIR]
# Exits 77 (CTest: skipped) when node or Chromium is not installed (docker/install-deps.sh test
# installs both); with ATTN_REQUIRE_E2E=1 (.ci/run sets it) a missing piece is a failure instead,
# so CI cannot pass without having driven the browser.
set -eu

skip() {
    echo "e2e: $*"
    if [ "${ATTN_REQUIRE_E2E:-0}" = 1 ]; then
        echo "e2e: ATTN_REQUIRE_E2E=1: the browser tests must run here" >&2
        exit 1
    fi
    exit 77
}

here=$(cd "$(dirname "$0")" && pwd)
server=${1:?usage: run.sh SERVER_BIN [ARTIFACTS_DIR]}
artifacts=${2:-$here/../artifacts}
chromium=${ATTN_CHROMIUM:-/usr/bin/chromium}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    skip "node and npm are not installed (docker/install-deps.sh test installs them): skipped"
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    skip "playwright-core needs node 20 or newer, this is $(node --version): skipped"
fi
if [ ! -x "$chromium" ]; then
    skip "$chromium is not installed (docker/install-deps.sh test installs chromium): skipped"
fi

# One npm ci at a time (two builds may test at once); offline when npm's cache has the package.
if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
    (
        cd "$here"
        flock 9
        if [ ! -f node_modules/playwright-core/package.json ]; then
            npm ci --no-audit --no-fund --prefer-offline --loglevel=error
        fi
    ) 9>"$here/.npm-ci.lock"
fi

mkdir -p "$artifacts"
cd "$here"
export ATTN_SERVER_BIN="$server" ATTN_ARTIFACTS="$artifacts" ATTN_CHROMIUM="$chromium"
exec node --test --test-reporter=spec --test-concurrency=1 explorer.test.mjs
