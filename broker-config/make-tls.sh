#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes TLS material for mutual TLS with OpenSSL: a CA, a server certificate for the broker and
# one client certificate per name given (the CN is the name; with use_identity_as_username the
# broker uses it as the user name in the ACL).
#
#   bash broker-config/make-tls.sh [-d DIR] [-s SERVER_NAME]... [CLIENT_NAME]...
#
#   -d DIR          where to write (default ./tls); created if missing
#   -s SERVER_NAME  DNS name or IP address the broker is reached by; repeat for several
#                   (default: this host's name, localhost and 127.0.0.1)
#   CLIENT_NAME     a client certificate CN, e.g. edge-gateway sensor-1 (default: edge-gateway)
#
# Writes ca.crt/ca.key, server.crt/server.key and NAME.crt/NAME.key. Run it again to add
# clients: an existing CA in DIR is reused, existing files are left alone. Keys are EC P-256,
# mode 0600. Keep ca.key off the gateway if you can: it is only needed to sign new certificates.
#
# Broker (mosquitto.conf device listener): cafile ca.crt, certfile server.crt, keyfile server.key.
# Gateway (tls in gateway.json):  ca_file ca.crt, cert_file edge-gateway.crt, key_file
# edge-gateway.key.
set -euo pipefail

usage() { sed -n '3,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

dir=./tls
servers=()
while getopts 'd:s:h' opt; do
    case "$opt" in
        d) dir=$OPTARG ;;
        s) servers+=("$OPTARG") ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
clients=("$@")
((${#clients[@]})) || clients=(edge-gateway)
((${#servers[@]})) || servers=("$(hostname)" localhost 127.0.0.1)

command -v openssl >/dev/null || { echo "make-tls: openssl not found (apt-get install openssl)" >&2; exit 1; }
ca_days=3650   # the CA outlives the certificates it signs
cert_days=825  # the longest leaf validity most TLS clients still accept

mkdir -p "$dir"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME CN EXTENSIONS: makes NAME.key (if missing) and NAME.crt signed by the CA.
sign() {
    local name=$1 cn=$2 ext=$3
    if [[ -e "$dir/$name.crt" ]]; then
        echo "make-tls: $dir/$name.crt exists, kept"
        return
    fi
    [[ -e "$dir/$name.key" ]] || new_key "$dir/$name.key"
    printf '%s\n' "$ext" >"$work/$name.ext"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$cn" -out "$work/$name.csr"
    openssl x509 -req -in "$work/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -CAserial "$dir/ca.srl" -days "$cert_days" -sha256 \
        -extfile "$work/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    chmod 0644 "$dir/$name.crt"
    echo "make-tls: wrote $dir/$name.crt ($name.key)"
}

if [[ ! -e "$dir/ca.crt" ]]; then
    new_key "$dir/ca.key"
    openssl req -new -x509 -key "$dir/ca.key" -subj "/CN=edge-gateway site CA" \
        -days "$ca_days" -sha256 -out "$dir/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    chmod 0644 "$dir/ca.crt"
    echo "make-tls: wrote $dir/ca.crt (ca.key)"
fi

san=()
for s in "${servers[@]}"; do
    if [[ "$s" =~ ^[0-9.]+$ || "$s" == *:* ]]; then san+=("IP:$s"); else san+=("DNS:$s"); fi
done
san_list=$(IFS=,; echo "${san[*]}")

sign server "${servers[0]}" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san_list"

for c in "${clients[@]}"; do
    if [[ ! "$c" =~ ^[A-Za-z0-9_.-]+$ || "$c" == ca || "$c" == server ]]; then
        echo "make-tls: bad client name '$c' (letters, digits, _ . - only; not ca or server)" >&2
        exit 2
    fi
    sign "$c" "$c" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
done
