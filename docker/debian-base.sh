#!/bin/sh
# debian-base.sh - makes debian:bookworm-slim locally, for machines that cannot pull it.
# Usage: docker/debian-base.sh ENGINE   (ENGINE: podman or docker; needs root)
#
# Builds the image the way Debian's official images are built (debuerreotype: minbase
# debootstrap, the minimizing config, slimify) from the apt mirror this machine already
# uses, then imports it as docker.io/library/debian:bookworm-slim, so `FROM
# debian:bookworm-slim` finds it without a registry. The apt settings that this machine needs
# for its mirror (Acquire::Check-Valid-Until, Acquire::Check-Date) are carried into the image.
set -eu

engine=${1:?usage: debian-base.sh podman|docker}
name=docker.io/library/debian:bookworm-slim
suite=bookworm

need=""
for p in debuerreotype debootstrap debian-archive-keyring wget; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    echo "debian-base.sh: installing:$need" >&2
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# The mirror URIs apt uses here for bookworm, bookworm-updates and bookworm-security (the
# official image lists the same three suites).
policy=$(apt-cache policy 2>/dev/null)
uri_of() {
    printf '%s\n' "$policy" | awk -v s="$1/main" '$3 == s { print $2; exit }'
}
main_uri=$(uri_of "$suite")
updates_uri=$(uri_of "$suite-updates")
security_uri=$(uri_of "$suite-security")
: "${main_uri:=http://deb.debian.org/debian}"
: "${updates_uri:=$main_uri}"
: "${security_uri:=http://deb.debian.org/debian-security}"

work=$(mktemp -d /var/tmp/debian-base.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
rootfs="$work/rootfs"

echo "debian-base.sh: bootstrapping $suite from $main_uri" >&2
debuerreotype-init --non-debian --keyring /usr/share/keyrings/debian-archive-keyring.gpg \
    "$rootfs" "$suite" "$main_uri" >"$work/init.log" 2>&1 || {
    tail -n 30 "$work/init.log" >&2
    exit 1
}
debuerreotype-minimizing-config "$rootfs"

rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $main_uri
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_uri
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
if [ "$updates_uri" != "$main_uri" ]; then
    sed -i "s|^Suites: $suite $suite-updates\$|Suites: $suite|" \
        "$rootfs/etc/apt/sources.list.d/debian.sources"
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-updates\nComponents: main\nSigned-By: %s\n' \
        "$updates_uri" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg \
        >>"$rootfs/etc/apt/sources.list.d/debian.sources"
fi
# This machine's mirror may serve Release files past their Valid-Until date.
apt-config dump 2>/dev/null | grep -E '^Acquire::Check-(Valid-Until|Date) ' \
    >"$rootfs/etc/apt/apt.conf.d/99local-mirror" || true
[ -s "$rootfs/etc/apt/apt.conf.d/99local-mirror" ] || rm -f "$rootfs/etc/apt/apt.conf.d/99local-mirror"

debuerreotype-apt-get "$rootfs" update -qq
debuerreotype-apt-get "$rootfs" dist-upgrade -yqq >/dev/null
debuerreotype-recalculate-epoch "$rootfs"
debuerreotype-slimify "$rootfs"
debuerreotype-tar "$rootfs" "$work/rootfs.tar"

"$engine" import --change 'CMD ["bash"]' "$work/rootfs.tar" "$name" >/dev/null
echo "debian-base.sh: imported $name ($(du -m "$work/rootfs.tar" | cut -f1) MiB)" >&2
