#!/usr/bin/env bash
# Makes a self-signed development certificate for s2cs (--server_crt / --server_key) that
# s2uc can trust with --server_cert. Like the troubleshooting guide's recipe (a key, then
# req, x509 -req -days 365 with a v3_req subjectAltName), but with an ECDSA P-256 key and every name as a SAN.
#
# Usage: certs/make-dev-cert.sh [-o OUTDIR] NAME_OR_IP...
#   NAME_OR_IP  host names and IPv4/IPv6 addresses the server is reached by; the first is the CN.
#               Default: 127.0.0.1 localhost ::1
#   -o OUTDIR   where server.crt and server.key go (default: the current folder)
set -euo pipefail

program=$(basename "$0")

usage() {
    echo "Usage: $program [-o OUTDIR] NAME_OR_IP..."
    echo "Makes OUTDIR/server.crt and OUTDIR/server.key (mode 0600), self-signed, valid 365 days,"
    echo "with every NAME_OR_IP as a subjectAltName (default: 127.0.0.1 localhost ::1)."
}

fail() {
    echo "Error: $*" >&2
    exit 1
}

outdir=.
while getopts ":o:h" option; do
    case "$option" in
        o) outdir=$OPTARG ;;
        h)
            usage
            exit 0
            ;;
        :)
            echo "Error: -$OPTARG needs a folder" >&2
            usage >&2
            exit 64
            ;;
        *)
            echo "Error: unknown option -$OPTARG" >&2
            usage >&2
            exit 64
            ;;
    esac
done
shift $((OPTIND - 1))

if [ "$#" -eq 0 ]; then
    set -- 127.0.0.1 localhost ::1
fi

command -v openssl >/dev/null 2>&1 || fail "openssl not found (Debian: apt-get install openssl)"
[ -d "$outdir" ] || fail "output folder '$outdir' does not exist"
[ -w "$outdir" ] || fail "output folder '$outdir' is not writable"

is_ipv4() {
    local IFS=.
    local -a parts
    [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
    read -r -a parts <<<"$1"
    local part
    for part in "${parts[@]}"; do
        ((10#$part <= 255)) || return 1
    done
}

is_ipv6() {
    [[ $1 == *:* && $1 =~ ^[0-9A-Fa-f:.]+$ ]]
}

# Names are checked strictly before they reach the config file: a stray character must not
# inject a directive.
sans=()
for name in "$@"; do
    if is_ipv4 "$name" || is_ipv6 "$name"; then
        sans+=("IP:$name")
    elif [[ $name =~ ^[0-9.]+$ ]]; then
        fail "'$name' is not a valid IPv4 address"
    elif [[ $name =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]]; then
        sans+=("DNS:$name")
    else
        fail "'$name' is neither an IP address nor a host name"
    fi
done
cn=$1
san_list=$(
    IFS=,
    echo "${sans[*]}"
)

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# Runs an openssl step quietly; on failure shows what it said.
run_openssl() {
    if ! openssl "$@" 2>"$workdir/stderr"; then
        cat "$workdir/stderr" >&2
        fail "openssl $1 failed"
    fi
}

cat >"$workdir/cert.conf" <<EOF
[req]
distinguished_name = req_distinguished_name
x509_extensions = v3_req
prompt = no

[req_distinguished_name]
CN = $cn

[v3_req]
subjectAltName = $san_list
EOF

umask 077
# ECDSA P-256: a handshake costs a fraction of an RSA-2048 one (s2cs signs once per connection).
run_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$workdir/server.key"
chmod 600 "$workdir/server.key"
run_openssl req -new -key "$workdir/server.key" -out "$workdir/server.csr" -config "$workdir/cert.conf"
run_openssl x509 -req -days 365 -in "$workdir/server.csr" -signkey "$workdir/server.key" \
    -out "$workdir/server.crt" -extfile "$workdir/cert.conf" -extensions v3_req
chmod 644 "$workdir/server.crt"

mv -f "$workdir/server.key" "$outdir/server.key"
mv -f "$workdir/server.crt" "$outdir/server.crt"
chmod 600 "$outdir/server.key"

echo "wrote $outdir/server.crt (CN=$cn, subjectAltName=$san_list, valid 365 days)"
echo "wrote $outdir/server.key (mode 0600)"
