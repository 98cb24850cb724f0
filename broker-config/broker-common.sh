# SPDX-License-Identifier: Apache-2.0
# Shared by enroll-device and revoke-device (sourced, not run): defaults, checks, the CA
# database behind the revocation list, and reloading Mosquitto.

conf_dir=/etc/mosquitto
pid_file=""
reload=1

die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

check_device_id() {
    [[ "$1" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad device id '$1' (letters, digits, _ . - only)"
    case "$1" in
        edge-gateway | ca | server | revoked) die "'$1' is reserved" ;;
    esac
}

# make-tls.sh signs with `openssl x509 -req`, which keeps no record; `openssl ca` needs a
# database to revoke and to issue CRLs. Made on first use; certificates signed before are
# revoked from their files, so the database need not list them.
ensure_ca_db() {
    [[ -f "$tls_dir/index.txt" ]] || : >"$tls_dir/index.txt"
    [[ -f "$tls_dir/crlnumber" ]] || echo 1000 >"$tls_dir/crlnumber"
    cat >"$tls_dir/ca.cnf" <<CNF
[ ca ]
default_ca = site_ca
[ site_ca ]
database = $tls_dir/index.txt
crlnumber = $tls_dir/crlnumber
certificate = $tls_dir/ca.crt
private_key = $tls_dir/ca.key
default_md = sha256
# The CRL is reissued on every revocation; a long validity keeps devices working when nobody
# revokes anything for a while (an expired CRL makes OpenSSL refuse every client).
default_crl_days = 3650
CNF
}

make_crl() {
    openssl ca -config "$tls_dir/ca.cnf" -gencrl -out "$tls_dir/crl.pem.new" 2>"$tls_dir/.openssl.err" ||
        { cat "$tls_dir/.openssl.err" >&2; die "openssl could not write the CRL"; }
    rm -f "$tls_dir/.openssl.err"
    chmod 0644 "$tls_dir/crl.pem.new"
    mv "$tls_dir/crl.pem.new" "$tls_dir/crl.pem"
}

# The certificate listener names crlfile, so Mosquitto needs one even before any revocation.
ensure_crl() {
    [[ -f "$tls_dir/crl.pem" ]] && return 0
    ensure_ca_db
    make_crl
}

# Debian runs Mosquitto under systemd, whose unit reloads with SIGHUP; elsewhere, SIGHUP the pid
# in its pid file. Mosquitto rereads the password file, the ACL and the TLS files on SIGHUP.
reload_broker() {
    ((reload)) || return 0
    if [[ -z "$pid_file" ]] && command -v systemctl >/dev/null &&
        systemctl is-active --quiet mosquitto 2>/dev/null; then
        systemctl reload mosquitto && echo "${0##*/}: reloaded mosquitto (systemctl)" >&2
        return
    fi
    local f=${pid_file:-/run/mosquitto/mosquitto.pid}
    if [[ -r "$f" ]] && kill -HUP "$(cat "$f")" 2>/dev/null; then
        echo "${0##*/}: reloaded mosquitto (SIGHUP to pid $(cat "$f"))" >&2
    else
        echo "${0##*/}: could not reload mosquitto (no running service, no pid in $f): reload it yourself" >&2
    fi
}
