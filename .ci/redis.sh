#!/usr/bin/env bash
# A throwaway Redis for the tests, bound to 127.0.0.1 only, in a private folder (no
# /etc/redis, nothing of a system Redis), with an append-only file so that a restart keeps
# what was written (the restart scenarios of the conformance suite).
#
#   bash .ci/redis.sh install   # Debian's redis-server and redis-sentinel, if missing (root)
#   eval "$(bash .ci/redis.sh start)"   # starts it, prints the CARROT_TEST_REDIS_* exports
#   bash .ci/redis.sh restart   # what CARROT_TEST_REDIS_RESTART runs
#   bash .ci/redis.sh stop
#
# Sourced by .ci/run, which uses the functions. The Sentinel tests start their own master,
# replica and sentinels (tests/redis_sentinel.rs) from the same binaries.

REDIS_CI_PORT="${REDIS_CI_PORT:-6389}"
# One state file per port, so that a second server (another REDIS_CI_PORT) never takes over
# the first one's restart and stop.
REDIS_CI_STATE="${TMPDIR:-/tmp}/carrot-ci-redis-$REDIS_CI_PORT.state"

_redis_log() { echo "redis.sh: $*" >&2; }

redis_install() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        _redis_log "missing ${missing[*]}: install them as root (sudo bash .ci/redis.sh install)"
        return 1
    fi
    _redis_log "installing ${missing[*]}"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

_redis_dir() { [ -f "$REDIS_CI_STATE" ] && cat "$REDIS_CI_STATE"; }

# Starts the server of folder $1 and waits until it answers (at most 10 s).
_redis_run() {
    local dir="$1"
    redis-server "$dir/redis.conf" || return 1
    local i
    for i in $(seq 1 100); do
        if redis-cli -h 127.0.0.1 -p "$REDIS_CI_PORT" ping 2>/dev/null | grep -q PONG; then
            return 0
        fi
        sleep 0.1
    done
    _redis_log "Redis did not answer on 127.0.0.1:$REDIS_CI_PORT within 10 s; its log:"
    tail -20 "$dir/redis.log" >&2
    return 1
}

redis_start() {
    redis_install || return 1
    if redis-cli -h 127.0.0.1 -p "$REDIS_CI_PORT" ping >/dev/null 2>&1; then
        _redis_log "port $REDIS_CI_PORT on 127.0.0.1 is taken (another Redis?); stop it, or set REDIS_CI_PORT"
        return 1
    fi
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/carrot-ci-redis.XXXXXX")" || return 1
    echo "$dir" >"$REDIS_CI_STATE"
    cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_CI_PORT
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
save ""
appendonly yes
appendfsync everysec
EOF
    _redis_run "$dir" || return 1
    cat >"$dir/exports.sh" <<EOF
export CARROT_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_CI_PORT/0
export CARROT_TEST_REDIS_RESTART="REDIS_CI_PORT=$REDIS_CI_PORT bash $(pwd)/.ci/redis.sh restart"
EOF
    _redis_log "Redis on 127.0.0.1:$REDIS_CI_PORT ($dir)"
}

# Shuts down (the append-only file is written) and starts again with the same folder.
redis_restart() {
    local dir
    dir="$(_redis_dir)" || { _redis_log "no Redis started by this script"; return 1; }
    redis-cli -h 127.0.0.1 -p "$REDIS_CI_PORT" shutdown >/dev/null 2>&1
    local i
    for i in $(seq 1 100); do
        redis-cli -h 127.0.0.1 -p "$REDIS_CI_PORT" ping >/dev/null 2>&1 || break
        sleep 0.1
    done
    _redis_run "$dir"
}

redis_stop() {
    local dir
    dir="$(_redis_dir)" || return 0
    redis-cli -h 127.0.0.1 -p "$REDIS_CI_PORT" shutdown nosave >/dev/null 2>&1
    rm -rf "$dir" "$REDIS_CI_STATE"
}

redis_log_tail() {
    local dir
    dir="$(_redis_dir)" || return 0
    echo "== the end of Redis's log ($dir/redis.log)" >&2
    tail -n "${1:-30}" "$dir/redis.log" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    case "${1:-}" in
    install) redis_install ;;
    start) redis_start && cat "$(_redis_dir)/exports.sh" ;;
    restart) redis_restart ;;
    stop) redis_stop ;;
    env) cat "$(_redis_dir)/exports.sh" ;;
    *)
        echo "usage: bash .ci/redis.sh install|start|restart|stop|env" >&2
        exit 2
        ;;
    esac
fi
