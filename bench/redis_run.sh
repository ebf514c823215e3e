#!/usr/bin/env bash
# carrot on redis:// against kombu's Redis transport and against the bare `redis` crate loop
# (bench/peers/redis_peer.rs: LPUSH per message, BRPOP per message, nothing else: the limit of
# the transport), on the same Redis, in one run, alternating the order of the three from round
# to round; transient messages of 100 bytes, 1 producer / 1 consumer and 4 / 4. Prints each
# run's JSON line and then the medians and the ratios BENCHMARKS.md records.
#
#   bench/redis_run.sh                                    # Redis at redis://127.0.0.1:6379/0
#   CARROT_BENCH_REDIS_URL=redis://127.0.0.1:6389/0 REDIS_N=20000 REDIS_ROUNDS=3 bench/redis_run.sh
#
# Needs: cargo, python3 with kombu and redis (`pip install kombu redis`), a Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
URL=${CARROT_BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}
N=${REDIS_N:-20000}
ROUNDS=${REDIS_ROUNDS:-3}
OUT=${BENCH_OUT:-$(mktemp -d)}
python3 -c 'import kombu, redis' 2>/dev/null || { echo "kombu or redis is missing: pip install kombu redis" >&2; exit 1; }
cargo build --release --bin carrot --example redis_peer
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cmd_of() {
    case $1 in
        carrot) echo "$TARGET/release/carrot bench" ;;
        kombu) echo "python3 bench/peers/kombu_cli.py" ;;
        redis) echo "$TARGET/release/examples/redis_peer" ;;
    esac
}
WORKLOADS=("1p1c|--producers 1 --consumers 1" "4p4c|--producers 4 --consumers 4")
IMPLS=(carrot kombu redis)
echo "== $URL, $N messages, $ROUNDS rounds; JSON in $OUT"
for round in $(seq 1 "$ROUNDS"); do
    shift_by=$(( (round - 1) % ${#IMPLS[@]} ))
    order=("${IMPLS[@]:shift_by}" "${IMPLS[@]:0:shift_by}")
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name opts <<< "$w"
        for imp in "${order[@]}"; do
            # shellcheck disable=SC2086,SC2046
            $(cmd_of "$imp") --url "$URL" --messages "$N" --size 100 --prefetch 1000 $opts --json \
                > "$OUT/$name.$imp.r$round.json" 2> "$OUT/$name.$imp.r$round.log"
            echo "$name $imp r$round $(cat "$OUT/$name.$imp.r$round.json")"
        done
    done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for name in ("1p1c", "4p4c"):
    rates = {}
    for imp in ("carrot", "kombu", "redis"):
        rates[imp] = [json.load(open(f"{out}/{name}.{imp}.r{r}.json"))["consumed_per_s"] for r in range(1, rounds + 1)]
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{name}: consumed/s median carrot {med['carrot']:.0f}, kombu {med['kombu']:.0f}, bare redis {med['redis']:.0f}; "
          f"carrot/kombu {med['carrot']/med['kombu']:.1f}x, carrot/bare {med['carrot']/med['redis']:.2f} "
          f"(per round: {[round(c/k, 1) for c, k in zip(rates['carrot'], rates['kombu'])]}, "
          f"{[round(c/b, 2) for c, b in zip(rates['carrot'], rates['redis'])]})")
PY
