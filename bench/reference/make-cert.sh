#!/usr/bin/env bash
# Key material for the hand-configured reference pairs: one Ed25519 key and a self-signed
# certificate (CN and SAN scistream-s2ds, CA:TRUE, serverAuth+clientAuth), the same kind of key and
# certificate s2cs derives for a session, made here with openssl instead of our code. Both proxies of
# a pair present it and trust only it (mutual TLS).
#
#   bench/reference/make-cert.sh DIR    writes DIR/ref.key, DIR/ref.crt and DIR/ref.pem (cert + key)
set -euo pipefail
dir=${1:?usage: make-cert.sh DIR}
mkdir -p "$dir"
umask 077
openssl req -x509 -newkey ed25519 -nodes -days 3650 -subj /CN=scistream-s2ds \
  -keyout "$dir/ref.key" -out "$dir/ref.crt" \
  -addext "subjectAltName=DNS:scistream-s2ds" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,digitalSignature,keyCertSign" \
  -addext "extendedKeyUsage=serverAuth,clientAuth" 2>/dev/null
cat "$dir/ref.crt" "$dir/ref.key" >"$dir/ref.pem"
