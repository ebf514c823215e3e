#!/usr/bin/env bash
# Runs carrot's memory:// benches and kombu's memory:// transport (the peer) in one run, then
# writes BENCHMARKS.md with ratios. Takes a few minutes on 2 cores.
#
#   bench/run.sh                 # everything
#   KOMBU_N=20000 KOMBU_ROUNDS=5 KOMBU_HOLD=1000000 bench/run.sh
#
# Needs: cargo, python3 with kombu (`pip install kombu`).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${BENCH_OUT:-$(mktemp -d)}
KOMBU_N=${KOMBU_N:-20000}
KOMBU_ROUNDS=${KOMBU_ROUNDS:-5}
KOMBU_HOLD=${KOMBU_HOLD:-1000000}
CRITERION_ARGS=(--warm-up-time 1 --measurement-time 3)

python3 -c 'import kombu' 2>/dev/null || { echo "kombu is missing: pip install kombu" >&2; exit 1; }

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== logs in $OUT"

CMD_MEMORY="cargo bench --bench memory -- ${CRITERION_ARGS[*]}"
echo "== $CMD_MEMORY"
cargo bench --bench memory -- "${CRITERION_ARGS[@]}" 2>&1 | tee "$OUT/memory.log"

CMD_HOLD="cargo bench --bench memory_hold"
echo "== $CMD_HOLD"
cargo bench --bench memory_hold 2>&1 | tee "$OUT/memory_hold.log"
grep '^{' "$OUT/memory_hold.log" | tail -1 > "$OUT/memory_hold.json"

CMD_KOMBU="python3 bench/kombu_memory.py --n $KOMBU_N --rounds $KOMBU_ROUNDS --hold $KOMBU_HOLD"
echo "== $CMD_KOMBU"
python3 bench/kombu_memory.py --n "$KOMBU_N" --rounds "$KOMBU_ROUNDS" --hold "$KOMBU_HOLD" | tee "$OUT/kombu.json"

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

python3 bench/report.py \
    --criterion "$TARGET_DIR/criterion" \
    --since "$START" \
    --hold "$OUT/memory_hold.json" \
    --kombu "$OUT/kombu.json" \
    --cmd-memory "$CMD_MEMORY" \
    --cmd-hold "$CMD_HOLD" \
    --cmd-kombu "$CMD_KOMBU" \
    --load-start "$LOAD_START" \
    --out "$ROOT/BENCHMARKS.md"
echo "== wrote BENCHMARKS.md"
