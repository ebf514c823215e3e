#!/usr/bin/env bash
# Throwaway RabbitMQ nodes for carrot's tests, bound to 127.0.0.1 only (AMQP listeners, Erlang
# distribution, and epmd when one of them starts it), each with its data and logs in a private
# temporary folder:
# - the main node, carrot-ci@localhost: plain AMQP on 5672 and TLS on 5671 with a CA made for
#   the occasion (Erlang distribution on 25672), and the management plugin (HTTP API) on 15672;
# - a cluster of 3 nodes for the fault-injection tests, carrot-ci-1@localhost ..
#   carrot-ci-3@localhost: plain AMQP on 5681, 5682, 5683 (Erlang distribution on 25681..25683),
#   one cluster, so that a quorum queue declared through any of them has a member on all three.
#
#   sudo bash .ci/rabbitmq.sh install        # apt-get install rabbitmq-server openssl when missing
#   sudo bash .ci/rabbitmq.sh start          # start the main node; prints its export lines
#   sudo bash .ci/rabbitmq.sh restart        # restart it (what CARROT_TEST_AMQP_RESTART runs)
#   sudo bash .ci/rabbitmq.sh ctl ARGS...    # rabbitmqctl ARGS on it (CARROT_TEST_AMQP_CTL)
#   sudo bash .ci/rabbitmq.sh cluster-start  # start the cluster; prints its export lines
#   sudo bash .ci/rabbitmq.sh cluster-node-stop PORT   # stop the RabbitMQ application of the
#                                            # cluster node of AMQP port PORT, return once PORT
#                                            # is closed (CARROT_TEST_CLUSTER_STOP)
#   sudo bash .ci/rabbitmq.sh cluster-node-start PORT  # start it again, return once it accepts
#                                            # AMQP and is back in the cluster (at most 60 s;
#                                            # CARROT_TEST_CLUSTER_START)
#   sudo bash .ci/rabbitmq.sh cluster-stop   # stop the cluster, remove its folder
#   sudo bash .ci/rabbitmq.sh stop           # stop the cluster and the main node, epmd if we
#                                            # started it and no node is left on it, remove
#                                            # the folders
#   bash .ci/rabbitmq.sh env                 # print the export lines of what runs again
#
# In the shell that runs the tests: eval "$(sudo bash .ci/rabbitmq.sh start)" (and
# eval "$(sudo bash .ci/rabbitmq.sh cluster-start)"), or later eval "$(bash .ci/rabbitmq.sh env)";
# then cargo test. The main node exports CARROT_TEST_AMQP_URL, CARROT_TEST_AMQPS_URL,
# CARROT_TEST_AMQPS_WRONG_CA, CARROT_TEST_AMQP_RESTART and CARROT_TEST_AMQP_CTL; the cluster
# CARROT_TEST_CLUSTER_URLS (its 3 AMQP URLs, separated by ';'), CARROT_TEST_CLUSTER_STOP and
# CARROT_TEST_CLUSTER_START (commands that take an AMQP port of the cluster as last argument).
#
# Also usable as a library (.ci/run does): `source .ci/rabbitmq.sh` defines rabbitmq_install,
# rabbitmq_start (which exports the main node's variables), rabbitmq_restart, rabbitmq_ctl,
# rabbitmq_log_tail, rabbitmq_stop, rabbitmq_cluster_start (which exports the cluster's
# variables), rabbitmq_cluster_start_background with rabbitmq_cluster_wait (the same, while the
# caller does something else), rabbitmq_cluster_node_stop, rabbitmq_cluster_node_start,
# rabbitmq_cluster_log_tail and rabbitmq_cluster_stop.
#
# The Debian package's scripts run as root (they switch to user rabbitmq) or as user rabbitmq.
# Measured on Debian 12 (RabbitMQ 3.10.8, Erlang/OTP 25, 2 cores):
# - `rabbitmq-server -detached` returns at once; the node is ready 5-8 s later (with TLS too).
#   `rabbitmqctl -q await_startup` fails at once (exit 69) while the node is still registering
#   with epmd: retry it, with a bound.
# - `rabbitmqctl shutdown` takes about 3.5 s and waits for the node to exit. epmd (port 4369)
#   outlives the nodes; any rabbitmqctl starts it when it is not running, listening on every
#   interface unless ERL_EPMD_ADDRESS says otherwise.
# - A private data folder works when user rabbitmq owns it; the TLS key and certificates must be
#   readable by user rabbitmq. guest:guest works from loopback.
# - The cluster: its 3 nodes boot at once, the first as a cluster of one and the others joining
#   it during their first boot (classic_config peer discovery): all 3 accept AMQP in one cluster
#   9.5-12.5 s after cluster-start begins; with the main node booting at the same time (as
#   .ci/run does), both are ready after 12-14 s, against 4-7 s for the main node alone. Booting
#   is CPU-bound (about 4.5 CPU-seconds a node); one scheduler a node (+S 1:1) or the classic
#   Erlang-terms config file instead of rabbitmq.conf did not make it faster. cluster-node-stop
#   takes 0.5-1 s, cluster-node-start 1.6-3.5 s, cluster-stop (3 nodes at once) 4.5-6 s.

RABBITMQ_CI_NODE="${RABBITMQ_CI_NODE:-carrot-ci@localhost}"
RABBITMQ_CI_AMQP_PORT="${RABBITMQ_CI_AMQP_PORT:-5672}"
RABBITMQ_CI_AMQPS_PORT="${RABBITMQ_CI_AMQPS_PORT:-5671}"
RABBITMQ_CI_DIST_PORT="${RABBITMQ_CI_DIST_PORT:-25672}"
# The main node's management plugin (HTTP API), compared with carrot serve's.
RABBITMQ_CI_MANAGEMENT_PORT="${RABBITMQ_CI_MANAGEMENT_PORT:-15672}"
# Where `start` records the private folder, so that `stop`, `restart`, `ctl` and `env` find it.
RABBITMQ_CI_STATE="${RABBITMQ_CI_STATE:-${TMPDIR:-/tmp}/carrot-ci-rabbitmq.current}"
# The cluster: node names, AMQP ports and Erlang distribution ports, one per node in the same
# order (the first node is the one the others join at their first boot).
RABBITMQ_CI_CLUSTER_NODES="${RABBITMQ_CI_CLUSTER_NODES:-carrot-ci-1@localhost carrot-ci-2@localhost carrot-ci-3@localhost}"
RABBITMQ_CI_CLUSTER_AMQP_PORTS="${RABBITMQ_CI_CLUSTER_AMQP_PORTS:-5681 5682 5683}"
RABBITMQ_CI_CLUSTER_DIST_PORTS="${RABBITMQ_CI_CLUSTER_DIST_PORTS:-25681 25682 25683}"
# Where `cluster-start` records the cluster's private folder (one subfolder per node).
RABBITMQ_CI_CLUSTER_STATE="${RABBITMQ_CI_CLUSTER_STATE:-${TMPDIR:-/tmp}/carrot-ci-rabbitmq-cluster.current}"
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

# The environment of node $2 (AMQP port $3, Erlang distribution port $4) and of rabbitmqctl:
# everything in the private folder $1, nothing from /etc/rabbitmq, every listener on 127.0.0.1.
_rmq_node_env() {
    local dir="$1"
    export RABBITMQ_NODENAME="$2"
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" # never written: none
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$3"
    export RABBITMQ_DIST_PORT="$4"
    # Erlang distribution (the node's and rabbitmqctl's) and epmd, when we start it: loopback.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=127.0.0.1
}

# The main node's environment, from its private folder $1.
_rmq_env() { _rmq_node_env "$1" "$RABBITMQ_CI_NODE" "$RABBITMQ_CI_AMQP_PORT" "$RABBITMQ_CI_DIST_PORT"; }

# rabbitmqctl against node $1, with the arguments that follow; its Erlang distribution and epmd
# (which any rabbitmqctl starts when it is not running) on loopback even without _rmq_node_env.
_rmq_ctl_node() {
    local node="$1"
    shift
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        rabbitmqctl -n "$node" "$@"
}

# The same, its output discarded by rabbitmqctl itself: redirecting the output of the function
# call would also redirect that of a trap which runs when rabbitmqctl returns (.ci/run stops the
# nodes in its EXIT trap, and should say so).
_rmq_ctl_node_quiet() {
    local node="$1"
    shift
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        rabbitmqctl -n "$node" "$@" >/dev/null 2>&1
}

# The same as _rmq_ctl_node, given up after $1 seconds.
_rmq_ctl_node_within() {
    local seconds="$1" node="$2"
    shift 2
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        timeout -k 5 "$seconds" rabbitmqctl -n "$node" "$@"
}

_rmq_ctl() { _rmq_ctl_node "$RABBITMQ_CI_NODE" "$@"; }

_rmq_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether an Erlang node named $1 is registered with epmd: a node that runs. Cheap (no Erlang VM
# starts), and starts no epmd when none runs.
_rmq_registered() { epmd -names 2>/dev/null | grep "^name ${1%@*} at port " >/dev/null; }

# Waits until node $2 answers (at most $1 seconds) and its listeners, on the ports that follow,
# accept connections.
_rmq_await_node() {
    local timeout="$1" node="$2" deadline port
    shift 2
    deadline=$((SECONDS + timeout))
    # Until the node registers, ask epmd (cheap) rather than rabbitmqctl (an Erlang VM each
    # time, which the booting nodes need the cores for). await_startup fails at once (exit 69)
    # while the node is still registering: retry it.
    until _rmq_registered "$node" &&
        _rmq_ctl_node_quiet "$node" -q await_startup --timeout $((deadline > SECONDS ? deadline - SECONDS : 1)); do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _rmq_log "node $node did not answer within $timeout s"
            return 1
        fi
        sleep 0.3
    done
    for port in "$@"; do
        until _rmq_port_open "$port"; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                _rmq_log "nothing accepts connections on 127.0.0.1:$port within $timeout s"
                return 1
            fi
            sleep 0.2
        done
    done
}

# Waits until the main node answers (at most $1 seconds) and its listeners accept connections.
_rmq_await() { _rmq_await_node "${1:-60}" "$RABBITMQ_CI_NODE" "$RABBITMQ_CI_AMQP_PORT" "$RABBITMQ_CI_AMQPS_PORT" "$RABBITMQ_CI_MANAGEMENT_PORT"; }

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

# The command that runs this script with the arguments given, for the tests: started with sudo,
# the tests run as the user and the command needs root again (-n: fail rather than wait for a
# password).
_rmq_self() {
    if [ -n "${SUDO_USER:-}" ]; then
        echo "sudo -n bash $RABBITMQ_CI_SCRIPT $*"
    else
        echo "bash $RABBITMQ_CI_SCRIPT $*"
    fi
}

# The main node's export lines for the tests, from its private folder $1.
_rmq_exports() {
    local dir="$1"
    cat <<EOF
export CARROT_TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:$RABBITMQ_CI_AMQP_PORT/%2F'
export CARROT_TEST_AMQPS_URL='amqps://guest:guest@localhost:$RABBITMQ_CI_AMQPS_PORT/%2F?cacertfile=$dir/tls/ca.pem'
export CARROT_TEST_AMQPS_WRONG_CA='$dir/tls/other-ca.pem'
export CARROT_TEST_AMQP_RESTART='$(_rmq_self restart)'
export CARROT_TEST_AMQP_CTL='$(_rmq_self ctl)'
export CARROT_TEST_AMQP_MANAGEMENT_URL='http://127.0.0.1:$RABBITMQ_CI_MANAGEMENT_PORT'
EOF
}

# The folder recorded in state file $1, if it still exists.
_rmq_state_dir() {
    local dir
    [ -f "$1" ] && dir="$(cat "$1")" && [ -n "$dir" ] && [ -d "$dir" ] && echo "$dir"
}

_rmq_current_dir() { _rmq_state_dir "$RABBITMQ_CI_STATE"; }

# Stops node $2, whose private folder is $1 (empty when unknown): shutdown, and if the node does
# not stop, the process it recorded in its pid file.
_rmq_stop_node() {
    local dir="$1" node="$2" status=0 pid
    if _rmq_registered "$node"; then
        _rmq_log "stopping $node"
        _rmq_ctl_node_within 60 "$node" -q shutdown >/dev/null || status=$?
    fi
    local pid_file="${dir:-/nonexistent}/mnesia/$node.pid"
    if [ -f "$pid_file" ] && pid="$(cat "$pid_file")" && kill -0 "$pid" 2>/dev/null &&
        [ "$(ps -o comm= -p "$pid")" = beam.smp ]; then
        _rmq_log "$node (pid $pid) is still running: terminating it"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null
        status=1
    fi
    return "$status"
}

# Records in the new folder $1 that epmd was running before its nodes start, unless the folder
# $2 of the other nodes (the cluster's, or the main node's) has no such record: they started it,
# or may be starting it right now (.ci/run starts both at once), so it is ours all the same.
# Call it before the state file names folder $1, so that the other side sees a final decision.
_rmq_note_epmd() {
    epmd -names >/dev/null 2>&1 || return 0
    [ -n "$2" ] && [ ! -e "$2/epmd-was-running" ] && return 0
    : >"$1/epmd-was-running"
}

# Stops epmd if it was not running before the nodes of folder $1 started, unless a node is still
# registered with it: the main node and the cluster share it, and so may other Erlang nodes.
_rmq_epmd_stop() {
    local dir="$1" names
    [ -n "$dir" ] && [ ! -e "$dir/epmd-was-running" ] || return 0
    names="$(epmd -names 2>/dev/null | sed -n 's/^name \(.*\) at port .*/\1/p' | tr '\n' ' ')"
    if [ -n "$names" ]; then
        _rmq_log "epmd left running: nodes still registered with it: $names"
        return 0
    fi
    epmd -kill >/dev/null 2>&1 || true
}

# Starts the main node and exports CARROT_TEST_AMQP_URL, CARROT_TEST_AMQPS_URL,
# CARROT_TEST_AMQPS_WRONG_CA, CARROT_TEST_AMQP_RESTART and CARROT_TEST_AMQP_CTL.
rabbitmq_start() {
    _rmq_as_root_or_rabbitmq start || return 1
    rabbitmq_install || return 1
    local stale
    if stale="$(_rmq_current_dir)"; then
        if _rmq_registered "$RABBITMQ_CI_NODE"; then
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
    if _rmq_registered "$RABBITMQ_CI_NODE"; then
        _rmq_log "a node named $RABBITMQ_CI_NODE already runs (epmd -names); stop it, or set RABBITMQ_CI_NODE"
        return 1
    fi

    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/carrot-ci-rabbitmq.XXXXXX")" || return 1
    # epmd outlives the node: stop it at the end only if it was not running before us.
    _rmq_note_epmd "$dir" "$(_rmq_cluster_dir)"
    echo "$dir" >"$RABBITMQ_CI_STATE" || return 1
    mkdir -p "$dir/mnesia" "$dir/log" && chmod 750 "$dir/mnesia" "$dir/log" || return 1
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
management.tcp.ip = 127.0.0.1
management.tcp.port = $RABBITMQ_CI_MANAGEMENT_PORT
EOF
    echo '[rabbitmq_management].' >"$dir/enabled_plugins" && : >"$dir/rabbitmq-env.conf" || return 1
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

# Runs rabbitmqctl with the arguments given against the main node (what CARROT_TEST_AMQP_CTL
# runs). Checked on Debian's 3.10.8: `set_vm_memory_high_watermark 0` raises the memory alarm at
# once (connections that publish get blocked; `rabbitmqctl status` lists the alarm),
# `set_vm_memory_high_watermark 0.4` (the default) clears it and unblocks them.
rabbitmq_ctl() {
    _rmq_as_root_or_rabbitmq ctl || return 1
    local dir
    if dir="$(_rmq_current_dir)"; then _rmq_env "$dir"; fi
    _rmq_ctl "$@"
}

# The end of the main node's log, for a failed run.
rabbitmq_log_tail() {
    local dir
    dir="$(_rmq_current_dir)" || return 0
    _rmq_log "the end of the log of $RABBITMQ_CI_NODE:"
    tail -n "${1:-30}" "$dir"/log/*.log >&2 2>/dev/null || true
}

# Stops the main node (and epmd, if it was not running before start and no other node is left
# on it) and removes the private folder.
rabbitmq_stop() {
    _rmq_as_root_or_rabbitmq stop || return 1
    local dir status=0
    dir="$(_rmq_current_dir)" || dir=
    [ -n "$dir" ] && _rmq_env "$dir"
    _rmq_stop_node "$dir" "$RABBITMQ_CI_NODE" || status=$?
    _rmq_epmd_stop "$dir"
    if [ -n "$dir" ] && [ -z "${CARROT_KEEP_RABBITMQ_DIR:-}" ]; then
        rm -rf "$dir"
    fi
    rm -f "$RABBITMQ_CI_STATE"
    return "$status"
}

# The cluster's lists, as the arrays _rmq_nodes, _rmq_ports and _rmq_dists.
_rmq_cluster_lists() {
    read -ra _rmq_nodes <<<"$RABBITMQ_CI_CLUSTER_NODES"
    read -ra _rmq_ports <<<"$RABBITMQ_CI_CLUSTER_AMQP_PORTS"
    read -ra _rmq_dists <<<"$RABBITMQ_CI_CLUSTER_DIST_PORTS"
    if [ "${#_rmq_nodes[@]}" -lt 2 ] || [ "${#_rmq_ports[@]}" != "${#_rmq_nodes[@]}" ] ||
        [ "${#_rmq_dists[@]}" != "${#_rmq_nodes[@]}" ]; then
        _rmq_log "RABBITMQ_CI_CLUSTER_NODES, RABBITMQ_CI_CLUSTER_AMQP_PORTS and RABBITMQ_CI_CLUSTER_DIST_PORTS must list as many names and ports (at least 2)"
        return 1
    fi
}

_rmq_cluster_dir() { _rmq_state_dir "$RABBITMQ_CI_CLUSTER_STATE"; }

# The environment of the cluster's node number $2 (from 0), whose folder is in $1.
_rmq_cluster_env() {
    _rmq_node_env "$1/node$(($2 + 1))" "${_rmq_nodes[$2]}" "${_rmq_ports[$2]}" "${_rmq_dists[$2]}"
}

# The index in the cluster of the node with AMQP port $1.
_rmq_cluster_index() {
    local i
    for i in "${!_rmq_ports[@]}"; do
        if [ "${_rmq_ports[i]}" = "$1" ]; then
            echo "$i"
            return 0
        fi
    done
    _rmq_log "no node of the cluster has AMQP port '$1' (RABBITMQ_CI_CLUSTER_AMQP_PORTS: $RABBITMQ_CI_CLUSTER_AMQP_PORTS)"
    return 1
}

# The nodes that node $1 sees running in its cluster (itself included), one per line; nothing
# when it does not answer or its RabbitMQ application is stopped.
_rmq_running_nodes() {
    _rmq_ctl_node_within 30 "$1" -q cluster_status --formatter json 2>/dev/null |
        sed -n 's/.*"running_nodes":\[\([^]]*\)\].*/\1/p' | tr -d '"' | tr ',' '\n'
}

# Whether the cluster's node number $1 is in the cluster: it sees running itself and every node
# of the cluster whose AMQP port accepts connections (with $2 = all: every node of the cluster).
_rmq_cluster_joined() {
    local running j
    running="$(_rmq_running_nodes "${_rmq_nodes[$1]}")" || return 1
    for j in "${!_rmq_nodes[@]}"; do
        if [ "$j" = "$1" ] || [ "${2:-}" = all ] || _rmq_port_open "${_rmq_ports[j]}"; then
            grep -qxF "${_rmq_nodes[j]}" <<<"$running" || return 1
        fi
    done
}

# The cluster's export lines for the tests.
_rmq_cluster_exports() {
    local urls="" port
    for port in "${_rmq_ports[@]}"; do
        urls="${urls:+$urls;}amqp://guest:guest@127.0.0.1:$port/%2F"
    done
    cat <<EOF
export CARROT_TEST_CLUSTER_URLS='$urls'
export CARROT_TEST_CLUSTER_STOP='$(_rmq_self cluster-node-stop)'
export CARROT_TEST_CLUSTER_START='$(_rmq_self cluster-node-start)'
EOF
}

# Writes the folder of the cluster's node number $2 (from 0) in the cluster's folder $1.
_rmq_cluster_node_folder() {
    local dir="$1/node$(($2 + 1))" i="$2"
    mkdir -p "$dir/mnesia" "$dir/log" && chmod 750 "$dir/mnesia" "$dir/log" || return 1
    {
        echo "# Written by .ci/rabbitmq.sh: node $((i + 1)) of the cluster, loopback only, plain AMQP."
        echo "listeners.tcp.default = 127.0.0.1:${_rmq_ports[i]}"
        echo "log.file.level = info"
        if [ "$i" -gt 0 ]; then
            # At its first boot, join the first node; it boots at the same time, so look for it
            # every 0.25 s for up to 90 s (the defaults, 10 times every 0.5 s, are too short:
            # the node would then start as a cluster of its own).
            echo "cluster_formation.peer_discovery_backend = classic_config"
            echo "cluster_formation.classic_config.nodes.1 = ${_rmq_nodes[0]}"
            echo "cluster_formation.classic_config.nodes.2 = ${_rmq_nodes[i]}"
            echo "cluster_formation.discovery_retry_limit = 360"
            echo "cluster_formation.discovery_retry_interval = 250"
        fi
    } >"$dir/rabbitmq.conf" || return 1
    echo '[].' >"$dir/enabled_plugins" && : >"$dir/rabbitmq-env.conf"
}

# Starts the cluster and exports CARROT_TEST_CLUSTER_URLS, CARROT_TEST_CLUSTER_STOP and
# CARROT_TEST_CLUSTER_START. All nodes boot at once: the first as a cluster of one, the others
# join it during their first boot (no stop_app / reset / join_cluster / start_app round).
rabbitmq_cluster_start() {
    _rmq_as_root_or_rabbitmq cluster-start || return 1
    _rmq_cluster_start_once && return 0
    # RabbitMQ's first boot of nodes that form a cluster at the same moment can fail (seen: a
    # node exits with incompatible_feature_flags, "All replicas on diskfull nodes are not active
    # yet", once in a few starts on 2 cores): start again from scratch (the stale cluster is
    # stopped first), with the first node up before the others join it.
    _rmq_log "the cluster did not boot; starting it again, the first node before the others"
    _rmq_cluster_start_once staggered
}

# One attempt of rabbitmq_cluster_start; with $1 = staggered the first node is started and
# accepts AMQP (within 60 s) before the others are started.
_rmq_cluster_start_once() {
    local staggered="${1:-}"
    rabbitmq_install || return 1
    _rmq_cluster_lists || return 1
    local stale i running=
    if stale="$(_rmq_cluster_dir)"; then
        # Left by an earlier run that did not get to stop it (killed, say); its nodes may still
        # run, in whatever state that run's tests left them: a cluster serves one run only.
        for i in "${!_rmq_nodes[@]}"; do
            _rmq_registered "${_rmq_nodes[i]}" && running=1
        done
        if [ -n "$running" ]; then
            _rmq_log "the cluster started earlier by this script ($stale) still runs: stopping it"
        else
            _rmq_log "removing $stale, left by a cluster that is gone"
        fi
        _rmq_cluster_stop_folder "$stale"
    fi
    for i in "${!_rmq_nodes[@]}"; do
        if _rmq_registered "${_rmq_nodes[i]}"; then
            _rmq_log "a node named ${_rmq_nodes[i]}, not started by this script, runs (epmd -names); stop it, or set RABBITMQ_CI_CLUSTER_NODES"
            return 1
        fi
    done
    rm -f "$RABBITMQ_CI_CLUSTER_STATE"
    for i in "${!_rmq_nodes[@]}"; do
        if _rmq_port_open "${_rmq_ports[i]}"; then
            _rmq_log "port ${_rmq_ports[i]} on 127.0.0.1 is taken (another RabbitMQ?); stop it, or set RABBITMQ_CI_CLUSTER_AMQP_PORTS (now '$RABBITMQ_CI_CLUSTER_AMQP_PORTS')"
            return 1
        fi
        if _rmq_port_open "${_rmq_dists[i]}"; then
            _rmq_log "port ${_rmq_dists[i]} on 127.0.0.1 is taken; stop what listens there, or set RABBITMQ_CI_CLUSTER_DIST_PORTS (now '$RABBITMQ_CI_CLUSTER_DIST_PORTS')"
            return 1
        fi
    done

    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/carrot-ci-rabbitmq-cluster.XXXXXX")" || return 1
    _rmq_note_epmd "$dir" "$(_rmq_current_dir)"
    echo "$dir" >"$RABBITMQ_CI_CLUSTER_STATE" || return 1
    for i in "${!_rmq_nodes[@]}"; do
        _rmq_cluster_node_folder "$dir" "$i" || return 1
    done
    _rmq_cluster_exports >"$dir/exports.sh" || return 1
    if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq "$dir" || return 1; fi
    chmod 755 "$dir" || return 1

    _rmq_log "starting the cluster ${_rmq_nodes[*]} (data and logs in $dir)"
    local pids=() failed=() first_deadline
    for i in "${!_rmq_nodes[@]}"; do
        (_rmq_cluster_env "$dir" "$i" && rabbitmq-server -detached) &
        pids+=("$!")
        if [ "$i" = 0 ] && [ "$staggered" = staggered ]; then
            first_deadline=$((SECONDS + 60))
            until _rmq_port_open "${_rmq_ports[0]}" || [ "$SECONDS" -ge "$first_deadline" ]; do
                sleep 0.2
            done
        fi
    done
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || { _rmq_log "rabbitmq-server -detached failed for ${_rmq_nodes[i]}"; failed+=("$i"); }
    done
    # Ready when every AMQP port accepts connections (cheap to poll: a rabbitmqctl is an Erlang
    # VM, which the booting nodes need the cores for) and the first node sees all the nodes
    # running in its cluster. A node whose process is gone, or that neither wrote its pid file
    # nor registered with epmd 30 s on, has not started: no need to wait for the deadline.
    local deadline=$((SECONDS + 90)) started=$SECONDS waiting pid_file pid
    while [ "${#failed[@]}" = 0 ]; do
        waiting=()
        for i in "${!_rmq_nodes[@]}"; do
            _rmq_port_open "${_rmq_ports[i]}" && continue
            waiting+=("$i")
            pid_file="$dir/node$((i + 1))/mnesia/${_rmq_nodes[i]}.pid"
            if [ -s "$pid_file" ] && pid="$(cat "$pid_file")" && ! kill -0 "$pid" 2>/dev/null; then
                _rmq_log "${_rmq_nodes[i]} (pid $pid) exited while booting"
                failed+=("$i")
            elif [ ! -s "$pid_file" ] && [ $((SECONDS - started)) -ge 30 ] &&
                ! _rmq_registered "${_rmq_nodes[i]}"; then
                _rmq_log "${_rmq_nodes[i]} did not start within 30 s (no pid file, not registered with epmd)"
                failed+=("$i")
            elif [ "$SECONDS" -ge "$deadline" ]; then
                _rmq_log "nothing accepts connections on 127.0.0.1:${_rmq_ports[i]} within 90 s"
                failed+=("$i")
            fi
        done
        [ "${#waiting[@]}" = 0 ] && break
        sleep 0.2
    done
    if [ "${#failed[@]}" = 0 ]; then
        until _rmq_cluster_joined 0 all; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                _rmq_log "the nodes did not form one cluster: ${_rmq_nodes[0]} sees running only $(_rmq_running_nodes "${_rmq_nodes[0]}" | tr '\n' ' ')"
                failed=("${!_rmq_nodes[@]}")
                break
            fi
            sleep 0.5
        done
    fi
    if [ "${#failed[@]}" != 0 ]; then
        for i in "${failed[@]}"; do
            _rmq_log "the log of ${_rmq_nodes[i]}:"
            tail -n 40 "$dir/node$((i + 1))"/log/*.log >&2 2>/dev/null
        done
        _rmq_log "stop what did start with: bash .ci/rabbitmq.sh cluster-stop"
        return 1
    fi
    _rmq_log "cluster ready: amqp on 127.0.0.1:${RABBITMQ_CI_CLUSTER_AMQP_PORTS// /, 127.0.0.1:}"
    eval "$(cat "$dir/exports.sh")"
}

# Runs rabbitmq_cluster_start in the background, so that the cluster boots while the caller
# does something else (rabbitmq_start, say); rabbitmq_cluster_wait collects it.
rabbitmq_cluster_start_background() {
    { rabbitmq_cluster_start || exit; } &
    _rmq_cluster_starter=$!
}

# Waits for rabbitmq_cluster_start_background and exports the cluster's variables.
rabbitmq_cluster_wait() {
    local status=0 dir
    if [ -z "${_rmq_cluster_starter:-}" ]; then
        _rmq_log "rabbitmq_cluster_wait: no rabbitmq_cluster_start_background to wait for"
        return 1
    fi
    wait "$_rmq_cluster_starter" || status=$?
    _rmq_cluster_starter=
    [ "$status" = 0 ] || return "$status"
    dir="$(_rmq_cluster_dir)" || return 1
    eval "$(cat "$dir/exports.sh")"
}

# Stops the RabbitMQ application of the cluster's node with AMQP port $1 (its Erlang node stays
# up) and returns once that port is closed (what CARROT_TEST_CLUSTER_STOP runs). The other
# nodes carry on: quorum queues elect a new leader if needed.
rabbitmq_cluster_node_stop() {
    _rmq_as_root_or_rabbitmq cluster-node-stop || return 1
    _rmq_cluster_lists || return 1
    local i dir deadline=$((SECONDS + 60))
    i="$(_rmq_cluster_index "${1:-}")" || return 1
    dir="$(_rmq_cluster_dir)" || { _rmq_log "no cluster started by this script"; return 1; }
    _rmq_cluster_env "$dir" "$i"
    if ! _rmq_ctl_node_within 60 "${_rmq_nodes[i]}" -q stop_app >/dev/null; then
        _rmq_log "stop_app on ${_rmq_nodes[i]} failed"
        return 1
    fi
    while _rmq_port_open "${_rmq_ports[i]}"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _rmq_log "127.0.0.1:${_rmq_ports[i]} still accepts connections after stop_app on ${_rmq_nodes[i]}"
            return 1
        fi
        sleep 0.1
    done
}

# Starts the RabbitMQ application of the cluster's node with AMQP port $1 again and returns
# once it accepts AMQP connections and is back in the cluster (it sees running itself and every
# node of the cluster whose port accepts connections), within 60 s (what
# CARROT_TEST_CLUSTER_START runs). Once all the nodes are stopped, a node that starts waits for
# the one that stopped last (it has the newest cluster state; checked on 3.10.8): start that one
# first, or at the same time.
rabbitmq_cluster_node_start() {
    _rmq_as_root_or_rabbitmq cluster-node-start || return 1
    _rmq_cluster_lists || return 1
    local i dir deadline=$((SECONDS + 60))
    i="$(_rmq_cluster_index "${1:-}")" || return 1
    dir="$(_rmq_cluster_dir)" || { _rmq_log "no cluster started by this script"; return 1; }
    _rmq_cluster_env "$dir" "$i"
    if ! _rmq_ctl_node_within 60 "${_rmq_nodes[i]}" -q start_app >/dev/null; then
        _rmq_log "start_app on ${_rmq_nodes[i]} failed or took more than 60 s"
        return 1
    fi
    # start_app returns once the application runs; its listener follows.
    until _rmq_port_open "${_rmq_ports[i]}"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _rmq_log "nothing accepts connections on 127.0.0.1:${_rmq_ports[i]} within 60 s"
            return 1
        fi
        sleep 0.1
    done
    until _rmq_cluster_joined "$i"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            _rmq_log "${_rmq_nodes[i]} is not back in the cluster within 60 s: it sees running only $(_rmq_running_nodes "${_rmq_nodes[i]}" | tr '\n' ' ')"
            return 1
        fi
        sleep 0.3
    done
}

# The end of the logs of the cluster's nodes, for a failed run.
rabbitmq_cluster_log_tail() {
    local dir i
    dir="$(_rmq_cluster_dir)" || return 0
    _rmq_cluster_lists || return 0
    for i in "${!_rmq_nodes[@]}"; do
        _rmq_log "the end of the log of ${_rmq_nodes[i]}:"
        tail -n "${1:-30}" "$dir/node$((i + 1))"/log/*.log >&2 2>/dev/null || true
    done
}

# Stops the cluster's nodes, all at once, whose folder is $1 (empty when unknown: stop the nodes
# by name), then epmd if it was not running before and no other node is left on it; removes
# the folder and the state file.
_rmq_cluster_stop_folder() {
    local dir="$1" status=0 i pids=()
    for i in "${!_rmq_nodes[@]}"; do
        (
            node_dir=
            if [ -n "$dir" ]; then
                _rmq_cluster_env "$dir" "$i"
                node_dir="$dir/node$((i + 1))"
            fi
            _rmq_stop_node "$node_dir" "${_rmq_nodes[i]}"
        ) &
        pids+=("$!")
    done
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || status=1
    done
    _rmq_epmd_stop "$dir"
    if [ -n "$dir" ] && [ -z "${CARROT_KEEP_RABBITMQ_DIR:-}" ]; then
        rm -rf "$dir"
    fi
    rm -f "$RABBITMQ_CI_CLUSTER_STATE"
    return "$status"
}

# Stops the cluster's nodes (and epmd, if it was not running before cluster-start and no other
# node is left on it) and removes the cluster's folder. Waits first for a
# rabbitmq_cluster_start_background of this shell that is still going.
rabbitmq_cluster_stop() {
    _rmq_as_root_or_rabbitmq cluster-stop || return 1
    _rmq_cluster_lists || return 1
    if [ -n "${_rmq_cluster_starter:-}" ]; then
        wait "$_rmq_cluster_starter" 2>/dev/null
        _rmq_cluster_starter=
    fi
    local dir
    dir="$(_rmq_cluster_dir)" || dir=
    _rmq_cluster_stop_folder "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    case "${1:-}" in
    install) rabbitmq_install ;;
    start) rabbitmq_start && cat "$(_rmq_current_dir)/exports.sh" ;;
    restart) rabbitmq_restart ;;
    ctl)
        shift
        rabbitmq_ctl "$@"
        ;;
    cluster-start) rabbitmq_cluster_start && cat "$(_rmq_cluster_dir)/exports.sh" ;;
    cluster-node-stop) rabbitmq_cluster_node_stop "${2:-}" ;;
    cluster-node-start) rabbitmq_cluster_node_start "${2:-}" ;;
    cluster-stop) rabbitmq_cluster_stop ;;
    stop)
        status=0
        rabbitmq_cluster_stop || status=1
        rabbitmq_stop || status=1
        exit "$status"
        ;;
    env)
        found=
        for dir in "$(_rmq_current_dir)" "$(_rmq_cluster_dir)"; do
            if [ -n "$dir" ] && [ -f "$dir/exports.sh" ]; then
                cat "$dir/exports.sh"
                found=1
            fi
        done
        [ -n "$found" ] || { _rmq_log "no node started by this script"; exit 1; }
        ;;
    *)
        echo "usage: bash .ci/rabbitmq.sh install|start|restart|ctl ARGS...|cluster-start|cluster-node-stop PORT|cluster-node-start PORT|cluster-stop|stop|env" >&2
        exit 2
        ;;
    esac
fi
