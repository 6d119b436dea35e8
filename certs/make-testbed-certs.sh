#!/usr/bin/env bash
# Makes the development certificates of the tutorial's two gateways (docs/tutorial.md, the
# Vagrantfile, scripts/testbed), each with both of its addresses as subjectAltNames:
#
#   producers2  192.168.10.11 (CN), 192.168.20.10
#   consumers2  192.168.30.10 (CN), 192.168.20.11
#
# s2uc checks the address it dials against these names: the producer dials producers2 at
# 192.168.10.11, the consumer dials consumers2 at 192.168.30.10.
#
# Usage: certs/make-testbed-certs.sh [-o OUTDIR] [GATEWAY...]
#   GATEWAY    producers2 and/or consumers2 (default: both)
#   -o OUTDIR  writes OUTDIR/GATEWAY/server.crt and server.key (default: certs/out/testbed)
#
# Each pair is made by make-dev-cert.sh (self-signed, 365 days): for development only; see
# certs/README.md for production.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
outdir="$here/out/testbed"

usage() {
    echo "Usage: $(basename "$0") [-o OUTDIR] [GATEWAY...]"
    echo "Makes OUTDIR/GATEWAY/server.crt and server.key for producers2 and/or consumers2 (default: both)."
}

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
[ "$#" -gt 0 ] || set -- producers2 consumers2

addresses_of() {
    case "$1" in
        producers2) echo "192.168.10.11 192.168.20.10" ;;
        consumers2) echo "192.168.30.10 192.168.20.11" ;;
        *)
            echo "Error: unknown gateway '$1': use producers2 or consumers2" >&2
            exit 64
            ;;
    esac
}

for gateway in "$@"; do addresses_of "$gateway" >/dev/null; done
for gateway in "$@"; do
    mkdir -p "$outdir/$gateway"
    # shellcheck disable=SC2046 # the addresses are meant to split
    bash "$here/make-dev-cert.sh" -o "$outdir/$gateway" $(addresses_of "$gateway")
done
