#!/bin/sh
# test-container.sh - builds the image and checks it running: readiness, a computation, a model,
# the built-in health check, the non-root user and a clean stop on SIGTERM; reports the size.
#
# Usage: docker/test-container.sh        (make test-container)
#   ATTN_CONTAINER_ENGINE=docker|podman  choose the engine; by default docker when a Docker daemon
#                                        answers, otherwise podman (Debian's, installed if missing;
#                                        needs root).
# With podman the settings come from a private containers.conf (CONTAINERS_CONF): the host's
# configuration is not touched. debian:bookworm-slim is made locally with debuerreotype
# (docker/debian-base.sh) when the engine has no copy and cannot pull one; it stays in the
# image store, as does the tagged dependency stage, so later runs start from them. The
# container's network is slirp4netns (user-mode, in the container's own namespace) and the
# build's is the host's, so no bridge, firewall rule or sysctl of the host changes. Every
# container and process the test starts is removed at the end, pass or fail.
set -eu

cd "$(dirname "$0")/.."

version=$(sed -n 's/^project(explore_attention VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
image="explore-attention:$version"
deps_image="explore-attention-deps:cache"
label="org.opencontainers.image.title=explore-attention"
name="explore-attention-test-$$"
drain_s=10 # the server's default --drain-timeout, which the image keeps
work=$(mktemp -d /tmp/test-container.XXXXXX)
started=$(date +%s)
passed=0
failed=0
cid=""

say() { printf 'test-container: %s\n' "$*"; }
ok() {
    passed=$((passed + 1))
    say "ok   $*"
}
not_ok() {
    failed=$((failed + 1))
    say "FAIL $*"
}
elapsed() { echo $(($(date +%s) - $1)); }

# Runs a command with its output in $work/step.log; on failure shows the end of it and stops.
step() {
    if ! "$@" >"$work/step.log" 2>&1; then
        say "FAIL: $*"
        tail -n 40 "$work/step.log" >&2
        exit 1
    fi
}

net_state() {
    if command -v ip >/dev/null 2>&1; then
        ip -o link show | awk -F': ' '{ print $2 }' | sort
        ip route show 2>/dev/null
    fi
    cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || true
}

cleanup() {
    if [ -n "$cid" ]; then
        "$engine" rm -f "$cid" >/dev/null 2>&1 || true
        cid=""
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- the engine
engine=${ATTN_CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
    # A Docker daemon, not podman's Docker-compatible service: through that one, `docker run`
    # would put the container on podman's bridge, which changes the host's network settings.
    if command -v docker >/dev/null 2>&1 && timeout 20 docker version >"$work/version" 2>&1 &&
        ! grep -qi podman "$work/version"; then
        engine=docker
    else
        engine=podman
    fi
fi

need_pkgs() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    [ "$(id -u)" -eq 0 ] || {
        say "needs the packages$missing (run as root)"
        exit 2
    }
    say "installing:$missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

build_net=""
run_net=""
case "$engine" in
docker) ;;
podman)
    [ "$(id -u)" -eq 0 ] || {
        say "podman is used as root here (sudo make test-container), or set ATTN_CONTAINER_ENGINE=docker"
        exit 2
    }
    command -v dpkg-query >/dev/null 2>&1 && need_pkgs podman runc slirp4netns
    cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    CONTAINERS_CONF="$work/containers.conf"
    BUILDAH_FORMAT=docker
    export CONTAINERS_CONF BUILDAH_FORMAT
    build_net="--network=host"
    run_net="--network=slirp4netns"
    ;;
*)
    say "ATTN_CONTAINER_ENGINE must be docker or podman, not '$engine'"
    exit 2
    ;;
esac
command -v curl >/dev/null 2>&1 || need_pkgs curl
say "engine: $engine ($("$engine" --version 2>/dev/null | head -n 1))"
net_before=$(net_state)

# ------------------------------------------------------------ the base image
if "$engine" image inspect docker.io/library/debian:bookworm-slim >/dev/null 2>&1 ||
    "$engine" image inspect debian:bookworm-slim >/dev/null 2>&1; then
    say "base: debian:bookworm-slim from the image store"
else
    t=$(date +%s)
    if timeout 120 "$engine" pull docker.io/library/debian:bookworm-slim >"$work/pull.log" 2>&1; then
        say "base: pulled debian:bookworm-slim ($(elapsed "$t") s)"
    else
        say "base: no registry; making debian:bookworm-slim with debuerreotype"
        step sh docker/debian-base.sh "$engine"
        say "base: made debian:bookworm-slim ($(elapsed "$t") s)"
    fi
fi

# ----------------------------------------------------------------- the build
t=$(date +%s)
# shellcheck disable=SC2086
step "$engine" build $build_net --target deps -t "$deps_image" -f docker/Dockerfile .
# shellcheck disable=SC2086
step "$engine" build $build_net -t "$image" -f docker/Dockerfile .
grep -E 'tests passed|Total Test time' "$work/step.log" | sed 's/^/test-container: unit tests in the image: /' || true
say "build: $image ($(elapsed "$t") s)"
# This project's superseded images and build stages (labelled); tagged ones stay as the cache.
"$engine" image prune -f --filter "label=$label" >/dev/null 2>&1 || true

size=$("$engine" image inspect -f '{{.Size}}' "$image")
size_mb=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }')
size_mib=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }')

# ------------------------------------------------------------ image metadata
inspect=$("$engine" image inspect "$image")
user=$("$engine" image inspect -f '{{.Config.User}}' "$image")
case "$user" in
"" | 0 | 0:* | root | root:*) not_ok "image user is '$user', expected a non-root user" ;;
*) ok "image runs as user $user" ;;
esac
if printf '%s' "$inspect" | grep -q '"8080/tcp"'; then ok "image exposes 8080/tcp"; else not_ok "image does not expose 8080/tcp"; fi
if printf '%s' "$inspect" | tr -d ' \n' | grep -q '"Healthcheck":{"Test":\["CMD","attention-server","--healthcheck"'; then
    ok "image has HEALTHCHECK attention-server --healthcheck"
else
    not_ok "image has no HEALTHCHECK (podman: BUILDAH_FORMAT=docker keeps it)"
fi

# -------------------------------------------------------------- running it
# shellcheck disable=SC2086
cid=$("$engine" run -d --name "$name" $run_net -p 127.0.0.1::8080 "$image" 2>"$work/run.log") || {
    cat "$work/run.log" >&2
    exit 1
}
cid=$(printf '%s\n' "$cid" | tail -n 1)
port=$("$engine" port "$cid" 8080/tcp | sed -n 's/.*:\([0-9][0-9]*\)$/\1/p' | head -n 1)
[ -n "$port" ] || {
    say "no published port for 8080/tcp"
    exit 1
}
base="http://127.0.0.1:$port"

show_logs() { "$engine" logs "$cid" 2>&1 | tail -n 20 | sed 's/^/    /'; }

t=$(date +%s)
code=000
while [ "$(elapsed "$t")" -lt 60 ]; do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$base/readyz" || true)
    [ "$code" = 200 ] && break
    if [ "$("$engine" inspect -f '{{.State.Running}}' "$cid" 2>/dev/null)" != true ]; then
        break
    fi
    sleep 0.2
done
if [ "$code" = 200 ]; then
    ok "GET /readyz answers 200 ($(elapsed "$t") s after start)"
else
    not_ok "GET /readyz never answered 200 (last: $code)"
    show_logs
    say "$passed passed, $((failed + 1)) failed"
    exit 1
fi

body=$(curl -s -m 30 "$base/v1/attention" -H 'Content-Type: application/json' -d '{
  "query": [[1, 0, 1, 0], [0, 2, 0, 2]],
  "key":   [[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 1, 1]],
  "value": [[1, 0], [0, 1], [1, 1]]}' || true)
case "$body" in
*'"output":[[0.8446376,0.5776812],[0.53168947,0.93662107]]'*) ok "POST /v1/attention computes the README's example" ;;
*) not_ok "POST /v1/attention: $(printf '%s' "$body" | cut -c 1-200)" ;;
esac

code=$(curl -s -o "$work/models.json" -m 10 -w '%{http_code}' "$base/v1/models" || true)
if [ "$code" = 404 ]; then
    say "skip GET /v1/models: this build has no model routes"
elif [ "$code" = 200 ] && grep -q '"demo-gpt2"' "$work/models.json"; then
    ok "GET /v1/models lists demo-gpt2"
    code=$(curl -s -o "$work/model.json" -m 60 -w '%{http_code}' "$base/v1/models/demo-gpt2/attention" \
        -H 'Content-Type: application/json' -d '{"text": "The cat sat on the mat"}' || true)
    if [ "$code" = 200 ] && grep -q '"attentions"' "$work/model.json"; then
        ok "POST /v1/models/demo-gpt2/attention answers the model's attentions"
    else
        not_ok "POST /v1/models/demo-gpt2/attention: $code $(cut -c 1-200 "$work/model.json")"
    fi
else
    not_ok "GET /v1/models: $code $(cut -c 1-200 "$work/models.json" 2>/dev/null)"
fi

# The image's own HEALTHCHECK: Docker runs it on its schedule; podman without systemd runs it
# when asked, so it is asked once here.
t=$(date +%s)
health=""
while [ "$(elapsed "$t")" -lt 60 ]; do
    if [ "$engine" = podman ]; then
        "$engine" healthcheck run "$cid" >/dev/null 2>&1 || true
    fi
    health=$("$engine" inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || true)
    [ "$health" = healthy ] && break
    sleep 1
done
if [ "$health" = healthy ]; then ok "health status: healthy"; else not_ok "health status: '$health'"; fi
if "$engine" exec "$cid" attention-server --healthcheck "http://127.0.0.1:1/readyz" >/dev/null 2>&1; then
    not_ok "the probe of a closed port must fail"
else
    ok "the probe of a closed port exits non-zero"
fi
uid=$("$engine" exec "$cid" id -u 2>/dev/null || echo '?')
if [ "$uid" != 0 ] && [ "$uid" != '?' ]; then ok "the server runs as uid $uid"; else not_ok "the server runs as uid '$uid'"; fi

# --------------------------------------------------------------- the stop
t_ms=$(date +%s%N)
"$engine" stop -t $((drain_s + 5)) "$cid" >/dev/null 2>&1 || true
stop_ms=$((($(date +%s%N) - t_ms) / 1000000))
status=$("$engine" inspect -f '{{.State.ExitCode}}' "$cid" 2>/dev/null || echo '?')
if [ "$status" = 0 ] && [ "$stop_ms" -le $((drain_s * 1000)) ] &&
    "$engine" logs "$cid" 2>&1 | grep -q 'stopped on SIGTERM'; then
    ok "SIGTERM: exit status 0 after $stop_ms ms (drain timeout ${drain_s} s)"
else
    not_ok "SIGTERM: exit status $status after $stop_ms ms"
    show_logs
fi

# --------------------------------------------------------------- clean-up
id_for_ps=$cid
cleanup_container_only() {
    "$engine" rm -f "$cid" >/dev/null 2>&1 || true
    cid=""
}
cleanup_container_only
sleep 1
if ps -eo args 2>/dev/null | grep -v grep | grep -q "$id_for_ps"; then
    not_ok "processes of the container are left: $(ps -eo pid,args | grep -v grep | grep "$id_for_ps" | head -n 3)"
else
    ok "no container or process of the test is left"
fi
if [ "$(net_state)" = "$net_before" ]; then
    ok "the host's links, routes and ip_forward are as before"
else
    not_ok "the host's network settings changed"
fi

say "image $image: $size_mb MB ($size_mib MiB)"
say "total $(elapsed "$started") s"
say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
