#!/usr/bin/env bash
# Persistent 100-byte messages through carrot's sqlite:// broker against kombu's SQLAlchemy
# transport on SQLite (issue 5: at least 50,000 msg/s publish+consume), measured in one run;
# then bench/sqlite_report.py writes the sqlite section of BENCHMARKS.md (between its markers
# `<!-- sqlite:begin -->` / `<!-- sqlite:end -->`; the other sections stay as they are).
# About 6 minutes on 2 cores with the defaults, once built.
#
#   bench/sqlite_run.sh
#   SQLITE_N=100000 KOMBU_N=1500 SQLITE_ROUNDS=3 bench/sqlite_run.sh
#   SQLITE_BENCH_REV=HEAD bench/sqlite_run.sh    # carrot as committed, not the work tree
#
# Shapes (producers x consumers): 1x1, 2x2, 4x4, 8x8, 16x16, each implementation in each round, the
# order rotating from round to round so that none always runs first:
#   carrot     target/release/carrot --url sqlite://FILE bench --persistent ...   (the carrot CLI)
#   kombu      python3 bench/peers/kombu_sqlite.py --url sqla+sqlite:///FILE ...  (SQLite's
#              defaults: rollback journal, synchronous=FULL, as kombu leaves them)
#   kombu_wal  the same with --wal: journal_mode=WAL, synchronous=NORMAL (carrot's durability);
#              KOMBU_WAL=0 leaves it out
# kombu's transport does about 100-300 messages a second, so it runs KOMBU_N messages (the rates
# are per second, so they compare). Every run is a fresh process on a fresh file in a fresh
# directory under /tmp (so on /tmp's disk), deleted afterwards; `time` gives its CPU.
#
# Environment: SQLITE_N (carrot's messages, 100000), KOMBU_N (1500), SQLITE_ROUNDS (3),
# KOMBU_WAL (1), SQLITE_BENCH_MD (the file to write, BENCHMARKS.md),
# SQLITE_BENCH_REV (empty: build the work tree; else a commit, built from
# `git archive` in target/sqlite-bench), BENCH_OUT (a directory to keep the JSON and logs in).
# Needs: cargo, python3 with kombu and sqlalchemy.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${BENCH_OUT:-$(mktemp -d /tmp/carrot-sqlite-bench.XXXXXX)}
mkdir -p "$OUT"
N=${SQLITE_N:-100000}
KN=${KOMBU_N:-1500}
ROUNDS=${SQLITE_ROUNDS:-3}
KOMBU_WAL=${KOMBU_WAL:-1}
REV=${SQLITE_BENCH_REV:-}

if ! python3 -c 'import kombu, sqlalchemy' 2>/dev/null; then
    echo "kombu or sqlalchemy is missing for python3; install them with:" >&2
    echo "    python3 -m pip install kombu sqlalchemy   (PIP_BREAK_SYSTEM_PACKAGES=1 on a system Python)" >&2
    exit 1
fi

load() { cut -d' ' -f1-3 /proc/loadavg; }

# Build first, so that compiling does not overlap the measurements; run a copy of the binary,
# so that a rebuild meanwhile (others work in this tree) cannot swap it under the runs.
if [ -z "$REV" ]; then
    BUILD="cargo build --release --bin carrot"
    echo "== $BUILD"
    $BUILD
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    COMMIT=$(git rev-parse HEAD)
    DIRTY=$(git status --porcelain -- src Cargo.toml Cargo.lock build.rs | awk '{ print $2 }' | tr '\n' ' ' | sed 's/ $//')
    BUILT="work tree at $COMMIT${DIRTY:+, with uncommitted changes to: $DIRTY}"
else
    COMMIT=$(git rev-parse "$REV^{commit}")
    rm -rf "$OUT/src" && mkdir -p "$OUT/src"
    git archive "$COMMIT" | tar -x -C "$OUT/src"
    BUILD="cargo build --release --bin carrot   # of git archive $COMMIT, CARGO_TARGET_DIR=target/sqlite-bench"
    echo "== $BUILD"
    CARGO_TARGET_DIR="$ROOT/target/sqlite-bench" cargo build --release --bin carrot --manifest-path "$OUT/src/Cargo.toml"
    TARGET_DIR="$ROOT/target/sqlite-bench"
    BUILT="commit $COMMIT (git archive, no uncommitted changes)"
fi
cp "$TARGET_DIR/release/carrot" "$OUT/carrot"
echo "== carrot: $BUILT"

# name | producers | consumers
SHAPES=("1p1c|1|1" "2p2c|2|2" "4p4c|4|4" "8p8c|8|8" "16p16c|16|16")
IMPLS=(carrot kombu)
[ "$KOMBU_WAL" = 1 ] && IMPLS+=(kombu_wal)

opts_of() { # implementation producers consumers
    case $1 in
        carrot) echo "--persistent --json --messages $N --size 100 --producers $2 --consumers $3 --prefetch 1000" ;;
        kombu) echo "--persistent --json --messages $KN --size 100 --producers $2 --consumers $3 --prefetch 1000" ;;
        kombu_wal) echo "--persistent --json --messages $KN --size 100 --producers $2 --consumers $3 --prefetch 1000 --wal" ;;
    esac
}
command_of() { # implementation db-file producers consumers [shown]
    local bin="$OUT/carrot"
    [ "${5:-}" = shown ] && bin="target/release/carrot"
    case $1 in
        carrot) echo "$bin --url sqlite://$2 bench $(opts_of carrot "$3" "$4")" ;;
        kombu*) echo "python3 bench/peers/kombu_sqlite.py --url sqla+sqlite:///$2 $(opts_of "$1" "$3" "$4")" ;;
    esac
}

COMMANDS="$OUT/commands.tsv"
MANIFEST="$OUT/runs.tsv"
: > "$COMMANDS"
: > "$MANIFEST"
for s in "${SHAPES[@]}"; do
    IFS='|' read -r name p c <<< "$s"
    for imp in "${IMPLS[@]}"; do
        printf '%s\t%s\t%s\n' "$name" "$imp" "$(command_of "$imp" '/tmp/FRESH.db' "$p" "$c" shown)" >> "$COMMANDS"
    done
done

echo "== logs and JSON in $OUT"
TIMEFORMAT='%R %U %S' # `time`: wall, user and system CPU seconds of the run
LOAD_START=$(load)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
START=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
    for s in "${SHAPES[@]}"; do
        IFS='|' read -r name p c <<< "$s"
        order=("${IMPLS[@]}")
        shift_by=$(( (round - 1) % ${#order[@]} ))
        order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
        for imp in "${order[@]}"; do
            run="$OUT/$name.$imp.r$round"
            dir=$(mktemp -d /tmp/carrot-sqlite-run.XXXXXX)
            before=$(load)
            # shellcheck disable=SC2046
            { time $(command_of "$imp" "$dir/bench.db" "$p" "$c") > "$run.json" 2> "$run.log"; } 2> "$run.time" || {
                echo "== $name $imp round $round failed:" >&2
                cat "$run.log" "$run.time" >&2
                rm -rf "$dir"
                exit 1
            }
            after=$(load)
            rm -rf "$dir"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$imp" "$round" "$run.json" "$before" "$after" "$(tail -n 1 "$run.time")" >> "$MANIFEST"
            python3 - "$run.json" "$name" "$imp" "$round" "$(tail -n 1 "$run.time")" "$before" "$after" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
wall, user, system = map(float, sys.argv[5].split())
print(f"round {sys.argv[4]} {sys.argv[2]:<5} {sys.argv[3]:<9} published {r['published_per_s']:>9,.0f}/s"
      f"  consumed {r['consumed_per_s']:>9,.0f}/s  p50 {r['latency_ms']['p50']:9.3f} ms"
      f"  p99 {r['latency_ms']['p99']:9.3f} ms  RSS {r['peak_rss_mb'] or 0:5.1f} MB"
      f"  CPU {(user + system) * 1e6 / max(r['messages'], 1):7.1f} us/msg  {wall:5.1f} s"
      f"  load {sys.argv[6].split()[0]} -> {sys.argv[7].split()[0]}", file=sys.stderr)
EOF
        done
    done
    echo "== round $round done; load average $(load)" >&2
done
LOAD_END=$(load)
ELAPSED=$(( $(date +%s) - START ))

# The report's command line is kept with the JSON, so the section can be written again from it.
REPORT=(python3 bench/sqlite_report.py --manifest "$MANIFEST" --commands "$COMMANDS"
    --date "$DATE" --rounds "$ROUNDS" --elapsed "$ELAPSED"
    --load-start "$LOAD_START" --load-end "$LOAD_END" --built "$BUILT"
    --run-command "$(env | grep -E '^(SQLITE_N|KOMBU_N|SQLITE_ROUNDS|KOMBU_WAL|SQLITE_BENCH_REV)=' | sort | tr '\n' ' ')bench/sqlite_run.sh"
    --build-command "$BUILD"
    --out "${SQLITE_BENCH_MD:-BENCHMARKS.md}")
printf '%q ' "${REPORT[@]}" > "$OUT/report.sh"
echo >> "$OUT/report.sh"
"${REPORT[@]}"
echo "== BENCHMARKS.md: sqlite section written (JSON and logs in $OUT)"
