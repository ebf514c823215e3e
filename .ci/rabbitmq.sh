#!/usr/bin/env bash
# A throwaway RabbitMQ for carrot's tests: bound to 127.0.0.1 only, plain AMQP on 5672 and TLS
# on 5671 with a CA made for the occasion, its data and logs in a private temporary folder.
#
#   sudo bash .ci/rabbitmq.sh install   # apt-get install rabbitmq-server openssl when missing
#   sudo bash .ci/rabbitmq.sh start     # start it; prints the export lines for the tests
#   sudo bash .ci/rabbitmq.sh restart   # restart it (what CARROT_TEST_AMQP_RESTART runs)
#   sudo bash .ci/rabbitmq.sh stop      # stop it, stop epmd if we started it, remove the folder
#   bash .ci/rabbitmq.sh env            # print the export lines again
#
# In the shell that runs the tests: eval "$(sudo bash .ci/rabbitmq.sh start)", or later
# eval "$(bash .ci/rabbitmq.sh env)"; then cargo test.
#
# Also usable as a library (.ci/run does): `source .ci/rabbitmq.sh` defines rabbitmq_install,
# rabbitmq_start (which exports the CARROT_TEST_AMQP* variables), rabbitmq_restart,
# rabbitmq_log_tail and rabbitmq_stop.
#
# The Debian package's scripts run as root (they switch to user rabbitmq) or as user rabbitmq.
# Measured facts behind the choices here: /work/shared/FACTS.md.

RABBITMQ_CI_NODE="${RABBITMQ_CI_NODE:-carrot-ci@localhost}"
RABBITMQ_CI_AMQP_PORT="${RABBITMQ_CI_AMQP_PORT:-5672}"
RABBITMQ_CI_AMQPS_PORT="${RABBITMQ_CI_AMQPS_PORT:-5671}"
RABBITMQ_CI_DIST_PORT="${RABBITMQ_CI_DIST_PORT:-25672}"
# Where `start` records the private folder, so that `stop`, `restart` and `env` find it.
RABBITMQ_CI_STATE="${RABBITMQ_CI_STATE:-${TMPDIR:-/tmp}/carrot-ci-rabbitmq.current}"
RABBITMQ_CI_SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

# The package puts its commands in /usr/sbin, which is not on every user's PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac

_rmq_log() { echo "rabbitmq.sh: $*" >&2; }

_rmq_as_root_or_rabbitmq() {
    if [ "$(id -u)" != 0 ] && [ "$(id -un)" != rabbitmq ]; then
        _rmq_log "run this as root (sudo bash .ci/rabbitmq.sh $1): the Debian package's rabbitmq-server and rabbitmqctl only run as root or as user rabbitmq"
        return 1
    fi
}

_rmq_apt_install() {
    # Keep the package from starting its own node (on every interface) when the machine has an
    # init system: the policy-rc.d convention, unless the machine already has one.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" || status=$?
    [ -z "$made_policy" ] || rm -f "$policy"
    return "$status"
}

# Installs rabbitmq-server and openssl with apt-get when they are missing.
rabbitmq_install() {
    local missing=()
    command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        _rmq_log "missing ${missing[*]}: install them as root (sudo bash .ci/rabbitmq.sh install)"
        return 1
    fi
    _rmq_log "installing ${missing[*]}"
    apt-get update -q && _rmq_apt_install "${missing[@]}"
}

# The environment of the node and of rabbitmqctl: everything in the private folder $1, nothing
# from /etc/rabbitmq, every listener on 127.0.0.1.
_rmq_env() {
    local dir="$1"
    export RABBITMQ_NODENAME="$RABBITMQ_CI_NODE"
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" # never written: none
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$RABBITMQ_CI_AMQP_PORT"
    export RABBITMQ_DIST_PORT="$RABBITMQ_CI_DIST_PORT"
    # Erlang distribution (the node's and rabbitmqctl's) and epmd, when we start it: loopback.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=127.0.0.1
}

_rmq_ctl() { rabbitmqctl -n "$RABBITMQ_CI_NODE" "$@"; }

_rmq_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until the node answers (at most $1 seconds) and its listeners accept connections.
_rmq_await() {
    local deadline=$((SECONDS + ${1:-60}))
    # await_startup fails at once (exit 69) while the node is still registering: retry it.
    until _rmq_ctl -q await_startup --timeout 10 >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _rmq_log "node $RABBITMQ_CI_NODE did not answer within ${1:-60} s"
            return 1
        fi
        sleep 0.5
    done
    local port
    for port in "$RABBITMQ_CI_AMQP_PORT" "$RABBITMQ_CI_AMQPS_PORT"; do
        until _rmq_port_open "$port"; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                _rmq_log "nothing accepts connections on 127.0.0.1:$port within ${1:-60} s"
                return 1
            fi
            sleep 0.2
        done
    done
}

_rmq_make_certs() {
    local tls="$1" days=7
    mkdir -p "$tls"
    (
        cd "$tls" || exit 1
        set -e
        openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -sha256 \
            -subj "/CN=carrot CI throwaway CA" -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
            -keyout server.key -out server.csr 2>/dev/null
        printf '%s\n' 'basicConstraints = CA:FALSE' \
            'keyUsage = critical, digitalSignature, keyEncipherment' \
            'extendedKeyUsage = serverAuth' \
            'subjectAltName = DNS:localhost, IP:127.0.0.1' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days "$days" -sha256 -extfile server.ext -out server.pem 2>/dev/null
        # An unrelated CA, for the test that a server certificate it did not sign is refused.
        openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -sha256 \
            -subj "/CN=carrot CI unrelated CA" -keyout other-ca.key -out other-ca.pem 2>/dev/null
        # The CA keys have done their job.
        rm -f ca.key other-ca.key server.csr server.ext ca.srl
        chmod 644 ca.pem other-ca.pem server.pem
        chmod 600 server.key
    )
}

# The export lines for the tests, from the private folder $1.
_rmq_exports() {
    local dir="$1" restart="bash $RABBITMQ_CI_SCRIPT restart"
    # Started with sudo: the tests run as the user, and the restart needs root again (-n: fail
    # rather than wait for a password).
    [ -n "${SUDO_USER:-}" ] && restart="sudo -n $restart"
    cat <<EOF
export CARROT_TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:$RABBITMQ_CI_AMQP_PORT/%2F'
export CARROT_TEST_AMQPS_URL='amqps://guest:guest@localhost:$RABBITMQ_CI_AMQPS_PORT/%2F?cacertfile=$dir/tls/ca.pem'
export CARROT_TEST_AMQPS_WRONG_CA='$dir/tls/other-ca.pem'
export CARROT_TEST_AMQP_RESTART='$restart'
EOF
}

_rmq_current_dir() {
    local dir
    [ -f "$RABBITMQ_CI_STATE" ] && dir="$(cat "$RABBITMQ_CI_STATE")" && [ -d "$dir" ] && echo "$dir"
}

# Starts the node and exports CARROT_TEST_AMQP_URL, CARROT_TEST_AMQPS_URL,
# CARROT_TEST_AMQPS_WRONG_CA and CARROT_TEST_AMQP_RESTART.
rabbitmq_start() {
    _rmq_as_root_or_rabbitmq start || return 1
    rabbitmq_install || return 1
    local stale
    if stale="$(_rmq_current_dir)"; then
        _rmq_env "$stale"
        if _rmq_ctl -q ping >/dev/null 2>&1; then
            _rmq_log "$RABBITMQ_CI_NODE (started by this script, $stale) is running: use it (bash .ci/rabbitmq.sh env) or stop it first (bash .ci/rabbitmq.sh stop)"
            return 1
        fi
        _rmq_log "removing $stale, left by a node that is gone"
        rm -rf "$stale"
    fi
    rm -f "$RABBITMQ_CI_STATE"
    local port
    for port in "$RABBITMQ_CI_AMQP_PORT" "$RABBITMQ_CI_AMQPS_PORT" "$RABBITMQ_CI_DIST_PORT"; do
        if _rmq_port_open "$port"; then
            _rmq_log "port $port on 127.0.0.1 is taken (another RabbitMQ?); stop it, or set RABBITMQ_CI_AMQP_PORT, RABBITMQ_CI_AMQPS_PORT, RABBITMQ_CI_DIST_PORT"
            return 1
        fi
    done

    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/carrot-ci-rabbitmq.XXXXXX")" || return 1
    echo "$dir" >"$RABBITMQ_CI_STATE" || return 1
    mkdir -p "$dir/mnesia" "$dir/log" && chmod 750 "$dir/mnesia" "$dir/log" || return 1
    # epmd outlives the node: stop it at the end only if it was not running before us.
    if epmd -names >/dev/null 2>&1; then : >"$dir/epmd-was-running"; fi
    _rmq_make_certs "$dir/tls" || { _rmq_log "openssl failed"; return 1; }
    cat >"$dir/rabbitmq.conf" <<EOF || return 1
# Written by .ci/rabbitmq.sh: loopback only, plain AMQP and TLS.
listeners.tcp.default = 127.0.0.1:$RABBITMQ_CI_AMQP_PORT
listeners.ssl.default = 127.0.0.1:$RABBITMQ_CI_AMQPS_PORT
ssl_options.cacertfile = $dir/tls/ca.pem
ssl_options.certfile = $dir/tls/server.pem
ssl_options.keyfile = $dir/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
log.file.level = info
EOF
    echo '[].' >"$dir/enabled_plugins" && : >"$dir/rabbitmq-env.conf" || return 1
    _rmq_exports "$dir" >"$dir/exports.sh" || return 1
    # The node runs as user rabbitmq; the tests (any user) read the CA certificates.
    if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq "$dir" || return 1; fi
    chmod 755 "$dir" "$dir/tls" || return 1

    _rmq_env "$dir"
    _rmq_log "starting $RABBITMQ_CI_NODE (data and logs in $dir)"
    rabbitmq-server -detached || { _rmq_log "rabbitmq-server -detached failed"; return 1; }
    if ! _rmq_await 60; then
        _rmq_log "the node's log:"
        tail -n 40 "$dir"/log/*.log >&2 2>/dev/null
        return 1
    fi
    _rmq_log "ready: amqp on 127.0.0.1:$RABBITMQ_CI_AMQP_PORT, amqps on 127.0.0.1:$RABBITMQ_CI_AMQPS_PORT"
    eval "$(cat "$dir/exports.sh")"
}

# Restarts RabbitMQ (the application; the Erlang node stays up) and returns once it answers
# again. Checked on Debian's 3.10.8: like a full node restart, this closes every connection,
# keeps durable queues with their persistent messages, and drops transient queues and transient
# messages; it takes about 1.7 s, a shutdown and start about 10 s.
rabbitmq_restart() {
    _rmq_as_root_or_rabbitmq restart || return 1
    local dir
    if dir="$(_rmq_current_dir)"; then _rmq_env "$dir"; fi
    _rmq_ctl -q stop_app >/dev/null || { _rmq_log "stop_app failed"; return 1; }
    _rmq_ctl -q start_app >/dev/null || { _rmq_log "start_app failed"; return 1; }
    _rmq_await 60
}

# The end of the node's log, for a failed run.
rabbitmq_log_tail() {
    local dir
    dir="$(_rmq_current_dir)" || return 0
    _rmq_log "the end of the log of $RABBITMQ_CI_NODE:"
    tail -n "${1:-30}" "$dir"/log/*.log >&2 2>/dev/null || true
}

# Stops the node (and epmd, if it was not running before start) and removes the private folder.
rabbitmq_stop() {
    _rmq_as_root_or_rabbitmq stop || return 1
    local dir status=0
    dir="$(_rmq_current_dir)" || dir=
    [ -n "$dir" ] && _rmq_env "$dir"
    if _rmq_ctl -q ping >/dev/null 2>&1; then
        _rmq_log "stopping $RABBITMQ_CI_NODE"
        _rmq_ctl -q shutdown >/dev/null || status=$?
    fi
    # If it did not stop, end the process we started, by the id it wrote.
    local pid_file="${dir:-/nonexistent}/mnesia/$RABBITMQ_CI_NODE.pid" pid
    if [ -f "$pid_file" ] && pid="$(cat "$pid_file")" && kill -0 "$pid" 2>/dev/null; then
        _rmq_log "the node (pid $pid) is still running: terminating it"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null
        status=1
    fi
    if [ -n "$dir" ] && [ ! -e "$dir/epmd-was-running" ]; then
        epmd -kill >/dev/null 2>&1 || true
    fi
    if [ -n "$dir" ] && [ -z "${CARROT_KEEP_RABBITMQ_DIR:-}" ]; then
        rm -rf "$dir"
    fi
    rm -f "$RABBITMQ_CI_STATE"
    return "$status"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    case "${1:-}" in
    install) rabbitmq_install ;;
    start) rabbitmq_start && cat "$(_rmq_current_dir)/exports.sh" ;;
    restart) rabbitmq_restart ;;
    stop) rabbitmq_stop ;;
    env)
        dir="$(_rmq_current_dir)" || { _rmq_log "no node started by this script"; exit 1; }
        cat "$dir/exports.sh"
        ;;
    *)
        echo "usage: bash .ci/rabbitmq.sh install|start|restart|stop|env" >&2
        exit 2
        ;;
    esac
fi
