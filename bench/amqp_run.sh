#!/usr/bin/env bash
# Runs carrot's RabbitMQ bench (benches/amqp.rs: carrot and raw lapin alternating in one
# process) and the Python peers (pika, kombu) on the same workloads in one run, then writes the
# RabbitMQ section of BENCHMARKS.md (bench/amqp_report.py; the memory:// section stays as it is).
# About 4 minutes on 2 cores with the defaults, once the bench is built.
#
#   bench/amqp_run.sh
#   CARROT_BENCH_AMQP_URL=amqp://guest:guest@127.0.0.1:5682/%2F AMQP_N=50000 AMQP_M=5000 AMQP_ROUNDS=3 bench/amqp_run.sh
#
# Needs: cargo, python3 with pika and kombu (`pip install pika kombu`), and a RabbitMQ at
# CARROT_BENCH_AMQP_URL (default below). The bench declares and deletes queues of its own,
# named carrot-bench-*; it touches nothing else on the broker.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${BENCH_OUT:-$(mktemp -d)}
export CARROT_BENCH_AMQP_URL=${CARROT_BENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5682/%2F}
N=${AMQP_N:-50000}
M=${AMQP_M:-5000}
ROUNDS=${AMQP_ROUNDS:-3}

python3 -c 'import pika, kombu' 2>/dev/null || { echo "pika or kombu is missing: pip install pika kombu" >&2; exit 1; }

load() { cut -d' ' -f1-3 /proc/loadavg; }

# Build first, so that compiling does not overlap the measurements.
echo "== cargo bench --bench amqp --no-run"
cargo bench --bench amqp --no-run

echo "== logs in $OUT"
LOAD_START=$(load)

ARGS="--messages $N --confirm-messages $M --rounds $ROUNDS"
CMD_RUST="cargo bench --bench amqp -- $ARGS"
echo "== $CMD_RUST"
# shellcheck disable=SC2086
cargo bench --bench amqp -- $ARGS > "$OUT/amqp.json" 2> >(tee "$OUT/amqp.log" >&2)
LOAD_RUST=$(load)

CMD_PIKA="python3 bench/peers/pika_peer.py $ARGS"
echo "== $CMD_PIKA"
# shellcheck disable=SC2086
python3 bench/peers/pika_peer.py $ARGS > "$OUT/pika.json" 2> >(tee "$OUT/pika.log" >&2)
LOAD_PIKA=$(load)

CMD_KOMBU="python3 bench/peers/kombu_peer.py $ARGS"
echo "== $CMD_KOMBU"
# shellcheck disable=SC2086
python3 bench/peers/kombu_peer.py $ARGS > "$OUT/kombu.json" 2> >(tee "$OUT/kombu.log" >&2)
LOAD_END=$(load)

python3 bench/amqp_report.py \
    --rust "$OUT/amqp.json" \
    --pika "$OUT/pika.json" \
    --kombu "$OUT/kombu.json" \
    --cmd-rust "$CMD_RUST" \
    --cmd-pika "$CMD_PIKA" \
    --cmd-kombu "$CMD_KOMBU" \
    --load-start "$LOAD_START" \
    --load-rust "$LOAD_RUST" \
    --load-pika "$LOAD_PIKA" \
    --load-end "$LOAD_END" \
    --out "$ROOT/BENCHMARKS.md"
echo "== wrote the RabbitMQ section of BENCHMARKS.md"
