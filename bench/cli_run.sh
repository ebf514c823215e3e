#!/usr/bin/env bash
# Runs `carrot bench` and its peers (bench/peers/: raw lapin, pika, kombu) on the same workloads
# in one run, on the same RabbitMQ, alternating the order of the implementations from round to
# round, plus `carrot bench --url memory://` against kombu's memory:// transport; then
# bench/cli_report.py writes the "carrot bench against its peers" section of BENCHMARKS.md
# (between its markers; the other sections stay as they are). About 5 minutes on 2 cores with
# the defaults, once built (the build itself, when src/ changed, about 2 more).
#
#   bench/cli_run.sh
#   CARROT_BENCH_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F CLI_N=30000 CLI_M=5000 \
#       CLI_W=100000 CLI_WP=5000 CLI_MEMORY_N=50000 CLI_ROUNDS=3 bench/cli_run.sh
#   CLI_ONLY=confirm_window bench/cli_run.sh   # only the workloads whose name matches (grep -E);
#                                              # the section then goes to $BENCH_OUT/BENCHMARKS.md
#
# Every implementation runs with the same options (`--messages --size --producers --consumers
# --persistent --confirm --confirm-window --prefetch`, see src/bin/carrot/bench.rs) and prints
# the same JSON, with one exception: the Python peers have no `--confirm-window` (a pika
# BlockingConnection or kombu Producer in confirm mode waits for each confirm), so in the
# `confirm_window*` workloads they run confirm-each, on CLI_WP messages instead of CLI_W (a
# confirm-each run of CLI_W would take minutes; the rates are per second either way):
#   carrot  target/release/carrot bench              (the carrot CLI)
#   lapin   target/release/examples/lapin_peer       (bench/peers/lapin_peer.rs, raw lapin)
#   pika    python3 bench/peers/pika_cli.py          (BlockingConnection, a thread each)
#   kombu   python3 bench/peers/kombu_cli.py         (Producer/Consumer, a thread each; also memory://)
# Each run is a fresh process with a fresh queue of its own (carrot-bench-*), deleted at the end;
# the shell's `time` gives its CPU (user + system: the client's, not RabbitMQ's).
#
# Needs: cargo, python3 with pika and kombu (`pip install pika kombu`), a RabbitMQ at
# CARROT_BENCH_AMQP_URL (default below). Set BENCH_OUT=DIR to keep the raw JSON there.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
URL=${CARROT_BENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2F}
N=${CLI_N:-30000}
M=${CLI_M:-5000}
W=${CLI_W:-100000}
WP=${CLI_WP:-5000}
MEMORY_N=${CLI_MEMORY_N:-50000}
ROUNDS=${CLI_ROUNDS:-3}
ONLY=${CLI_ONLY:-}

python3 -c 'import pika, kombu' 2>/dev/null || { echo "pika or kombu is missing: pip install pika kombu" >&2; exit 1; }

load() { cut -d' ' -f1-3 /proc/loadavg; }

# Build first, so that compiling does not overlap the measurements.
BUILD="cargo build --release --bin carrot --example lapin_peer"
echo "== $BUILD"
$BUILD
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# The command of each implementation; the URL is appended by run().
cmd_of() {
    case $1 in
        carrot) echo "$TARGET_DIR/release/carrot bench" ;;
        lapin) echo "$TARGET_DIR/release/examples/lapin_peer" ;;
        pika) echo "python3 bench/peers/pika_cli.py" ;;
        kombu) echo "python3 bench/peers/kombu_cli.py" ;;
    esac
}
# The same, as shown in BENCHMARKS.md (relative paths, the URL as a variable).
shown_of() {
    case $1 in
        carrot) echo "target/release/carrot bench" ;;
        lapin) echo "target/release/examples/lapin_peer" ;;
        *) cmd_of "$1" ;;
    esac
}

# The options of an implementation in a workload: the Python peers have no confirm window, so
# `--confirm-window W` is left out for them (they run confirm-each) and, in such a workload,
# they send CLI_WP messages.
opts_of() {
    local imp=$1 opts=$2
    case $imp in
        pika | kombu)
            if [[ $opts =~ --confirm-window\ [0-9]+ ]]; then
                opts=$(sed -E -e 's/ --confirm-window [0-9]+//' -e "s/--messages [0-9]+/--messages $WP/" <<< "$opts")
            fi
            ;;
    esac
    echo "$opts"
}

# name | options | broker | implementations (the first is the one the ratios are of)
ALL_WORKLOADS=(
    "transient_1p1c|--messages $N --size 100 --producers 1 --consumers 1 --prefetch 1000|amqp|carrot lapin pika kombu"
    "transient_2p2c|--messages $N --size 100 --producers 2 --consumers 2 --prefetch 1000|amqp|carrot lapin pika kombu"
    "confirm_1p1c|--messages $M --size 100 --producers 1 --consumers 1 --prefetch 1000 --persistent --confirm|amqp|carrot lapin pika kombu"
    "confirm_4p2c|--messages $M --size 100 --producers 4 --consumers 2 --prefetch 1000 --persistent --confirm|amqp|carrot lapin pika kombu"
    # Pipelined confirms: one publisher keeping W confirms in flight, against raw lapin with the
    # same window and the Python clients' confirm-each (see opts_of); two more window sizes
    # against lapin alone.
    "confirm_window256_1p1c|--messages $W --size 100 --producers 1 --consumers 1 --prefetch 1000 --persistent --confirm --confirm-window 256|amqp|carrot lapin pika kombu"
    "confirm_window64_1p1c|--messages $W --size 100 --producers 1 --consumers 1 --prefetch 1000 --persistent --confirm --confirm-window 64|amqp|carrot lapin"
    "confirm_window1024_1p1c|--messages $W --size 100 --producers 1 --consumers 1 --prefetch 1000 --persistent --confirm --confirm-window 1024|amqp|carrot lapin"
    "memory_1p1c|--messages $MEMORY_N --size 100 --producers 1 --consumers 1 --prefetch 1000|memory|carrot kombu"
    "memory_2p2c|--messages $MEMORY_N --size 100 --producers 2 --consumers 2 --prefetch 1000|memory|carrot kombu"
)
WORKLOADS=()
for w in "${ALL_WORKLOADS[@]}"; do
    if [ -z "$ONLY" ] || grep -Eq -- "$ONLY" <<< "${w%%|*}"; then
        WORKLOADS+=("$w")
    fi
done
[ ${#WORKLOADS[@]} -gt 0 ] || { echo "CLI_ONLY=$ONLY matches no workload" >&2; exit 1; }
# A partial run does not replace the section of the repository's BENCHMARKS.md.
if [ -n "$ONLY" ]; then REPORT=$OUT/BENCHMARKS.md; else REPORT=$ROOT/BENCHMARKS.md; fi

MANIFEST="$OUT/runs.tsv"
COMMANDS="$OUT/commands.tsv"
: > "$MANIFEST"
: > "$COMMANDS"
for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r name opts broker impls <<< "$w"
    for imp in $impls; do
        if [ "$broker" = amqp ]; then u='"$CARROT_BENCH_AMQP_URL"'; else u='memory://'; fi
        printf '%s\t%s\t%s\n' "$name" "$imp" "$(shown_of "$imp") --url $u $(opts_of "$imp" "$opts") --json" >> "$COMMANDS"
    done
done

echo "== logs and JSON in $OUT"
TIMEFORMAT='%U %S' # `time`: user and system CPU seconds of the run
LOAD_START=$(load)
START=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name opts broker impls <<< "$w"
        read -r -a order <<< "$impls"
        # Each round starts with the next implementation, so that none always runs first.
        shift_by=$(( (round - 1) % ${#order[@]} ))
        order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
        if [ "$broker" = amqp ]; then url=$URL; else url=memory://; fi
        for imp in "${order[@]}"; do
            run="$OUT/$name.$imp.r$round"
            # shellcheck disable=SC2086,SC2046
            { time $(cmd_of "$imp") --url "$url" $(opts_of "$imp" "$opts") --json > "$run.json" 2> "$run.log"; } 2> "$run.cpu" || {
                echo "== $name $imp round $round failed:" >&2
                cat "$run.log" >&2
                exit 1
            }
            cpu=$(awk '{ print $1 + $2 }' "$run.cpu")
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$imp" "$round" "$run.json" "$(load)" "$cpu" >> "$MANIFEST"
            python3 - "$run.json" "$name" "$imp" "$round" "$cpu" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"round {sys.argv[4]} {sys.argv[2]:<23} {sys.argv[3]:<7} published {r['published_per_s']:>10,.0f}/s"
      f"  consumed {r['consumed_per_s']:>10,.0f}/s  p50 {r['latency_ms']['p50']:8.3f} ms"
      f"  p99 {r['latency_ms']['p99']:8.3f} ms  RSS {r['peak_rss_mb'] or 0:6.1f} MB"
      f"  CPU {float(sys.argv[5]) * 1e6 / max(r['messages'], 1):6.1f} us/msg", file=sys.stderr)
EOF
        done
    done
    echo "== round $round done; load average $(load)" >&2
done
LOAD_END=$(load)
SECONDS_TAKEN=$(( $(date +%s) - START ))

python3 bench/cli_report.py \
    --manifest "$MANIFEST" \
    --commands "$COMMANDS" \
    --url "$URL" \
    --rounds "$ROUNDS" \
    --n "$N" --m "$M" --w "$W" --wp "$WP" --memory-n "$MEMORY_N" \
    --only "$ONLY" \
    --seconds "$SECONDS_TAKEN" \
    --load-start "$LOAD_START" \
    --load-end "$LOAD_END" \
    --out "$REPORT"
echo "== wrote the carrot bench section of $REPORT (${SECONDS_TAKEN} s of runs)"
