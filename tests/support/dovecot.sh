#!/usr/bin/env bash
# Private, throw-away Dovecot IMAP instance used as a threading oracle in tests.
#
#   tests/support/dovecot.sh start DIR   # prints the port, writes DIR/port
#   tests/support/dovecot.sh stop DIR
#
# Everything (config, base_dir, state_dir, maildirs, logs) lives inside DIR.
# The system Dovecot config (/etc/dovecot) and port 143 are never used.
# The instance listens on 127.0.0.1 only, on $PORT if set, else on a free
# high port chosen by the kernel. One passwd-file user: tester / secret
# (override with DOVECOT_USER / DOVECOT_PASSWORD); mail is stored as
# nobody:nogroup because Dovecot refuses to run mail processes as root.
#
# With TLS=1 it also offers STARTTLS on that port and implicit TLS on a
# second one (DIR/imaps-port, or $IMAPS_PORT), with a certificate for
# 127.0.0.1 and localhost issued by a throw-away CA (DIR/tls/ca.pem) that
# openssl makes on the first start.
#
# Needs the Debian packages dovecot-imapd (pulls in dovecot-core) and python3,
# and openssl for TLS=1.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|status DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2

DOVECOT=${DOVECOT:-$(command -v dovecot || echo /usr/sbin/dovecot)}
DOVEADM=${DOVEADM:-$(command -v doveadm || echo /usr/bin/doveadm)}
PYTHON=${PYTHON:-$(command -v python3 || echo /usr/bin/python3)}
MAIL_USER=${DOVECOT_MAIL_USER:-nobody}
MAIL_GROUP=${DOVECOT_MAIL_GROUP:-nogroup}
IMAP_USER=${DOVECOT_USER:-tester}
IMAP_PASSWORD=${DOVECOT_PASSWORD:-secret}

die() {
    echo "dovecot.sh: $*" >&2
    exit 1
}

# Pid of the master process, if it is running.
master_pid() {
    local pidfile="$dir/run/master.pid" pid
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# Every folder from / down to DIR must be traversable by the unprivileged
# users Dovecot switches to (dovecot for auth, nobody for mail storage),
# otherwise login fails with "Temporary authentication failure" or the
# mailbox cannot be created. DIR itself is fixed here; its parents are
# not ours to change, so report them instead.
check_parents() {
    local p=$1
    while [ "$p" != "/" ]; do
        p=$(dirname "$p")
        local mode
        mode=$(stat -c '%A' "$p")
        if [ "${mode:9:1}" != "x" ] && [ "${mode:9:1}" != "t" ]; then
            die "$p ($mode) is not traversable by other users; Dovecot's" \
                "auth and mail processes could not reach $dir." \
                "Use a DIR whose parents are o+x (e.g. chmod o+x $p)."
        fi
    done
}

wait_port() {
    # $1 port, $2 timeout seconds
    "$PYTHON" - "$1" "$2" <<'EOF'
import socket, sys, time
port, timeout = int(sys.argv[1]), float(sys.argv[2])
deadline = time.time() + timeout
while time.time() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            if s.recv(256).startswith(b"* OK"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

free_port() {
    "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# A CA and a server certificate for 127.0.0.1 and localhost, made once.
make_certificates() {
    local t="$dir/tls"
    [ -s "$t/server.pem" ] && return 0
    mkdir -p "$t"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=mailnotary test IMAP CA" -keyout "$t/ca.key" -out "$t/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        >/dev/null 2>&1 || die "openssl could not make the test CA"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$t/server.key" -out "$t/server.csr" \
        >/dev/null 2>&1 || die "openssl could not make the server key"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$t/ext"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
        -CAcreateserial -days 2 -extfile "$t/ext" -out "$t/server.pem" \
        >/dev/null 2>&1 || die "openssl could not issue the server certificate"
    chmod 0644 "$t/ca.pem" "$t/server.pem"
    chmod 0600 "$t/server.key" "$t/ca.key"
}

start() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if pid=$(master_pid); then
        die "an instance is already running in $dir (pid $pid)"
    fi
    check_parents "$dir"
    chmod 0755 "$dir"

    local port=${PORT:-}
    [ -n "$port" ] || port=$(free_port)
    case $port in
        '' | *[!0-9]*) die "bad port '$port'" ;;
    esac

    # TLS: STARTTLS on the IMAP port, implicit TLS on a second one.
    local ssl="ssl = no" imaps_port=0
    if [ "${TLS:-0}" = 1 ]; then
        make_certificates
        imaps_port=${IMAPS_PORT:-}
        [ -n "$imaps_port" ] || imaps_port=$(free_port)
        ssl="ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key"
    fi

    local conf="$dir/dovecot.conf"
    rm -rf "$dir/run"
    mkdir -p "$dir/run" "$dir/state" "$dir/mail" "$dir/home"
    chmod 0755 "$dir/run" "$dir/state"
    chown "$MAIL_USER:$MAIL_GROUP" "$dir/mail" "$dir/home"
    chmod 0755 "$dir/mail" "$dir/home"

    # passwd-file: user:password:uid:gid:gecos:home:shell:extra
    printf '%s:{PLAIN}%s::::::\n' "$IMAP_USER" "$IMAP_PASSWORD" >"$dir/passwd"
    chmod 0644 "$dir/passwd"

    # instance_name must be unique per instance so that ps titles and
    # doveadm's instance registry don't collide with the system Dovecot.
    local instance="mailnotary-test-$port"

    cat >"$conf" <<EOF
# Generated by tests/support/dovecot.sh -- private test instance.
instance_name = $instance
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
debug_log_path = $dir/dovecot.log

protocols = imap
listen = 127.0.0.1
$ssl
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.0/8
shutdown_clients = yes

mail_location = maildir:$dir/mail/%u
mail_uid = $MAIL_USER
mail_gid = $MAIL_GROUP
first_valid_uid = 1
first_valid_gid = 1

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = static
  args = uid=$MAIL_USER gid=$MAIL_GROUP home=$dir/home/%u
}

namespace inbox {
  inbox = yes
  separator = /
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
  }
}
EOF
    chmod 0644 "$conf"

    # The master daemonizes; keep its stdio away from our caller's pipes.
    "$DOVECOT" -c "$conf" </dev/null >>"$dir/dovecot.stdout" 2>&1 ||
        die "dovecot failed to start; see $dir/dovecot.stdout and $dir/dovecot.log:
$(tail -n 20 "$dir/dovecot.stdout" "$dir/dovecot.log" 2>/dev/null)"

    if ! wait_port "$port" "${DOVECOT_START_TIMEOUT:-20}"; then
        local log
        log=$(tail -n 20 "$dir/dovecot.log" 2>/dev/null || true)
        stop >/dev/null 2>&1 || true
        die "dovecot did not accept connections on 127.0.0.1:$port; log:
$log"
    fi
    echo "$port" >"$dir/port"
    if [ "$imaps_port" != 0 ]; then
        echo "$imaps_port" >"$dir/imaps-port"
    fi
    echo "$port"
}

stop() {
    [ -d "$dir" ] || die "no such directory: $dir"
    dir=$(cd "$dir" && pwd -P)
    local pid
    if ! pid=$(master_pid); then
        rm -f "$dir/port"
        return 0
    fi
    "$DOVEADM" -c "$dir/dovecot.conf" stop </dev/null >>"$dir/dovecot.stdout" 2>&1 ||
        kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # The master normally takes its children down with it; make sure no
    # process of this instance (titled "dovecot-INSTANCE/...") is left.
    local instance stragglers
    instance=$(sed -n 's/^instance_name = //p' "$dir/dovecot.conf")
    if [ -n "$instance" ]; then
        for i in $(seq 1 50); do
            stragglers=$(instance_pids "$instance")
            [ -z "$stragglers" ] && break
            [ "$i" = 30 ] && kill -TERM $stragglers 2>/dev/null || true
            [ "$i" = 45 ] && kill -KILL $stragglers 2>/dev/null || true
            sleep 0.1
        done
    fi
    rm -f "$dir/port"
}

# Live (non-zombie) processes whose title is "dovecot-INSTANCE/..." or whose
# command line names this instance's config file.
instance_pids() {
    local instance=$1 p cmd state
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        case $cmd in
            "dovecot-$instance/"* | *" -c $dir/dovecot.conf"*) ;;
            *) continue ;;
        esac
        state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "$p/status" 2>/dev/null) || continue
        [ "$state" = Z ] && continue
        echo "${p#/proc/}"
    done
}

status() {
    dir=$(cd "$dir" && pwd -P)
    local pid
    if pid=$(master_pid); then
        echo "running pid $pid port $(cat "$dir/port" 2>/dev/null)"
    else
        echo "stopped"
        return 1
    fi
}

case $cmd in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac
