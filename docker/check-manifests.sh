#!/bin/sh
# check-manifests.sh - the deployment files agree with the code: they parse as YAML, name the
# image, the port and the probe routes that exist, and only flags the server knows.
#
# Usage: docker/check-manifests.sh [REPO_ROOT]   (the ctest `deploy.manifests`, in make test)
# Needs only sh, awk, grep and sed. The YAML check is structural (indentation, block
# nesting, keys, quotes and brackets, duplicate keys), enough for these plain files; the
# compose file also goes through `docker compose config` / `docker-compose config` when one is
# installed.
set -eu

root=${1:-$(dirname "$0")/..}
cd "$root"

passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() {
    failed=$((failed + 1))
    printf 'check-manifests: FAIL %s\n' "$*"
}
# expect FILE DESCRIPTION EXTENDED-REGEX: FILE has a line matching it
expect() {
    if grep -Eq -- "$3" "$1"; then ok; else bad "$1: $2 (no line matching /$3/)"; fi
}

version=$(sed -n 's/^project(explore_attention VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
image="explore-attention:$version"
routes=server/routes.c
dockerfile=docker/Dockerfile
compose=docker/compose.yaml
k8s=docker/k8s
yaml_files="$compose $(ls "$k8s"/*.yaml)"

# ------------------------------------------------------------ YAML structure
yaml_check() {
    awk '
    function fail(msg) { printf "%s:%d: %s\n", FILENAME, FNR, msg; errors++ }
    # strips a trailing comment that is outside quotes
    function strip_comment(s,    i, c, q, out) {
        q = ""; out = ""
        for (i = 1; i <= length(s); i++) {
            c = substr(s, i, 1)
            if (q == "" && c == "#" && (i == 1 || substr(s, i - 1, 1) ~ /[ \t]/)) break
            if (q == "" && (c == "\"" || c == SQ)) q = c
            else if (q != "" && c == q) q = ""
            out = out c
        }
        if (q != "") fail("unclosed quote")
        sub(/[ \t]+$/, "", out)
        return out
    }
    function balanced(s,    i, c, depth, q) {
        depth = 0; q = ""
        for (i = 1; i <= length(s); i++) {
            c = substr(s, i, 1)
            if (q == "" && (c == "\"" || c == SQ)) { q = c; continue }
            if (q != "") { if (c == q) q = ""; continue }
            if (c == "[" || c == "{") depth++
            if (c == "]" || c == "}") { depth--; if (depth < 0) return 0 }
        }
        return depth == 0
    }
    # the indent levels open at this point: lvl[1..n]; mapping ids per level for duplicates
    function push(ind) { n++; lvl[n] = ind; ctx[n] = ++ids }
    BEGIN { SQ = sprintf("%c", 39) }
    FNR == 1 { n = 0; push(0); opened = 0; block = -1; prev_key_ind = -1 }
    {
        line = $0
        if (line ~ /\r$/) { fail("CR line ending"); sub(/\r$/, "", line) }
        if (block >= 0) {
            # inside a block scalar: lines indented deeper than its key, or blank
            match(line, /^ */)
            if (line ~ /^[ ]*$/ || RLENGTH > block) next
            block = -1
        }
        if (line ~ /^[ ]*$/ || line ~ /^[ ]*#/) next
        if (line ~ /^\t/ || line ~ /^ +\t/) { fail("tab in indentation"); next }
        if (line == "---" || line == "...") { n = 0; push(0); opened = 0; next }
        match(line, /^ */); ind = RLENGTH
        text = strip_comment(substr(line, ind + 1))
        if (!balanced(text)) fail("unbalanced brackets or braces: " text)

        if (opened) {
            # the previous line was "key:" with nothing after it: a deeper block, or a
            # sequence at the same indent
            if (ind > lvl[n] || (ind == lvl[n] && text ~ /^- / && !seq_opened)) push(ind)
            else if (ind <= lvl[n]) fail("\"" opened_key ":\" opens nothing")
            opened = 0
        } else {
            while (n > 1 && ind < lvl[n]) n--
            if (ind != lvl[n]) fail("indentation " ind " matches no open block (expected " lvl[n] ")")
        }
        seq_opened = 0

        # a sequence item: its content is a mapping one level deeper
        item = 0
        while (text ~ /^- /) {
            item = 1
            rest = substr(text, 3); match(rest, /^ */)
            ind = ind + 2 + RLENGTH; text = substr(rest, RLENGTH + 1)
            push(ind)
        }
        if (text == "-") { opened = 1; seq_opened = 1; opened_key = "-"; next }
        if (text ~ /^[\[{"]/ || substr(text, 1, 1) == SQ || text !~ /:( |$)/) {
            # a scalar or flow collection as an item; a bare scalar where a key belongs is an error
            if (!item) fail("expected \"key: value\" or \"- item\": " text)
            next
        }
        key = text; sub(/:( .*|$)/, "", key)
        value = substr(text, length(key) + 2); sub(/^ +/, "", value)
        if (key !~ /^[A-Za-z0-9_.\/-]+$/ && key !~ /^"[^"]*"$/) fail("unusual key \"" key "\"")
        if ((ctx[n], key) in seen) fail("duplicate key \"" key "\"")
        seen[ctx[n], key] = 1
        if (value == "") { opened = 1; opened_key = key; next }
        if (value ~ /^[|>][-+0-9]*$/) { block = ind; next }
        if (value ~ /^&|^\*|^!/) fail("anchors, aliases and tags are not used here: " value)
    }
    END { exit errors > 0 }
    ' "$@"
}

for f in $yaml_files; do
    if out=$(yaml_check "$f" 2>&1); then ok; else bad "$f does not parse as YAML: $out"; fi
done
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    if out=$(docker compose -f "$compose" config -q 2>&1); then ok; else bad "$compose: docker compose config: $out"; fi
elif command -v docker-compose >/dev/null 2>&1; then
    if out=$(docker-compose -f "$compose" config -q 2>&1); then ok; else bad "$compose: docker-compose config: $out"; fi
fi

# --------------------------------------------------------- what the code has
# GET routes of the table, and the ATTN_* variables of the flags
get_route() { grep -Eq "\\{\"GET\", \"$1\"," "$routes"; }
known_env=$(grep -o '"ATTN_[A-Z0-9_]*"' server/config.c | tr -d '"' | sort -u)
env_known() { printf '%s\n' "$known_env" | grep -qx "$1"; }

for path in /healthz /readyz; do
    if get_route "$path"; then ok; else bad "$routes has no GET $path, which the probes use"; fi
done

# ------------------------------------------------------------------ Dockerfile
expect "$dockerfile" "based on debian:bookworm-slim" '^FROM debian:bookworm-slim( |$)'
expect "$dockerfile" "exposes 8080" '^EXPOSE 8080$'
expect "$dockerfile" "listens on every interface" 'ATTN_HOST=0\.0\.0\.0'
expect "$dockerfile" "has a HEALTHCHECK" '^HEALTHCHECK '
expect "$dockerfile" "probes with the binary" 'CMD \["attention-server", "--healthcheck"\]'
expect "$dockerfile" "runs as a numeric non-root user" '^USER [1-9][0-9]*(:[0-9]+)?$'
expect "$dockerfile" "copies the demo model" '^COPY tests/data/models/demo-gpt2 '
if grep -Eqi '^# *syntax=|<<-?["'\'']?[A-Z]+|--mount=|COPY --link|--chmod=|--checksum=' "$dockerfile"; then
    bad "$dockerfile uses BuildKit-only syntax (heredoc, # syntax=, --mount, --link, --chmod)"
else
    ok
fi
for v in $(sed -n '/^ENV /,/[^\\]$/p' "$dockerfile" | grep -o 'ATTN_[A-Z0-9_]*' | sort -u); do
    if env_known "$v"; then ok; else bad "$dockerfile sets $v, which server/config.c does not read"; fi
done
uid=$(sed -n 's/^USER \([0-9]*\).*/\1/p' "$dockerfile")
[ -d tests/data/models/demo-gpt2 ] && ok || bad "tests/data/models/demo-gpt2 (the image's model) is missing"
grep -q "^/build" .dockerignore && grep -q "node_modules" .dockerignore && grep -qx ".git" .dockerignore &&
    ok || bad ".dockerignore must leave out .git, build folders and node_modules"

# -------------------------------------------------------------------- compose
expect "$compose" "uses the image" "^ +image: $image\$"
expect "$compose" "builds docker/Dockerfile" '^ +dockerfile: docker/Dockerfile$'
expect "$compose" "publishes the container port 8080" '^ +- "[^"]*:8080"$'
expect "$compose" "mounts a model volume" '^ +target: /models$'
expect "$compose" "has a restart policy" '^ +restart: (always|unless-stopped|on-failure)'
expect "$compose" "probes with the binary" 'test: \["CMD", "attention-server", "--healthcheck"'
for p in $(grep -o 'attention-server", "--healthcheck", "http://[^"]*"' "$compose" | sed 's|.*http://[^/]*||; s|"$||'); do
    if get_route "$p"; then ok; else bad "$compose probes $p, which is not a GET route"; fi
done
for v in $(sed -n '/^ *environment:/,/^ *[a-z_]*:$/p' "$compose" | grep -o '^ *ATTN_[A-Z0-9_]*' | tr -d ' '); do
    if env_known "$v"; then ok; else bad "$compose sets $v, which server/config.c does not read"; fi
done

# ------------------------------------------------------------------ Kubernetes
dep=$k8s/deployment.yaml
expect "$dep" "is a Deployment" '^kind: Deployment$'
expect "$dep" "uses the image" "^ +image: $image\$"
expect "$dep" "declares the container port 8080" '^ +containerPort: 8080$'
expect "$dep" "sets replicas" '^  replicas: [1-9]'
expect "$dep" "runs as non-root" '^ +runAsNonRoot: true$'
expect "$dep" "has a read-only root filesystem" '^ +readOnlyRootFilesystem: true$'
expect "$dep" "drops every capability" 'drop: \["ALL"\]'
expect "$dep" "sets resource requests" '^ +requests:$'
expect "$dep" "sets resource limits" '^ +limits:$'
expect "$dep" "loads the ConfigMap" '^ +name: explore-attention$'
probe_path() { awk -v p="$1" '$1 == p ":" { want = 1 } want && $1 == "path:" { print $2; exit }' "$dep"; }
[ "$(probe_path readinessProbe)" = /readyz ] && ok || bad "$dep: readinessProbe must GET /readyz"
[ "$(probe_path livenessProbe)" = /healthz ] && ok || bad "$dep: livenessProbe must GET /healthz"
for p in $(grep -E '^ +path: /' "$dep" | awk '{ print $2 }'); do
    if get_route "$p"; then ok; else bad "$dep probes $p, which is not a GET route"; fi
done
run_uid=$(sed -n 's/^ *runAsUser: \([0-9]*\)$/\1/p' "$dep" | head -n 1)
[ -n "$uid" ] && [ "$run_uid" = "$uid" ] && ok || bad "$dep: runAsUser $run_uid is not the image's USER $uid"
grace=$(sed -n 's/^ *terminationGracePeriodSeconds: \([0-9]*\)$/\1/p' "$dep")
drain=$(sed -n 's/^ *ATTN_DRAIN_TIMEOUT: "\([0-9]*\)"$/\1/p' "$k8s/configmap.yaml")
pre=$(sed -n 's/^ *command: \["sleep", "\([0-9]*\)"\]$/\1/p' "$dep")
if [ -n "$grace" ] && [ -n "$drain" ] && [ "$grace" -gt $((drain + ${pre:-0})) ]; then
    ok
else
    bad "$dep: terminationGracePeriodSeconds ($grace) must exceed the preStop sleep (${pre:-0}) plus ATTN_DRAIN_TIMEOUT ($drain)"
fi

cm=$k8s/configmap.yaml
expect "$cm" "is a ConfigMap" '^kind: ConfigMap$'
expect "$cm" "listens on every interface" '^  ATTN_HOST: "0\.0\.0\.0"$'
expect "$cm" "keeps port 8080" '^  ATTN_PORT: "8080"$'
for v in $(sed -n '/^data:/,$p' "$cm" | grep -o '^  [A-Z][A-Z0-9_]*' | tr -d ' '); do
    if env_known "$v"; then ok; else bad "$cm sets $v, which server/config.c does not read"; fi
done

svc=$k8s/service.yaml
expect "$svc" "is a Service" '^kind: Service$'
expect "$svc" "selects the pods" '^    app.kubernetes.io/name: explore-attention$'
expect "$svc" "targets the container port" '^ +targetPort: (http|8080)$'

hpa=$k8s/hpa.yaml
expect "$hpa" "is a HorizontalPodAutoscaler" '^kind: HorizontalPodAutoscaler$'
expect "$hpa" "scales the Deployment" '^    kind: Deployment$'
expect "$hpa" "scales explore-attention" '^    name: explore-attention$'
expect "$hpa" "scales on CPU" '^ +name: cpu$'

for r in $(sed -n '/^resources:/,/^[a-z]/p' "$k8s/kustomization.yaml" | sed -n 's/^  - //p'); do
    [ -f "$k8s/$r" ] && ok || bad "$k8s/kustomization.yaml lists $r, which does not exist"
done
for f in "$k8s"/*.yaml; do
    case "$f" in */kustomization.yaml) continue ;; esac
    grep -q "^  - $(basename "$f")\$" "$k8s/kustomization.yaml" && ok ||
        bad "$f is not listed in $k8s/kustomization.yaml"
done

printf 'check-manifests: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
