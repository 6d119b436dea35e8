#!/usr/bin/env bash
# Provisions one machine of the Vagrantfile (Debian 12): installs the packages SciStream uses and
# s2uc, s2cs and make-dev-cert.sh in /usr/local/bin; then sets the machine's routes. Safe to run again.
# s2uc and s2cs are the prebuilt ones in dist/ (scripts/build-static, run once on the host) when they
# are there: then only the runtime packages are installed, and none at all if the box has them
# (scripts/make-box), so that provisioning needs no network. Otherwise it installs the Swift
# toolchain and builds the repository (synced at /vagrant) in the machine.
#
# Usage: scripts/provision.sh [--routes-only] HOST
#        scripts/provision.sh --print-routes
#   HOST            producer, producers2, consumers2 or consumer
#   --routes-only   only set the routes (the Vagrantfile does this on every boot)
#   --print-routes  print the gateways' host routes (HOST DESTINATION GATEWAY) and exit
#
# Environment: SCISTREAM_SOURCE (default /vagrant), SWIFT_VERSION (default 6.3.1),
# SWIFT_PREFIX (default /opt/swift).
set -euo pipefail

source_dir=${SCISTREAM_SOURCE:-/vagrant}
swift_version=${SWIFT_VERSION:-6.3.1}
swift_prefix=${SWIFT_PREFIX:-/opt/swift}
build_dir=/opt/scistream/build

# The same host routes as scripts/testbed: each gateway reaches the other gateway's far-side address.
gateway_routes=(
    "producers2 192.168.30.10/32 192.168.20.11"
    "consumers2 192.168.10.11/32 192.168.20.10"
)
# The end hosts reach nothing beyond their own subnet, even though Vagrant gives every machine a
# default route (through its NAT interface): these subnets are made unreachable explicitly.
unreachable_routes=(
    "producer 192.168.20.0/24"
    "producer 192.168.30.0/24"
    "consumer 192.168.10.0/24"
    "consumer 192.168.20.0/24"
)

fail() {
    echo "Error: $*" >&2
    exit 1
}

usage_error() {
    echo "Error: $*" >&2
    echo "Usage: provision.sh [--routes-only] producer|producers2|consumers2|consumer" >&2
    exit 64
}

routes_only=0
case "${1:-}" in
    --print-routes)
        printf '%s\n' "${gateway_routes[@]}"
        exit 0
        ;;
    --routes-only)
        routes_only=1
        shift
        ;;
esac
[ $# -eq 1 ] || usage_error "expected one host name"
host=$1
case "$host" in
    producer | producers2 | consumers2 | consumer) ;;
    *) usage_error "unknown host '$host'" ;;
esac
[ "$(id -u)" -eq 0 ] || fail "run as root (Vagrant's shell provisioner does)"

set_routes() {
    local entry name destination via
    for entry in "${gateway_routes[@]}"; do
        read -r name destination via <<<"$entry"
        if [ "$name" = "$host" ]; then ip route replace "$destination" via "$via"; fi
    done
    for entry in "${unreachable_routes[@]}"; do
        read -r name destination <<<"$entry"
        if [ "$name" = "$host" ]; then ip route replace unreachable "$destination"; fi
    done
    echo "routes of $host:"
    ip -4 route show | sed 's/^/  /'
}

if [ "$routes_only" = 1 ]; then
    set_routes
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# What s2cs and s2uc need at run time: the proxies, iperf3 and tcpdump, and the libraries that
# static binaries (scripts/build-static) link dynamically: groups run and box of scripts/packages.
mapfile -t runtime_packages < <(awk '$1 == "run" || $1 == "box" { print $2 }' "$source_dir/scripts/packages" | sort -u)
[ ${#runtime_packages[@]} -gt 0 ] || fail "no packages read from $source_dir/scripts/packages"

if [ -x "$source_dir/dist/s2cs" ] && [ -x "$source_dir/dist/s2uc" ]; then
    echo "== packages (prebuilt s2uc and s2cs in $source_dir/dist)"
    missing=()
    for package in "${runtime_packages[@]}"; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all installed already: nothing to download"
    else
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    echo "== installing the prebuilt s2uc and s2cs"
    install -m 755 "$source_dir/dist/s2uc" "$source_dir/dist/s2cs" "$source_dir/certs/make-dev-cert.sh" /usr/local/bin/
    s2uc --version || fail "the prebuilt s2uc does not run here: rebuild it (scripts/build-static) on a Debian 12 host, or delete dist/ to build in the machine"
    s2cs --version || fail "the prebuilt s2cs does not run here: rebuild it (scripts/build-static) on a Debian 12 host, or delete dist/ to build in the machine"
    set_routes
    echo "== $host is ready"
    exit 0
fi

echo "== packages"
apt-get update
# Groups build, run and box of scripts/packages, and the Swift toolchain's dependencies for Debian 12
# (swift.org, "Installation via Tarball").
mapfile -t build_packages < <(awk '$1 == "build" { print $2 }' "$source_dir/scripts/packages")
apt-get install -y --no-install-recommends "${build_packages[@]}" "${runtime_packages[@]}" \
    binutils-gold gcc git libcurl4-openssl-dev libedit-dev libicu-dev libncurses-dev libpython3-dev \
    libsqlite3-dev libxml2-dev tzdata uuid-dev ca-certificates curl gnupg

echo "== Swift $swift_version"
if "$swift_prefix/usr/bin/swift" --version 2>/dev/null | grep -q "Swift version $swift_version "; then
    echo "already installed in $swift_prefix"
else
    name="swift-$swift_version-RELEASE-debian12"
    url="https://download.swift.org/swift-$swift_version-release/debian12/swift-$swift_version-RELEASE/$name.tar.gz"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    curl -fsSL --retry 3 -o "$work/$name.tar.gz" "$url"
    curl -fsSL --retry 3 -o "$work/$name.tar.gz.sig" "$url.sig"
    # Verify the toolchain with the Swift project's signing keys.
    export GNUPGHOME="$work/gnupg"
    mkdir -m 700 "$GNUPGHOME"
    curl -fsSL --retry 3 https://swift.org/keys/all-keys.asc | gpg --batch --quiet --import -
    gpg --batch --verify "$work/$name.tar.gz.sig" "$work/$name.tar.gz" || fail "the Swift toolchain's signature does not verify"
    rm -rf "$swift_prefix"
    mkdir -p "$swift_prefix"
    tar -xzf "$work/$name.tar.gz" -C "$swift_prefix" --strip-components=1
    "$swift_prefix/usr/bin/swift" --version
fi
echo "export PATH=\"$swift_prefix/usr/bin:\$PATH\"" >/etc/profile.d/swift.sh

echo "== building SciStream"
[ -f "$source_dir/Package.swift" ] || fail "no Package.swift in $source_dir: is the repository synced there?"
mkdir -p "$build_dir"
"$swift_prefix/usr/bin/swift" build -c release --package-path "$source_dir" --scratch-path "$build_dir"
bin=$("$swift_prefix/usr/bin/swift" build -c release --package-path "$source_dir" --scratch-path "$build_dir" --show-bin-path)
install -m 755 "$bin/s2uc" "$bin/s2cs" "$source_dir/certs/make-dev-cert.sh" /usr/local/bin/
s2uc --version
s2cs --version

set_routes
echo "== $host is ready"
